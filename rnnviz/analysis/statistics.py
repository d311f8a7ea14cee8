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

import numpy as np

COLUMN_BYTES = 256 << 20  # float16 candidate columns held at once


def float16_codes(x16: np.ndarray) -> np.ndarray:
    """float16 values -> uint16 codes whose order is the values' order (-0 and +0 share a code)."""
    u = x16.view(np.uint16)
    u = np.where(u == 0x8000, 0, u)
    return np.where(u & 0x8000, 0xFFFF - u, u | 0x8000).astype(np.uint16)


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


def block_weights(n: int, block: int = BOOT_BLOCK, reps: int = BOOT_REPS, seed: int = 0) -> Iterator[np.ndarray]:
    """``reps`` block-bootstrap resamples of rows 0..n-1, each as (n,) float64 weights: a row's weight is how many
    times its block was drawn (blocks of ``block`` rows, the last one shorter, drawn with replacement)."""
    m = -(-n // block)
    rng = np.random.default_rng(seed)
    for _ in range(reps):
        counts = np.bincount(rng.integers(0, m, m), minlength=m).astype(np.float64)
        yield np.repeat(counts, block)[:n]


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
    ones = the data as it is). NaN, NaN when the rows make fewer than MIN_BLOCKS blocks."""
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
