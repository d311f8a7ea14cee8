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
  beside it;
- and puts *two-state cells* first (:mod:`rnnviz.analysis.two_state`: units whose values split into an off and an
  on state, eta >= 0.7), with the split between their states as their on-threshold instead of θ. A fixed θ
  misses a cell that is on for a large share of the text: Linux's comment cell is on in every comment but
  only about 1 σ up, since comments are a third of the kernel. Their score is (eta − 2/π) × on inside ×
  off around × off share (over the whole text) × contrast in units of the gap between the states; ``rule``
  says which rule ranked a row, ``level`` is its raw on-threshold (how often each finds a feature cell first:
  README, "Select-to-find", from ``bench/similar_quality.py``).

Matches: the best cell is followed, or, when it is a two-state cell, the (up to) three best two-state cells
that score at least a quarter of its score, all on together: one such cell alone also fires elsewhere.
Maximal runs where at least ``ceil(min_on · k)`` of the k followed cells are on, gaps of at most
``slack`` characters closed. Each is scored both ways: ``score`` (ours: mean fraction of the cells on over
the run × length similarity with the selection) and LSTMVis's order (``lstmvis_rank``: all cells on
throughout first, then the closest length). A match shorter than :data:`WEAK_LEN` characters, or with
fewer than ``min_on`` of the cells on on average, is returned flagged ``weak``: it is never used to pad a
list of strong ones.

Given a binary feature (``feature=``: the quotes, the comments), every match is scored against it, not only those
returned: precision, and recall of its rows and of its spans, with intervals (:mod:`rnnviz.analysis.match_quality`).

Reading cost: the cell ranking reads only the rows around the selection (all units); the match search
reads only the followed cells' columns, in row blocks, over the whole store (or ``max_rows`` of it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rnnviz.analysis.features import resolve
from rnnviz.analysis.match_quality import match_quality, runs
from rnnviz.analysis.on_threshold import THETA, theta_problem  # the default θ (see there why 0.5), and its one check
from rnnviz.analysis.two_state import ETA_MIN, two_states
from rnnviz.errors import RnnvizError

MAX_SELECTION = 5000  # characters: a longer selection is not "a range that a cell marks"
MAX_FOLLOW = 8  # cells that the match search follows together
MIN_ON = 0.8  # "mostly on": the fraction of the characters inside (and off outside) that must agree
WEAK_LEN = 3  # a match shorter than this many characters is weak (a blip, not a span)
STRONG_LEVEL = 0.8  # a match whose cells' mean z is below this fraction of theirs in the selection is weak
RULES = ("tolerant", "strict")
CELL_COLUMNS = ["unit", "sign", "rule", "score", "strict_score", "on_inside", "on_around", "contrast", "inside",
                "around", "level", "strict"]
GAUSS_ETA = 2 / math.pi  # the share of a Gaussian unit's variance that its best two-state split explains
FOLLOW_TWO_STATE = 3  # two-state cells the match search follows together by default (all must be on) ...
FOLLOW_LEVEL = 0.25  # ... those that score at least this fraction of the best one's score
MATCH_COLUMNS = ["start", "stop", "length", "on", "strength", "score", "rank", "lstmvis_rank", "all_on", "weak"]


# (slack, margin) by what a row is: 2 characters forgiven at each edge and 8 off around; a token is a whole
# word, so none is forgiven and 2 around must be off (8 words around a 3-word quote often hold another).
EDGES = {"chars": (2, 8), "tokens": (0, 2)}


@dataclass
class SimilarConfig:
    threshold: float = THETA  # θ, in standard deviations from each cell's store-wide mean
    slack: int = 2  # characters ignored each side of each edge of the selection (0 = LSTMVis exactly)
    margin: int = 8  # characters each side (beyond the slack) where a marking cell must be off
    min_on: float = MIN_ON  # fraction on inside / off around that counts as "mostly"
    rule: str = "tolerant"  # "tolerant" (ours) or "strict" (LSTMVis: on at every char, off at every char)
    two_state: bool = True  # tolerant rule: two-state cells first, on past their own split (False: θ alone)
    # Best cells the match search follows (at most MAX_FOLLOW). None: the best FOLLOW_TWO_STATE two-state cells
    # all on together when the best cell is one (one such cell alone also fires outside), else the best alone.
    follow: int | None = None
    top: int = 20  # matches returned (strong ones first; weak ones only flagged, after them)


def check_threshold(threshold) -> float:
    """θ as a finite float >= 0, or a one-line error (:func:`rnnviz.analysis.on_threshold.theta_problem`)."""
    problem = theta_problem(threshold)
    if problem:
        raise RnnvizError(problem)
    return float(threshold)


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
    with np.errstate(invalid="ignore", over="ignore"):  # NaN or ±inf activations: NaN z, never "on"
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


def _theta_rows(z: np.ndarray, raw: np.ndarray, m: dict, units, cfg: SimilarConfig, ends: tuple[bool, bool]
                ) -> pd.DataFrame:
    """Both signs of every unit under the θ rule (``cfg.rule``: tolerant or strict): the rows that pass.

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
        frames.append(_rows(units, sign, ok, raw, m, rule="θ", level=None,
                            score=np.maximum(contrast, 0) * on_in * (1 - on_out / 2), strict_score=strict_score,
                            on_inside=on_in, on_around=on_out, contrast=contrast, strict=strict))
    return pd.concat(frames, ignore_index=True)


def _two_state_rows(raw: np.ndarray, m: dict, units, states: pd.DataFrame, cfg: SimilarConfig) -> pd.DataFrame:
    """Both signs of every two-state unit (:mod:`rnnviz.analysis.two_state`, eta >= ETA_MIN) with the split between
    its states as the on-threshold: on at ``min_on`` of the inside, off at ``min_on`` of the margin.

    score = (eta - 2/π) × on inside × off around × off share × contrast, the contrast in units of the gap
    between the two states (clipped to [0, 1]), the off share the fraction of the whole text where the cell
    is off (from the sample :mod:`rnnviz.analysis.two_state` takes): a clean two-state cell that switches exactly at the
    selection and is on for a fraction p of the text scores (1 - 2/π)(1 - p); a Gaussian unit (eta 2/π)
    scores 0. The off share is why: a cell on for two thirds of the kernel is also on over every comment
    and off in the few characters around one, but says little about comments (Linux's 1:c:62, AUROC 0.81,
    used to outrank the comment cell 0:c:223, on for 36%, AUROC 0.996)."""
    st = states.loc[units]
    split, gap = st["split"].to_numpy(np.float32), np.maximum((st["high"] - st["low"]).to_numpy(np.float32), 1e-6)
    eta, share = st["eta"].to_numpy(), st["on_share"].to_numpy()
    inside, around = raw[m["inside"]], raw[m["around"]]  # (n_in, U), (n_out, U)
    frames = []
    for sign in (1, -1):
        on_in = (sign * (inside - split) > 0).mean(0)
        on_out = (sign * (around - split) > 0).mean(0) if len(around) else np.zeros(len(units))
        base = around.mean(0) if len(around) else split
        with np.errstate(invalid="ignore"):  # a unit with ±inf in the window: NaN contrast, never ranked
            contrast = sign * (inside.mean(0) - base) / gap
        ok = (eta >= ETA_MIN) & (on_in >= cfg.min_on) & (on_out <= 1 - cfg.min_on) & (contrast > 0)
        off_share = 1 - share if sign > 0 else share  # off over the whole text, not just the margin
        score = (eta - GAUSS_ETA) * on_in * (1 - on_out) * off_share * np.clip(contrast, 0, 1)
        frames.append(_rows(units, sign, ok, raw, m, rule="two-state", level=split, score=score,
                            strict_score=np.full(len(units), np.nan), on_inside=on_in, on_around=on_out,
                            contrast=contrast, strict=np.zeros(len(units), bool)))
    return pd.concat(frames, ignore_index=True)


def _rows(units, sign: int, ok: np.ndarray, raw: np.ndarray, m: dict, rule: str, level, **cols) -> pd.DataFrame:
    """The passing units' rows: the given per-unit columns (U,) each, their raw means inside and around."""
    idx = np.flatnonzero(ok)
    around = m["around"]
    return pd.DataFrame({
        "unit": [units[j] for j in idx], "sign": sign, "rule": rule,
        **{k: np.asarray(v)[idx] for k, v in cols.items()},
        "inside": raw[m["inside"]][:, idx].mean(0),
        "around": raw[around][:, idx].mean(0) if around.any() else np.nan,
        "level": np.nan if level is None else level[idx],
    })


def _rank_cells(store, z: np.ndarray, raw: np.ndarray, m: dict, units, cfg: SimilarConfig,
                ends: tuple[bool, bool]) -> pd.DataFrame:
    """Every passing (unit, sign), best first: under the tolerant rule the two-state cells first (by their
    score), then the θ rule's (by its score), each (unit, sign) once; under the strict rule LSTMVis's alone."""
    theta = _theta_rows(z, raw, m, units, cfg, ends)
    key = "strict_score" if cfg.rule == "strict" else "score"
    theta = theta.sort_values([key, "unit"], ascending=[False, True], kind="stable")
    if len(theta):  # the raw level that is θ σ from the unit's mean, for the match search
        mean, std = zparams(store, list(theta["unit"]))
        theta["level"] = mean + theta["sign"].to_numpy() * cfg.threshold * std
    if cfg.rule == "strict" or not cfg.two_state:
        return theta.reset_index(drop=True)
    two = _two_state_rows(raw, m, units, two_states(store), cfg)
    two = two.sort_values(["score", "unit"], ascending=[False, True], kind="stable")
    if len(two):  # a two-state cell's LSTMVis verdict is the θ rule's, whichever rule ranks it
        strict = {(u, s) for u, s, ok in zip(theta["unit"], theta["sign"], theta["strict"], strict=True) if ok}
        two["strict"] = [(u, s) in strict for u, s in zip(two["unit"], two["sign"], strict=True)]
    both = pd.concat([df for df in (two, theta) if len(df)] or [theta], ignore_index=True)
    return both.drop_duplicates(["unit", "sign"]).reset_index(drop=True)


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
    df = _rank_cells(store, z, raw, masks, units, cfg, (a == 0, b == store.length))
    return df[CELL_COLUMNS]


def on_counts(store, units: list[str], signs: list[int], threshold: float | np.ndarray, lo: int = 0,
              hi: int | None = None, block: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Over [lo, hi): ((n,) int16 how many of ``units`` (with their signs) are on at each character,
    (n,) float32 their mean signed z there). ``threshold``: θ in signed σ, one for all units or (k,) one each.

    Read from the column-major copies of the units' arrays when they exist (``store.colcache``: T·2 bytes
    a unit), else ``block`` rows at a time from the arrays themselves (every page of each array)."""
    hi = store.length if hi is None else hi
    mean, std = zparams(store, units)
    sign = np.asarray(signs, dtype=np.float32)
    counts = np.empty(hi - lo, dtype=np.int16)
    level = np.empty(hi - lo, dtype=np.float32)

    for s, e, raw in store.scan(units, lo, hi, block):  # blocks may come twice: results go by position
        z = (raw - mean) / std * sign  # (rows, k)
        counts[s - lo : e - lo] = (z > threshold).sum(1)
        level[s - lo : e - lo] = z.mean(1)
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


def find_matches(store, units: list[str], signs: list[int], config: SimilarConfig | None = None,
                 query: tuple[int, int] | None = None, max_rows: int | None = None,
                 levels: list[float] | None = None, feature: np.ndarray | None = None) -> pd.DataFrame:
    """Other places where ``units`` switch on together (the one overlapping ``query`` left out).

    A unit is on above ``config.threshold`` σ from its mean (below, with sign -1), or, given ``levels``, past
    its own raw level (a two-state cell's split: the ``level`` column of :func:`similar_cells`). Returns a
    DataFrame with columns :data:`MATCH_COLUMNS`: strong matches by ``score`` (ours) first, then weak ones,
    at most ``config.top`` rows; ``lstmvis_rank`` is each row's place in LSTMVis's order.
    ``max_rows``: scan only that many rows centred on the query (default: the whole store). ``feature``: (T,)
    values at the store's rows (> 0: in it): ``attrs["quality"]`` is then the precision and recall of *every*
    match against it, not only of those returned (:func:`rnnviz.analysis.match_quality.match_quality`).
    """
    cfg = config or SimilarConfig()
    if not units:
        raise RnnvizError("no cells to search for")
    if len(units) > MAX_FOLLOW:
        raise RnnvizError(f"follow at most {MAX_FOLLOW} cells at once, got {len(units)}")
    theta = check_threshold(cfg.threshold)
    if levels is not None:  # each unit's own level, as signed σ from its mean
        mean, std = zparams(store, units)
        theta = np.asarray(signs, np.float32) * (np.asarray(levels, np.float32) - mean) / std
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
    m = _measure_runs(counts, level, starts, stops, k, lo, hi, query, float(np.mean(theta)), cfg.min_on)
    quality = None if feature is None else match_quality(
        np.asarray(feature)[lo:hi], starts, stops, m["weak"], None if query is None else (query[0] - lo, query[1] - lo))
    if len(starts) == 0:
        return _table(quality)
    m["start"], m["stop"] = starts + lo, stops + lo
    # LSTMVis's order: every cell on throughout first, then the length closest to the selection's.
    qlen = (query[1] - query[0]) if query else None
    gap = np.abs(m["length"] - qlen) if qlen else np.zeros(len(starts))
    by_lstmvis = np.lexsort((m["start"], gap, ~m["all_on"]))
    by_ours = np.lexsort((m["start"], -m["score"], m["weak"]))
    m["lstmvis_rank"], m["rank"] = _ranks(by_lstmvis), _ranks(by_ours)
    # Only the rows returned become a table: a noisy cell has hundreds of thousands of runs.
    rows = (by_lstmvis if strict else by_ours)[: cfg.top]
    return _table(quality, m, rows)


def _table(quality: pd.DataFrame | None, m: dict | None = None, rows: np.ndarray | None = None) -> pd.DataFrame:
    """The matches table: the columns of ``m`` at ``rows`` (none without them), ``attrs["quality"]`` when given."""
    out = pd.DataFrame({c: [] if m is None else m[c][rows] for c in MATCH_COLUMNS})
    if quality is not None:
        out.attrs["quality"] = quality
    return out


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
    threshold: float = THETA,
    slack: int | None = None,
    *,
    margin: int | None = None,
    min_on: float = MIN_ON,
    rule: str = "tolerant",
    follow: int | None = None,
    top: int = 20,
    units: list[str] | None = None,
    feature: object | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Select-to-find: the cells that mark the text [start, end), and where else they switch on together.

    ``start``, ``end``: rows (characters, or tokens in a token store). ``threshold``: θ in σ; ``slack``: rows
    forgiven at each edge, ``margin``: rows each side that must be off (defaults: :data:`EDGES`, by what a row
    is: a token is a whole word, so none is forgiven); ``min_on``: the "mostly" fraction;
    ``rule``: "tolerant" (ours) or "strict" (LSTMVis's, slack ignored); ``follow``: the best cells searched
    for together; ``units``: restrict the cells considered. Returns ``(cells, matches)``: ``cells`` with
    columns :data:`CELL_COLUMNS` (every passing cell, best first), ``matches`` with :data:`MATCH_COLUMNS`
    (empty when no cell passes). ``feature``: a binary feature to score the matches against (a name,
    ``"re:PATTERN"``, regex or callable; :mod:`rnnviz.analysis.features`): ``matches.attrs["quality"]`` is then
    the precision and recall of every match, not only of the ``top`` returned, with 95% intervals
    (:mod:`rnnviz.analysis.match_quality`), and ``matches.attrs["feature"]`` its name. Raises RnnvizError on a
    bad selection or parameter.

    >>> cells, matches = rnnviz.find_similar(store, 1200, 1262)
    """
    if rule not in RULES:
        raise RnnvizError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    default_slack, default_margin = EDGES["tokens" if store.is_tokens else "chars"]
    slack = default_slack if slack is None else slack
    margin = default_margin if margin is None else margin
    if not (isinstance(slack, int) and 0 <= slack <= 20):
        raise RnnvizError(f"slack is a whole number of rows from 0 to 20, got {slack!r}")
    if not (isinstance(margin, int) and 1 <= margin <= 200):
        raise RnnvizError(f"margin is a whole number of rows from 1 to 200, got {margin!r}")
    if not 0.5 <= float(min_on) <= 1:
        raise RnnvizError(f"min_on is a fraction from 0.5 to 1, got {min_on!r}")
    if follow is not None and not 1 <= int(follow) <= MAX_FOLLOW:
        raise RnnvizError(f"follow 1 to {MAX_FOLLOW} cells, got {follow!r}")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise RnnvizError(f"top is a whole number of cells >= 1, got {top!r}")
    cfg = SimilarConfig(threshold=check_threshold(threshold), slack=slack, margin=margin, min_on=float(min_on),
                        rule=rule, follow=None if follow is None else int(follow), top=int(top))
    name, y = _binary_feature(store, feature) if feature is not None else (None, None)
    cells = similar_cells(store, start, end, cfg, units)
    if cells.empty:
        matches = _table(None if y is None else match_quality(y, [], [], [], (int(start), int(end))))
    else:
        best = followed(cells, cfg.follow)
        two = (best["rule"] == "two-state").any()
        matches = find_matches(store, list(best["unit"]), [int(s) for s in best["sign"]], cfg,
                               query=(int(start), int(end)), levels=list(best["level"]) if two else None, feature=y)
    if name is not None:
        matches.attrs["feature"] = name
    return cells, matches


def _binary_feature(store, spec) -> tuple[str, np.ndarray]:
    """(name, (T,) values at the store's rows) of a binary feature spec, or a one-line error."""
    f, y = resolve(spec, store.text)
    if f.type != "binary":
        raise RnnvizError(f"matches are scored against a binary feature (in it or not); {f.name} is {f.type}")
    return f.name, store.at_rows(y)


def followed(cells: pd.DataFrame, follow: int | None = None) -> pd.DataFrame:
    """The rows of :func:`similar_cells`' table that the match search follows (see ``SimilarConfig.follow``)."""
    if follow is None:  # the leading two-state cells that score at least FOLLOW_LEVEL of the best's score
        head = cells.head(FOLLOW_TWO_STATE)
        good = (head["rule"] == "two-state") & (head["score"] >= FOLLOW_LEVEL * head["score"].iloc[0])
        follow = int(np.argmin(good.to_numpy())) if not good.all() else len(head)
    return cells.head(max(follow, 1))
