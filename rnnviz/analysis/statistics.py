"""Exact rank statistics of float16 activation columns, by counting instead of sorting.

A float16 column has at most 65,536 distinct values. :func:`float16_codes` maps them to uint16 codes in the values'
order, so ``np.bincount`` of a column's codes (weighted by a feature) gives exact ranks, AUROC (ties count 1/2),
average precision (tied positions form one threshold) and Cohen's d in one pass over 65,536 bins. Used by
:mod:`rnnviz.analysis.ranking` (ranking units against features) and :mod:`rnnviz.analysis.explain` (scoring
rules).
"""

from __future__ import annotations

import math

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


