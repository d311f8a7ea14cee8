"""Each unit's two states: where its values split best into "off" and "on" (Otsu's threshold).

Select-to-find asks whether a cell is *on* over a selection. A fixed θ in standard deviations suits a cell
whose on-state is rare and far out (a quote cell on 5% of a novel sits 2-4 σ up), but not one that is on for
a third of the text: Linux's comment cell 0:c:223 is on inside every comment yet only about 1 σ above its
mean there, because comments are 36% of the kernel's test split. Such a cell has two clear states, and the
split between them is the natural on-threshold. For each unit this module finds the split of its values that
maximises the between-state variance (Otsu 1979) and reports how much of the unit's variance the two states
explain, ``eta`` in [0, 1]: 1 for a unit that only ever takes two values, 2/π ≈ 0.64 for a Gaussian one.
Units with ``eta >= ETA_MIN`` count as two-state cells.

The histogram is taken over a sample of the store (``SAMPLE_WINDOWS`` evenly spaced windows of
``WINDOW_ROWS`` rows, all of it when shorter): about 0.5 s for a store of any length (1,024 units), 6-10 s for
3,072 (all six kinds of a 2x256 LSTM). So it is computed once, when the store is recorded (``rnnviz record``
calls :func:`two_states`), and kept beside the store
(``cache.two_state``, :func:`rnnviz.store.column_cache.cached_array`: checked against the store's arrays, this
module's code and its settings; a store recorded before, or a stale or corrupt file, has it computed on first
use and written then), and kept with the open store.
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path

import numpy as np
import pandas as pd

from rnnviz.store.column_cache import array_stamp, cached_array, code_hash
from rnnviz.store.reader import spaced_blocks

BINS = 256  # histogram bins between each unit's min and max
SAMPLE_WINDOWS, WINDOW_ROWS = 256, 64  # at most 16,384 rows read, spread over the whole text
ETA_MIN = 0.7  # share of a unit's variance its two states must explain to call it a two-state cell
COLUMNS = ["split", "low", "high", "eta", "on_share"]
CACHE = "cache.two_state"  # beside the store: (len(COLUMNS), U) float64, one row per column

_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()  # _cache
_compute = threading.Lock()  # one computation at a time


def _sample(store) -> np.ndarray:
    """(n, U) float32 values of every unit (in ``store.units`` order) at up to SAMPLE_WINDOWS x WINDOW_ROWS
    rows spread over the store."""
    return store.read(blocks=spaced_blocks(store.length, SAMPLE_WINDOWS * WINDOW_ROWS, SAMPLE_WINDOWS))


def otsu(values: np.ndarray, bins: int = BINS) -> pd.DataFrame:
    """Two-state split of each column of ``values`` (n, U): a DataFrame of U rows with :data:`COLUMNS`:
    ``split`` (raw value; on = above it), ``low`` / ``high`` (mean of each state), ``eta`` (between-state
    variance / total variance) and ``on_share`` (fraction of the values above the split)."""
    n, U = values.shape
    broken = ~np.isfinite(values).all(0)  # a unit with NaN or ±inf (a diverged model) has no two states to find
    if broken.any():
        values = np.where(broken, 0.0, values).astype(values.dtype)
    lo, hi = values.min(0).astype(np.float64), values.max(0).astype(np.float64)
    span = np.maximum(hi - lo, 1e-9)
    scale = (bins / span).astype(np.float32)
    idx = np.minimum(((values - lo.astype(np.float32)) * scale).astype(np.int32), bins - 1)  # (n, U) bin of each
    idx += np.arange(U, dtype=np.int32) * bins
    flat_idx = idx.ravel()
    w = np.bincount(flat_idx, minlength=U * bins).reshape(U, bins) / max(n, 1)  # (U, bins) share in each bin
    # The values' own sums per bin (not the bins' centres), so the states' means and variances are exact.
    sums = np.bincount(flat_idx, weights=values.ravel(), minlength=U * bins).reshape(U, bins) / max(n, 1)
    w0, m0 = np.cumsum(w, 1)[:, :-1], np.cumsum(sums, 1)[:, :-1]  # the low state for each cut
    total = sums.sum(1, keepdims=True)  # (U, 1) mean
    between = (total * w0 - m0) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)  # (U, bins-1)
    k = between.argmax(1)
    r = np.arange(U)
    a, m = w0[r, k], m0[r, k]
    var = values.var(0, dtype=np.float64)
    flat = (var <= 1e-18) | broken  # a constant unit has no second state
    return pd.DataFrame({
        "split": np.where(flat, hi, lo + (k + 1) / bins * span),
        "low": m / np.maximum(a, 1e-12),
        "high": (total[:, 0] - m) / np.maximum(1 - a, 1e-12),
        "eta": np.where(flat, 0.0, between[r, k] / np.maximum(var, 1e-18)),
        "on_share": 1 - a,
    })


def two_states(store) -> pd.DataFrame:
    """Every unit's two states (:func:`otsu` over a sample of the store), indexed by unit name: read from the
    cache beside the store (computed and written there when it is missing or stale), once per open store."""
    with _compute:  # computed once; a page load's stored_two_states does not wait for it (another lock)
        with _lock:
            got = _cache.get(store)
        if got is None:
            got = _cached(store, lambda: otsu(_sample(store))[COLUMNS].to_numpy(np.float64).T)
            with _lock:
                _cache[store] = got
        return got


def stored_two_states(store) -> pd.DataFrame | None:
    """:func:`two_states` when they are already known (kept with the open store, or a valid cache beside it),
    else None: never computes (fast enough for a page load)."""
    with _lock:
        got = _cache.get(store)
    if got is None:
        got = _cached(store, None)
        if got is not None:
            with _lock:
                got = _cache.setdefault(store, got)
    return got


def _cached(store, compute) -> pd.DataFrame | None:
    """The table from the cache beside the store (``compute()``d and written there when missing or stale, with
    ``compute``; None without), as a DataFrame indexed by unit."""
    expect = {"kind": "two_state", "key": f"bins={BINS},windows={SAMPLE_WINDOWS}x{WINDOW_ROWS}",
              "source": array_stamp(store), "code": code_hash(Path(__file__))}
    table = cached_array(store, CACHE, expect, "<f8", (len(COLUMNS), len(store.units)), compute)
    if table is None:
        return None
    return pd.DataFrame(dict(zip(COLUMNS, table, strict=True)), index=pd.Index(list(store.units), name="unit"))
