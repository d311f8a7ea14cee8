"""What recorded units do, read for a person: one unit's evidence (its strongest contexts and histograms by
feature) and every gate's saturation (Karpathy et al. 2015). Ranking units against hypotheses is
:mod:`rnnviz.analysis.ranking`; explaining each unit by a rule is :mod:`rnnviz.analysis.explain`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnnviz.analysis.features import resolve
from rnnviz.errors import RnnvizError
from rnnviz.model.cells import SIGMOID_KINDS


def snippet(store, p: int, context: int) -> dict:
    """Row ``p`` of a store with ``context`` characters each side: ``{pos, before, char, after}``, where
    ``char`` is what the row read (a character, or a token's text in a token store)."""
    a, b = store.chars_of_rows(p, p + 1)
    text = store.text
    return {"pos": int(p), "before": text[max(0, a - context) : a], "char": text[a:b], "after": text[b : b + context]}


def strongest(x: np.ndarray, k: int, gap: int, sign: int = 1) -> list[int]:
    """Positions of the ``k`` highest (``sign`` 1) or lowest (-1) values of ``x`` (T,), at least ``gap`` apart,
    best first; NaN and ±inf come after every finite value (ties: the earlier position first)."""
    key = np.where(np.isfinite(x), -sign * x, np.inf)
    picked: list[int] = []
    for p in np.argsort(key, kind="stable"):
        if all(abs(int(p) - q) >= gap for q in picked):
            picked.append(int(p))
            if len(picked) == k:
                break
    return picked


def evidence(store, unit: str, feature=None, k: int = 5, context: int = 30, bins: int = 20) -> dict:
    """What a unit does, for a person to judge: a JSON-able dict with

    - ``top`` / ``bottom``: the ``k`` highest / lowest activations at least ``context`` characters
      apart, each ``{pos, value, before, char, after}`` (the state after reading ``char``);
    - ``stats``: mean std min max sat_lo sat_hi (from the store) and quartiles;
    - ``histogram``: ``{"edges": [bins+1], "groups": {label: counts}}``, one group per feature value
      (a binary feature), per feature quartile (a numeric one), or ``"all"`` without a feature.
    """
    if k < 1:
        raise RnnvizError(f"k must be >= 1, got {k}")
    x = store.unit(unit).astype(np.float32)  # (T,)
    text = store.text
    finite = np.isfinite(x)
    top, bottom = strongest(x, k, context), strongest(x, k, context, sign=-1)
    row = store.stats.loc[unit].to_dict() if store.has_stats else {}
    q = np.quantile(x[finite], [0.25, 0.5, 0.75]) if finite.any() else [np.nan] * 3
    stats = {**{k_: float(v) for k_, v in row.items()}, "q25": float(q[0]), "median": float(q[1]), "q75": float(q[2])}
    lo, hi = (float(x[finite].min()), float(x[finite].max())) if finite.any() else (0.0, 1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    groups: dict[str, list[int]] = {}
    if feature is None:
        groups["all"] = np.histogram(x[finite], edges)[0].tolist()
        fname = None
    else:
        f, y = resolve(feature, text)
        y = store.at_rows(y)
        fname = f.name
        if f.type == "binary":
            parts = [(f"{fname} = 0", y == 0), (f"{fname} = 1", y == 1)]
        else:
            qs = np.unique(np.quantile(y, [0, 0.25, 0.5, 0.75, 1.0]))
            g = np.clip(np.searchsorted(qs, y, side="right") - 1, 0, max(len(qs) - 2, 0))
            parts = [(f"{fname} in [{qs[i]:g}, {qs[i + 1]:g}]", g == i) for i in range(max(len(qs) - 1, 1))]
        for label, mask in parts:
            groups[label] = np.histogram(x[mask & finite], edges)[0].tolist()

    def snips(ps):
        return [{**snippet(store, p, context), "value": float(x[p])} for p in ps]

    return {
        "unit": unit, "feature": fname, "stats": stats, "top": snips(top), "bottom": snips(bottom),
        "histogram": {"edges": edges.tolist(), "groups": groups},
    }



def gate_saturation(store) -> pd.DataFrame:
    """Gate saturation as in Karpathy et al. (2015): one row per recorded sigmoid-gate unit (LSTM i f o, GRU r z)
    with ``unit, layer, kind, index, sat_lo`` (fraction of characters < 0.1, left-saturated), ``sat_hi``
    (fraction > 0.9, right-saturated) and ``mean``. Read from the store's statistics (written while
    recording); streamed from the arrays when those are missing. Empty when no such gate is recorded.
    """
    gates = [k for k in store.kinds if k in SIGMOID_KINDS.get(store.cell, ())]
    cols = ["unit", "layer", "kind", "index", "sat_lo", "sat_hi", "mean"]
    keys = [(l, k) for l in store.layers for k in gates]
    if not keys:
        return pd.DataFrame(columns=cols)
    stats = store.stats if store.has_stats else None
    frames = []
    for layer, kind in keys:
        names = [f"{layer}:{kind}:{i}" for i in range(store.hidden)]
        if stats is not None and set(names) <= set(stats.index):
            s = stats.loc[names]
            lo, hi, mean = s["sat_lo"].to_numpy(), s["sat_hi"].to_numpy(), s["mean"].to_numpy()
        else:
            acc = np.zeros((3, store.hidden))
            for _, _, block in store.blocks(layer, kind, rows=65536):
                x = block.astype(np.float32)
                acc += [(x < 0.1).sum(0), (x > 0.9).sum(0), x.sum(0, dtype=np.float64)]
            lo, hi, mean = acc / max(store.length, 1)
        frames.append(pd.DataFrame({"unit": names, "layer": layer, "kind": kind, "index": np.arange(store.hidden),
                                    "sat_lo": lo, "sat_hi": hi, "mean": mean}))
    return pd.concat(frames, ignore_index=True)[cols]
