"""The dashboard in a real browser: the system Chromium driven by Playwright, against the app served on
127.0.0.1 from a thread. Every test fails on a browser console error and leaves a screenshot under
test-artifacts/dashboard/."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    NEG_UNIT,
    QUOTE_UNIT,
    checked_page,
    hex_rgb,
    make_quote_store,
    make_recorded_store,
    open_view,
    pixel,
    quote_span,
    serve,
    spans,
)

from rnnviz.analysis.features import compute_feature
from rnnviz.model.sampling import sample
from rnnviz.views.export import PALETTES, colour_scale

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parent.parent
expect = sync_api.expect




@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Two synthetic stores (no checkpoint)."""
    base = tmp_path_factory.mktemp("e2e")
    make_quote_store(base / "quotes")
    make_quote_store(base / "short", length=500)
    yield from serve([base / "quotes", base / "short"])


@pytest.fixture(scope="module")
def served_recorded(tmp_path_factory):
    yield from serve([make_recorded_store(tmp_path_factory.mktemp("e2e-rec"), "rec")])


@pytest.fixture
def page(browser, request):
    yield from checked_page(browser, request, 1500, 1100)






def check_span(page, store, unit: str, start: int, i: int):
    """Span i shows character start+i with the export's colour class and the stored value in its title."""
    layer, kind, index = unit.split(":")
    v = store.unit(unit)[start + i]
    scale = colour_scale(kind, store.stats.loc[unit] if kind == "c" else None)
    el = spans(page).nth(i)
    cls = el.get_attribute("class").split()
    assert cls[0] == f"{scale.name[0]}{scale.bins(v)}"
    title = el.get_attribute("title").split("\n")
    assert title[0] == f"{unit} = {v!s}" and float(title[0].split(" = ")[1]) == v


def decode_png(png: bytes) -> np.ndarray:
    """A non-interlaced 8-bit RGB(A) PNG (what Chromium writes) -> (H, W, C) uint8."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(png):
        n = int.from_bytes(png[pos : pos + 4], "big")
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            w, h = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big")
            depth, colour, interlace = body[8], body[9], body[12]
            assert depth == 8 and colour in (2, 6) and interlace == 0
            ch = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, 1 + w * ch)
    out = np.zeros((h, w * ch), dtype=np.int32)
    for y in range(h):  # undo the per-row filters (PNG spec, section 9)
        f, row = raw[y, 0], raw[y, 1:].astype(np.int32)
        up = out[y - 1] if y else np.zeros(w * ch, np.int32)
        if f in (0, 2):
            out[y] = (row + (up if f == 2 else 0)) % 256
            continue
        cur = np.zeros(w * ch, np.int32)
        for x in range(w * ch):
            left = cur[x - ch] if x >= ch else 0
            ul = up[x - ch] if x >= ch else 0
            if f == 1:
                pred = left
            elif f == 3:
                pred = (left + up[x]) // 2
            else:
                p = left + up[x] - ul
                pa, pb, pc = abs(p - left), abs(p - up[x]), abs(p - ul)
                pred = left if pa <= pb and pa <= pc else (up[x] if pb <= pc else ul)
            cur[x] = (row[x] + pred) % 256
        out[y] = cur
    return out.reshape(h, w, ch).astype(np.uint8)






def test_load_colours_and_hover(page, served):
    base, stores = served
    s = stores[0]
    open_view(page, base, "?store=quotes&unit=1:c:3", "0:2000")
    expect(spans(page)).to_have_count(2000)
    assert page.evaluate("location.search") == "?store=quotes&unit=1%3Ac%3A3&start=0"
    expect(page.locator("#window-label")).to_have_text("characters 0–2,000 of 3,000")
    assert spans(page).all_inner_texts()[:10] == list("He said \"h")
    for i in (0, 8, 9, 19, 1999):
        check_span(page, s, QUOTE_UNIT, 0, i)
    # Pixels: a space inside a quote is the palette's strongest red, one outside the strongest blue.
    a, b = quote_span(s.text, 0)
    inside = a + s.text[a:b].index(" ")
    outside = s.text.index(" ")
    pal = PALETTES["diverging"]
    assert pixel(spans(page).nth(inside)) == hex_rgb(pal[-1])
    assert pixel(spans(page).nth(outside)) == hex_rgb(pal[0])
    spans(page).nth(10).hover()
    expect(page.locator("#hover")).to_have_text(spans(page).nth(10).get_attribute("title"))


def test_pick_a_unit_and_compare(page, served):
    base, stores = served
    open_view(page, base, "?store=quotes&unit=1:c:3&range=max", "0:2000")
    page.locator("#kind-pick").click()
    page.get_by_role("option", name="h", exact=True).click()
    expect(page.locator("#legend")).to_contain_text("1:h:3 hidden state · layer 1 · unit 3")
    page.locator("#index-pick").fill("5")
    page.locator("#index-pick").press("Enter")
    expect(page.locator("#legend")).to_contain_text("1:h:5 hidden state")
    expect(spans(page).nth(0)).to_have_attribute("title", re.compile("^1:h:5 = "))
    for i in (0, 9, 30):
        check_span(page, stores[0], NEG_UNIT, 0, i)
    page.locator("#unit-next").click()
    expect(page.locator("#index-pick")).to_have_value("6")
    page.locator("#unit-prev").click()
    expect(page.locator("#index-pick")).to_have_value("5")
    page.locator("#cmp-input").fill("1:c:3")
    page.locator("#cmp-input").press("Enter")
    expect(spans(page).nth(9)).to_have_attribute("title", re.compile("^1:h:5 = .*\n1:c:3 = 1.0\n"))
    assert "od32" in spans(page).nth(9).get_attribute("class").split()  # the compare bar: its highest step
    assert "unit=1%3Ah%3A5" in page.url and "cmp=1%3Ac%3A3" in page.url


def test_page_jump_and_search(page, served):
    base, stores = served
    text = stores[0].text
    open_view(page, base, "?store=quotes&unit=1:c:3", "0:2000")
    page.locator("#page-next").click()
    expect(page.locator("#text")).to_have_attribute("data-drawn", "1000:3000")  # the last full window
    expect(spans(page)).to_have_count(2000)
    assert spans(page).nth(0).get_attribute("title").split("\n")[1].startswith("#1000 ")
    check_span(page, stores[0], QUOTE_UNIT, 1000, 17)
    page.locator("#page-prev").click()
    expect(page.locator("#text")).to_have_attribute("data-drawn", "0:2000")
    page.locator("#jump-input").fill("2500")
    page.locator("#jump-go").click()
    expect(page.locator("#text")).to_have_attribute("data-drawn", "1000:3000")
    expect(page.locator("#text > span.hl")).to_have_count(1)
    assert "start=1000" in page.url
    page.locator("#find-input").fill("why")
    page.locator("#find-go").click()
    first = text.index("why", 2500)
    expect(page.locator("#text > span.hl")).to_have_text(["w", "h", "y"])
    assert page.locator("#text > span.hl").first.get_attribute("title").split("\n")[1].startswith(f"#{first} ")
    page.locator("#find-input").fill("no such words")
    page.locator("#find-go").click()
    expect(page.locator("#status")).to_have_text("'no such words' does not occur in quotes")


def test_hypothesis_ranked_units_and_feature_track(page, served):
    base, stores = served
    s = stores[0]
    open_view(page, base, "?store=quotes&unit=0:h:0&range=max", "0:2000")
    page.locator("#regex-input").fill('"[^"]*"')
    page.locator("#regex-input").press("Enter")
    quoted = compute_feature('re:"[^"]*"', s.text)
    # The feature bar under each character: darkest inside a match, none outside.
    expect(spans(page).nth(9)).to_have_class(re.compile(r"\bf4\b"))
    classes = spans(page).evaluate_all("els => els.map(e => e.className)")
    assert [("f4" in c.split()) for c in classes] == [bool(x) for x in quoted[:2000]]
    assert "feature=re%3A%22%5B%5E%22%5D%2A%22" in page.url
    row = page.locator("#rank-table tbody tr", has_text=NEG_UNIT)
    expect(row).to_have_count(1)
    row.click()
    expect(page.locator("#index-pick")).to_have_value("5")
    expect(page.locator("#legend")).to_contain_text(f"{NEG_UNIT} hidden state")
    check_span(page, s, NEG_UNIT, 0, 12)


def test_select_a_range_finds_units_and_matches(page, served):
    base, stores = served
    s = stores[0]
    open_view(page, base, "?store=quotes&unit=0:h:0", "0:2000")
    a, b = quote_span(s.text, 1)
    page.get_by_label("select to find").check()  # a selection is searched for only in this mode
    first, last = spans(page).nth(a).bounding_box(), spans(page).nth(b - 1).bounding_box()
    page.mouse.move(first["x"] + 1, first["y"] + first["height"] / 2)
    page.mouse.down()
    page.mouse.move(last["x"] + last["width"] / 2, last["y"] + last["height"] / 2, steps=5)
    page.mouse.move(last["x"] + last["width"] - 1, last["y"] + last["height"] / 2)
    page.mouse.up()
    expect(page.locator("#sel-a")).to_have_value(str(a))
    expect(page.locator("#sel-b")).to_have_value(str(b))
    units = page.locator("#sel-tables table").first.locator("tbody tr")
    expect(units.first).to_be_visible()
    assert sorted(units.locator("td:nth-child(2)").all_inner_texts()[:2]) == [QUOTE_UNIT, NEG_UNIT]
    matches = page.locator("#match-table tbody tr")
    expect(matches).to_have_count(20)
    ranges = matches.locator("td:nth-child(2)").all_inner_texts()
    x, y = (int(t.replace(",", "")) for t in ranges[0].split("–"))
    assert s.text[x] == '"' and s.text[y] == '"' and (x, y) != (a, b)
    matches.first.click()
    expect(page.locator("#text > span.hl")).to_have_count(y - x)
    units.filter(has_text=QUOTE_UNIT).click()
    expect(page.locator("#legend")).to_contain_text(f"{QUOTE_UNIT} cell state")


def test_link_reopens_the_view(page, served):
    base, stores = served
    s = stores[1]
    # start=100 on a 500-character store: the window is the whole text (windows are full when they can be).
    open_view(page, base, "?store=short&unit=0:f:2&cmp=1:c:3&start=100&feature=in_quote&range=max", "0:500")
    expect(page.locator("#store-pick")).to_contain_text("short · lstm 2×8 · 500 chars")
    expect(page.locator("#kind-pick")).to_contain_text("f")
    expect(page.locator("#index-pick")).to_have_value("2")
    expect(page.locator("#cmp-input")).to_have_value("1:c:3")
    expect(page.locator("#window-label")).to_have_text("characters 0–500 of 500")
    check_span(page, s, "0:f:2", 0, 100)
    check_span(page, s, "0:f:2", 0, 499)
    inq = compute_feature("in_quote", s.text)
    classes = spans(page).evaluate_all("els => els.map(e => e.className)")
    assert [("f4" in c.split()) for c in classes] == [bool(x) for x in inq[0:500]]
    # The store parameter cannot name a path: an unknown store falls back to the first one given.
    open_view(page, base, "?store=../../etc&unit=1:c:3", "0:2000")
    expect(page.locator("#store-pick")).to_contain_text("quotes")


def test_plots_panel(page, served):
    base, _ = served
    open_view(page, base, "?store=quotes&unit=1:c:3&feature=in_quote", "0:2000")
    page.get_by_text("Plots", exact=True).click()
    expect(page.locator("#hist .legendtext")).to_have_count(2)
    assert page.locator("#hist .legendtext").first.text_content().startswith("in_quote = 0 (n=")
    expect(page.locator("#sat .gtitle")).to_have_text("quotes: gate saturation")
    expect(page.locator("#sat .scatterlayer .point").first).to_be_visible()
    page.get_by_text("Compute gradient flow").click()
    expect(page.locator("#status")).to_have_text("checkpoint not reachable for: quotes, short")
    expect(page.locator("#trace .scatterlayer .trace")).to_have_count(3)  # the unit, the feature, the loss


def test_sampling_with_a_clamped_unit_and_gradient_flow(page, served_recorded):
    base, stores = served_recorded
    open_view(page, base, "?unit=1:c:2", "0:600")
    page.get_by_text("Sample", exact=True).click()
    page.locator("#smp-prime").fill("He ")
    page.locator("#smp-length").fill("60")
    page.locator("#smp-seed").fill("4")
    page.locator("#smp-value").fill("3")
    page.locator("#smp-value").press("Enter")
    page.get_by_role("button", name="Generate").click()
    out = page.locator("#smp-out pre")
    expect(out).to_have_count(2)
    model = stores.model(0)
    plain = sample(model, 60, prime="He ", temperature=0.8, seed=4)
    clamped = sample(model, 60, prime="He ", temperature=0.8, seed=4, clamp={"1:c:2": 3.0})
    assert out.all_text_contents() == ["He " + plain, "He " + clamped]
    expect(page.locator("#smp-out b").nth(1)).to_have_text("1:c:2 clamped to 3")
    page.get_by_text("Plots", exact=True).click()
    page.get_by_text("Compute gradient flow").click()
    legend = page.locator("#gradflow .legendtext")
    expect(legend).to_have_count(2)
    assert [t.text_content() for t in legend.all()] == ["rec (lstm) · layer 0", "rec (lstm) · layer 1"]


def test_emergence_tab_says_there_are_no_snapshots_before_compute(page, served_recorded):
    # Issue 26: a store whose run kept no snapshots said so only after "Compute" was pressed.
    base, stores = served_recorded
    open_view(page, base, "?unit=1:c:2", "0:600")
    page.get_by_text("Emergence", exact=True).click()
    run = stores[0].checkpoint_path.parent
    expect(page.locator("#emg-run")).to_have_text(
        f"{run.name} kept no weight snapshots: train with --snapshot-every N to see when each cell appeared")
    expect(page.locator("#emg-go")).to_be_disabled()
    expect(page.locator("#emg-msg")).to_have_text("")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gunicorn_serves_the_app_from_env(served, tmp_path):
    _, stores = served
    gunicorn = Path(sys.executable).with_name("gunicorn")
    if not gunicorn.exists():
        pytest.skip("gunicorn is not installed")
    port = free_port()
    env = {**os.environ, "RNNVIZ_STORES": ":".join(str(s.path) for s in stores.stores)}
    proc = subprocess.Popen([str(gunicorn), "--bind", f"127.0.0.1:{port}", "--workers", "1", "apps.dashboard:server"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    page = r.read().decode()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stderr.read().decode()[-2000:]) from None
                time.sleep(0.3)
        assert "<title>rnnviz · quotes, short</title>" in page
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_dash-layout", timeout=5) as r:
            assert b'"store-pick"' in r.read()
    finally:
        proc.terminate()
        proc.wait(10)

