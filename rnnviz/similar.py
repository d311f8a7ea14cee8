"""Select-to-find: which cells mark a selected range of text, and where else they switch on together.

LSTMVis's rule (Strobelt et al. 2017), made sign- and scale-aware: a cell is *on* at a character when its
value, in standard deviations from its own mean over the whole store (``z``), is above a threshold θ;
cells that code by going *down* count too (sign −1). LSTMVis keeps a cell when it is on at *every*
character of the selection [a, b) and off at every character of a margin around it ("strict" here).

That rule fails on real selections: a quote cell turns on one character after the opening quote that the
user selected with it, flickers for a character in a long quote, or stays on one character after the
closing one. Ours ("tolerant", the default) therefore

- ignores ``slack`` characters (default 2) on each side of each edge of the selection,
- asks the cell to be on at a fraction ``min_on`` (default 0.8, :data:`MIN_ON`) of the characters left
  inside, and off at the same fraction of the ``margin`` characters each side outside the slack,
- ranks the cells that pass by ``contrast × consistency``: contrast = mean z inside − mean z around
  (in σ), consistency = fraction on inside − fraction on around. A cell that swings far and stays
  there beats one that grazes θ; the strict rule's score (weakest inside − strongest around) is given
  beside it.

Matches: maximal runs where at least ``ceil(min_on · k)`` of the k followed cells are on, gaps of at most
``slack`` characters closed. Each is scored both ways: ``score`` (ours: mean fraction of the cells on over
the run × length similarity with the selection) and LSTMVis's order (``lstmvis_rank``: all cells on
throughout first, then the closest length). A match shorter than :data:`WEAK_LEN` characters, or with
fewer than ``min_on`` of the cells on on average, is returned flagged ``weak``: it is never used to pad a
list of strong ones.

Reading cost: the cell ranking reads only the rows around the selection (all units); the match search
reads only the followed cells' columns, in row blocks, over the whole store (or ``max_rows`` of it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import RnnvizError

MAX_SELECTION = 5000  # characters: a longer selection is not "a range that a cell marks"
MAX_FOLLOW = 8  # cells that the match search follows together
MIN_ON = 0.8  # "mostly on": the fraction of the characters inside (and off outside) that must agree
WEAK_LEN = 3  # a match shorter than this many characters is weak (a blip, not a span)
STRONG_LEVEL = 0.8  # a match whose cells' mean z is below this fraction of theirs in the selection is weak
RULES = ("tolerant", "strict")
CELL_COLUMNS = ["unit", "sign", "score", "strict_score", "on_inside", "on_around", "contrast", "inside", "around",
                "strict"]
MATCH_COLUMNS = ["start", "stop", "length", "on", "strength", "score", "rank", "lstmvis_rank", "all_on", "weak"]


@dataclass
class SimilarConfig:
    threshold: float = 1.0  # θ, in standard deviations from each cell's store-wide mean
    slack: int = 2  # characters ignored each side of each edge of the selection (0 = LSTMVis exactly)
    margin: int = 8  # characters each side (beyond the slack) where a marking cell must be off
    min_on: float = MIN_ON  # fraction on inside / off around that counts as "mostly"
    rule: str = "tolerant"  # "tolerant" (ours) or "strict" (LSTMVis: on at every char, off at every char)
    follow: int = 1  # best cells the match search follows (at most MAX_FOLLOW); the best alone is the most precise
    top: int = 20  # matches returned (strong ones first; weak ones only flagged, after them)


def check_threshold(threshold) -> float:
    """θ as a finite float >= 0, or a one-line error."""
    try:
        t = float(threshold)
    except (TypeError, ValueError, OverflowError):
        raise RnnvizError(f"θ must be a number of standard deviations, got {threshold!r}") from None
    if not math.isfinite(t) or t < 0:
        raise RnnvizError(f"θ must be a finite number >= 0 (standard deviations), got {threshold!r}")
    return t


def check_range(store, a, b) -> tuple[int, int]:
    """Validate a selection [a, b) against the store; returns it as ints."""
    try:
        a, b = int(a), int(b)
    except (TypeError, ValueError, OverflowError):
        raise RnnvizError(f"a selection is two character positions, got {a!r}..{b!r}") from None
    if a == b:
        raise RnnvizError(f"the selection {a}..{b} is empty: select at least one character")
    if not 0 <= a < b <= store.length:
        raise RnnvizError(f"select a range inside the text (0..{store.length}), got {a}..{b}")
    if b - a > MAX_SELECTION:
        raise RnnvizError(f"the selection is {b - a:,} characters; select at most {MAX_SELECTION:,}")
    return a, b


def zparams(store, units: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of each unit over the whole store, (U,) float32 each (std at least 1e-6)."""
    stats = store.stats.loc[units]
    mean = stats["mean"].to_numpy(np.float32)
    std = np.maximum(stats["std"].to_numpy(np.float32), 1e-6)  # a dead unit is never "on"
    return mean, std


def zscore(store, units: list[str], values: np.ndarray) -> np.ndarray:
    """(n, U) raw values -> (n, U) standard deviations from each unit's store-wide mean."""
    mean, std = zparams(store, units)
    return (values - mean) / std


def _masks(n: int, ia: int, ib: int, slack: int, margin: int) -> dict[str, np.ndarray]:
    """Boolean masks over a window of n rows where the selection is rows [ia, ib):

    ``inside``: the selection less ``slack`` characters at each end (while at least its middle is left);
    ``around``: ``margin`` characters each side beyond the slack; ``left`` / ``right``: the edge zones,
    ``slack`` characters each side of each edge plus one outside, where the cell must switch."""
    s_in = min(slack, max(0, (ib - ia - 1) // 2))
    m = {k: np.zeros(n, dtype=bool) for k in ("inside", "around", "left", "right")}
    m["inside"][ia + s_in : ib - s_in] = True
    m["around"][max(0, ia - slack - margin) : max(0, ia - slack)] = True
    m["around"][min(n, ib + slack) : ib + slack + margin] = True
    m["left"][max(0, ia - slack - 1) : ia + s_in] = True
    m["right"][ib - s_in : ib + slack + 1] = True
    return m


def _rank_cells(z: np.ndarray, raw: np.ndarray, m: dict, units, cfg: SimilarConfig, ends: tuple[bool, bool]
                ) -> pd.DataFrame:
    """Both signs of every unit scored by both rules; the rows that pass ``cfg.rule``, best first.

    ``ends``: (selection starts the text, selection ends the text): no switch is asked for there."""
    theta = cfg.threshold
    inside, around = m["inside"], m["around"]
    frames = []
    for sign in (1, -1):
        s = sign * z  # (n, U)
        zin, zout = s[inside], s[around]
        on_in = (zin > theta).mean(0)
        on_out = (zout > theta).mean(0) if len(zout) else np.zeros(len(units))
        # The lowest value in each edge zone: the cell must go off there (the selection's ends).
        low_l = np.full(len(units), -np.inf, np.float32) if ends[0] else s[m["left"]].min(0)
        low_r = np.full(len(units), -np.inf, np.float32) if ends[1] else s[m["right"]].min(0)
        switches = (low_l <= theta) & (low_r <= theta)
        edge = np.maximum(low_l, low_r)
        edge = np.where(np.isfinite(edge), edge, zout.mean(0) if len(zout) else theta)
        contrast = zin.mean(0) - edge
        strict_score = zin.min(0) - (zout.max(0) if len(zout) else theta)
        strict = (zin.min(0) > theta) & ((zout.max(0) <= theta) if len(zout) else True)
        if cfg.rule == "strict":
            ok = strict
        else:
            ok = (on_in >= cfg.min_on) & switches & (contrast > 0)
        idx = np.flatnonzero(ok)
        frames.append(pd.DataFrame({
            "unit": [units[j] for j in idx], "sign": sign,
            "score": (np.maximum(contrast, 0) * on_in * (1 - on_out / 2))[idx], "strict_score": strict_score[idx],
            "on_inside": on_in[idx], "on_around": on_out[idx], "contrast": contrast[idx],
            "inside": raw[inside][:, idx].mean(0),
            "around": raw[around][:, idx].mean(0) if around.any() else np.nan,
            "strict": strict[idx],
        }))
    df = pd.concat(frames, ignore_index=True)
    key = "strict_score" if cfg.rule == "strict" else "score"
    return df.sort_values([key, "unit"], ascending=[False, True], kind="stable").reset_index(drop=True)


def similar_cells(store, start: int, end: int, config: SimilarConfig | None = None,
                  units: list[str] | None = None) -> pd.DataFrame:
    """The cells that mark [start, end) under ``config.rule``, best first (columns :data:`CELL_COLUMNS`).

    ``units``: only these (default every recorded unit). Reads only the rows around the selection.
    """
    cfg = config or SimilarConfig()
    a, b = check_range(store, start, end)
    check_threshold(cfg.threshold)
    units = list(store.units if units is None else units)
    reach = cfg.slack + cfg.margin
    lo, hi = max(0, a - reach), min(store.length, b + reach)
    raw = store.window(lo, hi, units)  # (n, U): only the rows around the selection
    z = zscore(store, units, raw)
    slack = 0 if cfg.rule == "strict" else cfg.slack
    masks = _masks(hi - lo, a - lo, b - lo, slack, cfg.margin)
    df = _rank_cells(z, raw, masks, units, cfg, (a == 0, b == store.length))
    return df[CELL_COLUMNS]


def on_counts(store, units: list[str], signs: list[int], threshold: float, lo: int = 0, hi: int | None = None,
              block: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Over [lo, hi): ((n,) int16 how many of ``units`` (with their signs) are on at each character,
    (n,) float32 their mean signed z there).

    Read from the column-major copies of the units' arrays when they exist (``store.colcache``: T·2 bytes
    a unit), else ``block`` rows at a time from the arrays themselves (every page of each array)."""
    hi = store.length if hi is None else hi
    mean, std = zparams(store, units)
    sign = np.asarray(signs, dtype=np.float32)
    counts = np.empty(hi - lo, dtype=np.int16)
    level = np.empty(hi - lo, dtype=np.float32)

    def rows(blocks) -> None:
        for s, e, raw in blocks:
            z = (raw - mean) / std * sign  # (rows, k)
            counts[s - lo : e - lo] = (z > threshold).sum(1)
            level[s - lo : e - lo] = z.mean(1)

    from .colcache import CacheCorrupt

    cached = store.colcache.blocks(units, lo, hi)
    try:
        if cached is not None:
            rows(cached)
            return counts, level
    except CacheCorrupt:
        pass  # the copy is dropped: read the store itself
    rows((s, min(s + block, hi), store.window(s, min(s + block, hi), units)) for s in range(lo, hi, block))
    return counts, level


def _close_gaps(on: np.ndarray, gap: int) -> np.ndarray:
    """Fill runs of False no longer than ``gap`` that have True on both sides."""
    if gap <= 0 or not on.any():
        return on
    edges = np.diff(np.concatenate(([True], on, [True])).astype(np.int8))
    off_start, off_stop = np.flatnonzero(edges == -1), np.flatnonzero(edges == 1)
    fill = (off_stop - off_start <= gap) & (off_start > 0) & (off_stop < len(on))
    # +1 where a filled gap starts, -1 where it stops (each position at most once): 1 inside the gaps.
    delta = np.zeros(len(on) + 1, dtype=np.int8)
    delta[off_start[fill]] = 1
    delta[off_stop[fill]] = -1
    return on | (np.cumsum(delta[:-1], dtype=np.int8) > 0)


def runs(on: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximal runs of True in a 1-D bool array: (starts, stops)."""
    edges = np.diff(np.concatenate(([False], on, [False])).astype(np.int8))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def find_matches(store, units: list[str], signs: list[int], config: SimilarConfig | None = None,
                 query: tuple[int, int] | None = None, max_rows: int | None = None) -> pd.DataFrame:
    """Other places where ``units`` switch on together (the one overlapping ``query`` left out).

    Returns a DataFrame with columns :data:`MATCH_COLUMNS`: strong matches by ``score`` (ours) first,
    then weak ones, at most ``config.top`` rows; ``lstmvis_rank`` is each row's place in LSTMVis's order.
    ``max_rows``: scan only that many rows centred on the query (default: the whole store).
    """
    cfg = config or SimilarConfig()
    if not units:
        raise RnnvizError("no cells to search for")
    if len(units) > MAX_FOLLOW:
        raise RnnvizError(f"follow at most {MAX_FOLLOW} cells at once, got {len(units)}")
    theta = check_threshold(cfg.threshold)
    k = len(units)
    lo, hi = 0, store.length
    if max_rows is not None and max_rows < store.length:
        centre = (query[0] + query[1]) // 2 if query else 0
        lo = max(0, min(centre - max_rows // 2, store.length - max_rows))
        hi = lo + max_rows
    counts, level = on_counts(store, units, signs, theta, lo, hi)  # (n,), (n,)
    strict = cfg.rule == "strict"
    need = k if strict else max(1, math.ceil(cfg.min_on * k - 1e-9))
    on = counts >= need
    if not strict:
        on = _close_gaps(on, cfg.slack)
    starts, stops = runs(on)
    if query:
        keep = (stops + lo <= query[0]) | (starts + lo >= query[1])
        starts, stops = starts[keep], stops[keep]
    if len(starts) == 0:
        return pd.DataFrame({c: [] for c in MATCH_COLUMNS})
    m = _measure_runs(counts, level, starts, stops, k, lo, hi, query, theta, cfg.min_on)
    m["start"], m["stop"] = starts + lo, stops + lo
    # LSTMVis's order: every cell on throughout first, then the length closest to the selection's.
    qlen = (query[1] - query[0]) if query else None
    gap = np.abs(m["length"] - qlen) if qlen else np.zeros(len(starts))
    by_lstmvis = np.lexsort((m["start"], gap, ~m["all_on"]))
    by_ours = np.lexsort((m["start"], -m["score"], m["weak"]))
    m["lstmvis_rank"], m["rank"] = _ranks(by_lstmvis), _ranks(by_ours)
    # Only the rows returned become a table: a noisy cell has hundreds of thousands of runs.
    rows = (by_lstmvis if strict else by_ours)[: cfg.top]
    return pd.DataFrame({c: m[c][rows] for c in MATCH_COLUMNS})


def _ranks(order: np.ndarray) -> np.ndarray:
    """1-based place of each row in ``order`` (a permutation of the rows)."""
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    return rank


def _measure_runs(counts, level, starts, stops, k: int, lo: int, hi: int, query, theta: float, min_on: float
                  ) -> dict[str, np.ndarray]:
    """Per run [start, stop) of the scanned rows (offsets from ``lo``): length, ``on`` (mean fraction of the
    k cells on), ``all_on``, ``score`` (ours), ``strength`` (the cells' mean z against theirs over the query)
    and ``weak``."""
    cum = np.concatenate(([0], np.cumsum(counts, dtype=np.int64)))
    full = np.concatenate(([0], np.cumsum(counts == k, dtype=np.int64)))
    length = stops - starts
    frac = (cum[stops] - cum[starts]) / (length * k)  # mean fraction of the cells on over the run
    all_on = (full[stops] - full[starts]) == length
    qlen = (query[1] - query[0]) if query else None
    sim = np.minimum(length, qlen) / np.maximum(length, qlen) if qlen else np.ones(len(length))
    # Strength: the cells' mean z over the match against theirs over the selection (the template).
    lev = np.concatenate(([0], np.cumsum(level, dtype=np.float64)))
    strength = (lev[stops] - lev[starts]) / length
    if query:
        qa, qb = max(query[0], lo), min(query[1], hi)
        template = float(level[qa - lo : qb - lo].mean()) if qb > qa else theta
        strength = strength / max(template, theta, 1e-6)
    else:
        strength = strength / max(theta, 1e-6)
    weak = (length < WEAK_LEN) | (frac < min_on) | (strength < STRONG_LEVEL)
    return {"length": length, "on": frac, "score": frac * sim, "strength": strength, "all_on": all_on, "weak": weak}


def find_similar(
    store,
    start: int,
    end: int,
    threshold: float = 1.0,
    slack: int = 2,
    *,
    margin: int = 8,
    min_on: float = MIN_ON,
    rule: str = "tolerant",
    follow: int = 1,
    top: int = 20,
    units: list[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Select-to-find: the cells that mark the text [start, end), and where else they switch on together.

    ``threshold``: θ in σ; ``slack``: characters forgiven at each edge; ``min_on``: the "mostly" fraction;
    ``rule``: "tolerant" (ours) or "strict" (LSTMVis's, slack ignored); ``follow``: the best cells searched
    for together; ``units``: restrict the cells considered. Returns ``(cells, matches)``: ``cells`` with
    columns :data:`CELL_COLUMNS` (every passing cell, best first), ``matches`` with :data:`MATCH_COLUMNS`
    (empty when no cell passes). Raises RnnvizError on a bad selection or parameter.

    >>> cells, matches = rnnviz.find_similar(store, 1200, 1262)
    """
    if rule not in RULES:
        raise RnnvizError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    if not (isinstance(slack, int) and 0 <= slack <= 20):
        raise RnnvizError(f"slack is a whole number of characters from 0 to 20, got {slack!r}")
    if not (isinstance(margin, int) and 1 <= margin <= 200):
        raise RnnvizError(f"margin is a whole number of characters from 1 to 200, got {margin!r}")
    if not 0.5 <= float(min_on) <= 1:
        raise RnnvizError(f"min_on is a fraction from 0.5 to 1, got {min_on!r}")
    if not 1 <= int(follow) <= MAX_FOLLOW:
        raise RnnvizError(f"follow 1 to {MAX_FOLLOW} cells, got {follow!r}")
    cfg = SimilarConfig(threshold=check_threshold(threshold), slack=slack, margin=margin, min_on=float(min_on),
                        rule=rule, follow=int(follow), top=int(top))
    cells = similar_cells(store, start, end, cfg, units)
    if cells.empty:
        return cells, pd.DataFrame({c: [] for c in MATCH_COLUMNS})
    best = cells.head(cfg.follow)
    matches = find_matches(store, list(best["unit"]), [int(s) for s in best["sign"]], cfg,
                           query=(int(start), int(end)))
    return cells, matches
