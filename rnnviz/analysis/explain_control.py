"""What :func:`rnnviz.explain`'s numbers are worth: input detectors apart, a control, learned units, intervals.

An explanation score alone does not say the model *learned* anything: the same architecture untrained already
follows the character it just read, and on War and Peace a quarter of its units score >= 0.5. So:

- **Input detectors** are their own class: a unit explained by a rule that reads nothing but the character
  just read (``prev:"e"``, ``class:digit``, or two such rules together) is reported as ``"input detector"``,
  not as an interpretable ``"cell"`` (:func:`roles`).
- **The control** (:func:`init_control`): the store's own architecture (its manifest's model config) at
  initialisation (``torch.manual_seed(seed)``, then PyTorch's default initialisation, as training starts),
  recorded over the same text with the same layers and kinds, and explained with the same settings. Only a
  store recorded from a CharRNN has one: a store of a user's module, of tokens or of arrays without a model
  config cannot (:func:`control_problem` says why).
- **Learned units** (:func:`learned`): cells whose held-out score beats the control's best cell of the same
  layer and kind by ``MARGIN``, over all the control's seeds (its best moves with the seed: on the bundled
  2x256 models from 0.60 to 0.68 (War and Peace, layer 1) and from 0.50 to 0.57 (Linux, layer 1) between
  seeds 0 and 1; its fractions are averaged over the seeds). The control's best is over its units whose best
  rule is not an input detector (like for like: a context rule against the best context rule a random network
  of that layer and kind reaches).
- **Intervals** (:func:`score_intervals`): a block bootstrap (:class:`rnnviz.analysis.statistics.BlockBootstrap`,
  blocks of 1,000 held-out rows, 200 resamples, 95% percentile interval) of each reported unit's held-out
  score, the rule kept fixed as chosen on the fitting half: the cells scoring >= ``INTERVAL_FROM`` and the
  learned units, in the model and in its control. Other units get NaN (the 200 resampled correlations come from
  per-block sums, 0.04 s a unit on 29k held rows on the busy 2-core CPU at load 10, most of it reading the
  unit's column and simulating its rule; the per-row weights took 0.2 s there, 1.9 s on 50k rows at load 26).
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import pandas as pd
import torch

from rnnviz.analysis import rules as R
from rnnviz.analysis.statistics import BlockBootstrap
from rnnviz.errors import RnnvizError, check_seed
from rnnviz.memory import fit
from rnnviz.threads import torch_threads

THRESHOLDS = (0.5, 0.8)  # the scores the fractions are given at (0.8: where trained models stand apart)
MARGIN = 0.05  # a learned unit scores at least this much above the control's best cell of its layer and kind
INTERVAL_FROM = 0.5  # cells scoring this or more get a bootstrap interval
CONTROLS = ("init",)  # what explain(control=...) takes besides None


def is_input_detector(rule_id: str) -> bool:
    """Whether a rule reads only the character just read: one character (``prev:"e"``), a character
    class (``class:digit``), or two such rules together. ``"unexplained"`` and ``""`` are not."""
    if not rule_id or rule_id == "unexplained":
        return False
    parts = R.split_combo(rule_id)
    for part in parts:
        family, args, _ = R.parse(part)
        if not (family == "class" or (family == "prev" and len(args[0]) == 1)):
            return False
    return True


def roles(df: pd.DataFrame) -> pd.Series:
    """Each unit's class: ``"cell"`` (explained by a rule about more than the character just read),
    ``"input detector"`` (explained, but only by the character just read) or ``"unexplained"``."""
    detector = df["rule"].map(is_input_detector)
    return pd.Series(np.where(~df["explained"], "unexplained", np.where(detector, "input detector", "cell")),
                     index=df.index, name="role")


def group_of(df: pd.DataFrame) -> pd.Series:
    """``"layer:kind"`` of each row."""
    return df["layer"].astype(str) + ":" + df["kind"].astype(str)


# --- the control ---


def control_problem(store) -> str:
    """"" when the at-initialisation control can be computed for ``store``, else the one line that says why not."""
    if store.meta.model is None:
        what = "a token store" if store.is_tokens else f"a store of {store.cell} states without a model config"
        return (f"{what} (from a user's module or from arrays): the same architecture at initialisation "
                "cannot be rebuilt")
    return ""


def check_control(store, control, margin: float, seeds: int = 1) -> None:
    """One-line errors for a control ``explain`` cannot compute, before its search starts."""
    if control not in CONTROLS:
        raise RnnvizError(f"control must be one of {', '.join(CONTROLS)} or None, got {control!r}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise RnnvizError(f"control_seeds must be a whole number >= 1, got {seeds!r}")
    if not 0 <= margin <= 1:  # NaN too
        raise RnnvizError(f"margin must be a score difference from 0 to 1, got {margin!r}")
    problem = control_problem(store)
    if problem:
        raise RnnvizError(f"no control at initialisation: {problem}")


def init_model(store, seed: int = 0):
    """The store's architecture (its manifest's model config and vocabulary) freshly initialised after
    ``torch.manual_seed(seed)``, in eval mode; the global torch generator is left as it was."""
    from rnnviz.model.charrnn import CharRNN

    problem = control_problem(store)
    if problem:
        raise RnnvizError(f"no control at initialisation for {store.path}: {problem}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(check_seed(seed))
        model = CharRNN(store.meta.model, store.vocab)
    return model.eval()


def init_control(store, units: list[str], seed: int = 0, progress=None, **settings) -> pd.DataFrame:
    """:func:`rnnviz.explain` of the control: :func:`init_model` recorded over ``store``'s text (the layers and
    kinds of ``units``, every unit of each, into a temporary store deleted afterwards) and explained with
    ``settings`` (min_score, min_count, combo_gain, combo_below, block). Its rows are every unit of those
    layers and kinds: at initialisation unit 0:h:7 has nothing to do with the trained 0:h:7, so the control
    is compared group by group (layer and kind), never unit by unit."""
    from rnnviz.analysis.explain import explain
    from rnnviz.recording.recorder import record

    model = init_model(store, seed)
    groups = store.groups(units)
    layers = sorted({g[0] for g in groups})
    kinds = [k for k in store.kinds if any(g[1] == k for g in groups)]
    with tempfile.TemporaryDirectory(prefix="rnnviz-control-") as tmp:
        t0 = time.perf_counter()
        # One thread: a step loop of small ops runs several times faster (20x on a busy machine). fork_rng: the
        # recorder builds torch modules (random weights, then overwritten) and would move the global generator.
        with torch_threads(1), torch.random.fork_rng(devices=[]):
            st = record(model, store.text, f"{tmp}/init", kinds=kinds, layers=layers, topk=0, device="cpu")
        try:
            names = [u for u in st.units if st.locate(u)[:2] in {(g[0], g[1]) for g in groups}]
            seconds = time.perf_counter() - t0
            df = explain(st, units=names, progress=progress, **settings)
            df.attrs.update(record_seconds=seconds)
            return df
        finally:
            st.close()


def control_records(df: pd.DataFrame) -> list[dict]:
    """The control's rows as plain dicts, for ``attrs["control"]`` (pandas compares attrs when it combines
    frames, which a DataFrame there would break)."""
    return [{k: (None if v is pd.NA else v) for k, v in r.items()} for r in df.to_dict("records")]


def control_frame(df: pd.DataFrame) -> pd.DataFrame | None:
    """The control's rows of an :func:`rnnviz.explain` result as a DataFrame (None without a control)."""
    rows = df.attrs.get("control")
    return None if rows is None else pd.DataFrame(rows)


def control_best(control: pd.DataFrame) -> pd.Series:
    """Per ``layer:kind``: the control's best held-out score among its units whose best rule is not an input
    detector (0 when it has none), over all its seeds."""
    ctx = ~control["best_rule"].map(is_input_detector)
    return control["score"].where(ctx, 0.0).clip(lower=0.0).groupby(group_of(control)).max()


def learned(df: pd.DataFrame, control: pd.DataFrame, margin: float = MARGIN) -> pd.Series:
    """Whether each unit of ``df`` is a cell scoring at least ``margin`` above :func:`control_best` of its
    layer and kind."""
    best = group_of(df).map(control_best(control))
    if best.isna().any():
        raise RnnvizError(f"the control has no unit of {group_of(df)[best.isna()].iloc[0]}")
    return pd.Series((roles(df) == "cell") & (df["score"] >= best + margin), index=df.index, name="learned")


# --- intervals ---


def interval_units(df: pd.DataFrame) -> pd.Series:
    """Which units of an :func:`rnnviz.explain` result get an interval: the cells scoring >= ``INTERVAL_FROM``
    and the learned ones."""
    return (df["role"] == "cell") & ((df["score"] >= INTERVAL_FROM) | df["learned"].fillna(False).astype(bool))


def score_intervals(store, df: pd.DataFrame, which: pd.Series, memory: int | None = None) -> pd.DataFrame:
    """Block-bootstrap 95% intervals (``score_lo``, ``score_hi``) of the held-out score of the units where
    ``which`` is True (NaN elsewhere): the rule, its sign and combination weights stay as chosen on the fitting
    half; the held rows are resampled in blocks (:class:`BlockBootstrap`). ``df``: :func:`rnnviz.explain`'s
    rows over ``store`` (its ``attrs["block"]`` gives the halves). ``memory`` (bytes, None: unlimited): the
    units' held-out columns are read as many at a time as half of its budget holds, after the search has let
    go of its rules' values (:mod:`rnnviz.memory`)."""
    from rnnviz.analysis.rule_space import held_rows

    lo = np.full(len(df), np.nan)
    hi = np.full(len(df), np.nan)
    held = held_rows(store.length, df.attrs["block"])  # (N_B,) rows
    boot = BlockBootstrap(len(held), memory=memory)
    per_chunk = fit(len(held) * 20, memory, 1 / 2)  # a unit's float16 read, float64 column and rule values
    chosen = df[which.to_numpy()]
    for (layer, kind), group in chosen.groupby(["layer", "kind"], sort=False):
        for g in range(0, len(group), per_chunk):
            part = group.iloc[g : g + per_chunk]
            x = np.concatenate([store.read_columns(layer, kind, int(a), int(b), part["index"].to_numpy())
                                for a, b in _runs(held)]).astype(np.float64)  # (N_B, k)
            np.nan_to_num(x, copy=False, nan=0.0, posinf=65504.0, neginf=-65504.0)
            values: dict[str, np.ndarray] = {}  # rule values on the held rows, shared by this chunk's units
            for j, (pos, row) in enumerate(zip(part.index, part.itertuples(index=False), strict=True)):
                key = f"{row.rule}|{row.coef}"
                if key not in values:
                    values[key] = store.at_rows(R.simulate(row.rule, store.text, row.coef))[held].astype(np.float64)
                k = df.index.get_loc(pos)
                lo[k], hi[k] = boot.interval(row.sign * boot.pearson(x[:, j], values[key]))
            del x, values
    return pd.DataFrame({"score_lo": lo, "score_hi": hi}, index=df.index)


def _runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """Sorted row positions as contiguous (start, stop) ranges."""
    if not len(rows):
        return []
    cut = np.flatnonzero(np.diff(rows) != 1) + 1
    return [(int(r[0]), int(r[-1]) + 1) for r in np.split(rows, cut)]


# --- fractions ---


def catalog_count(roles_: list[str], min_score: float = 0.3) -> str:
    """The one line a catalog without a control gives (the dashboard's, the exported page's): how many units
    are cells and how many input detectors, and where the control is."""
    n = len(roles_)
    cells, inputs = roles_.count("cell"), roles_.count("input detector")
    return (f"{cells:,} of {n:,} units explained at score >= {min_score:g} as cells, {inputs:,} as input detectors "
            "(the character just read alone); no control here: `rnnviz explain` gives the fractions beside the same "
            "architecture at initialisation")


def explained_fractions(df: pd.DataFrame, thresholds=THRESHOLDS) -> pd.DataFrame:
    """Per layer and kind (and ``all``): ``units``; at each threshold t, ``explained_t`` (score >= t, any rule),
    split into ``cells_t`` and ``inputs_t`` (input detectors); with a control in ``df.attrs["control"]``, the
    same for the control (``init_explained_t``, ``init_cells_t``, ``init_inputs_t``), the control's best cell
    score ``init_best`` and the ``learned`` fraction."""
    control = control_frame(df)
    parts = _parts(df)
    cparts = dict(_parts(control)) if control is not None else {}
    rows = []
    for name, g in parts:
        row = {"group": name, "units": len(g), **_at(g, thresholds, "")}
        if cparts:
            c = cparts[name]
            best = control_best(c)
            row.update(_at(c, thresholds, "init_"), init_best=float(best.max()), learned=float(g["learned"].mean()))
        rows.append(row)
    return pd.DataFrame(rows)


def _parts(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [(f"{l}:{k}", g) for (l, k), g in df.groupby(["layer", "kind"], sort=False)] + [("all", df)]


def _at(g: pd.DataFrame, thresholds, prefix: str) -> dict:
    """The fractions of ``g``'s units explained, as cells and as input detectors, at each threshold."""
    detector = g["best_rule"].map(is_input_detector).to_numpy()
    out = {}
    for t in thresholds:
        hit = (g["score"] >= t).to_numpy()
        out[f"{prefix}explained_{t:g}"] = float(hit.mean()) if len(g) else float("nan")
        out[f"{prefix}cells_{t:g}"] = float((hit & ~detector).mean()) if len(g) else float("nan")
        out[f"{prefix}inputs_{t:g}"] = float((hit & detector).mean()) if len(g) else float("nan")
    return out
