"""The dashboard as deployed: gunicorn with 2 workers on 127.0.0.1, a few clients paging windows and switching
units over HTTP for a few seconds (no errors), then hostile requests (a store outside the configured ones,
oversized requests, malformed unit names, a catastrophic regex): each gets a clear 4xx or a clear message
on the page, and the server stays up with the same workers. The longer run is bench/dashboard_load.py."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from rnnviz.store.reader import open_store
from rnnviz.views.display import visible

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parent.parent


def _bench_module(name: str, file: str):
    """A bench script as a module, registered in sys.modules (dataclasses look themselves up there)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / file)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_bench_module("_common", "_common.py")  # what the script imports as its sibling
load = _bench_module("bench_dashboard_load", "dashboard_load.py")

RUN = "a" * 48 + "!"  # (a|aa)+$ backtracks Fibonacci(48) ways here


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("load")
    text = ('He said "hello there" (and left).\nif (x) { y = 1; }\n' * 400)[:19_000] + RUN + "\n"
    store = open_store(load.make_store(base / "st", len(text), hidden=16, text=text))
    log = base / "gunicorn.log"
    with load.serve([store.path], workers=2, log=log) as (url, proc):
        yield url, proc, log, store


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def window(client, view: dict) -> dict:
    status, r = client.call("window-data.data", {"view.data": view}, "view.data")
    assert status == 200
    return r["window-data"]["data"]


def assert_healthy(url, proc, log: Path) -> None:
    assert proc.poll() is None
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "WORKER TIMEOUT" not in text and "ERROR" not in text, text[-3000:]
    assert len(re.findall(r"Booting worker", text)) == 2, text  # no worker died and was replaced
    assert get(url + "/")[0] == 200


def test_clients_paging_and_switching_units_get_no_errors(server):
    url, proc, log, store = server
    res = load.run_load(url, clients=4, seconds=4.0, length=store.length, units=store.units, seed=0)
    assert res.errors == []
    assert set(res.latencies) == {"view", "window", "trace", "histogram"} and res.actions >= 1
    assert_healthy(url, proc, log)


def test_hostile_requests_get_clear_answers(server):
    url, proc, log, store = server
    c = load.Client(url)
    _, view, msg = load.navigate(c, None, "url", "?unit=0:c:3&start=100")
    assert (view["unit"], view["start"], msg) == ("0:c:3", 100, "")
    first = [visible(ch) for ch in store.text[:2000]]

    # A store outside the configured ones: by link, by a crafted view, by a file path.
    for name in ("/etc/passwd", "../../etc", "st/../../etc", "1"):
        status, v, msg = load.navigate(c, None, "url", f"?store={name}")
        assert status == 200 and v["store"] == 0
        assert msg == f"no store {name!r} here: this dashboard serves st (showing st)"
    assert window(c, {**view, "store": "/etc/passwd", "start": 0})["chars"] == first
    for path in ("/_dash-component-suites/dash/../../../../etc/passwd",
                 "/_dash-component-suites/dash/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", "/assets/../../etc/passwd"):
        status, body = get(url + path)
        assert status == 404 and b"root:" not in body, path

    # Oversized: a body past the limit, a selection of the whole store, positions past any range.
    status, _ = c.post(b'{"output": "' + b"x" * (1 << 20) + b'"}')  # just past MAX_REQUEST_BYTES
    assert status == 413
    sel = {"sel-go.n_clicks": 1, "sel-a.value": 0, "sel-b.value": store.length, "sel-thr.value": 1.0,
           "view.data": view}
    status, r = c.call("sel-a.value", sel, "sel-go.n_clicks")
    assert status == 200
    assert r["sel-msg"]["children"] == f"the selection is {store.length:,} characters; select at most 5,000"
    body = json.dumps(c.body("window-data.data", {"view.data": {**view, "start": 0}}, "view.data"))
    # A number no page can send (JSON.stringify writes Infinity and NaN as null): refused before Dash.
    status, raw = c.post(body.replace('"start": 0', '"start": 1e400').encode())  # inf once parsed
    assert (status, raw) == (400, b"malformed callback request: a number that is not finite\n")
    status, _, _ = load.navigate(c, view, "jump-go", jump_input=float("inf"))
    assert status == 400
    _, v, msg = load.navigate(c, view, "jump-go", jump_input=1e300)  # typed: past the end of the text
    assert (v["start"], msg) == (store.length - 2000, "")  # clipped to the last full window (2,000 characters)

    # Malformed unit names: typed, linked, picked, crafted.
    _, v, msg = load.navigate(c, view, "cmp-input", "0:h:\u00b2")
    assert v == view and msg == "no unit '0:h:²' in st: give LAYER:KIND:INDEX, e.g. 1:c:15"
    _, v, msg = load.navigate(c, None, "url", "?unit=../../etc/passwd")
    assert v["unit"] == "0:h:0" and msg == "no unit '../../etc/passwd' in st: showing 0:h:0"
    _, v, msg = load.navigate(c, view, "kind-pick", "zz")
    assert v == view and msg == "no unit '0:zz:3' in st"
    assert window(c, {**view, "unit": ["0:c:3"], "start": 0})["tips"][0].startswith("0:h:0 = ")
    for junk, why in ((b"{}", b"names no callback"), (b"[1, 2]", b"not a JSON object"), (b"not json", b"not JSON"),
                      (b'{"output": "nope.data", "inputs": []}', b"names no callback of this app")):
        status, body = c.post(junk)
        assert status == 400 and body.startswith(b"malformed callback request: " + why), junk

    # A catastrophic regex on a long run of a: stopped at the time limit, the page says so.
    _, v, msg = load.navigate(c, view, "regex-input", regex_input="(a|aa)+$")
    assert v == view and msg == "the regular expression '(a|aa)+$' ran longer than 2 s and was stopped; make it simpler"
    _, v, msg = load.navigate(c, view, "regex-input", regex_input="a+!")
    assert v["feature"] == "re:a+!" and msg == ""

    # Still serving, with the same two workers, and nothing in the log but start-up lines.
    _, v, _ = load.navigate(c, view, "page-next")
    assert window(c, v)["start"] == 2100
    assert_healthy(url, proc, log)
