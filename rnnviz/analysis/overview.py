"""Many units at a glance: cheap per-unit measures that order and filter the rows of the Overview tab.

The dashboard's Overview tab draws a units × text heatmap of one layer and kind. Its rows are ordered by the
catalog's explanations when they are computed (:func:`explain_order`) and otherwise by a measure read off a
small sample (:func:`unit_measures`, the same 16,384 rows in 256 spread windows that
:mod:`rnnviz.analysis.two_state` reads):

- ``eta``: the two-state split's share of the unit's variance (:func:`rnnviz.analysis.two_state.otsu`); near 1
  for a unit that sits in one of two levels (a quote or comment cell).
- ``slow``: the Pearson r of the unit with itself ``SLOW_LAG`` rows later, pairs taken inside each sample window;
  near 1 for a unit that changes slowly (a line-length or depth counter), near 0 for one that follows each
  character.
- ``char_share``: the share of the unit's variance explained by what the row reads (η², between-group over
  total variance, the groups being :meth:`~rnnviz.store.reader.Store.row_keys`); near 1 for an input detector.
  Without the catalog it stands in for the catalog's ``role``: ``char_share >= CHAR_SHARE_MIN`` is called an
  input detector (:func:`input_detectors`; it finds a third of the catalog's, rarely a unit that is not one). It
  is measured on the same sample it is used on (no held-out half): with ~100 characters and 16k rows the
  inflation is about 100/16k = 0.006.

The rows' colours are drawn by :mod:`rnnviz.views.heat_rows`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from rnnviz.analysis.two_state import SAMPLE_WINDOWS, WINDOW_ROWS, two_states
from rnnviz.store.reader import spaced_blocks

SLOW_LAG = 16  # rows: a unit still correlated with itself this far on is "slow" (a word is ~6 characters)
# A unit with more than half its variance explained by the row just read: an input detector. Against the catalog's
# roles on 30k characters of War and Peace (the bundled 2x256 LSTM, 1,024 units): 101 of the 107 units it flags
# are input detectors there (precision 0.94, 95% Wilson 0.88-0.97), 101 of 292 found (recall 0.35, 0.29-0.40).
# Cautious on purpose: a unit wrongly hidden is a cell lost; the catalog's roles replace it once computed.
CHAR_SHARE_MIN = 0.5
ROLE_ORDER = ("cell", "unexplained", "input detector")  # the catalog's roles, top to bottom
ORDERS = {  # the row orders the overview offers -> what the note says
    "explain": "the catalog's explanations (cells by held-out score, then unexplained units, input detectors last)",
    "two-state": "two-state η, highest first (the two-state split's share of the unit's variance)",
    "slow": f"slowness, slowest first (the unit's correlation with itself {SLOW_LAG} rows later)",
    "index": "unit index",
}


def sample_blocks(length: int) -> list[tuple[int, int]]:
    """The sample's row ranges: the windows :mod:`~rnnviz.analysis.two_state` reads (all rows when shorter)."""
    return spaced_blocks(length, SAMPLE_WINDOWS * WINDOW_ROWS, SAMPLE_WINDOWS)


def lag_correlation(x: np.ndarray, blocks: Sequence[tuple[int, int]], lag: int = SLOW_LAG) -> np.ndarray:
    """(U,) Pearson r of each column of ``x`` (n, U: the rows of ``blocks`` one after another) with itself
    ``lag`` rows later, over the pairs inside one block; NaN for a constant column or when no block is longer
    than ``lag``."""
    first, later, at = [], [], 0
    for a, b in blocks:
        n = b - a
        if n > lag:
            first.append(x[at : at + n - lag])
            later.append(x[at + lag : at + n])
        at += n
    U = x.shape[1]
    if not first:
        return np.full(U, np.nan)
    x0 = np.concatenate(first).astype(np.float64)
    x1 = np.concatenate(later).astype(np.float64)
    x0 -= x0.mean(0)
    x1 -= x1.mean(0)
    den = np.sqrt((x0**2).sum(0) * (x1**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (x0 * x1).sum(0) / np.where(den > 0, den, 1), np.nan)


def group_share(x: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """(U,) η² of each column of ``x`` (n, U) grouped by ``keys`` (n,): the variance of the group means
    (weighted by group size) over the total variance; NaN for a constant column."""
    x = x.astype(np.float64)
    _, g = np.unique(keys, return_inverse=True)
    counts = np.bincount(g)  # (K,)
    onehot = np.zeros((len(g), len(counts)))
    onehot[np.arange(len(g)), g] = 1.0
    means = (onehot.T @ x) / counts[:, None]  # (K, U)
    centre = x.mean(0)
    between = (counts[:, None] * (means - centre) ** 2).sum(0)
    total = ((x - centre) ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, between / np.where(total > 0, total, 1), np.nan)


def unit_measures(store, units: Sequence[str]) -> pd.DataFrame:
    """``eta``, ``slow`` and ``char_share`` (see the module's docstring) of ``units``, indexed by unit, from the
    sample (:func:`sample_blocks`; about 0.1 s for 256 units)."""
    blocks = sample_blocks(store.length)
    x = store.read(list(units), blocks=blocks)  # (n, U)
    x = np.where(np.isfinite(x), x, 0.0)  # a diverged unit: measured as if flat there, never NaN-poisoned
    rows = np.concatenate([np.arange(a, b) for a, b in blocks])
    return pd.DataFrame({
        "eta": two_states(store)["eta"].reindex(list(units)).to_numpy(),
        "slow": lag_correlation(x, blocks),
        "char_share": group_share(x, store.row_keys()[rows]),
    }, index=pd.Index(list(units), name="unit"))


def input_detectors(measures: pd.DataFrame, minimum: float = CHAR_SHARE_MIN) -> pd.Series:
    """Without the catalog: the units whose ``char_share`` is at least ``minimum`` (bool, by unit)."""
    return measures["char_share"] >= minimum


def explain_order(roles: Sequence[str], scores: Sequence[float]) -> np.ndarray:
    """Indices that sort units by the catalog: :data:`ROLE_ORDER`, then by score, highest first (ties: given
    order)."""
    rank = np.array([ROLE_ORDER.index(r) if r in ROLE_ORDER else len(ROLE_ORDER) for r in roles])
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    return np.lexsort((-s, rank))


def measure_order(measures: pd.DataFrame, order: str) -> np.ndarray:
    """Indices of ``measures``' rows in ``order`` ("two-state", "slow" or "index"); NaN last."""
    if order == "index":
        return np.arange(len(measures))
    col = {"two-state": "eta", "slow": "slow"}[order]
    v = np.nan_to_num(measures[col].to_numpy(np.float64), nan=-np.inf)
    return np.argsort(-v, kind="stable")
