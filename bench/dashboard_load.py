"""Dashboard under load: gunicorn with 2 workers on 127.0.0.1, concurrent clients paging windows and
switching units over HTTP, as the page does; prints p50/p95/p99 latency and throughput.

    .venv/bin/python bench/dashboard_load.py                         # 20 clients x 60 s, 1M characters
    .venv/bin/python bench/dashboard_load.py --clients 4 --seconds 10 --length 100000

Builds a synthetic store (tiny Shakespeare repeated to LENGTH characters, seeded random activations of a
2x128 LSTM's h and c) in a temp directory, serves it with ``gunicorn apps.dashboard:server``, and runs
first one client alone (the baseline), then CLIENTS clients at once, each for SECONDS. A client starts
from a link to a random unit and position, then repeats: page forward or back (60%), switch unit (25%)
or jump to a random position (15%). Every action is the requests the page sends: the view callback, then
the text window and its trace (and the histogram after a unit switch). Each response is checked (status,
the window's position and length); a failed check counts as an error.

Loopback only, and bounded: at most MAX_CLIENTS clients, MAX_SECONDS seconds and MAX_REQUESTS requests.
The clients run in this process and share the machine's cores with the server: on a 2-core machine the
figures are those of a server with less than 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from _common import ROOT, corpus_text, synthetic_store

from rnnviz.views.dashboard.app import is_loopback
from rnnviz.views.dashboard.guard import callback_body
from rnnviz.views.dashboard.state import WINDOW

MAX_CLIENTS, MAX_SECONDS, MAX_REQUESTS = 64, 600, 200_000
HTTP_TIMEOUT = 60.0  # seconds one request may take before it counts as an error


def make_store(path: Path, length: int, layers: int = 2, hidden: int = 128, kinds=("h", "c"), text: str | None = None,
               seed: int = 0) -> Path:
    """A synthetic LSTM store of ``length`` characters of tiny Shakespeare (``text`` if given)."""
    text = text if text is not None else corpus_text("tiny_shakespeare.txt", length, "the quick brown fox jumps.\n")
    return synthetic_store(path, text, layers, hidden, kinds, seed=seed)


# --- the server ---


@contextlib.contextmanager
def serve(stores: list[Path], workers: int = 2, host: str = "127.0.0.1", log: Path | None = None):
    """Run ``gunicorn apps.dashboard:server`` over ``stores`` on a free port of ``host``; yields (url, proc).

    Loopback addresses only. Workers are single-threaded (sync), as gunicorn's default. The log (stderr)
    goes to ``log``; the server is stopped (SIGTERM, then SIGKILL to its process group) on exit.
    """
    import gunicorn.config

    if not is_loopback(host):
        raise SystemExit(f"refusing to serve on {host}: this load test binds loopback addresses only")
    own_log = log is None
    if own_log:
        fd, name = tempfile.mkstemp(prefix="rnnviz-gunicorn-", suffix=".log")
        os.close(fd)
        log = Path(name)
    cmd = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", f"{host}:0", "--timeout", "120",
           "--graceful-timeout", "5"]
    if any(s.name == "control_socket_disable" for s in gunicorn.config.KNOWN_SETTINGS):
        cmd.append("--no-control-socket")  # gunicorn >= 24 opens ~/.gunicorn/gunicorn.ctl, shared by every run
    cmd.append("apps.dashboard:server")
    env = {**os.environ, "RNNVIZ_STORES": ":".join(str(s) for s in stores), "OMP_NUM_THREADS": "1"}
    with open(log, "ab") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = _wait_listening(proc, log)
        _wait_ready(proc, url)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if own_log:
            log.unlink(missing_ok=True)


def _wait_listening(proc: subprocess.Popen, log: Path, limit: float = 60.0) -> str:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        m = re.search(r"Listening at: (http://[\d.]+:\d+)", log.read_text(errors="replace"))
        if m:
            return m.group(1)
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    raise RuntimeError("gunicorn did not start listening")


def _wait_ready(proc: subprocess.Popen, url: str, limit: float = 120.0) -> None:
    """Until both workers answer (each imports the app and opens the stores on its first request)."""
    t0, ok = time.monotonic(), 0
    while time.monotonic() - t0 < limit:
        if proc.poll() is not None:
            raise RuntimeError("gunicorn exited while starting")
        try:
            with urllib.request.urlopen(url + "/_dash-layout", timeout=HTTP_TIMEOUT) as r:
                ok += r.status == 200
            if ok >= 4:
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError("the dashboard did not answer")


# --- a client that speaks Dash's callback protocol ---


class Client:
    """Sends callbacks the way the page does: one JSON body per callback, found by its first output."""

    def __init__(self, url: str):
        self.url = url
        deps = self.get_json("/_dash-dependencies")
        self.deps = {d["output"].strip(".").split("...")[0].split("@")[0]: d for d in deps}

    def get_json(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=HTTP_TIMEOUT) as r:
            return json.loads(r.read())

    def body(self, output: str, values: dict, changed: str) -> dict:
        """The request body for the callback whose first output is ``output``. ``values``: "id.prop" ->
        what the page holds; pattern-matching inputs (table rows) are sent empty, as before any table."""
        dep = self.deps[output]
        every = {f"{x['id']}.{x['property']}": None for x in dep["inputs"] + dep["state"]}
        return callback_body([dep], output, {**every, **values}, changed)

    def post(self, data: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + "/_dash-update-component", data=data, method="POST",
                                     headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def call(self, output: str, values: dict, changed: str) -> tuple[int, dict]:
        """Run one callback; returns (HTTP status, {component id: {property: value}}) ({} on 204 or an error)."""
        status, raw = self.post(json.dumps(self.body(output, values, changed)).encode())
        return status, (json.loads(raw).get("response", {}) if status == 200 else {})


def navigate(client: Client, view: dict | None, trigger: str, value=None, **states) -> tuple[int, dict, str]:
    """The view callback: (status, new view, message on the page). ``trigger``: the control's id."""
    prop = {"url": "search", "jump-input": "n_submit", "find-input": "n_submit", "regex-input": "n_submit",
            "cmp-input": "value", "index-pick": "value", "kind-pick": "value", "layer-pick": "value",
            "store-pick": "value", "feature-pick": "value"}.get(trigger, "n_clicks")
    values = {f"{trigger}.{prop}": value if value is not None else 1, "view.data": view,
              **{f"{k.replace('_', '-')}.value": v for k, v in states.items()}}
    status, r = client.call("view.data", values, f"{trigger}.{prop}")
    new = r.get("view", {}).get("data", view)
    msg = r.get("status", {}).get("children", "")
    return status, new, msg


# --- the load ---


@dataclass
class Result:
    latencies: dict[str, list[float]] = field(default_factory=dict)  # request kind -> seconds
    actions: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())


def _next_action(rng: np.random.Generator, view: dict, length: int) -> tuple[str, dict]:
    """A reader's next move: 60% a page (back at the end, else back 30% of the time once past the start),
    25% the next or previous unit, 15% a jump to a random position."""
    r = rng.random()
    if r < 0.60:
        back = view["start"] + WINDOW >= length or (view["start"] > 0 and rng.random() < 0.3)
        return ("page-prev" if back else "page-next"), {}
    if r < 0.85:
        return ("unit-next" if rng.random() < 0.7 else "unit-prev"), {}
    return "jump-go", {"jump_input": int(rng.integers(length))}


def _show(client: Client, view: dict, length: int, unit_changed: bool, timed, fail) -> None:
    """What the page fetches for a view: its window and trace (and histogram when the unit changed), checked."""
    status, r = timed("window", client.call, "window-data.data", {"view.data": view}, "view.data")
    data = r.get("window-data", {}).get("data") or {}
    n = min(WINDOW, length - view["start"])
    if status != 200 or data.get("start") != view["start"] or len(data.get("chars", ())) != n:
        fail(f"window at {view.get('start')}: HTTP {status}, got {data.get('start')} +{len(data.get('chars', ()))}")
    status, r = timed("trace", client.call, "trace.figure", {"drawn.data": 1, "view.data": view}, "drawn.data")
    if status != 200 or "figure" not in r.get("trace", {}):
        fail(f"trace: HTTP {status}")
    if unit_changed:
        focus = {k: view[k] for k in ("store", "unit", "feature")}
        status, r = timed("histogram", client.call, "hist.figure", {"focus.data": focus}, "focus.data")
        if status != 200 or "figure" not in r.get("hist", {}):
            fail(f"histogram: HTTP {status}")


def _session(client: Client, length: int, units: list[str], seed: int, stop: threading.Event, res: Result,
             lock: threading.Lock, budget: list[int]) -> None:
    rng = np.random.default_rng(seed)

    def timed(kind: str, fn, *args, **kw):
        with lock:
            if budget[0] <= 0:
                stop.set()
            budget[0] -= 1
        t = time.perf_counter()
        out = fn(*args, **kw)
        dt = time.perf_counter() - t
        with lock:
            res.latencies.setdefault(kind, []).append(dt)
        return out

    def fail(what: str) -> None:
        with lock:
            res.errors.append(what)

    q = urlencode({"unit": units[int(rng.integers(len(units)))], "start": int(rng.integers(length))})
    status, view, msg = timed("view", navigate, client, None, "url", "?" + q)
    if status != 200 or msg:
        fail(f"first load: HTTP {status} {msg!r}")
        return
    _show(client, view, length, True, timed, fail)
    while not stop.is_set():
        trigger, kw = _next_action(rng, view, length)
        status, new, msg = timed("view", navigate, client, view, trigger, **kw)
        if status != 200 or msg or new == view:
            fail(f"navigate: HTTP {status} {msg!r}")
            continue
        changed, view = new["unit"] != view["unit"], new
        _show(client, view, length, changed, timed, fail)
        with lock:
            res.actions += 1


def run_load(url: str, clients: int, seconds: float, length: int, units: list[str], seed: int = 0,
             max_requests: int = MAX_REQUESTS) -> Result:
    """``clients`` concurrent sessions against ``url`` for ``seconds`` (and at most ``max_requests``)."""
    if not 1 <= clients <= MAX_CLIENTS or not 0 < seconds <= MAX_SECONDS:
        raise SystemExit(f"clients must be 1..{MAX_CLIENTS} and seconds in (0, {MAX_SECONDS}]")
    host = re.match(r"http://([^:/]+)", url).group(1)
    if not is_loopback(host):
        raise SystemExit(f"refusing to load {url}: loopback only")
    res, lock, stop, budget = Result(), threading.Lock(), threading.Event(), [max_requests]
    client = Client(url)
    threads = [threading.Thread(target=_session, args=(client, length, units, seed * 1000 + i, stop, res, lock, budget),
                                daemon=True) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(HTTP_TIMEOUT * 4)
    res.seconds = time.perf_counter() - t0
    return res


def percentiles(xs: list[float]) -> tuple[float, float, float]:
    """(p50, p95, p99) in milliseconds."""
    p = np.percentile(np.asarray(xs) * 1e3, [50, 95, 99])
    return float(p[0]), float(p[1]), float(p[2])


def report(name: str, res: Result) -> None:
    every = [x for v in res.latencies.values() for x in v]
    p50, p95, p99 = percentiles(every)
    print(f"{name}: {res.requests:,} requests, {res.actions:,} page changes in {res.seconds:.1f} s = "
          f"{res.requests / res.seconds:.1f} requests/s, {res.actions / res.seconds:.2f} page changes/s; "
          f"errors {len(res.errors)}")
    print(f"  all requests      p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   p99 {p99:7.1f} ms")
    for kind in ("view", "window", "trace", "histogram"):
        if res.latencies.get(kind):
            p50, p95, p99 = percentiles(res.latencies[kind])
            print(f"  {kind:17s} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   p99 {p99:7.1f} ms   "
                  f"(n={len(res.latencies[kind]):,})")
    for e in res.errors[:5]:
        print(f"  error: {e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--length", type=int, default=1_000_000, help="characters in the synthetic store")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0, help="duration of the loaded run")
    ap.add_argument("--baseline-seconds", type=float, default=15.0, help="duration of the 1-client run")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store", type=Path, help="reuse (or create) the store here instead of a temp dir")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="rnnviz-load-") as tmp:
        path = args.store or Path(tmp) / "store"
        if not (path / "manifest.json").exists():
            t = time.perf_counter()
            make_store(path, args.length, hidden=args.hidden)
            print(f"built store: {time.perf_counter() - t:.1f} s")
        from rnnviz.store.reader import open_store

        store = open_store(path)
        size = sum(f.stat().st_size for f in path.iterdir()) / 1e9
        print(f"store: {store.length:,} chars, {len(store.units)} units (lstm {len(store.layers)}x{store.hidden}, "
              f"kinds {','.join(store.kinds)}), {size:.2f} GB; window {WINDOW:,} chars")
        load = os.getloadavg()
        print(f"machine: {os.cpu_count()} CPU cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
              f"before the run; gunicorn {args.workers} sync workers on 127.0.0.1")
        with serve([path], workers=args.workers) as (url, proc):
            base = run_load(url, 1, args.baseline_seconds, store.length, store.units, seed=args.seed)
            report("1 client (baseline)", base)
            res = run_load(url, args.clients, args.seconds, store.length, store.units, seed=args.seed + 1)
            report(f"{args.clients} clients", res)
            alive = proc.poll() is None
        every_base = [x for v in base.latencies.values() for x in v]
        every = [x for v in res.latencies.values() for x in v]
        print(f"ratio {args.clients} clients / 1 client: p50 latency "
              f"{statistics.median(every) / statistics.median(every_base):.1f}x, throughput "
              f"{(res.requests / res.seconds) / (base.requests / base.seconds):.2f}x; server up throughout: {alive}")


if __name__ == "__main__":
    main()
