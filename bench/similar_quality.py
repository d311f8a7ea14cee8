"""How well select-to-find (rnnviz.find_similar) recovers the quote / comment cell from a real selection.

For each store: pick ``--n`` random spans of the feature (a whole quote with its opening and closing quote,
a whole C comment with its markers), run find_similar on each, and count

- top-1: the first-ranked cell is *the* cell of the model card (``--cell``); the same neuron (its h or its c:
  h = o·tanh(c)); and, looser, any unit whose AUROC for the feature is >= 0.9 over the store (a quote /
  comment cell), or either of these ("quote / comment cell first");
- precision of the top 20: the fraction of returned matches (strong ones; and all, weak included) that lie inside
  the feature (at least half of their characters have it; ``strong_inside``, ``all_inside``);
- precision and recall over *every* match, not only the top 20 (``quality``; rnnviz.analysis.match_quality):
  precision of all matches and of the strong ones, the fraction of the feature's characters some match covers
  (``recall``) and of its spans some match touches (``span_recall``; 1 - it: never found), the selected span
  left out. ``quality`` pools the selections (counts summed; 95% intervals from a bootstrap over the selections);
  ``per_selection`` gives each one's figures, its intervals from a block bootstrap over the text's rows;
- hit rates (top-1, passes) come with their 95% Wilson interval over the selections (``intervals``);
- headroom: in how many selections a feature cell (AUROC >= 0.9, in its own direction: a cell that goes down
  over comments counts only when ranked as going down) passes the rule at all, at any rank
  (``feature_cell_passes``), and among the two-state rows (``feature_cell_two_state``), and in how many of the
  latter one is ranked first (``top1_when_two_state``): top-1 can be no better than the first, and when the
  third is close to the second the misses are selections where the model's feature cells stay under their
  own on-state.

Both rules are measured: ours ("tolerant", the default) and LSTMVis's ("strict").

    python bench/similar_quality.py STORE:FEATURE:CELL ... [--n 20] [--seed 0]
    python bench/similar_quality.py /tmp/wp-test:in_quote:1:c:12 /tmp/linux-test:in_comment:1:c:157
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from rnnviz import find_cells, open_store
from rnnviz.analysis.features import compute_feature
from rnnviz.analysis.match_quality import COUNTS, in_feature, pool_quality, runs
from rnnviz.analysis.similar import MAX_SELECTION, THETA, find_similar
from rnnviz.analysis.statistics import wilson_interval

HIT_RATES = ("top1_card_cell", "top1_card_neuron", "top1_any_auroc_0.9", "top1_quote_or_comment_cell",
             "feature_cell_passes")  # counts over the selections that get a Wilson interval


def spans(feature: np.ndarray, n: int, seed: int, text: str) -> list[tuple[int, int]]:
    """n random feature spans [s, e+1) (closing marker included), 4..MAX_SELECTION characters long."""
    starts, stops = runs(feature > 0)
    stops = np.minimum(stops + 1, len(text))
    ok = (stops - starts >= 4) & (stops - starts <= MAX_SELECTION)
    idx = np.flatnonzero(ok)
    rng = np.random.default_rng(seed)
    pick = rng.choice(idx, size=min(n, len(idx)), replace=False)
    return [(int(starts[i]), int(stops[i])) for i in sorted(pick)]


def neuron(unit: str) -> str:
    """"1:c:249" -> "1:249": a layer's unit, whichever of its h and c."""
    layer, _, index = unit.split(":")
    return f"{layer}:{index}"


def signed(cells) -> set[tuple[str, int]]:
    """The (unit, sign) pairs of a table of cells (find_cells' or find_similar's)."""
    return set(zip(cells["unit"], cells["sign"].astype(int), strict=True))


def measure(path: str, feature_name: str, cell: str, n: int, seed: int, threshold: float = THETA) -> dict:
    store = open_store(path)
    f = np.asarray(compute_feature(feature_name, store.text), dtype=np.float32)
    ranked = find_cells(store, feature_name, top=40)
    # A feature cell is a (unit, sign): 0:c:153 goes *down* over Linux comments, so ranked as going up it is no hit.
    strong = ranked[ranked["score"] >= 0.9] if "score" in ranked else ranked.iloc[:0]
    good = signed(strong)
    card_sign = dict(signed(ranked)).get(cell, 1)
    out = {"threshold": threshold, "store": path, "feature": feature_name, "cell": cell,
           "feature_cells_auroc_0.9": sorted(u if g > 0 else f"-{u}" for u, g in good)}  # "-": goes down
    chosen = spans(f, n, seed, store.text)
    for rule in ("tolerant", "strict"):
        top1 = top1_neuron = top1_any = top1_either = found = passes = passes_two = top1_two = 0
        inside = returned = inside_all = returned_all = 0
        times, qualities = [], []
        for a, b in chosen:
            t0 = time.perf_counter()
            cells, matches = find_similar(store, a, b, threshold=threshold, rule=rule)
            times.append(time.perf_counter() - t0)  # the search alone; scoring every match against the feature:
            qualities.append(find_similar(store, a, b, threshold=threshold, rule=rule,
                                          feature=feature_name)[1].attrs["quality"])
            passes += bool(good & signed(cells))
            as_two = bool(good & signed(cells[cells["rule"] == "two-state"]))
            passes_two += as_two
            if len(cells):
                found += 1
                first, sign = cells["unit"].iloc[0], int(cells["sign"].iloc[0])
                same = neuron(first) == neuron(cell) and sign == card_sign
                top1 += first == cell and sign == card_sign
                top1_neuron += same
                top1_any += (first, sign) in good
                top1_either += same or (first, sign) in good
                top1_two += as_two and (same or (first, sign) in good)
            ins = in_feature(f > 0, matches["start"].to_numpy(np.int64), matches["stop"].to_numpy(np.int64))
            strong = ~matches["weak"].to_numpy(bool)
            returned_all, inside_all = returned_all + len(ins), inside_all + int(ins.sum())
            returned, inside = returned + int(strong.sum()), inside + int(ins[strong].sum())
        out[rule] = {
            "selections": len(chosen), "with_cells": found, "top1_card_cell": int(top1),
            "top1_card_neuron": int(top1_neuron), "top1_any_auroc_0.9": int(top1_any),
            "top1_quote_or_comment_cell": int(top1_either),
            "feature_cell_passes": int(passes), "feature_cell_two_state": int(passes_two),
            "top1_when_two_state": int(top1_two),
            "strong_matches": returned, "strong_inside": round(inside / max(returned, 1), 3),
            "all_matches": returned_all, "all_inside": round(inside_all / max(returned_all, 1), 3),
            "median_s": round(float(np.median(times)), 3), "max_s": round(float(np.max(times)), 3),
        }
        out[rule]["intervals"] = {k: rounded(wilson_interval(out[rule][k], len(chosen))) for k in HIT_RATES}
        out[rule]["quality"] = table(pool_quality(qualities))
        out[rule]["per_selection"] = [{"start": a, "stop": b, **table(q)} for (a, b), q in zip(chosen, qualities,
                                                                                             strict=True)]
    return out


def rounded(values) -> list:
    """Figures for JSON: 4 decimals, NaN as null."""
    return [None if not np.isfinite(v) else round(float(v), 4) for v in values]


def table(quality) -> dict:
    """A match_quality table as {class: {column: figure}} for JSON."""
    return {name: {k: int(row[k]) if k in COUNTS else v
                   for k, v in zip(row.index, rounded(row.to_numpy(np.float64)), strict=True)}
            for name, row in quality.iterrows()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("specs", nargs="+", help="STORE:FEATURE:CELL, e.g. stores/wp:in_quote:1:c:12")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", type=float, default=THETA, help="θ in σ (default: the library's)")
    args = p.parse_args()
    for spec in args.specs:
        path, feature, cell = spec.split(":", 2)
        print(json.dumps(measure(path, feature, cell, args.n, args.seed, args.threshold), indent=1))


if __name__ == "__main__":
    main()
