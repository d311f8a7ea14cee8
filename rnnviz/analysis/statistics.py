"""Exact rank statistics of float16 activation columns, by counting instead of sorting.

A float16 column has at most 65,536 distinct values. :func:`float16_codes` maps them to uint16 codes in the values'
order, so ``np.bincount`` of a column's codes (weighted by a feature) gives exact ranks, AUROC (ties count 1/2),
average precision (tied positions form one threshold) and Cohen's d in one pass over 65,536 bins. Used by
:mod:`rnnviz.analysis.ranking` (ranking units against features) and :mod:`rnnviz.analysis.explain` (scoring
rules).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from rnnviz.memory import BOOT_SHARE, block_rows, fit


def float16_codes(x16: np.ndarray) -> np.ndarray:
    """float16 values -> uint16 codes whose order is the values' order (-0 and +0 share a code)."""
    u = x16.view(np.uint16)
    u = np.where(u == 0x8000, 0, u)
    return np.where(u & 0x8000, 0xFFFF - u, u | 0x8000).astype(np.uint16)


def add_histogram(acc: np.ndarray, codes: np.ndarray, weights: np.ndarray | None = None) -> None:
    """``acc`` ((65536,)) += the histogram of ``codes`` ((n,) :func:`float16_codes`), rows counted with their
    ``weights`` (None: 1), over the codes' own range (a unit's values cover a few thousand of the 65,536 codes:
    a block of rows costs its rows, not 65,536 bins). Counts, and sums of whole or half numbers, are exact in
    any order: blocks of rows add up to the whole column's histogram."""
    if len(codes):
        lo, hi = int(codes.min()), int(codes.max())
        acc[lo : hi + 1] += np.bincount(codes - lo, weights=weights, minlength=hi - lo + 1)


def _code_values() -> np.ndarray:
    """(65536,) float64: the value of each code (NaN codes stay NaN)."""
    c = np.arange(65536, dtype=np.uint32)
    u = np.where(c & 0x8000, c & 0x7FFF, 0xFFFF - c).astype(np.uint16)
    return u.view(np.float16).astype(np.float64)


_VALUES = _code_values()


def auroc(pos: np.ndarray, allc: np.ndarray) -> float:
    """AUROC from per-code counts of positives and of all positions (ties count 1/2)."""
    neg = allc - pos
    P, N = pos.sum(), neg.sum()
    if P == 0 or N == 0:
        return float("nan")
    below = np.cumsum(neg) - neg
    return float((pos * (below + 0.5 * neg)).sum() / (P * N))


def average_precision(pos: np.ndarray, allc: np.ndarray, sign: int) -> float:
    """AP of positions ranked by sign·value; tied positions form one threshold."""
    if sign > 0:  # best first = highest code first
        pos, allc = pos[::-1], allc[::-1]
    keep = allc > 0
    pos, allc = pos[keep], allc[keep]
    P = pos.sum()
    if P == 0:
        return float("nan")
    precision = np.cumsum(pos) / np.cumsum(allc)
    return float((pos / P * precision).sum())


def cohens_d(pos: np.ndarray, allc: np.ndarray) -> float:
    """Cohen's d of the values in ``pos`` against the rest, from per-code counts."""
    v = np.nan_to_num(_VALUES, nan=0.0, posinf=65504.0, neginf=-65504.0)
    neg = allc - pos
    n1, n0 = pos.sum(), neg.sum()
    if n1 < 2 or n0 < 2:
        return float("nan")
    m1, m0 = (pos * v).sum() / n1, (neg * v).sum() / n0
    v1 = max((pos * v * v).sum() / n1 - m1 * m1, 0.0)
    v0 = max((neg * v * v).sum() / n0 - m0 * m0, 0.0)
    sd = math.sqrt((n1 * v1 + n0 * v0) / (n1 + n0 - 2))  # pooled sample variance (v are population ones)
    return float((m1 - m0) / sd) if sd > 0 else 0.0




# --- Intervals -------------------------------------------------------------------------------------------------
# Activations and features are autocorrelated along the text (a quote lasts hundreds of characters), so positions
# are resampled in blocks: a non-overlapping block bootstrap with blocks of BOOT_BLOCK rows, long enough to hold
# several lines of prose or code, and BOOT_REPS resamples. The interval is the percentile interval at LEVEL.
# docs/methods.md says what these intervals do and do not cover.
BOOT_BLOCK, BOOT_REPS, LEVEL = 1000, 200, 0.95
MIN_BLOCKS = 10  # fewer blocks than this give no interval (NaN): the resamples would barely differ


def block_counts(n: int, block: int = BOOT_BLOCK, reps: int = BOOT_REPS, seed: int = 0) -> np.ndarray:
    """(reps, blocks) float64: how many times each block of ``block`` rows of rows 0..n-1 (the last one shorter) is
    drawn, with replacement, in each of ``reps`` block-bootstrap resamples."""
    m = -(-n // block)
    rng = np.random.default_rng(seed)
    return np.array([np.bincount(rng.integers(0, m, m), minlength=m) for _ in range(reps)],
                    dtype=np.float64).reshape(reps, m)


def block_weights(n: int, block: int = BOOT_BLOCK, reps: int = BOOT_REPS, seed: int = 0) -> Iterator[np.ndarray]:
    """The resamples of :func:`block_counts` as (n,) float64 row weights: a row's weight is how many times its
    block was drawn. The definition :class:`BlockBootstrap` is tested against."""
    for counts in block_counts(n, block, reps, seed):
        yield np.repeat(counts, block)[:n]


def block_sums(v: np.ndarray, block: int = BOOT_BLOCK) -> np.ndarray:
    """(blocks, ...) float64: the sums of ``v`` ((n, ...)) over each block of ``block`` rows."""
    v = np.asarray(v, dtype=np.float64)
    return np.add.reduceat(v, np.arange(0, len(v), block), axis=0)


@dataclass
class BlockBootstrap:
    """The block bootstrap of rows 0..n-1, resample by resample the same as :func:`block_weights` (the same
    seed draws the same blocks), but fast: a resample's weights are constant within each block, so each
    statistic is summed per block once (O(n)) and a resample weighs those sums by its block counts (O(blocks)).
    The sample methods return (reps,) draws of a statistic, all NaN when the rows make fewer than MIN_BLOCKS
    blocks; :meth:`interval` turns them into the percentile interval."""

    n: int  # rows
    block: int = BOOT_BLOCK  # rows per block
    reps: int = BOOT_REPS  # resamples
    seed: int = 0
    memory: int | None = None  # bytes (rnnviz.memory): bounds the per-block arrays; None: each in one piece
    counts: np.ndarray = field(init=False, repr=False)  # (reps, blocks): times each block is drawn

    def __post_init__(self) -> None:
        self.counts = block_counts(self.n, self.block, self.reps, self.seed)

    @property
    def enough(self) -> bool:
        """Whether the rows make at least MIN_BLOCKS blocks (fewer give no interval)."""
        return self.counts.shape[1] >= MIN_BLOCKS

    def interval(self, samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
        """The percentile interval of (reps,) ``samples`` (NaN, NaN without enough blocks)."""
        return percentile_interval(samples, level) if self.enough else (float("nan"), float("nan"))

    def sums(self, v: np.ndarray) -> np.ndarray:
        """(reps, ...): the weighted sums of ``v`` ((n, ...)) over the rows of each resample."""
        if not self.enough:
            return np.full((self.reps, *np.shape(v)[1:]), np.nan)
        return np.tensordot(self.counts, block_sums(v, self.block), axes=1)

    def histograms(self, codes: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """(blocks, K) float64: each block's histogram of ``codes`` ((n,) integers 0..K-1), rows counted with
        their ``weights`` ((n,) numbers or bools; None: 1)."""
        K, m = int(codes.max()) + 1, self.counts.shape[1]
        per_block = np.bincount(np.arange(self.n) // self.block * K + codes, weights=weights, minlength=m * K)
        return per_block.reshape(m, K).astype(np.float64, copy=False)

    def auroc(self, codes: np.ndarray, labels: np.ndarray, allc: np.ndarray | None = None) -> np.ndarray:
        """(reps,): :func:`weighted_auroc` of ``codes`` for ``labels`` in each resample. ``allc``:
        ``histograms(codes)`` when the caller has it (one column against many features).

        :func:`auroc`'s numerator sum_k pos_k (below_k + neg_k / 2), each factor a sum over blocks weighted by a
        resample's counts c, is the quadratic form c M c with M[b, b'] = the sum over block b's positive rows i
        of (below + neg / 2)[b', code_i] ((blocks, blocks), computed once by gathering, blocks x positive rows:
        not a (blocks, K) @ (K, blocks) product, which grows with K and runs threaded, slowly, on a busy machine).
        A resample then costs blocks^2, not K or n. With 0/1 labels every sum is a multiple of 1/2 below 2^53,
        so the result is exactly the per-row one, and the same in whatever pieces it is summed: under
        ``memory`` the (blocks, K) histograms are taken a range of codes at a time (``below`` carried from one
        range to the next), and M a group of its columns at a time (summed over the ranges, then c M c)."""
        if not self.enough:
            return np.full(self.reps, np.nan)
        labels = np.asarray(labels)
        K, m, c = int(codes.max()) + 1, self.counts.shape[1], self.counts
        rows = np.flatnonzero(labels)  # the positive rows (NaN labels too: they make every resample NaN)
        w = None if labels.dtype == bool else np.asarray(labels, dtype=np.float64)[rows]  # None: 1 (bools)
        per_codes = fit(4 * 8 * m, self.memory, BOOT_SHARE, at_least=256)  # all, pos, neg, half: (blocks, k)
        per_cols = fit(2 * 8 * m, self.memory, BOOT_SHARE, at_least=64)  # M's columns, and one range's part
        pieces = [(k0, min(K, k0 + per_codes)) for k0 in range(0, K, per_codes)]
        numer, pos_b, neg_b = np.zeros(self.reps), np.zeros(m), np.zeros(m)
        for g0 in range(0, m, per_cols):  # M's columns g0..g1, summed over the ranges of codes
            g1 = min(m, g0 + per_cols)
            M, below = np.zeros((m, g1 - g0)), np.zeros(m)
            for k0, k1 in pieces:
                part = (k0, k1) if len(pieces) > 1 else None  # None: every code at once
                pos = self._histograms(codes, part, labels)  # (blocks, k1 - k0)
                neg = (self._histograms(codes, part) if allc is None else allc[:, k0:k1]) - pos
                half = below[:, None] + np.cumsum(neg, 1) - 0.5 * neg  # (blocks, k): below + neg / 2
                below += neg.sum(1)
                if g0 == 0:
                    pos_b, neg_b = pos_b + pos.sum(1), neg_b + neg.sum(1)
                inside = slice(None) if part is None else (codes[rows] >= k0) & (codes[rows] < k1)
                blk, at = rows[inside] // self.block, codes[rows[inside]] - k0
                wk = None if w is None else w[inside]
                M += np.stack([np.bincount(blk, weights=half[b][at] if wk is None else half[b][at] * wk, minlength=m)
                               for b in range(g0, g1)], 1)
            numer += ((c @ M) * c[:, g0:g1]).sum(1)
        P, N = c @ pos_b, c @ neg_b
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where((P == 0) | (N == 0), np.nan, numer / (P * N))

    def _histograms(self, codes: np.ndarray, part: tuple[int, int] | None, weights=None) -> np.ndarray:
        """:meth:`histograms` of the codes ``part`` = [k0, k1) alone (None: all), as (blocks, k1 - k0)."""
        if part is None:
            return self.histograms(codes, weights)
        k0, k1 = part
        r = np.flatnonzero((codes >= k0) & (codes < k1))
        m, k = self.counts.shape[1], k1 - k0
        w = None if weights is None else np.asarray(weights)[r]
        return np.bincount(r // self.block * k + (codes[r] - k0), weights=w, minlength=m * k).reshape(m, k) \
            .astype(np.float64, copy=False)

    def pearson(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(reps,): :func:`weighted_pearson` of ``x`` and ``y`` ((n,)) in each resample. NaN where either is
        constant over the drawn rows; NaN throughout when either holds a NaN or an infinity (a weight of 0
        times NaN is NaN: the per-row definition's answer)."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if not self.enough or not (np.isfinite(x).all() and np.isfinite(y).all()):
            return np.full(self.reps, np.nan)
        dx, dy = x - x.mean(), y - y.mean()  # centred, so the sums below cancel no large means
        step = block_rows(6 * 8 * 2, self.memory, BOOT_SHARE) // self.block * self.block or self.block
        per_block = np.concatenate([  # each block's sums, a whole number of blocks at a time
            block_sums(np.stack([np.ones(len(a)), a, b, a * a, b * b, a * b], 1), self.block)
            for a, b in ((dx[s : s + step], dy[s : s + step]) for s in range(0, self.n, step))])
        w, sx, sy, sxx, syy, sxy = np.tensordot(self.counts, per_block, axes=1).T
        vx, vy = sxx - sx * sx / w, syy - sy * sy / w
        with np.errstate(divide="ignore", invalid="ignore"):  # constant resamples: NaN below
            r = (sxy - sx * sy / w) / np.sqrt(vx * vy)
        return np.where(self._constant(x) | self._constant(y), np.nan, r)

    def _constant(self, v: np.ndarray) -> np.ndarray:
        """(reps,) bool: whether ``v`` ((n,)) takes one value over the rows each resample draws."""
        starts = np.arange(0, self.n, self.block)
        drawn = self.counts > 0
        lo = np.where(drawn, np.minimum.reduceat(v, starts), np.inf).min(1)
        hi = np.where(drawn, np.maximum.reduceat(v, starts), -np.inf).max(1)
        return lo == hi


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """(lo, hi): the central ``level`` interval of bootstrap ``samples`` (NaNs ignored; NaN when none are left)."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(s, [a, 1 - a])
    return float(lo), float(hi)


def bootstrap_interval(stat: Callable[[np.ndarray], float], n: int, block: int = BOOT_BLOCK,
                       reps: int = BOOT_REPS, seed: int = 0, level: float = LEVEL) -> tuple[float, float]:
    """Block-bootstrap percentile interval of ``stat(weights)`` over rows 0..n-1 (``weights``: (n,) float64, all
    ones = the data as it is). NaN, NaN when the rows make fewer than MIN_BLOCKS blocks. One call costs
    ``reps`` passes over the rows: :class:`BlockBootstrap` gives the same intervals from per-block sums."""
    if -(-n // block) < MIN_BLOCKS:
        return float("nan"), float("nan")
    return percentile_interval(np.array([stat(w) for w in block_weights(n, block, reps, seed)]), level)


def weighted_auroc(codes: np.ndarray, labels: np.ndarray, w: np.ndarray) -> float:
    """AUROC of value ``codes`` (non-negative integers in the values' order: :func:`float16_codes`, or the ranks of
    a column's distinct values, which make the histograms as short as the column has values) for boolean
    ``labels``, rows weighted by ``w``."""
    allc = np.bincount(codes, weights=w)
    pos = np.bincount(codes, weights=w * labels, minlength=len(allc))
    return auroc(pos, allc)


def weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Pearson r of ``x`` and ``y`` with rows weighted by ``w`` (NaN when either is constant)."""
    sw = w.sum()
    mx, my = (w * x).sum() / sw, (w * y).sum() / sw
    dx, dy = x - mx, y - my
    vx, vy = (w * dx * dx).sum(), (w * dy * dy).sum()
    return float((w * dx * dy).sum() / math.sqrt(vx * vy)) if vx > 0 and vy > 0 else float("nan")


def wilson_interval(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n of independent trials (a hit rate over n selections)."""
    if n <= 0:
        return float("nan"), float("nan")
    z = _z(level)
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, mid - half), min(1.0, mid + half)


def _z(level: float) -> float:
    """The standard normal quantile at (1 + level) / 2, by bisection on erf (no scipy at run time)."""
    lo, hi, target = 0.0, 10.0, level
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erf(mid / math.sqrt(2)) < target else (lo, mid)
    return (lo + hi) / 2


def permutation_p(effect: float, null: np.ndarray) -> float:
    """One-sided exact p-value of ``effect`` against ``null`` draws of the same statistic: (1 + #null >= effect) /
    (1 + #draws), the smallest p a test with that many draws can give being 1 / (1 + draws)."""
    null = np.asarray(null, dtype=np.float64)
    return float((1 + np.count_nonzero(null >= effect)) / (1 + null.size))
