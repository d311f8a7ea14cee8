"""Dashboard latency on a large store: server time per text window, first load, and (optionally) the
browser's time to first coloured text.

    .venv/bin/python bench/dashboard_latency.py                     # 1M characters, 2×128 LSTM, h and c
    .venv/bin/python bench/dashboard_latency.py --length 200000 --windows 10 --browser

Builds a synthetic store (the first LENGTH characters of tiny Shakespeare, seeded random activations)
in a temp directory, then times, in one process:

- ``window``: the window callback as Dash runs it (an HTTP POST to /_dash-update-component through
  Flask's test client: read the window's rows, colour classes, tooltips, the trace figure, JSON);
- ``baseline``: the same window rendered from a whole unit column read first (``store.unit``), i.e. what
  a view that does not slice the memmap pays; the ratio ours / baseline is printed;
- ``export``: the HTML export of the same window (``export_html``), for reference;
- cold: the window callback and the baseline again with the store's pages first dropped from the OS cache
  (``posix_fadvise(DONTNEED)`` on the store's files only), as after a reboot or on a store bigger than RAM;
- first load: the page, layout and dependency requests plus the first callbacks (view from the URL, window,
  histogram, gate saturation);
- with ``--browser``: wall time from navigation to the coloured window in the system Chromium.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import corpus_text, synthetic_store

from rnnviz.dashboard import callbacks as cb
from rnnviz.dashboard import create_app, state
from rnnviz.export import export_html


def make_store(path: Path, length: int, layers: int, hidden: int, kinds: list[str]) -> None:
    text = corpus_text("tiny_shakespeare.txt", length, "the quick brown fox jumps over the lazy dog.\n")
    synthetic_store(path, text, layers, hidden, kinds)


def drop_cache(store) -> None:
    """Evict the store's files (only those) from the OS page cache. Pages still mapped are not evicted,
    so the store's memmaps are closed first (it reopens them on the next read)."""
    store._maps.clear()
    for name in ("logprob", "topk"):
        store.__dict__.pop(name, None)
    gc.collect()
    for f in store.path.iterdir():
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def post(client, deps: dict, output: str, inputs: list[dict], state_: list[dict] | None = None) -> float:
    """One callback through Dash's HTTP endpoint; returns seconds (fails loudly on an error)."""
    dep = deps[output]
    body = {
        "output": dep["output"],
        "outputs": [dict(zip(("id", "property"), o.split("."), strict=True))
                    for o in dep["output"].strip(".").split("...")],
        "inputs": inputs,
        "changedPropIds": [f"{i['id']}.{i['property']}" for i in inputs[:1]],
        "state": state_ or [],
    }
    if len(body["outputs"]) == 1:
        body["outputs"] = body["outputs"][0]
    t = time.perf_counter()
    r = client.post("/_dash-update-component", json=body)
    dt = time.perf_counter() - t
    if r.status_code not in (200, 204):
        raise SystemExit(f"callback {output} failed: HTTP {r.status_code} {r.data[:300]!r}")
    return dt


def ms(xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(0.9 * len(xs)))]
    return f"median {statistics.median(xs) * 1e3:7.1f} ms   p90 {p90 * 1e3:7.1f} ms   max {xs[-1] * 1e3:7.1f} ms"


def store_dir(args) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """The store's folder (``--store``, or a temp dir the caller cleans up), built there if missing."""
    tmp = None
    path = args.store
    if path is None:
        tmp = tempfile.TemporaryDirectory(prefix="rnnviz-bench-")
        path = Path(tmp.name) / "store"
    if not (path / "manifest.json").exists():
        t = time.perf_counter()
        make_store(path, args.length, args.layers, args.hidden, args.kinds.split(","))
        print(f"built store: {time.perf_counter() - t:.1f} s")
    return path, tmp


def cold_cache(store, view: dict, starts: list[int], http, ours_fn, base_fn) -> None:
    """The window timings again, each with the store's pages dropped from the OS cache first."""
    c_http, c_ours, c_base = [], [], []
    for s in starts:
        v = {**view, "start": int(s)}
        for out, fn in ((c_http, http), (c_ours, ours_fn), (c_base, base_fn)):
            drop_cache(store)
            out.append(fn(v))
    print(f"cold cache, over HTTP: {ms(c_http)}")
    print(f"  ours (functions):    {ms(c_ours)}")
    print(f"  baseline:            {ms(c_base)}")
    print(f"  ratio ours / baseline (medians, cold cache): {statistics.median(c_ours) / statistics.median(c_base):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--length", type=int, default=1_000_000, help="characters in the synthetic store")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--kinds", default="h,c")
    ap.add_argument("--windows", type=int, default=20, help="random windows timed")
    ap.add_argument("--store", type=Path, help="reuse (or create) the store here instead of a temp dir")
    ap.add_argument("--browser", action="store_true", help="also time first load in /usr/bin/chromium")
    args = ap.parse_args()

    path, tmp = store_dir(args)

    t = time.perf_counter()
    app = create_app([path])
    t_app = time.perf_counter() - t
    stores = app.stores
    store = stores[0]
    gb = sum(f.stat().st_size for f in path.iterdir()) / 1e9
    print(f"store: {store.length:,} chars, {len(store.units):,} units ({store.cell} {len(store.layers)}×"
          f"{store.hidden}, kinds {','.join(store.kinds)}), {gb:.2f} GB on disk; window {state.WINDOW:,} chars")
    client = app.server.test_client()
    deps = {d["output"].split("...")[0].strip("."): d for d in client.get("/_dash-dependencies").get_json()}
    deps = {k.split("@")[0]: v for k, v in deps.items()}
    unit = store.units[len(store.units) // 2 + 3]

    # First load: page, layout, dependencies, then the callbacks the page fires on load.
    t0 = time.perf_counter()
    for url in ("/", "/_dash-layout", "/_dash-dependencies"):
        client.get(url)
    t_static = time.perf_counter() - t0
    view, _ = cb.navigate(stores, None, "url", f"?unit={unit}")
    vin = [{"id": "view", "property": "data", "value": view}]
    t_first = {
        "window": post(client, deps, "window-data.data", vin),
        "trace": post(client, deps, "trace.figure", [{"id": "drawn", "property": "data", "value": 1}], vin),
        "histogram": post(client, deps, "hist.figure", [{"id": "focus", "property": "data", "value": view}]),
        "gate saturation": post(client, deps, "sat.figure", [{"id": "store-pick", "property": "value", "value": 0}]),
    }
    t = time.perf_counter()
    cb.navigate(stores, None, "url", f"?unit={unit}")
    t_first["view from URL"] = time.perf_counter() - t
    total = t_app + t_static + sum(t_first.values())
    print(f"first load (server): {total * 1e3:.0f} ms = open stores {t_app * 1e3:.0f} + page/layout/deps "
          f"{t_static * 1e3:.0f} + " + " + ".join(f"{k} {v * 1e3:.0f}" for k, v in t_first.items()) + " (ms)")

    rng = np.random.default_rng(1)
    starts = rng.integers(0, store.length - state.WINDOW, args.windows).tolist()

    slowest = {"text": 0.0, "trace": 0.0}

    def http(v: dict) -> float:  # the two callbacks a window change fires: the text, and its trace
        vin = [{"id": "view", "property": "data", "value": v}]
        drawn = [{"id": "drawn", "property": "data", "value": 1}]
        a = post(client, deps, "window-data.data", vin)
        b = post(client, deps, "trace.figure", drawn, vin)
        slowest["text"], slowest["trace"] = max(slowest["text"], a), max(slowest["trace"], b)
        return a + b

    def ours_fn(v: dict) -> float:
        t = time.perf_counter()
        cb.render_window(stores, v)
        cb.trace(stores, v)
        return time.perf_counter() - t

    def base_fn(v: dict) -> float:  # the same, after reading the unit's whole column (what slicing avoids)
        t = time.perf_counter()
        np.asarray(store.unit(unit))
        cb.render_window(stores, v)
        cb.trace(stores, v)
        return time.perf_counter() - t

    t_http, t_ours, t_base, t_nav, t_exp = [], [], [], [], []
    for s in starts:
        v = {**view, "start": int(s)}
        t_http.append(http(v))
        t_ours.append(ours_fn(v))
        t_base.append(base_fn(v))
        t = time.perf_counter()
        cb.navigate(stores, v, "page-next")
        t_nav.append(time.perf_counter() - t)
        t = time.perf_counter()
        export_html(store, [unit], start=int(s), length=state.WINDOW)
        t_exp.append(time.perf_counter() - t)
    med = statistics.median
    print(f"window change over HTTP ({args.windows} random windows; text + trace callbacks): {ms(t_http)}")
    print(f"  ours, the two callback functions:                   {ms(t_ours)}")
    print(f"  baseline (whole column read, then the same render): {ms(t_base)}")
    print(f"  export_html of the same window, for reference:      {ms(t_exp)}")
    print(f"  page-next navigation callback:                      {ms(t_nav)}")
    print(f"  ratio ours / baseline (medians, warm cache): {med(t_ours) / med(t_base):.3f}")
    print(f"  slowest single callback: text {slowest['text'] * 1e3:.0f} ms, trace {slowest['trace'] * 1e3:.0f} ms")
    if hasattr(os, "posix_fadvise"):
        cold_cache(store, view, starts[: max(3, args.windows // 4)], http, ours_fn, base_fn)
    payload = len(json.dumps(cb.render_window(stores, view)[0]))
    print(f"  window payload: {payload / 1e3:.0f} kB of JSON for the text view")

    a = store.text.index(" ", 5000)
    t = time.perf_counter()
    cb.select_range(stores, view, a - 12, a, 1.0)
    print(f"select-to-find (12 characters, matches over up to 1M rows): {(time.perf_counter() - t) * 1e3:.0f} ms")

    if args.browser:
        browser_first_load(app, unit)
    if tmp is not None:
        tmp.cleanup()


def browser_first_load(app, unit: str) -> None:
    import logging
    import threading

    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/?unit={unit}&start=500000"
    args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        times = []
        for _ in range(3):
            t = time.perf_counter()
            page.goto(url, wait_until="commit")
            page.wait_for_selector("#text[data-drawn]", timeout=60_000)
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        page.click("#page-next")
        page.wait_for_function("document.querySelector('#text').dataset.drawn.startsWith('502000')")
        t_page = time.perf_counter() - t
        b.close()
    server.shutdown()
    print(f"browser: first load to coloured text {times[0]:.2f} s (cold), then {times[1]:.2f}, {times[2]:.2f} s; "
          f"next window click to redrawn text {t_page * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
