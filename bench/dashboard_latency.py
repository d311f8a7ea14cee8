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
  trace), and the histogram and gate saturation drawn when the plots tab opens;
- select-to-find over the whole store (:func:`rnnviz.find_similar`: rank every unit on the selection,
  then scan the best cell's column over every row), first from the row-major arrays, then from their
  column-major copies (:mod:`rnnviz.store.column_cache`, whose one-off build is timed), and the pattern view (8 cells'
  lines over a window);
- with ``--browser``: wall time from navigation to the coloured window in the system Chromium;
- with ``--browser-cold`` (only this): the same from a fresh server process (``--root``: which checkout's code
  serves, to compare versions) with the store's pages dropped from the OS cache.
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
from _common import ROOT, corpus_text

from rnnviz.analysis.similar import SimilarConfig, find_matches
from rnnviz.model.charrnn import ModelConfig
from rnnviz.model.vocab import Vocab
from rnnviz.store.reader import open_store
from rnnviz.store.writer import write_store
from rnnviz.views.dashboard import create_app, state
from rnnviz.views.dashboard import transitions as tr
from rnnviz.views.dashboard.callbacks import find as cb_find
from rnnviz.views.dashboard.callbacks import pattern as cb_pattern
from rnnviz.views.dashboard.callbacks import text as cb_text
from rnnviz.views.dashboard.guard import callback_body  # noqa: E402
from rnnviz.views.dashboard.state import View
from rnnviz.views.export import export_html

CORPUS = "tiny_shakespeare.txt"  # in the corpora folder (_common.DATA)


def make_store(path: Path, length: int, layers: int, hidden: int, kinds: list[str]) -> None:
    text = corpus_text(CORPUS, length, "the quick brown fox jumps over the lazy dog.\n")
    vocab = Vocab.from_text(text)
    rng = np.random.default_rng(0)
    arrays = {(l, k): np.tanh(rng.standard_normal((length, hidden), dtype=np.float32)).astype(np.float16)
              for l in range(layers) for k in kinds}
    logprob = np.log(rng.uniform(0.01, 1, length)).astype(np.float32)
    ids = rng.integers(0, len(vocab), (length, 5)).astype(np.uint16)
    probs = np.sort(rng.dirichlet(np.ones(8), length)[:, :5].astype(np.float16), 1)[:, ::-1]
    cfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=layers, hidden=hidden)
    write_store(path, text, arrays, cfg, vocab, logprob=logprob, topk=(ids, probs))


def drop_cache(store) -> None:
    """Evict the store's files (only those) from the OS page cache. Pages still mapped are not evicted,
    so the store's memmaps are closed first (it reopens them on the next read)."""
    store.close()
    gc.collect()
    drop_files(store.path)


def post(client, deps: dict, output: str, inputs: list[dict], state_: list[dict] | None = None) -> float:
    """One callback through Dash's HTTP endpoint; returns seconds (fails loudly on an error)."""
    given = inputs + (state_ or [])
    values = {f"{d['id']}.{d['property']}": d["value"] for d in given if "value" in d}
    body = callback_body(list(deps.values()), output, values, f"{inputs[0]['id']}.{inputs[0]['property']}")
    t = time.perf_counter()
    r = client.post("/_dash-update-component", json=body)
    dt = time.perf_counter() - t
    if r.status_code not in (200, 204):
        raise SystemExit(f"callback {output} failed: HTTP {r.status_code} {r.data[:300]!r}")
    return dt


def ms(xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(0.95 * len(xs)))]
    return f"median {statistics.median(xs) * 1e3:7.1f} ms   p95 {p95 * 1e3:7.1f} ms   max {xs[-1] * 1e3:7.1f} ms"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--length", type=int, default=1_000_000, help="characters in the synthetic store")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--kinds", default="h,c")
    ap.add_argument("--windows", type=int, default=20, help="random windows timed")
    ap.add_argument("--store", type=Path, help="reuse (or create) the store here instead of a temp dir")
    ap.add_argument("--browser", action="store_true", help="also time first load in /usr/bin/chromium")
    ap.add_argument("--browser-cold", action="store_true",
                    help="only time first load in Chromium from a fresh server process (see --root)")
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout whose apps/dashboard.py serves "
                    "--browser-cold (e.g. an older one, to compare)")
    ap.add_argument("--feature", default="", help="a feature in the --browser-cold link, e.g. in_quote")
    return ap.parse_args()


def store_path(args: argparse.Namespace) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """The store to time (``--store``, else one in a temp dir, returned too for clean-up), built if missing."""
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


def open_app(path: Path):
    """The dashboard app on ``path`` as a server process runs it, and the seconds it took to open."""
    t = time.perf_counter()
    try:
        app = create_app([path], freeze_gc=True)  # as `rnnviz serve` and gunicorn run it
    except TypeError:  # code from before freeze_gc
        app = create_app([path])
    t_app = time.perf_counter() - t
    store = app.stores[0]
    gb = sum(f.stat().st_size for f in path.iterdir()) / 1e9
    print(f"store: {store.length:,} chars, {len(store.units):,} units ({store.cell} {len(store.layers)}×"
          f"{store.hidden}, kinds {','.join(store.kinds)}), {gb:.2f} GB on disk; window {state.WINDOW:,} chars")
    return app, t_app


def dependencies(client) -> dict[str, dict]:
    """Dash's callback table keyed by the first output (``id.property``, without any ``@hash``)."""
    deps = {d["output"].split("...")[0].strip("."): d for d in client.get("/_dash-dependencies").get_json()}
    return {k.split("@")[0]: v for k, v in deps.items()}


def first_load(stores, client, deps: dict, unit: str, t_app: float) -> View:
    """Times the page, layout and dependency requests and the callbacks the page fires on load (then the
    plots tab's); prints them and returns the view the URL opens."""
    t0 = time.perf_counter()
    for url in ("/", "/_dash-layout", "/_dash-dependencies"):
        client.get(url)
    t_static = time.perf_counter() - t0
    view, _ = tr.apply(stores, None, "url", f"?unit={unit}")
    vin = [{"id": "view", "property": "data", "value": view.to_dict()}]
    plots = {"id": "tabs", "property": "value", "value": "plots"}  # drawn when their tab is shown
    t_first = {
        "window": post(client, deps, "window-data.data", vin),
        "trace": post(client, deps, "trace.figure", [{"id": "drawn", "property": "data", "value": 1}], vin),
    }
    t_plots = {
        "histogram": post(client, deps, "hist.figure",
                          [{"id": "focus", "property": "data", "value": view.to_dict()}, plots]),
        "gate saturation": post(client, deps, "sat.figure",
                                [{"id": "store-pick", "property": "value", "value": 0}, plots]),
    }
    t = time.perf_counter()
    tr.apply(stores, None, "url", f"?unit={unit}")
    t_first["view from URL"] = time.perf_counter() - t
    total = t_app + t_static + sum(t_first.values())
    print(f"first load (server): {total * 1e3:.0f} ms = open stores {t_app * 1e3:.0f} + page/layout/deps "
          f"{t_static * 1e3:.0f} + " + " + ".join(f"{k} {v * 1e3:.0f}" for k, v in t_first.items()) + " (ms); "
          "opening the plots tab: " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in t_plots.items()))
    return view


class WindowTimer:
    """Three ways to draw one text window, each returning seconds: over HTTP as Dash runs it, the two callback
    functions called directly, and the baseline that reads the unit's whole column first."""

    def __init__(self, stores, client, deps: dict, unit: str) -> None:
        self.stores, self.client, self.deps, self.unit = stores, client, deps, unit
        self.slowest = {"text": 0.0, "trace": 0.0}  # the slowest single HTTP callback of each, seconds

    def http(self, v: View) -> float:  # the two callbacks a window change fires: the text, and its trace
        vin = [{"id": "view", "property": "data", "value": v.to_dict()}]
        drawn = [{"id": "drawn", "property": "data", "value": 1}]
        a = post(self.client, self.deps, "window-data.data", vin)
        b = post(self.client, self.deps, "trace.figure", drawn, vin)
        self.slowest["text"], self.slowest["trace"] = max(self.slowest["text"], a), max(self.slowest["trace"], b)
        return a + b

    def ours(self, v: View) -> float:
        t = time.perf_counter()
        cb_text.render_window(self.stores, v, state.WINDOW)
        cb_text.trace(self.stores, v, state.WINDOW)
        return time.perf_counter() - t

    def base(self, v: View) -> float:  # the same, after reading the unit's whole column (what slicing avoids)
        t = time.perf_counter()
        np.asarray(self.stores[0].unit(self.unit))
        cb_text.render_window(self.stores, v, state.WINDOW)
        cb_text.trace(self.stores, v, state.WINDOW)
        return time.perf_counter() - t


def warm_windows(timer: WindowTimer, view: View, starts: list[int]) -> None:
    """Times and prints a window change at each start, warm cache: over HTTP, the functions, the baseline,
    the page-next navigation and the HTML export of the same window."""
    stores, store = timer.stores, timer.stores[0]
    t_http, t_ours, t_base, t_nav, t_exp = [], [], [], [], []
    for s in starts:
        v = view.replace(start=int(s))
        t_http.append(timer.http(v))
        t_ours.append(timer.ours(v))
        t_base.append(timer.base(v))
        t = time.perf_counter()
        tr.apply(stores, v, "page-next")
        t_nav.append(time.perf_counter() - t)
        t = time.perf_counter()
        export_html(store, [timer.unit], start=int(s), length=state.WINDOW)
        t_exp.append(time.perf_counter() - t)
    slowest = timer.slowest
    print(f"window change over HTTP ({len(starts)} random windows; text + trace callbacks): {ms(t_http)}")
    print(f"  ours, the two callback functions:                   {ms(t_ours)}")
    print(f"  baseline (whole column read, then the same render): {ms(t_base)}")
    print(f"  export_html of the same window, for reference:      {ms(t_exp)}")
    print(f"  page-next navigation callback:                      {ms(t_nav)}")
    print(f"  ratio ours / baseline (medians, warm cache): {statistics.median(t_ours) / statistics.median(t_base):.3f}")
    print(f"  slowest single callback: text {slowest['text'] * 1e3:.0f} ms, trace {slowest['trace'] * 1e3:.0f} ms")


def cold_windows(timer: WindowTimer, view: View, starts: list[int]) -> None:
    """The same three ways, each with the store's pages first dropped from the OS cache; prints them."""
    c_http, c_ours, c_base = [], [], []
    for s in starts:
        v = view.replace(start=int(s))
        for out, fn in ((c_http, timer.http), (c_ours, timer.ours), (c_base, timer.base)):
            drop_cache(timer.stores[0])
            out.append(fn(v))
    print(f"cold cache, over HTTP: {ms(c_http)}")
    print(f"  ours (functions):    {ms(c_ours)}")
    print(f"  baseline:            {ms(c_base)}")
    print(f"  ratio ours / baseline (medians, cold cache): {statistics.median(c_ours) / statistics.median(c_base):.3f}")


def main() -> None:
    args = parse_args()
    path, tmp = store_path(args)
    if args.browser_cold:
        units = open_store(path).units
        browser_cold_server(path, units[len(units) // 2 + 3], args.root.resolve(), args.feature)
        return

    app, t_app = open_app(path)
    stores = app.stores
    client = app.server.test_client()
    deps = dependencies(client)
    unit = stores[0].units[len(stores[0].units) // 2 + 3]
    view = first_load(stores, client, deps, unit, t_app)

    rng = np.random.default_rng(1)
    starts = rng.integers(0, stores[0].length - state.WINDOW, args.windows).tolist()
    timer = WindowTimer(stores, client, deps, unit)
    warm_windows(timer, view, starts)
    if hasattr(os, "posix_fadvise"):
        cold_windows(timer, view, starts[: max(3, args.windows // 4)])
    payload = len(json.dumps(cb_text.render_window(stores, view, state.WINDOW)[0]))
    print(f"  window payload: {payload / 1e3:.0f} kB of JSON for the text view")
    find_and_pattern(stores, view, rng, max(3, args.windows // 4))

    if args.browser:
        browser_first_load(app, unit)
    if tmp is not None:
        tmp.cleanup()


def find_and_pattern(stores, view: View, rng, n: int) -> None:
    """Select-to-find over the whole store (a 40-character selection, θ = 0.5 σ so that cells pass on random
    activations), first reading the arrays row-major, then from their column-major copies (built here, timed),
    and the pattern view with 8 cells over a full window."""
    store = stores[0]
    starts = rng.integers(0, store.length - 40, n).tolist()
    cached = getattr(store, "colcache", None)  # None: code from before the column-major copies
    t_row, n_cells = select_many(stores, view, starts)
    print(f"select-to-find over all {store.length:,} rows ({n} selections of 40 chars, θ 0.5: rank every unit, "
          f"then scan the best cell's column; cells found {n_cells}), arrays read row-major: {ms(t_row)}")
    if cached is not None:
        t = time.perf_counter()
        for layer in store.layers:
            for kind in store.kinds:
                cached.columns(layer, kind, build=True)
        print(f"  column-major copies of the {len(store.layers) * len(store.kinds)} arrays built in "
              f"{time.perf_counter() - t:.1f} s (once per store, kept beside it)")
        t_col, _ = select_many(stores, view, starts)
        print(f"  the same selections with the copies: {ms(t_col)}")
    t_pat = []
    for a in starts:
        cells = store.units[:: max(1, len(store.units) // 8)][:8]
        v = view.replace(start=max(0, a - 1000), sel=(a, a + 40), cells=tuple(cells), tab="pattern")
        t = time.perf_counter()
        c, signs, _ = cb_pattern.cell_set(stores, v)
        cb_pattern.pattern_figure(stores, v, state.WINDOW, c, signs)
        cb_pattern.on_set(store, v, c, signs)
        t_pat.append(time.perf_counter() - t)
    print(f"pattern view, 8 cells over a {state.WINDOW:,}-char window: {ms(t_pat)}")


def select_many(stores, view: View, starts: list[int]) -> tuple[list[float], list[int]]:
    """Seconds of select-to-find for [a, a + 40) at each start, and the cells found each time."""
    store = stores[0]
    times, n_cells = [], []
    for a in starts:
        t = time.perf_counter()
        tables, _, msg = cb_find.select_range(stores, view, a, a + 40, 0.5)
        if msg:  # no cell passes on random activations: time the match scan of one cell as it would run
            find_matches(store, [store.units[1]], [1], SimilarConfig(threshold=0.5), query=(a, a + 40))
        times.append(time.perf_counter() - t)
        n_cells.append(0 if msg else len(tables.children[1].children[1].children))
    return times, n_cells


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def browser_first_load(app, unit: str) -> None:
    """In this process's (warm) server: first load in a fresh Chromium page, two reloads, a page change."""
    import logging
    import threading

    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    start = app.stores[0].length // 2
    url = f"http://127.0.0.1:{server.server_port}/?unit={unit}&start={start}"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        times = [coloured(page, url) for _ in range(3)]
        first = next_window(page, start + 2000)  # at once: the click waits for whatever the page still loads
        while not page.evaluate("!!(window.Plotly && document.querySelector('#trace .main-svg'))"):
            time.sleep(0.02)  # the trace's plot mounted: the page is idle
        later = [next_window(page, start + 2000 * k) for k in (2, 3, 4, 5)]
        b.close()
    server.shutdown()
    print(f"browser: first load to coloured text {times[0]:.2f} s (cold), then {times[1]:.2f}, {times[2]:.2f} s; "
          f"next window click to redrawn text {first * 1e3:.0f} ms right after the load, "
          f"{ms(later)} once the page is idle")


def next_window(page, start: int) -> float:
    """Seconds from a click on "next window" to the text redrawn from ``start``."""
    t = time.perf_counter()
    page.click("#page-next")
    while not (page.evaluate("document.querySelector('#text').dataset.drawn") or "").startswith(f"{start}:"):
        time.sleep(0.005)
    return time.perf_counter() - t


# In the page: when the text's spans appear, the end of the next frame (so: painted), in ms since navigation.
# Measured in the page because a script blocking the page after the text is drawn (Plotly's evaluation)
# also blocks Playwright's polling of the page: a wait for the spans would end only after it.
PAINTED = """new MutationObserver((_, obs) => {
  const t = document.getElementById('text');
  if (t && t.children.length) {
    obs.disconnect();
    requestAnimationFrame(() => setTimeout(() => { window.__paintedAt = performance.now(); }, 0));
  }
}).observe(document, {childList: true, subtree: true});"""


def coloured(page, url: str) -> float:
    """Seconds from navigating to ``url`` to the first frame painted with the text window in colour."""
    page.add_init_script(PAINTED)
    page.goto(url, wait_until="commit")
    t = time.perf_counter()
    while (painted := page.evaluate("window.__paintedAt")) is None:  # (the page's CSP forbids wait_for_function)
        if time.perf_counter() - t > 120:
            raise SystemExit("the text was not drawn in 120 s")
        time.sleep(0.02)
    return painted / 1000


def browser_cold_server(path: Path, unit: str, root: Path, feature: str = "") -> None:
    """A fresh server process (``ROOT/apps/dashboard.py``: that checkout's code) that has answered no
    callback yet, the store's pages dropped from the OS cache, a fresh Chromium: seconds to coloured text."""
    import socket
    import subprocess
    import sys
    import urllib.request

    from playwright.sync_api import sync_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, str(root / "apps" / "dashboard.py"), str(path), "--port", str(port)],
                            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        while True:  # imports and opening the stores
            try:
                urllib.request.urlopen(base + "/", timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None or time.perf_counter() - t0 > 120:
                    raise SystemExit("the dashboard did not start") from None
                time.sleep(0.1)
        t_up = time.perf_counter() - t0
        drop_files(path)
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            start = open_store(path).length // 2
            t = coloured(page, f"{base}/?unit={unit}&start={start}" + (f"&feature={feature}" if feature else ""))
            b.close()
    finally:
        proc.terminate()
        proc.wait(15)
    print(f"browser, cold server ({root}): first coloured text {t:.2f} s after navigating "
          f"(server up in {t_up:.1f} s before it){' with feature ' + feature if feature else ''}")


def drop_files(path: Path) -> None:
    """Evict a store directory's files from the OS page cache (pages mapped by a process stay)."""
    for f in path.iterdir():
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


if __name__ == "__main__":
    main()
