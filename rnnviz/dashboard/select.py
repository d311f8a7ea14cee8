"""Select-to-find: which units mark a selected range of text, and where else they switch on together.

LSTMVis's rule (Strobelt et al. 2017), made sign- and scale-aware: a unit is "on" at a character when
its value, in standard deviations from its own mean over the whole store (``z``), is above a threshold
θ. A unit marks the range [a, b) when it is on at every character inside and off at every character
of a short margin around it. Units that code by going *down* count too (sign −1). Beside that rule, a
correlation rule ranks units by |Pearson r| between their values and the in-range indicator over a
context window, which also finds units that are mostly (not strictly) on.

Both rules read only the rows around the selection. The match search reads only the chosen units, in
row blocks, over a bounded span of the store, and returns maximal runs where (almost) all of them are on.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import RnnvizError

MAX_SELECTION = 5000  # characters: a longer selection is not a "range that a cell marks"
MAX_MATCH_UNITS = 8  # units that the match search follows together


def _zscore(store, units: list[str], values: np.ndarray) -> np.ndarray:
    """(n, U) raw values -> (n, U) standard deviations from each unit's store-wide mean."""
    stats = store.stats.loc[units]
    mean = stats["mean"].to_numpy(np.float32)
    std = np.maximum(stats["std"].to_numpy(np.float32), 1e-6)  # a dead unit is never "on"
    return (values - mean) / std


def check_range(store, a: int, b: int) -> tuple[int, int]:
    """Validate a selection [a, b) against the store; returns it as ints."""
    a, b = int(a), int(b)
    if not 0 <= a < b <= store.length:
        raise RnnvizError(f"select a range inside the text (0..{store.length}), got {a}..{b}")
    if b - a > MAX_SELECTION:
        raise RnnvizError(f"the selection is {b - a:,} characters; select at most {MAX_SELECTION:,}")
    return a, b


def units_for_range(
    store, a: int, b: int, threshold: float = 1.0, margin: int = 5, context: int | None = None, top: int = 10
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rank the units that mark the selection [a, b).

    ``threshold``: θ in standard deviations; ``margin``: characters each side that must be off;
    ``context``: characters each side used by the correlation rule (default: twice the selection's length,
    at least 20, so the range is contrasted with its own neighbourhood, not with far-off repeats of it).
    Returns (threshold rule, correlation rule), each a DataFrame with columns
    ``unit, sign, score, inside, around`` (``inside`` / ``around``: mean raw value in / around the range),
    best first, at most ``top`` rows. Threshold-rule score = the margin in σ between the weakest inside
    value and the strongest value around; correlation-rule score = |r|.
    """
    a, b = check_range(store, a, b)
    context = max(2 * (b - a), 20) if context is None else context
    lo, hi = max(0, a - max(context, margin)), min(store.length, b + max(context, margin))
    units = store.units
    raw = store.window(lo, hi, units)  # (n, U) float32: only the rows around the selection
    z = _zscore(store, units, raw)
    ia, ib = a - lo, b - lo
    inside = np.zeros(hi - lo, dtype=bool)
    inside[ia:ib] = True
    near = np.zeros(hi - lo, dtype=bool)
    near[max(0, ia - margin) : ib + margin] = True
    around = near & ~inside

    # Threshold rule, for both signs: margin = min inside - max around (in σ); pass if it straddles θ.
    rows = []
    for sign in (1, -1):
        s = sign * z
        in_min = s[inside].min(0)
        # No margin at all only when the selection is the whole text: then compare with θ alone.
        out_max = s[around].max(0) if around.any() else np.full(len(units), threshold, np.float32)
        ok = (in_min > threshold) & (out_max <= threshold)
        score = in_min - out_max
        for j in np.flatnonzero(ok):
            rows.append((units[j], sign, float(score[j])))
    thr = pd.DataFrame(rows, columns=["unit", "sign", "score"])

    # Correlation rule over the context: r between each unit and the 0/1 in-range indicator.
    x = inside.astype(np.float32)
    if x.std() > 0:
        xc = (x - x.mean()) / x.std()
        vc = raw - raw.mean(0)
        sd = raw.std(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(sd > 0, (xc @ vc) / (len(x) * np.where(sd > 0, sd, 1)), 0.0)
    else:  # the selection covers the whole context (a tiny store): nothing to contrast with
        r = np.zeros(len(units), dtype=np.float32)
    order = np.argsort(-np.abs(r), kind="stable")[:top]
    cor = pd.DataFrame(
        {"unit": [units[j] for j in order], "sign": np.where(r[order] < 0, -1, 1), "score": np.abs(r[order])}
    )

    def finish(df: pd.DataFrame) -> pd.DataFrame:
        df = df.sort_values("score", ascending=False, kind="stable").head(top).reset_index(drop=True)
        cols = [units.index(u) for u in df["unit"]]
        df["inside"] = raw[inside][:, cols].mean(0) if cols else []
        df["around"] = raw[around][:, cols].mean(0) if cols and around.any() else np.nan
        return df

    return finish(thr), finish(cor)


def find_matches(
    store,
    units: list[str],
    signs: list[int],
    threshold: float = 1.0,
    query: tuple[int, int] | None = None,
    min_on: float = 0.75,
    max_rows: int = 1_000_000,
    top: int = 20,
    block: int = 65536,
) -> tuple[pd.DataFrame, tuple[int, int]]:
    """Other places where the given units switch on together.

    A character is part of a match when at least ``ceil(min_on · k)`` of the k units are on (sign-aware,
    θ in σ as in :func:`units_for_range`). Matches are maximal runs of such characters; the one that
    overlaps ``query`` is left out. Score = mean fraction of the units on over the run × length
    similarity to the query (min/max of the two lengths). Only ``max_rows`` rows are scanned, centred on
    the query, so the cost is bounded on any store.
    Returns (DataFrame ``start, stop, score, on`` best first, (scanned start, scanned stop)).
    """
    if not units:
        raise RnnvizError("no units to search for")
    if len(units) > MAX_MATCH_UNITS:
        units, signs = units[:MAX_MATCH_UNITS], signs[:MAX_MATCH_UNITS]
    k = len(units)
    need = max(1, math.ceil(min_on * k - 1e-9))
    centre = (query[0] + query[1]) // 2 if query else 0
    lo = max(0, min(centre - max_rows // 2, store.length - max_rows))
    hi = min(store.length, lo + max_rows)
    sign = np.asarray(signs, dtype=np.float32)
    counts = np.empty(hi - lo, dtype=np.int16)
    for s in range(lo, hi, block):
        e = min(s + block, hi)
        z = _zscore(store, units, store.window(s, e, units)) * sign
        counts[s - lo : e - lo] = (z > threshold).sum(1)
    on = counts >= need
    # Maximal runs of True: starts where on turns on, stops where it turns off.
    edges = np.diff(np.concatenate(([False], on, [False])).astype(np.int8))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    qlen = (query[1] - query[0]) if query else None
    if query:
        keep = (stops + lo <= query[0]) | (starts + lo >= query[1])
        starts, stops = starts[keep], stops[keep]
    if len(starts) == 0:
        return pd.DataFrame(columns=["start", "stop", "score", "on"]), (lo, hi)
    cum = np.concatenate(([0], np.cumsum(counts, dtype=np.int64)))
    lengths = stops - starts
    frac = (cum[stops] - cum[starts]) / (lengths * k)  # mean fraction of the units on over the run
    sim = np.minimum(lengths, qlen) / np.maximum(lengths, qlen) if qlen else np.ones(len(lengths))
    score = frac * sim
    order = np.lexsort((starts, -score))[:top]  # best score first, then earlier in the text
    df = pd.DataFrame(
        {"start": starts[order] + lo, "stop": stops[order] + lo, "score": score[order], "on": frac[order]}
    )
    return df.reset_index(drop=True), (lo, hi)
