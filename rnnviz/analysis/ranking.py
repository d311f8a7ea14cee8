"""Finding the cells that track a hypothesis: every recorded unit scored against text features.

For a feature y (one value per character, :mod:`rnnviz.analysis.features`) and a unit x (its recorded values):

- **binary** y: ``metric = "auroc"``: the probability that x is higher at a random position inside the
  feature than at a random position outside (ties count 1/2), computed from exact ranks. ``score`` =
  max(AUROC, 1 - AUROC), ``sign`` = +1 when the unit is higher inside. ``ap`` = average precision of
  the positions ranked by sign·x (ties grouped); ``effect_size`` = Cohen's d (inside minus outside,
  pooled standard deviation).
- **numeric** y: ``metric = "pearson"``: ``score`` = |r|, ``sign`` = sign(r); ``spearman`` is r of the
  ranks (ties get their mean rank); ``effect_size`` = Cohen's d between positions with y above its
  median and the rest.
- **control**: the same feature with its values shuffled among the positions that hold the same
  character (seeded). It keeps exactly what the current character says about the feature and destroys
  the rest, so a unit that merely tracks characters (say, "any punctuation") scores as well on the
  control as on the feature. ``control_score`` is the unit's score on it and ``selectivity = score -
  control_score``: how much better the unit tracks the feature than the character alone lets it.
  **Units are ranked by selectivity** (for most features the control is near chance for every unit,
  and this is the order of ``score``). ``selective`` flags the units whose control explains at most half
  of their score above chance (0.5 for AUROC, 0 for |r|).
- **interval**: ``score_lo``, ``score_hi``: a block-bootstrap 95% interval of ``score``
  (:class:`rnnviz.analysis.statistics.BlockBootstrap`: blocks of BOOT_BLOCK rows, BOOT_REPS resamples;
  on a token store the rows are tokens), computed for the reported units only. Each resample scores the
  unit in its reported direction (the AUROC for sign +1, 1 - AUROC for sign -1; sign·r), not refolded, so
  the interval of a unit near chance reaches below 0.5 (below 0 for |r|). NaN when the store has fewer than
  MIN_BLOCKS blocks of rows.

Streaming: one pass over row blocks gives every unit's exact Pearson r with every feature and control
(a matmul per block). Numeric features are ranked on it directly. For binary features the units with the
best |r| (point-biserial, a screen that agrees with Cohen's d) and the best |r| - |r_control| are then
read column by column and scored exactly: float16 has 65,536 values, so a per-unit histogram over them
gives exact ranks, AUROC, average precision and Spearman without sorting (:mod:`rnnviz.analysis.statistics`).

What the model loses without a cell (ablation) and how far back its gradient reaches live in
:mod:`rnnviz.analysis.causal`.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch

from rnnviz.analysis.features import FEATURES, Feature, resolve
from rnnviz.analysis.statistics import (
    BlockBootstrap,
    add_histogram,
    auroc,
    average_precision,
    cohens_d,
    float16_codes,
)
from rnnviz.errors import RnnvizError, check_seed
from rnnviz.memory import MEMORY, SCRATCH_SHARE, WORKER_SHARE, block_rows, fit, limit, parse_memory
from rnnviz.store.reader import every_column
from rnnviz.store.scratch import Scratch
from rnnviz.threads import torch_threads

COLUMNS = [
    "feature", "unit", "metric", "score", "score_lo", "score_hi", "sign", "ap", "effect_size", "control_score",
    "selectivity", "selective", "auroc", "pearson", "spearman", "rank",
]
Progress = Callable[[int, int], None]


def _ranks(y: np.ndarray) -> np.ndarray:
    """Mean ranks (1-based; ties share their mean rank) of a float array."""
    uniq, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - (counts - 1) / 2.0)[inv]).astype(np.float64)


def control_permutation(text: str | np.ndarray, seed: int = 0) -> np.ndarray:
    """(T,) indices that shuffle positions among those holding the same character (seeded):
    ``y[perm]`` is the control of feature ``y``. ``text`` may instead be (T,) keys (``Store.row_keys``:
    rows of a token store are shuffled among rows of the same token)."""
    c = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32) if isinstance(text, str) else text
    rng = np.random.default_rng(check_seed(seed))
    order = np.argsort(c, kind="stable")  # positions grouped by character
    shuffled = np.lexsort((rng.random(len(c)), c))  # the same groups, each in random order
    perm = np.empty(len(c), dtype=np.int64)
    perm[order] = shuffled
    return perm


# --- ranking ---


class _Target:
    """One feature prepared for ranking: its values, control, and the columns the statistics need, kept in a
    :class:`Scratch` (in memory while they fit, else in a file), read back a block of rows at a time: the
    feature's scalars (means, spreads) are taken here, from its whole columns, once."""

    def __init__(self, feature: Feature, y: np.ndarray, perm: np.ndarray, scratch: Scratch):
        self.feature, self.name = feature, feature.name
        self.binary = feature.type == "binary"
        y = y.astype(np.float32)  # (T,)
        ctrl = y[perm]
        self.means = [v.mean(dtype=np.float64).astype(np.float32) for v in (y, ctrl)]  # to centre y, ctrl
        self.sds = [v.std(dtype=np.float64) for v in (y, ctrl)]
        self.cols = {"y": scratch.add(y), "ctrl": scratch.add(ctrl)}
        if self.binary:  # bool: bincount weighs them as 0/1
            self.cols.update(pos_w=scratch.add(y > 0), ctrl_w=scratch.add(ctrl > 0))
        else:
            rank_y = _ranks(y).astype(np.float32)  # exact below 2**24 characters
            self.rank_sq = np.square(rank_y, dtype=np.float64).mean()  # mean squared rank: Spearman's var_y
            self.cols.update(rank_y=scratch.add(rank_y), group_w=scratch.add(y > np.median(y)))

    @property
    def weights(self) -> list[str]:
        """The columns its histograms are weighted by (:func:`_column_stats`)."""
        return ["pos_w", "ctrl_w"] if self.binary else ["rank_y", "group_w"]


def _moments(store, names: list[str], targets: list[_Target], scratch: Scratch, progress, total: int,
             memory: int | None):
    """One streaming pass: Pearson r of every unit with every feature and its control.

    Per row tile and array: (features x rows) @ (rows x units) with the features centred, so the
    sums are covariances directly. The units' standard deviations come from the store's statistics
    (computed while recording) or, when those are missing, from the same pass. Each worker reads as many
    whole tiles at once as its share of ``memory`` holds (the tiles, and so the sums, are the same whatever it is).
    Returns r, r_control: (n_units, n_targets) each.
    """
    T, F, U = store.length, len(targets), len(names)
    sd_x = store.stats.reindex(names)["std"].to_numpy(dtype=np.float64) if store.has_stats else None
    need_sd = sd_x is None or bool(np.isnan(sd_x).any())
    rows_y = 2 * F + (1 if need_sd else 0)
    cols = [t.cols["y"] for t in targets] + [t.cols["ctrl"] for t in targets]
    means = np.array([t.means[0] for t in targets] + [t.means[1] for t in targets], dtype=np.float32)[:, None]
    cov = np.zeros((U, rows_y), dtype=np.float64)
    sq = np.zeros(U, dtype=np.float64)
    groups = store.groups(names)
    lock, done = threading.Lock(), [0]

    def work(group):
        layer, kind, idx, pos = group
        W = store.width(layer, kind)
        whole = every_column(idx, W)
        rows = int(np.clip((4 << 20) // (4 * len(idx)), 256, 65536))  # a float32 tile stays in cache
        span = max(1, block_rows(2 * W + 4 * rows_y + 4 * len(idx), memory, WORKER_SHARE) // rows) * rows  # tiles
        acc = torch.zeros((rows_y, len(idx)), dtype=torch.float64)
        acc_sq = torch.zeros(len(idx), dtype=torch.float64)
        buf = np.empty((min(span, T), W), dtype="<f2")  # reused: no fresh pages each block
        Ybuf = np.ones((rows_y, min(span, T)), dtype=np.float32)  # one row per feature / control (+ ones)
        for a in range(0, T, span):
            b = min(a + span, T)
            xs = store.rows(layer, kind, a, b, out=buf)
            Y = scratch.stack(cols, a, b, np.float32, Ybuf)
            Y[: 2 * F] -= means  # centred: the same float32 values as centring the whole column
            for s in range(a, b, rows):
                tile = xs[s - a : s - a + rows]
                x = torch.from_numpy(tile if whole else tile[:, idx]).float()  # (n, units)
                acc += (torch.from_numpy(Y[:, s - a : s - a + rows]) @ x).double()
                if need_sd:
                    acc_sq += x.square().sum(0).double()
                if progress:
                    with lock:
                        done[0] += x.shape[0] * len(idx)
                        progress(int(done[0] / U), total)
        cov[pos] = acc.numpy().T
        sq[pos] = acc_sq.numpy()

    with torch_threads(1) as n_threads, ThreadPoolExecutor(min(n_threads, len(groups))) as pool:
        list(pool.map(work, groups))
    if need_sd:
        mean = cov[:, 2 * F] / T
        with np.errstate(invalid="ignore", over="ignore"):  # inf activations give nan: scored 0 below
            sd_x = np.sqrt(np.maximum(sq / T - mean**2, 0.0))
    sd_y = np.array([t.sds[0] for t in targets] + [t.sds[1] for t in targets])
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov[:, : 2 * F] / T / (sd_x[:, None] * sd_y[None, :])
    r = np.nan_to_num(np.clip(r, -1.0, 1.0))
    return r[:, :F], r[:, F:]


def _column_groups(store, names: list[str], unit_bytes: float, memory: int | None, share: float = WORKER_SHARE
                   ) -> list[tuple[int, str, list[tuple[int, str]]]]:
    """Units grouped by array (so each group reads one file), as many a group as ``share`` of ``memory``'s
    budget (a worker's) holds at ``unit_bytes`` each."""
    per_group = fit(unit_bytes, memory, share)
    out = []
    for layer, kind, idx, pos in sorted(store.groups(names), key=lambda g: (g[0], g[1])):
        cols = sorted(zip(idx.tolist(), (names[p] for p in pos), strict=True))
        out += [(layer, kind, cols[g : g + per_group]) for g in range(0, len(cols), per_group)]
    return out


def _on_pool(groups, one: Callable[[tuple], dict], progress, done: int, total: int, step: int) -> dict:
    """``one(group)`` for each group on a thread pool; the dicts it returns, merged. Each group done adds
    ``step`` to ``done`` for ``progress``."""
    out: dict = {}
    lock = threading.Lock()

    def run(group) -> None:
        nonlocal done
        part = one(group)
        with lock:
            out.update(part)
            done += step
            if progress:
                progress(done, total)

    with torch_threads(1) as n_threads, ThreadPoolExecutor(min(n_threads, len(groups))) as pool:
        list(pool.map(run, groups))
    return out


def _per_column(store, groups, fn: Callable[[str, np.ndarray], dict], progress, done: int, total: int) -> dict:
    """``fn(name, x)`` for each unit of ``groups`` (:func:`_column_groups`), ``x`` its (T,) float16 column (one
    group's columns read at a time, in row blocks, the groups on a thread pool); the dicts it returns, merged."""
    T = store.length

    def one(group):
        layer, kind, cols = group
        idx = np.array([i for i, _ in cols])
        x = np.empty((T, len(cols)), dtype=np.float16)
        for s, e, block in store.blocks(layer, kind, idx):
            x[s:e] = block
        part = {}
        for j, (_, name) in enumerate(cols):
            part.update(fn(name, x[:, j]))
        return part

    return _on_pool(groups, one, progress, done, total, T)


def _exact_scores(store, groups, work: dict[str, list[_Target]], scratch: Scratch, progress, done: int,
                  total: int, memory: int | None) -> dict:
    """Exact rank statistics for each (unit, target) in ``work``, from histograms of the units' float16 codes
    (:func:`_histograms`), a group of units at a time (:func:`_column_groups` by :func:`_histogram_bytes`)."""
    T = store.length

    def one(group):
        hists = _histograms(store, group, work, scratch, memory)
        return {(name, t.name): _column_stats(hists[name], t, T) for _, name in group[2] for t in work[name]}

    return _on_pool(groups, one, progress, done, total, T)


def _histogram_bytes(work: dict[str, list[_Target]]) -> int:
    """The most bytes one unit's histograms take (:func:`_histograms`): its codes' counts, and two per target."""
    return 8 * 65536 * (1 + 2 * max(len(ts) for ts in work.values()))


def _histograms(store, group, work: dict[str, list[_Target]], scratch: Scratch, memory: int | None) -> dict:
    """{unit: {"all": (65536,) counts of its codes, (target, weight): the same weighted by a target's column}}
    for the units of one group, summed a block of rows at a time (counts, and sums of whole ranks: exact in
    any order, so the same as one pass over whole columns)."""
    layer, kind, cols = group
    idx = np.array([i for i, _ in cols])
    needed = {(t.name, w): t.cols[w] for _, name in cols for t in work[name] for w in t.weights}
    row_bytes = 2 * store.width(layer, kind) + 4 * len(cols) + 4 * len(needed)  # rows, codes, weights
    out = {name: {"all": np.zeros(65536, dtype=np.int64), **{(t.name, w): np.zeros(65536) for t in work[name]
                                                              for w in t.weights}} for _, name in cols}
    for s, e, x in store.blocks(layer, kind, idx, rows=block_rows(row_bytes, memory, WORKER_SHARE / 2, 1024)):
        codes = float16_codes(x)  # (n, k)
        weights = {key: scratch.get(j, s, e) for key, j in needed.items()}
        for j, (_, name) in enumerate(cols):
            c, h = codes[:, j], out[name]
            add_histogram(h["all"], c)
            for t in work[name]:
                for w in t.weights:
                    add_histogram(h[(t.name, w)], c, weights[(t.name, w)])
    return out


def _intervals(store, df: pd.DataFrame, targets: list[_Target], scratch: Scratch, seed: int, progress, done: int,
               memory: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi), (len(df),) each: the block-bootstrap interval of each row's score, in its reported direction
    (module doc). Reads only the reported units' columns, as many at a time as half a worker's share of
    ``memory`` holds (a unit's column, its codes, its float64 values and the bootstrap's per-row arrays: ~80
    bytes a row)."""
    by_name = {t.name: t for t in targets}
    rows: dict[str, list[tuple[int, _Target, int]]] = {}
    for i, (unit, feature, sign) in enumerate(zip(df["unit"], df["feature"], df["sign"], strict=True)):
        rows.setdefault(unit, []).append((i, by_name[feature], int(sign)))
    # one set of resamples, each scored from per-block sums
    boot = BlockBootstrap(store.length, seed=seed, memory=memory)

    def intervals(name: str, x: np.ndarray) -> dict:
        c = float16_codes(x)
        codes = (np.cumsum(np.bincount(c, minlength=65536) > 0) - 1)[c]  # ranks of its distinct values, unsorted
        xf = x.astype(np.float64)
        out = {}
        for i, t, sign in rows[name]:
            if t.binary:  # the AUROC for sign +1, 1 - AUROC for sign -1
                samples = (1 - sign) / 2 + sign * boot.auroc(codes, scratch.get(t.cols["pos_w"]))
            else:
                samples = sign * boot.pearson(xf, scratch.get(t.cols["y"]))
            out[i] = boot.interval(samples)
        return out

    # half a worker's share: the other half is the bootstrap's (BOOT_SHARE each for its two pieces)
    groups = _column_groups(store, list(rows), 80 * store.length, memory, WORKER_SHARE / 2)
    got = _per_column(store, groups, intervals, progress, done, done + store.length * len(groups))
    return tuple(np.array([got[i][k] for i in range(len(df))], dtype=np.float64) for k in (0, 1))


def _column_stats(h: dict, t: _Target, T: int) -> dict:
    """A unit's exact statistics against target ``t`` from its histograms (:func:`_histograms`)."""
    allc = h["all"].astype(np.float64)
    if t.binary:
        pos = h[(t.name, "pos_w")]
        auc = auroc(pos, allc)
        sign = 1 if auc >= 0.5 else -1
        ctrl = auroc(h[(t.name, "ctrl_w")], allc)
        return {
            "auroc": auc, "sign": sign, "score": max(auc, 1 - auc), "control_score": max(ctrl, 1 - ctrl),
            "ap": average_precision(pos, allc, sign), "effect_size": cohens_d(pos, allc),
        }
    # Spearman: Pearson of the units' mean ranks (per code) with the feature's ranks.
    mid = np.cumsum(allc) - (allc - 1) / 2.0
    ry = h[(t.name, "rank_y")]
    mean_r = (T + 1) / 2.0
    cov = (mid * ry).sum() / T - mean_r**2
    var_x = (allc * mid * mid).sum() / T - mean_r**2
    var_y = t.rank_sq - mean_r**2
    rho = cov / math.sqrt(var_x * var_y) if var_x > 0 and var_y > 0 else 0.0
    return {"spearman": float(rho), "effect_size": cohens_d(h[(t.name, "group_w")], allc)}


def _targets(specs: list, store, perm: np.ndarray, scratch: Scratch) -> tuple[list[_Target], dict[str, str]]:
    """Each feature asked for as a ranking target, at the store's rows (a token's last character); the
    constant ones go to ``skipped`` {name: why}."""
    targets, skipped = [], {}
    for spec in specs:
        f, y = resolve(spec, store.text)
        y = store.at_rows(y)
        if f.name in skipped or any(t.name == f.name for t in targets):
            if isinstance(spec, str):
                continue  # the same feature asked for twice
            f = dataclasses.replace(f, name=f"{f.name}#{len(targets) + len(skipped) + 1}")  # two lambdas
        if len(y) < 2 or y.min() == y.max():
            skipped[f.name] = f"constant ({y[0] if len(y) else 'empty'}) on this text"
            continue
        targets.append(_Target(f, y, perm, scratch))
    if not targets:
        raise RnnvizError(
            "nothing to rank: " + "; ".join(f"{k} is {v}" for k, v in skipped.items())
        )
    return targets, skipped


def _candidates(targets: list[_Target], r: np.ndarray, r_ctrl: np.ndarray, names: list[str], top: int):
    """From the streamed correlations (U, F): the units each target scores exactly (``chosen``, unit
    indices per target name) and the same as ``work`` {unit name: [targets]}."""
    M = 2 * top + 10
    work: dict[str, list[_Target]] = {}
    chosen: dict[str, np.ndarray] = {}
    for j, t in enumerate(targets):
        a, ac = np.abs(r[:, j]), np.abs(r_ctrl[:, j])
        if t.binary:
            pick = np.union1d(np.argsort(-a, kind="stable")[:M], np.argsort(-(a - ac), kind="stable")[:M])
        else:
            pick = np.argsort(-(a - ac), kind="stable")[:top]
        chosen[t.name] = pick
        for i in pick:
            work.setdefault(names[i], []).append(t)
    return chosen, work


def _feature_table(t: _Target, r_j: np.ndarray, rc_j: np.ndarray, pick: np.ndarray, names: list[str],
                   exact: dict, top: int) -> pd.DataFrame:
    """One target's ``top`` rows, by selectivity then score; ``r_j``, ``rc_j``: its correlations (U,)."""
    rows = []
    for i in pick:
        e = exact[(names[i], t.name)]
        row = {"feature": t.name, "unit": names[i], "pearson": float(r_j[i])}
        if t.binary:
            row.update(metric="auroc", spearman=np.nan, **e)
        else:
            row.update(
                metric="pearson", score=abs(float(r_j[i])), sign=1 if r_j[i] >= 0 else -1,
                control_score=abs(float(rc_j[i])), auroc=np.nan, ap=np.nan, **e,
            )
        rows.append(row)
    df = pd.DataFrame(rows)
    chance = 0.5 if t.binary else 0.0
    df["selectivity"] = df["score"] - df["control_score"]
    df["selective"] = df["selectivity"] >= 0.5 * (df["score"] - chance)  # a flag for the reader
    df = df.sort_values(["selectivity", "score"], ascending=[False, False], kind="stable").head(top)
    df["rank"] = np.arange(1, len(df) + 1)
    return df


def rank_features(
    store,
    features: Sequence | None = None,
    top: int = 5,
    units: list[str] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    intervals: bool = True,
    memory: int | str | None = MEMORY,
) -> pd.DataFrame:
    """The ``top`` units for each feature, best first, as one DataFrame (columns: see module doc).

    ``features``: names, ``"re:PATTERN"``, compiled regexes or callables (default: every built-in).
    Features that are constant on the store's text (``in_if`` on prose) are skipped and listed in
    ``df.attrs["skipped"]``. ``units``: restrict to these unit names. ``progress(done, total)`` is called
    as rows are read. ``intervals``: False leaves ``score_lo``, ``score_hi`` NaN (for callers that show no
    interval: the bootstrap reads each reported unit again and scores it BOOT_REPS times). ``memory``: the
    resident memory it may take (bytes, a size such as ``"2GB"``, or None: unlimited; :mod:`rnnviz.memory`):
    the results are the same whatever it is. ``df.attrs`` also holds ``seconds``, ``length`` and ``n_units``.
    """
    t0 = time.perf_counter()
    if top < 1:
        raise RnnvizError(f"top must be >= 1, got {top}")
    specs = list(FEATURES) if features is None else list(features)
    if not specs:
        raise RnnvizError("no features to rank against")
    names = store.check_units(units)
    memory = parse_memory(memory)
    T = store.length
    # the features' columns: in memory up to SCRATCH_SHARE of the budget, else in a file beside the store
    with Scratch(T, limit(memory, SCRATCH_SHARE), store.path) as scratch:
        targets, skipped = _targets(specs, store, control_permutation(store.row_keys(), seed), scratch)
        return _rank(store, names, targets, skipped, scratch, top, seed, progress, intervals, memory, t0)


def _rank(store, names: list[str], targets: list[_Target], skipped: dict, scratch: Scratch, top: int, seed: int,
          progress: Progress | None, intervals: bool, memory: int | None, t0: float) -> pd.DataFrame:
    """:func:`rank_features` once its targets are prepared."""
    T = store.length
    # total grows once the columns are known
    r, r_ctrl = _moments(store, names, targets, scratch, progress, 2 * T, memory)
    chosen, work = _candidates(targets, r, r_ctrl, names, top)  # which units need exact column statistics
    groups = _column_groups(store, list(work), _histogram_bytes(work), memory)
    exact = _exact_scores(store, groups, work, scratch, progress, T, T * (1 + len(groups)), memory)
    frames = [
        _feature_table(t, r[:, j], r_ctrl[:, j], chosen[t.name], names, exact, top) for j, t in enumerate(targets)
    ]
    out = pd.concat(frames, ignore_index=True)
    out["sign"] = out["sign"].astype(int)
    out["score_lo"] = out["score_hi"] = np.nan
    if intervals:
        out["score_lo"], out["score_hi"] = _intervals(store, out, targets, scratch, seed, progress,
                                                      T * (1 + len(groups)), memory)
    out = out[COLUMNS]
    out["selective"] = out["selective"].astype(bool)
    out.attrs.update(
        skipped=skipped, length=T, n_units=len(names), seconds=time.perf_counter() - t0,
        types={t.name: t.feature.type for t in targets},
    )
    return out


def find_cells(
    store, feature, top: int = 10, units: list[str] | None = None, seed: int = 0, progress: Progress | None = None,
    intervals: bool = True, memory: int | str | None = MEMORY,
) -> pd.DataFrame:
    """The ``top`` units that best track ``feature`` (a name, ``"re:PATTERN"``, regex or callable); the other
    arguments as :func:`rank_features`'.

    >>> find_cells(store, "in_quote", top=10)   # DataFrame: feature unit metric score sign ap ...
    """
    df = rank_features(store, [feature], top=top, units=units, seed=seed, progress=progress, intervals=intervals,
                       memory=memory)
    return df
