"""The dashboard's first select-to-find and first catalog on a fresh server process, cold (no cache beside the
store) and warm (the caches that ``rnnviz record`` and a first use write beside it).

    .venv/bin/python bench/dashboard_first_use.py                        # 100k characters, 2x256 LSTM, all six kinds
    .venv/bin/python bench/dashboard_first_use.py --store stores/wp100k  # a recorded store (its caches are removed
                                                                         # for the cold runs and written again)

Builds (unless ``--store``) a synthetic store (_common.synthetic_store: LENGTH characters of tiny Shakespeare,
seeded activations) of every LSTM kind (h, c, i, f, g, o). Each measurement runs in a fresh Python process that
opens the app as ``rnnviz serve`` does and posts the callbacks the page posts (Flask's test client, no browser):

- the page load's view (a link with no unit: the page opens on the store's strongest cell, chosen from the caches
  only, never computed);
- the first select-to-find: a 40-character selection in the middle of the text (ranks every unit, two-state
  cells first: :func:`rnnviz.analysis.two_state.two_states`, 6-10 s for 3,072 units when it is not cached);
- the first catalog: the Catalog tab opened, then, when it shows nothing, "Explain every unit" clicked and the
  tab polled as the page polls it until the rows come (the progress messages it showed are counted).

Cold: the caches beside the store (``cache.*``) removed first, as for a store recorded by an older version;
warm: present (written by the cold run's first use; ``rnnviz record`` writes the two-state split itself). The
column-major copies (``colcache.*``, built in the background after a selection) are removed before every run, and
the store's files read once, so that both runs find them in the OS page cache. Prints the seconds of each, the
ratio warm / cold, and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import corpus_text, synthetic_store

LSTM_KINDS = ("h", "c", "i", "f", "g", "o")
SELECTION = 40  # characters selected


def post(client, deps: dict, output: str, values: dict, changed: str) -> dict:
    """One callback as the page posts it; its response (fails loudly on an HTTP error)."""
    from rnnviz.views.dashboard.guard import callback_body

    r = client.post("/_dash-update-component", json=callback_body(deps, output, values, changed))
    if r.status_code not in (200, 204):
        raise SystemExit(f"callback {output} failed: HTTP {r.status_code} {r.data[:300]!r}")
    return r.get_json()["response"] if r.status_code == 200 else {}


def child(path: Path) -> dict:
    """In a fresh process: seconds to open the app, to the page load's view, to the first select-to-find and to
    the first catalog's rows (with the progress messages shown meanwhile)."""
    t = time.perf_counter()
    from rnnviz.views.dashboard import create_app

    app = create_app([path], freeze_gc=True)  # as `rnnviz serve` runs it
    out = {"open": time.perf_counter() - t}
    client, deps, store = app.server.test_client(), app.callback_map, app.stores[0]
    t = time.perf_counter()
    loaded = post(client, deps, "view.data", {"url.search": ""}, "url.search")
    out["load"], view = time.perf_counter() - t, loaded["view"]["data"]
    out["opens_on"], out["url"] = view["unit"], loaded["url"]["search"]
    a = store.length // 2
    t = time.perf_counter()
    found = post(client, deps, "sel-a.value", {"sel-a.value": a, "sel-b.value": a + SELECTION, "sel-go.n_clicks": 1,
                                               "sel-thr.value": 0.5, "view.data": view}, "sel-go.n_clicks")
    out["find"] = time.perf_counter() - t
    out["find_msg"] = found.get("sel-msg", {}).get("children", "")
    out.update(first_catalog(client, deps, {**view, "tab": "catalog"}))
    return out


def first_catalog(client, deps: dict, view: dict) -> dict:
    """Seconds from opening the Catalog tab to its rows (clicking "Explain every unit" when it shows none, then
    polling), and the progress messages seen."""
    values = {"tabs.value": "catalog", "catalog-hide.value": ["trivial"], "view.data": view}
    t = time.perf_counter()
    got = post(client, deps, "catalog-table.rowData", values, "tabs.value")
    progress = 0
    if "catalog-table" not in got:
        got = post(client, deps, "catalog-table.rowData", {**values, "catalog-go.n_clicks": 1}, "catalog-go.n_clicks")
        n = 0
        while "catalog-table" not in got:
            progress += "explaining" in got.get("catalog-msg", {}).get("children", "")
            time.sleep(0.4)  # the page's POLL_MS
            n += 1
            got = post(client, deps, "catalog-table.rowData", {**values, "catalog-poll.n_intervals": n},
                       "catalog-poll.n_intervals")
    return {"catalog": time.perf_counter() - t, "progress": progress,
            "rows": len(got["catalog-table"]["rowData"]), "catalog_msg": got["catalog-msg"]["children"]}


def run_child(path: Path) -> dict:
    """:func:`child` in a fresh Python process, after removing the column-major copies and reading the store's files
    once (the OS page cache then holds them in every run)."""
    for f in path.iterdir():
        if f.name.startswith("colcache."):
            f.unlink()
        elif f.is_file():
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass
    proc = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
                              str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")]))})
    if proc.returncode:
        raise SystemExit(f"the child process failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(label: str, r: dict) -> None:
    print(f"{label}: open app {r['open']:.2f} s; page load's view {r['load']:.3f} s (opens on {r['opens_on']}: "
          f"{r['url']}); first select-to-find {r['find']:.3f} s{' (' + r['find_msg'] + ')' if r['find_msg'] else ''}; "
          f"first catalog {r['catalog']:.3f} s ({r['rows']:,} rows; {r['progress']} progress messages shown)")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--length", type=int, default=100_000, help="characters in the synthetic store")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--store", type=Path, help="a recorded store to time instead of a synthetic one")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # one fresh process's measurements (internal)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="rnnviz-bench-") as tmp:
        path = args.store
        if path is None:
            path = Path(tmp) / "store"
            text = corpus_text("tiny_shakespeare.txt", args.length, "the quick brown fox jumps over the lazy dog.\n")
            t = time.perf_counter()
            synthetic_store(path, text, args.layers, args.hidden, LSTM_KINDS, predictions=False)
            print(f"built store: {time.perf_counter() - t:.1f} s")
        from rnnviz.store.reader import open_store

        st = open_store(path)
        print(f"store: {st.length:,} chars x {len(st.units):,} units ({st.cell} {len(st.layers)}x{st.hidden}, kinds "
              f"{','.join(st.kinds)})")
        for f in path.glob("cache.*"):
            f.unlink()
        cold = run_child(path)
        report("cold (no cache beside the store)", cold)
        warm = run_child(path)
        report("warm (caches beside the store)", warm)
    print(f"ratio warm / cold: select-to-find {warm['find'] / cold['find']:.3f}x, "
          f"catalog {warm['catalog'] / cold['catalog']:.3f}x")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
