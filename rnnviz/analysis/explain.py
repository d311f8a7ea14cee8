"""Explain every unit: search the rule space (:mod:`rnnviz.analysis.rules`) and score the best rule honestly.

For each unit the rule is **chosen on one half** of the store's text (the largest Pearson |r|
between the rule's values and the unit's) and **scored on the other**: ``score`` = r on the held
half, signed by the sign chosen on the fitting half (so a rule that fitted noise scores about 0, or
below). Binary rules also get ``auroc`` on the held half (oriented by ``sign``: 1 = the unit is
higher wherever the rule holds, when sign is +1).

The halves are alternate blocks of ``block`` characters (even blocks fit, odd blocks score), so both
cover the whole text: a novel is not stationary (the last 80k characters of War and Peace's test split
are 1.5% dialogue against 25% before them), and a contiguous split would score a dialogue cell on a
stretch with almost no dialogue. ``block=None`` gives the plain first half / second half split. A rule
cannot fit noise either way: nothing of the held blocks is seen while choosing. A unit whose score
stays under ``min_score`` is reported as ``"unexplained"``; the rule that came closest stays in ``best_rule``.

Searched, for every unit at once, in one streaming pass over row blocks (memory: what the ``memory``
setting allows, :mod:`rnnviz.memory`: the rules' values, :mod:`rnnviz.analysis.rule_space`, in memory or a
scratch file, read a block at a time; plus, per array, sums per n-gram):

- every dense rule (features with lags, onsets and fades, character classes, "since" counters, bracket depths):
  one matmul per row block with the rules centred on their half, so the sums are covariances;
- every n-gram of 1-4 characters seen ``min_count`` times in the first half (``prev:"..."``): per-n-gram
  sums of each unit (``index_add``) give the exact r of the unit with each n-gram's indicator, so the
  search is exhaustive (a superset of n-grams read off the top-activating contexts);
- two rules together (dense rules and single characters): the best rule plus the one that most raises
  the multiple correlation, from the rules' covariance matrix. Kept when it adds ``combo_gain`` on the
  first half to a unit whose best single rule is under ``combo_below``; its weights are fitted on the
  first half too (``coef``, in the unit's own units), and ``single_score`` says what the first rule
  alone scores.

What the scores are worth (:mod:`rnnviz.analysis.explain_control`): each unit's ``role`` keeps the input
detectors (a rule about the character just read alone) apart from the cells; ``control="init"`` explains the
same architecture at initialisation on the same text, and ``learned`` marks the cells that beat its best cell;
``score_lo`` / ``score_hi`` give a block-bootstrap interval of the reported scores.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch

from rnnviz.analysis import rules as R
from rnnviz.analysis.causal import torch_threads
from rnnviz.analysis.evidence import snippet, strongest
from rnnviz.analysis.explain_control import (  # noqa: F401 (explained_fractions: re-exported, its old home)
    MARGIN,
    check_control,
    control_frame,
    control_problem,  # noqa: F401 (for the CLI)
    control_records,
    explained_fractions,
    init_control,
    interval_units,
    learned,
    roles,
    score_intervals,
)
from rnnviz.analysis.ranking import Progress
from rnnviz.analysis.rule_space import (  # noqa: F401 (BLOCK, split_halves, held_rows, _rows: their old home)
    BLOCK,
    NGRAM_COST,
    STATS_ROWS,
    RuleSpace,
    _rows,
    _tiles,
    held_rows,
    split_halves,
)
from rnnviz.analysis.statistics import add_histogram, auroc, float16_codes
from rnnviz.errors import RnnvizError, check_seed
from rnnviz.memory import MEMORY, WORKER_SHARE, WORKERS, fit, parse_memory
from rnnviz.store.reader import every_column

MIN_LENGTH = 200  # characters: 100 to choose each rule on, 100 to score it on
COLUMNS = ["unit", "layer", "kind", "index", "explanation", "rule", "score", "sign", "auroc", "fit_score",
           "explained", "combo", "single_score", "best_rule", "coef", "role", "learned", "score_lo", "score_hi"]


def _corr(cov: np.ndarray, sd_a: np.ndarray, sd_b: np.ndarray) -> np.ndarray:
    """Correlations from covariances; 0 where either side is constant (never NaN or inf)."""
    den = sd_a[:, None] * sd_b[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, cov / np.where(den > 0, den, 1.0), 0.0)
    return np.nan_to_num(np.clip(r, -1.0, 1.0))


def _stream(store, space: RuleSpace, layer: int, kind: str, idx: np.ndarray, tick) -> list[dict]:
    """One pass over an array's columns ``idx``: per half, r of each unit with every candidate. Tiles of
    ``step`` rows, each half's in order (the sums do not depend on the memory setting); the rows of several
    tiles are read at once, as many as a worker's share of the setting holds."""
    u, C, W = len(idx), len(space.dense), store.width(layer, kind)
    acc = []
    for _ in space.h:
        acc.append({"s1": torch.zeros(u, dtype=torch.float64), "s2": torch.zeros(u, dtype=torch.float64),
                    "xd": torch.zeros((C, u), dtype=torch.float64),
                    "sn": [torch.zeros((len(g) + 1, u), dtype=torch.float64) for g in space.grams]})
    step = int(np.clip((4 << 20) // (4 * u), 256, 65536))
    row_bytes = 2 * W + 4 * C + 4 * R.MAX_NGRAM  # the array's rows, the rules' values and ids
    whole = every_column(idx, W)
    spans = space.spans(_tiles(space.halves, step), row_bytes, WORKER_SHARE)
    n = max(b - a for a, b, _ in spans)  # buffers reused from span to span: no fresh pages to fault in
    bufs = np.empty((n, W), dtype="<f2"), np.empty((C, n), dtype=np.float32), np.empty((R.MAX_NGRAM, n), np.int32)
    for a, b, span in spans:
        rows = store.rows(layer, kind, a, b, out=bufs[0])
        D, ids = space.dense_block(a, b, out=bufs[1]), space.ids_block(a, b, out=bufs[2])
        for half, s, e in span:
            acc_h = acc[half]
            x = torch.from_numpy(rows[s - a : e - a] if whole else rows[s - a : e - a][:, idx]).float()  # (n, u)
            torch.nan_to_num_(x, nan=0.0, posinf=65504.0, neginf=-65504.0)  # in place: numpy's copies, 20x slower
            # Sums of x - shift, shift = the half's first tile's mean: a saturated gate (0.95 +- 0.002) summed
            # raw in float32 loses its variance to cancellation (E[x^2] - mu^2) and scored r > 1.
            if "shift" not in acc_h:
                acc_h["shift"] = x.mean(0)
            x -= acc_h["shift"]
            acc_h["s1"] += x.sum(0).double()  # float32 within a tile of a few thousand rows; float64 across tiles
            acc_h["s2"] += x.square().sum(0).double()
            acc_h["xd"] += (torch.from_numpy(D[:, s - a : e - a]) @ x).double()  # rules centred on their half
            for sn, i in zip(acc_h["sn"], ids[:, s - a : e - a], strict=True):  # float32 in a tile, float64 across
                sn += torch.zeros(sn.shape).index_add_(0, torch.from_numpy(i.astype(np.int64)), x)
            tick(e - s, u)
    del bufs, rows, D, ids
    out = []
    for a, h in zip(acc, space.h, strict=True):
        N = h["N"]
        shifted_mu = (a["s1"] / N).numpy()  # of x - shift: the covariances below are the same with or without it
        sd = np.sqrt(np.maximum((a["s2"] / N).numpy() - shifted_mu**2, 0.0))
        mu = shifted_mu + a["shift"].double().numpy() if "shift" in a else shifted_mu
        sd[sd < 1e-6 * np.maximum(np.abs(mu), 1.0)] = 0.0  # a constant unit: float error is not a signal
        cov_d = a["xd"].numpy() / N  # (C, u)
        r_d = _corr(cov_d, h["sd"], sd)
        r_n = []
        for sn, p in zip(a["sn"], h["p"], strict=True):
            cov = sn[: len(p)].double().numpy() / N - p[:, None] * shifted_mu[None, :]
            r_n.append(_corr(cov, np.sqrt(p * (1 - p)), sd))
        out.append({"mu": mu, "sd": sd, "r_dense": r_d, "r_ngram": r_n})
    return out


def _choose(space: RuleSpace, fit: dict, held: dict, combo_gain: float, combo_below: float) -> list[dict]:
    """Per unit: the best single rule and, where one is not enough, the best pair (chosen on ``fit``),
    with their scores on ``held``."""
    C, u = fit["r_dense"].shape
    blocks = [("dense", fit["r_dense"], held["r_dense"], space.cost)] + [
        (n, rf, rh, NGRAM_COST * n) for n, (rf, rh) in enumerate(zip(fit["r_ngram"], held["r_ngram"], strict=True))]
    best, best_adj = np.full(u, -1.0), np.full(u, -np.inf)
    pick: list[tuple] = [None] * u
    for name, rf, rh, cost in blocks:
        if rf.shape[0] == 0:
            continue
        adj = np.abs(rf) - np.reshape(cost, (-1, 1))
        j = adj.argmax(0)
        val = adj[j, np.arange(u)]
        for i in np.nonzero(val > best_adj + 1e-5)[0]:  # a tie (float32 sums) keeps the earlier, simpler rule
            best_adj[i] = val[i]
            best[i] = abs(rf[j[i], i])
            sign = 1 if rf[j[i], i] >= 0 else -1
            pick[i] = (name, int(j[i]), sign, sign * float(rh[j[i], i]))
    # Pairs from the pool (dense rules + single characters).
    hf, hh = space.h
    rp_f = np.concatenate([fit["r_dense"], fit["r_ngram"][0]])  # (P, u)
    rp_h = np.concatenate([held["r_dense"], held["r_ngram"][0]])
    corr_f = _corr(hf["cov"], hf["pool_sd"], hf["pool_sd"])
    out = []
    for i in range(u):
        if pick[i] is None:
            out.append({"rule": None, "fit": 0.0, "score": 0.0, "sign": 1, "combo": False})
            continue
        name, j, sign, score = pick[i]
        rule = space.dense[j].id if name == "dense" else f"prev:{R.q(space.grams[name][j])}"
        row = {"rule": rule, "fit": float(best[i]), "score": score, "sign": sign, "combo": False,
               "binary": name != "dense" or space.dense[j].binary, "block": name, "j": j}
        if len(rp_f) >= 2 and best[i] < combo_below:
            pair = _pair(rp_f[:, i], rp_h[:, i], corr_f, hf, hh, fit, held, i)
            if pair and pair["fit"] >= best[i] + combo_gain:
                names = [space.dense[k].id if k < C else f"prev:{R.q(space.grams[0][k - C])}" for k in pair["ab"]]
                row = {"rule": " & ".join(names), "fit": pair["fit"], "score": pair["score"], "sign": 1,
                       "combo": True, "binary": False, "single_score": score, "coef": pair["coef"]}
        out.append(row)
    return out


def _pair(rf, rh, corr_f, hf, hh, fit, held, i) -> dict | None:
    """The best second rule for one unit: multiple correlation on the fit half, score on the held half."""
    a = int(np.abs(rf).argmax())
    ra, rab = rf[a], corr_f[a]
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = (ra**2 + rf**2 - 2 * ra * rf * rab) / (1 - rab**2)
    r2[(1 - rab**2) < 1e-3] = -1.0  # collinear with the first rule (and the first rule itself)
    r2 = np.nan_to_num(r2, nan=-1.0)
    b = int(r2.argmax())
    if r2[b] <= 0:
        return None
    den = 1 - rab[b] ** 2
    beta = np.array([(ra - rf[b] * rab[b]) / den, (rf[b] - ra * rab[b]) / den])  # standardized weights
    ab = [a, b]
    w = beta / hf["pool_sd"][ab]  # per unit of each rule
    cov_h = hh["cov"][np.ix_(ab, ab)]
    var = float(w @ cov_h @ w)
    cov_x = float(w @ (rh[ab] * hh["pool_sd"][ab])) * held["sd"][i]
    score = cov_x / (held["sd"][i] * np.sqrt(var)) if var > 0 and held["sd"][i] > 0 else 0.0
    score = float(np.clip(score, -1.0, 1.0))  # a correlation: float error beyond +-1 is not a signal (as _corr)
    pool_mean = np.concatenate([hf["mean"], hf["p"][0]])[ab]
    coef = (fit["sd"][i] * w).tolist()
    coef.append(float(fit["mu"][i] - coef[0] * pool_mean[0] - coef[1] * pool_mean[1]))
    return {"ab": ab, "fit": float(np.sqrt(min(r2[b], 1.0))), "score": float(score), "coef": coef}


def _aurocs(store, space: RuleSpace, rows: dict[str, dict], progress_tick) -> None:
    """``auroc`` on the held half for each unit whose rule is binary (exact, from float16 codes): per unit, the
    histograms of its codes over the held rows and over those where its rule holds, summed a block of rows at a
    time for as many units as a worker's share of the memory setting holds."""
    n_held = space.sizes[1]
    binary = [name for name, r in rows.items() if r.get("binary")]
    per_chunk = fit(2 * 8 * 65536, space.memory, WORKER_SHARE / 2)  # a unit's two (65536,) histograms
    for layer, kind, indices, pos in store.groups(binary):
        cols = [(int(i), binary[p]) for i, p in zip(indices, pos, strict=True)]
        for g in range(0, len(cols), per_chunk):
            chunk = cols[g : g + per_chunk]
            idx = np.array([i for i, _ in chunk])
            allc, hits = _held_histograms(store, space, layer, kind, idx, [rows[name] for _, name in chunk])
            for j, (_, name) in enumerate(chunk):
                r = rows[name]
                nz = np.flatnonzero(allc[j])  # the few thousand values present: exact ranks on them alone
                auc = auroc(hits[j][nz], allc[j][nz].astype(np.float64))
                r["auroc"] = auc if r["sign"] > 0 or np.isnan(auc) else 1.0 - auc
            progress_tick(n_held, len(chunk))


def _held_histograms(store, space: RuleSpace, layer: int, kind: str, idx: np.ndarray, rules: list[dict]):
    """(k, 65536) int64 counts of each unit's float16 codes over the held half, and (k, 65536) float64 counts
    where its rule (``rules[j]``: block, j) holds; units ``idx`` of one array."""
    dense = sorted({r["j"] for r in rules if r["block"] == "dense"})
    where = {j: n for n, j in enumerate(dense)}
    allc, hits = np.zeros((len(idx), 65536), dtype=np.int64), np.zeros((len(idx), 65536))
    row_bytes = 2 * store.width(layer, kind) + len(dense) + 4 * R.MAX_NGRAM + 2 * len(idx)  # rows, masks, codes
    for a, b, span in space.spans(_tiles([[], space.halves[1]], STATS_ROWS), row_bytes, WORKER_SHARE / 2):
        on, ids = space.mask_block(a, b, dense), space.ids_block(a, b)
        keep = np.concatenate([np.arange(s - a, e - a) for _, s, e in span])  # the held rows of the span
        codes = float16_codes(np.concatenate([store.read_columns(layer, kind, s, e, idx) for _, s, e in span]))
        for j, r in enumerate(rules):
            mask = on[where[r["j"]], keep] if r["block"] == "dense" else ids[r["block"], keep] == r["j"]
            add_histogram(allc[j], codes[:, j])
            add_histogram(hits[j], codes[:, j], mask)
    return allc, hits


def explain(
    store,
    units: list[str] | None = None,
    min_score: float = 0.3,
    min_count: int = 5,
    combo_gain: float = 0.1,
    combo_below: float = 0.9,
    block: int | None = BLOCK,
    progress: Progress | None = None,
    control: str | None = None,
    seed: int = 0,
    control_seeds: int = 1,
    margin: float = MARGIN,
    intervals: bool = True,
    memory: int | str | None = MEMORY,
) -> pd.DataFrame:
    """One row per unit: the rule that explains it best and how well (columns: see ``COLUMNS``).

    ``score`` is Pearson r (signed by ``sign`` chosen on the fitting half) between the rule's values and
    the unit's on the held half of the text; ``auroc`` likewise for binary rules (NaN otherwise). The
    halves alternate in blocks of ``block`` characters (``None``: first half / second half).
    ``min_score``: the floor under which a unit is ``"unexplained"``. ``min_count``: occurrences in the
    fitting half an n-gram needs to be tried. ``df.attrs``: seconds, length, fit_chars, block, n_rules.

    ``role``: ``"cell"``, ``"input detector"`` (explained only by the character just read) or
    ``"unexplained"``. ``control="init"``: the same architecture at initialisation (seeds ``seed`` ...
    ``seed + control_seeds - 1``, one recording each) recorded on the same text and explained the same way
    (:func:`rnnviz.analysis.explain_control.init_control`); its rows (a ``seed`` column added) go to
    ``df.attrs["control"]`` (a list of records: :func:`control_frame` gives the DataFrame) and ``learned`` says
    which cells score ``margin`` above its best cell of the same layer and kind, over all its seeds (without a
    control: ``<NA>``). ``intervals``: ``score_lo``, ``score_hi``, a block-bootstrap 95% interval of ``score`` for the
    cells scoring >= 0.5 and the learned ones (NaN for the rest). :func:`explained_fractions` sums it up.
    ``memory``: the resident memory the search may take (bytes, a size such as ``"2GB"``, or None: unlimited;
    :mod:`rnnviz.memory`): the results are the same whatever it is.

    >>> rnnviz.explain(store, control="init").head()   # unit explanation rule score sign auroc ... learned
    """
    names = _check(store, units, min_count, block, min_score)
    if control is not None:
        check_control(store, control, margin, control_seeds)
    settings = {"min_score": min_score, "min_count": min_count, "combo_gain": combo_gain,
                "combo_below": combo_below, "block": block, "memory": parse_memory(memory)}
    df = _search(store, names, progress, **settings)
    df["role"] = roles(df)
    df["learned"] = pd.array([pd.NA] * len(df), dtype="boolean")
    df["score_lo"] = df["score_hi"] = np.nan
    if control is not None:
        ctrls = [init_control(store, names, seed + k, progress=progress, intervals=intervals, **settings)
                 for k in range(control_seeds)]
        ctrl = pd.concat([c.assign(seed=seed + k) for k, c in enumerate(ctrls)], ignore_index=True)
        df["learned"] = learned(df, ctrl, margin).astype("boolean")
        df.attrs.update(control=control_records(ctrl), control_kind=control, seed=seed, control_seeds=control_seeds,
                        margin=margin, control_seconds=sum(c.attrs["seconds"] + c.attrs["record_seconds"]
                                                           for c in ctrls))
    if intervals:
        df[["score_lo", "score_hi"]] = score_intervals(store, df, interval_units(df), settings["memory"])
    return df[COLUMNS]


def _search(store, names: list[str], progress: Progress | None, min_score: float, min_count: int,
            combo_gain: float, combo_below: float, block: int | None, memory: int | None) -> pd.DataFrame:
    """The search itself: one row per unit of ``names`` (the columns up to ``coef``)."""
    t0 = time.perf_counter()
    space = RuleSpace(store.text, min_count, block, store.last_chars, memory, store.path)
    try:
        return _search_space(store, space, names, progress, min_score, combo_gain, combo_below, t0)
    finally:
        space.close()


def _search_space(store, space: RuleSpace, names: list[str], progress: Progress | None, min_score: float,
                  combo_gain: float, combo_below: float, t0: float) -> pd.DataFrame:
    T = store.length
    total = T * len(names) + space.sizes[1] * len(names)  # the pass, and the held half again for AUROCs
    lock, done = threading.Lock(), [0]

    def tick(rows: int, cols: int) -> None:
        with lock:
            done[0] += rows * cols
            if progress:
                progress(done[0], total)

    rows: dict[str, dict] = {}

    def work(group) -> None:
        layer, kind, idx, pos = group
        on_fit, on_held = _stream(store, space, layer, kind, idx, tick)
        mine = {names[pos[k]]: {**row, "layer": layer, "kind": kind, "index": int(idx[k])}
                for k, row in enumerate(_choose(space, on_fit, on_held, combo_gain, combo_below))}
        _aurocs(store, space, mine, tick)
        rows.update(mine)

    groups = store.groups(names)
    with torch_threads(1) as n_threads, ThreadPoolExecutor(min(n_threads, WORKERS, len(groups))) as pool:
        list(pool.map(work, groups))
    if progress:
        progress(total, total)  # units with a numeric rule need no AUROC pass
    searched = COLUMNS[: COLUMNS.index("coef") + 1]  # role, learned and the interval are added by explain()
    df = pd.DataFrame([_row(name, rows[name], min_score) for name in names], columns=searched)
    df.attrs.update(seconds=time.perf_counter() - t0, length=T, fit_chars=space.sizes[0], block=space.block,
                    min_score=min_score,
                    n_rules=len(space.dense) + sum(len(g) for g in space.grams))
    return df


def _check(store, units: list[str] | None, min_count: int, block: int | None, min_score: float) -> list[str]:
    """The units to explain, after one-line errors for what ``explain`` cannot do."""
    if not 0 <= min_score <= 1:  # NaN too
        raise RnnvizError(f"min_score must be a score from 0 to 1, got {min_score!r}")
    if store.length < MIN_LENGTH:
        raise RnnvizError(f"the store has {store.length} characters; explain needs at least {MIN_LENGTH} "
                          f"(half to choose each rule on, half to score it on)")
    names = store.check_units(units)
    if not names:
        raise RnnvizError("no units to explain")
    if min_count < 1:
        raise RnnvizError(f"min_count must be >= 1, got {min_count}")
    if block is not None and block < 1:
        raise RnnvizError(f"block must be >= 1 character, got {block}")
    return names


def _row(name: str, r: dict, min_score: float) -> dict:
    score = float(np.nan_to_num(r["score"]))
    ok = r["rule"] is not None and score >= min_score
    return {
        "unit": name, "layer": r["layer"], "kind": r["kind"], "index": r["index"],
        "explanation": R.explain_id(r["rule"]) if ok else "unexplained",
        "rule": r["rule"] if ok else "unexplained", "score": score, "sign": int(r["sign"]),
        "auroc": float(r.get("auroc", np.nan)), "fit_score": float(r["fit"]), "explained": ok,
        "combo": bool(r["combo"]), "single_score": float(r.get("single_score", score)),
        "best_rule": r["rule"] or "", "coef": r.get("coef"),
    }


def top_contexts(store, unit: str, top: int = 10, per_decile: int = 3, context: int = 30,
                 seed: int = 0, random: int = 0) -> pd.DataFrame:
    """Contexts to check an explanation by eye (as delphi shows them): the ``top`` highest activations
    (at least ``context`` characters apart), ``random`` rows drawn uniformly from the whole text (finite values
    only; without replacement) and ``per_decile`` random ones from each decile of the unit's values, highest
    decile first (all seeded by ``seed``; the random rows are drawn after the deciles', so adding them leaves
    the deciles' draws as they were). Columns: group ("top", "random", "decile 10" ... "decile 1"), pos,
    value, before, char, after (``char`` is the character just read at ``pos``)."""
    if top < 0 or per_decile < 0 or random < 0:
        raise RnnvizError("top, per_decile and random must be >= 0")
    x = store.unit(unit).astype(np.float32)  # (T,)
    finite = np.isfinite(x)
    out = [("top", p) for p in strongest(x, top, context)]
    rng = np.random.default_rng(check_seed(seed))
    deciles = []
    if finite.any():
        edges = np.quantile(x[finite], np.linspace(0, 1, 11))
        dec = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, 9)
        for d in range(9, -1, -1):
            where = np.nonzero((dec == d) & finite)[0]
            for p in rng.choice(where, min(per_decile, len(where)), replace=False) if len(where) else []:
                deciles.append((f"decile {d + 1}", int(p)))
    where = np.flatnonzero(finite)
    out += [("random", int(p)) for p in np.sort(rng.choice(where, min(random, len(where)), replace=False))]
    out += deciles
    rows = [{"group": g, "value": float(x[p]), **snippet(store, p, context)} for g, p in out]
    return pd.DataFrame(rows, columns=["group", "pos", "value", "before", "char", "after"])
