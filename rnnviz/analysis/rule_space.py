"""The rule space of one text for :func:`rnnviz.explain`: its two halves, and every candidate rule's values over
them, kept block by block.

The halves are alternate blocks of ``block`` characters (:func:`split_halves`); sums over them run tile by tile
(:func:`_tiles`: each half's ranges cut into a fixed number of rows), and tiles are read a span at a time
(:func:`_spans`: as many as a share of the memory setting holds), so no sum depends on the memory setting.
:class:`RuleSpace` computes the rules one at a time from the whole text and keeps their values (centred on
their half), 0/1 masks and n-gram ids in a :class:`~rnnviz.store.scratch.Scratch` (memory, else a file
beside the store), with each half's means, spreads and the pool's covariance.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from rnnviz.analysis import rules as R
from rnnviz.memory import SCRATCH_SHARE, block_rows, limit
from rnnviz.store.scratch import Scratch

BLOCK = 4096  # characters per block of the alternating halves (a few paragraphs or one function)
STATS_ROWS = 8192  # rows per tile of the rules' statistics and of the AUROCs' histograms (a few MB of rules)
# Simpler rules win near-ties (|r| on the fit half is compared after subtracting these): a lagged, onset,
# offset or fading feature must beat the plain one by 0.01, each extra n-gram character costs 0.005.
TRANSFORM_COST, NGRAM_COST = 0.01, 0.005


def split_halves(T: int, block: int | None = BLOCK) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The fitting and the held half of ``range(T)`` as lists of (start, stop) ranges: alternate blocks of
    ``block`` characters (at least two blocks, so a short text still splits in two), or the first and
    second half for ``block=None``.

    >>> split_halves(10, 3)   # ([(0, 3), (6, 9)], [(3, 6), (9, 10)])
    """
    size = (T + 1) // 2 if block is None else max(1, min(block, (T + 1) // 2))
    ranges = [(s, min(s + size, T)) for s in range(0, T, size)]
    return ranges[0::2], ranges[1::2]


def _rows(ranges: list[tuple[int, int]]) -> np.ndarray:
    """(N,) int64 positions covered by ``ranges``, in order."""
    return np.concatenate([np.arange(lo, hi) for lo, hi in ranges]) if ranges else np.zeros(0, dtype=np.int64)


def held_rows(T: int, block: int | None = BLOCK) -> np.ndarray:
    """(N_B,) int64: the rows of the held half, where ``score`` is measured."""
    return _rows(split_halves(T, block)[1])


def _tiles(halves, step: int) -> list[tuple[int, int, int]]:
    """``(half, start, stop)`` of each tile: the ranges of each half cut into at most ``step`` rows, in row order.
    Sums run tile by tile, so they do not depend on how many tiles a block of memory holds."""
    tiles = [(h, s, min(s + step, hi)) for h, ranges in enumerate(halves) for lo, hi in ranges
             for s in range(lo, hi, step)]
    return sorted(tiles, key=lambda t: t[1])


def _spans(tiles: list[tuple[int, int, int]], rows: int) -> Iterator[tuple[int, int, list[tuple[int, int, int]]]]:
    """``(start, stop, tiles)``: consecutive tiles grouped so that each group spans at most ``rows`` rows (one
    tile at least): the rows one read brings in."""
    group: list[tuple[int, int, int]] = []
    for t in tiles:
        if group and t[2] - group[0][1] > rows:
            yield group[0][1], group[-1][2], group
            group = []
        group.append(t)
    if group:
        yield group[0][1], group[-1][2], group


class RuleSpace:
    """The rule space of one text, split into the fitting half A and the scoring half B (each a list of
    (start, stop) ranges, see :func:`split_halves`). ``at`` (T,): the character each row reads, for a token
    store (rules are computed on the characters, read at each token's last one); None: row t is character t.

    The rules are computed one at a time from the whole text; each dense rule's means and spreads per half are
    taken then, from its whole column, and its values are kept centred on their own half (a row is in one
    half), with a 0/1 rule's mask (where it holds) beside them, and each n-gram length's ids: all in a
    :class:`Scratch`, in memory up to SCRATCH_SHARE of ``memory``'s budget, else in a file beside ``where``
    (the store), read back a block of rows at a time (:meth:`dense_block`, :meth:`mask_block`, :meth:`ids_block`)."""

    def __init__(self, text: str, min_count: int, block: int | None, at: np.ndarray | None = None,
                 memory: int | None = None, where=None):
        T = len(text) if at is None else len(at)
        self.length, self.memory = T, memory
        self.halves, self.block = split_halves(T, block), block
        self.sizes = [sum(hi - lo for lo, hi in r) for r in self.halves]  # N_A, N_B
        self.values = Scratch(T, limit(memory, SCRATCH_SHARE), where)
        rows = [_rows(r) for r in self.halves]  # (N_A,), (N_B,): the text's per-row arrays, while building
        self.dense, self._dense_cols, self._mask_cols = [], [], {}  # rules, their scratch columns, 0/1 masks
        moments = []  # per dense rule: (mean, sum of squares) per half
        for rule, v in R.dense_columns(text):
            v = v if at is None else v[at]
            self.dense.append(rule)
            centred, m = _centred(v, rows)
            self._dense_cols.append(self.values.add(centred))
            moments.append(m)
            if rule.binary:
                self._mask_cols[len(self.dense) - 1] = self.values.add(v > 0)
        self.cost = np.array([TRANSFORM_COST if "@" in r.id else 0.0 for r in self.dense])
        self.grams, self._id_cols = [], []  # per n: the n-grams (id G = "none of them"), the scratch column of the ids
        counts = [[], []]  # per half, per n: (G_n + 1,) occurrences of each id
        for n in range(1, R.MAX_NGRAM + 1):
            ids, grams = R.ngram_ids(text, n, rows[0] if at is None else at[rows[0]], min_count)
            ids = ids if at is None else ids[at]
            for h, r in enumerate(rows):
                counts[h].append(np.bincount(ids[r], minlength=len(grams) + 1))
            self._id_cols.append(self.values.add(ids.astype(np.int32)))
            self.grams.append(grams)
        del rows, ids
        self.h = self._half_stats(moments, counts)

    def dense_block(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """(C, n) float32: rows start:stop of the dense rules, each centred on its half (into ``out``'s first n
        columns when given)."""
        return self.values.stack(self._dense_cols, start, stop, np.float32, out)

    def mask_block(self, start: int, stop: int, rules: list[int]) -> np.ndarray:
        """(len(rules), n) bool: rows start:stop of where each 0/1 dense rule of ``rules`` holds."""
        return self.values.stack([self._mask_cols[j] for j in rules], start, stop, bool)

    def ids_block(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """(MAX_NGRAM, n) int32: rows start:stop of each n-gram length's ids."""
        return self.values.stack(self._id_cols, start, stop, np.int32, out)

    def spans(self, tiles, row_bytes: float, share: float) -> list[tuple[int, int, list[tuple[int, int, int]]]]:
        """:func:`_spans` of ``tiles``, as many rows a span as :func:`block_rows` gives for ``row_bytes`` a row in
        ``share`` of the budget."""
        return list(_spans(tiles, block_rows(row_bytes, self.memory, share, at_least=STATS_ROWS)))

    def close(self) -> None:
        self.values.close()

    def _half_stats(self, moments: list, counts: list) -> list[dict]:
        """Per half: means, spreads and the covariance of the pool (dense rules + characters). The rules'
        covariance with each other sums float32 tiles of STATS_ROWS rows in float64 (where one float32 product
        over the whole half was: it differs by float32 rounding); every other sum is that of one pass over the
        whole half (the means and spreads sequential in float64, the rules-by-characters sums in float32)."""
        C, G1 = len(self.dense), len(self.grams[0])
        cov = [torch.zeros((C, C), dtype=torch.float64) for _ in self.halves]
        cross = [torch.zeros((G1 + 1, C)) for _ in self.halves]
        for a, b, span in self.spans(_tiles(self.halves, STATS_ROWS), 4 * C + 4 * R.MAX_NGRAM, 1 / 2):
            D, first = self.dense_block(a, b), self.ids_block(a, b)[0].astype(np.int64)  # (C, n), (n,)
            for h, s, e in span:
                t = torch.from_numpy(D[:, s - a : e - a])  # (C, n)
                cov[h] += (t @ t.T).double()
                cross[h].index_add_(0, torch.from_numpy(first[s - a : e - a]), t.T)
        out = []
        for h, N in enumerate(self.sizes):
            mean = np.array([m[h][0] for m in moments], dtype=np.float64).reshape(C)
            p = [c[: len(g)] / N for c, g in zip(counts[h], self.grams, strict=True)]  # (G_n,) frequencies
            pool = np.empty((C + G1, C + G1))
            pool[:C, :C] = cov[h].numpy() / N
            pool[C:, :C] = x = cross[h][:G1].double().numpy() / N
            pool[:C, C:] = x.T
            pool[C:, C:] = np.diag(p[0]) - np.outer(p[0], p[0])
            out.append({"N": N, "mean": mean, "sd": np.sqrt(np.array([m[h][1] for m in moments]).reshape(C) / N),
                        "p": p, "cov": pool, "pool_sd": np.sqrt(np.maximum(np.diag(pool), 0.0))})
        return out


def _centred(v: np.ndarray, rows: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """(T,) float32 values ``v`` centred on the mean of their half (``rows``: each half's rows), and per half its
    (mean, sum of squares of the centred values), in float64 summed in row order: exactly what the sums over a
    (rows, rules) matrix of the half give for this column."""
    out = np.empty_like(v)
    moments = []
    for r in rows:
        mean = np.cumsum(v[r], dtype=np.float64)[-1] / len(r)  # cumsum: one sum in row order
        out[r] = c = v[r] - np.float32(mean)
        moments.append((mean, np.cumsum(np.square(c, dtype=np.float64))[-1]))
    return out, moments
