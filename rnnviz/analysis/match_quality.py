"""How well select-to-find's matches recover a feature: precision and recall over *all* the matches, with intervals.

A binary feature (one value per row, > 0 inside: a quote, a comment) is on over runs of rows, its *spans*. For
the matches of one selection (every run where the followed cells are on again, not only the ``top`` returned;
:func:`rnnviz.analysis.similar.find_matches`), in two classes, ``all`` and ``strong`` (not flagged weak):

- ``precision`` = ``hits / matches``: the fraction of matches that lie in the feature (at least half of their
  rows have it, :func:`in_feature`);
- ``recall`` = ``covered / feature_rows``: the fraction of the feature's rows inside some match;
- ``span_recall`` = ``found / feature_spans``: the fraction of its spans that some match touches (1 - it: the
  spans never found).

The spans that overlap the selection are left out of both recalls (no match may overlap the selection), as are
rows outside the scanned range.

Intervals (``*_lo``, ``*_hi``, 95%): matches and spans sit along the text, and neighbouring ones are alike (the
same chapter, the same function), so one selection's figures get a block bootstrap over the scanned rows
(:class:`rnnviz.analysis.statistics.BlockBootstrap`; a match or a span counts in the block of its first row).
:func:`pool_quality` pools selections (sums of the counts, so the ratios weigh each match and each feature row
alike) with a bootstrap over the selections, which are drawn independently (blocks of one selection): that
interval says how far the figures move with the choice of selections on this text, not with the text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from rnnviz.analysis.statistics import BlockBootstrap

CLASSES = ("all", "strong")
COUNTS = ["matches", "hits", "feature_rows", "covered", "feature_spans", "found"]
RATIOS = {"precision": ("hits", "matches"), "recall": ("covered", "feature_rows"),
          "span_recall": ("found", "feature_spans")}  # ratio: (numerator, denominator)
QUALITY_COLUMNS = COUNTS + [f"{r}{s}" for r in RATIOS for s in ("", "_lo", "_hi")]


def runs(on: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximal runs of True in a 1-D bool array: (starts, stops)."""
    edges = np.diff(np.concatenate(([False], on, [False])).astype(np.int8))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def cover(n: int, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """(n,) bool: the rows inside some run [start, stop) (runs disjoint)."""
    delta = np.bincount(starts, minlength=n + 1) - np.bincount(stops, minlength=n + 1)
    return np.cumsum(delta[:-1]) > 0


def in_feature(on: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """(m,) bool: whether each run [start, stop) of rows lies in the feature ``on`` ((n,) bool): at least half
    of its rows have it."""
    cum = np.concatenate(([0], np.cumsum(on, dtype=np.int64)))
    return (cum[stops] - cum[starts]) * 2 >= (stops - starts)


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


def match_quality(feature: np.ndarray, starts: np.ndarray, stops: np.ndarray, weak: np.ndarray,
                  query: tuple[int, int] | None = None, seed: int = 0) -> pd.DataFrame:
    """Precision and recall of one selection's matches against ``feature`` (module doc).

    ``feature``: (n,) values of the scanned rows (> 0: in the feature); ``starts``, ``stops``: (m,) every match
    [start, stop), as offsets into them (disjoint); ``weak``: (m,) bool; ``query``: the selection [a, b) in the
    same offsets. Returns a DataFrame indexed by :data:`CLASSES`, columns :data:`QUALITY_COLUMNS` (a ratio over
    nothing, and an interval over fewer than MIN_BLOCKS blocks of rows, are NaN)."""
    on = np.asarray(feature) > 0
    n = len(on)
    starts, stops, weak = np.asarray(starts, np.int64), np.asarray(stops, np.int64), np.asarray(weak, bool)
    fs, fe = runs(on)
    if query is not None:  # the selected span(s): no match may overlap them
        keep = (fe <= query[0]) | (fs >= query[1])
        fs, fe = fs[keep], fe[keep]
    span_rows = np.flatnonzero(cover(n, fs, fe))
    hit = in_feature(on, starts, stops)
    rows = {}
    for name, pick in zip(CLASSES, (np.ones(len(starts), bool), ~weak), strict=True):
        s, e, h = starts[pick], stops[pick], hit[pick]
        covered = cover(n, s, e)  # (n,)
        cum = np.concatenate(([0], np.cumsum(covered, dtype=np.int64)))
        found = (cum[fe] - cum[fs]) > 0
        got = covered[span_rows]
        stats = {  # each ratio's numerator and denominator as per-row counts, (n, 2): a bootstrap weighs them
            "precision": _per_row(n, s, h),
            "recall": _per_row(n, span_rows, got),
            "span_recall": _per_row(n, fs, found),
        }
        row = {"matches": len(s), "hits": int(h.sum()), "feature_rows": len(span_rows), "covered": int(got.sum()),
               "feature_spans": len(fs), "found": int(found.sum())}
        rows[name] = _with_ratios(row, stats, n, block=None, seed=seed)
    return _frame(rows)


def _per_row(n: int, rows: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """(n, 2): per row, the hits and the items (matches, feature rows, spans) counted there."""
    return np.stack([np.bincount(rows, weights=hit, minlength=n), np.bincount(rows, minlength=n)], 1)


def _with_ratios(row: dict, stats: dict, n: int, block: int | None, seed: int) -> dict:
    """``row`` (the counts) with each ratio of :data:`RATIOS` and its bootstrap interval over ``n`` rows.
    ``stats``: each ratio's (n, 2) numerator and denominator per row."""
    boot = BlockBootstrap(n, seed=seed) if block is None else BlockBootstrap(n, block, seed=seed)
    for name, (num, den) in RATIOS.items():
        s = boot.sums(stats[name])  # (reps, 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            lo, hi = boot.interval(np.where(s[:, 1] > 0, s[:, 0] / s[:, 1], np.nan))
        row.update({name: _ratio(row[num], row[den]), f"{name}_lo": lo, f"{name}_hi": hi})
    return row


def _frame(rows: dict) -> pd.DataFrame:
    df = pd.DataFrame.from_dict(rows, orient="index")[QUALITY_COLUMNS]
    df[COUNTS] = df[COUNTS].astype(np.int64)
    return df


def pool_quality(qualities: Sequence[pd.DataFrame], seed: int = 0) -> pd.DataFrame:
    """Many selections' :func:`match_quality` tables as one: the counts summed, each ratio of the sums, its
    interval from a bootstrap over the selections (NaN for fewer than MIN_BLOCKS selections)."""
    rows = {}
    for name in CLASSES:
        c = {k: np.array([q.loc[name, k] for q in qualities], dtype=np.float64) for k in COUNTS}
        stats = {r: np.stack([c[num], c[den]], 1) for r, (num, den) in RATIOS.items()}
        rows[name] = _with_ratios({k: int(v.sum()) for k, v in c.items()}, stats, len(qualities), block=1, seed=seed)
    return _frame(rows)
