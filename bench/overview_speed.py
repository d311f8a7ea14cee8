"""The Overview tab's cost: one layer and kind (256 units by default) as rows over a stretch of the text.

    .venv/bin/python bench/overview_speed.py                       # 100k characters, 2×256 LSTM, h and c
    .venv/bin/python bench/overview_speed.py --length 30000 --store stores/wp   # a recorded store instead

Times, in one process, on a synthetic store (the first LENGTH characters of War and Peace, seeded activations)
or a given one:

- ``first``: the tab's content on a fresh StoreSet (:func:`rnnviz.views.dashboard.overview.overview`): the
  two-state splits of every unit (:func:`~rnnviz.analysis.two_state.two_states`, shared with select-to-find), the
  group's measures, its robust colour ranges, the rows and the figure;
- ``again``: the same with those cached (what scrolling, the filter and the order cost), for 500 and 2,000
  characters, with the figure's JSON size;
- the baseline: Plotly's own heatmap of the same rows' raw values over the same stretch (``go.Heatmap``, one
  float a character, no colour steps, no averaging): its time and JSON size, and the ratios ours / baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import plotly.graph_objects as go
from _common import corpus_text, synthetic_store

from rnnviz.views.dashboard import overview as tab
from rnnviz.views.dashboard.state import View
from rnnviz.views.dashboard.stores import StoreSet


def timed(fn, reps: int = 1) -> tuple[float, object]:
    t = time.perf_counter()
    for _ in range(reps):
        out = fn()
    return (time.perf_counter() - t) / reps, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--length", type=int, default=100_000)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--store", type=Path, help="a recorded store to measure instead of a synthetic one")
    ap.add_argument("--group", default="1:c", help="LAYER:KIND drawn")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.store
        if path is None:
            path = Path(tmp) / "store"
            synthetic_store(path, corpus_text("war_and_peace.txt", args.length, "abc \n" * 100), hidden=args.hidden)
        stores = StoreSet([path])
        store = stores[0]
        units = tab.group_units(store, args.group)
        view = View.clean({"unit": units[0], "tab": "overview"}, stores)
        print(f"{path.name}: {store.length:,} rows, {len(store.units):,} units; {args.group}: {len(units)} rows; "
              f"load {os.getloadavg()[0]:.2f}")
        first, _ = timed(lambda: tab.overview(stores, view, args.group, 0, 500, "two-state", [tab.HIDE]))
        print(f"first (two-state splits, measures, colour ranges, rows, figure): {first:.2f} s")
        for width in (500, 2000):
            again, (fig, _) = timed(lambda w=width: tab.overview(stores, view, args.group, 1000, w, "slow",
                                                                   [tab.HIDE]), reps=5)
            size = len(json.dumps(fig))

            def baseline(w=width):
                v = store.window(1000, 1000 + w, units).T  # (U, w)
                return go.Figure(go.Heatmap(z=v, y=units)).to_json()

            base, raw = timed(baseline, reps=5)
            print(f"again, {width:,} characters: {again * 1000:.0f} ms, figure {size / 1e3:.0f} kB JSON; baseline "
                  f"{base * 1000:.0f} ms, {len(raw) / 1e3:.0f} kB: ratios {again / base:.2f} (time), "
                  f"{size / len(raw):.2f} (size)")

if __name__ == "__main__":
    main()
