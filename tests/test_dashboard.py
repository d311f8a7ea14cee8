"""The dashboard without a browser: view state and URL, callbacks called as plain functions, select-to-find,
the CLI `serve` command and the deployable app module. Browser tests are in test_dashboard_e2e.py."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import NEG_UNIT, QUOTE_UNIT, make_quote_store, make_recorded_store, quote_span

from rnnviz.analysis.features import FEATURES, compute_feature
from rnnviz.cli import main as cli
from rnnviz.errors import RnnvizError
from rnnviz.model.checkpoint import load_checkpoint
from rnnviz.model.sampling import sample
from rnnviz.model.vocab import Vocab
from rnnviz.store.reader import spaced_blocks
from rnnviz.views import display
from rnnviz.views.colours import ROBUST_Q, ColourScale, colour_scale, percentiles
from rnnviz.views.dashboard import create_app, state, textview
from rnnviz.views.dashboard import transitions as tr
from rnnviz.views.dashboard.app import is_loopback
from rnnviz.views.dashboard.callbacks import find as cb_find
from rnnviz.views.dashboard.callbacks import panels as cb_panels
from rnnviz.views.dashboard.callbacks import pattern as cb_pattern
from rnnviz.views.dashboard.callbacks import text as cb_text
from rnnviz.views.dashboard.callbacks import view as cb_view
from rnnviz.views.dashboard.state import View
from rnnviz.views.dashboard.stores import StoreSet

ROOT = Path(__file__).resolve().parent.parent






@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> StoreSet:
    base = tmp_path_factory.mktemp("dash")
    make_quote_store(base / "quotes")
    make_quote_store(base / "short", length=500)
    return StoreSet([base / "quotes", base / "short"], regex_timeout=0.5)


def view(stores, **kw) -> View:
    return View.clean({"unit": QUOTE_UNIT, **kw}, stores)


# --- view state and the URL ---


def test_query_round_trip(stores):
    v = view(stores, cmp=NEG_UNIT, start=234, feature="in_quote")
    q = state.to_query(v, stores)
    assert q == "?store=quotes&unit=1%3Ac%3A3&cmp=1%3Ah%3A5&start=234&feature=in_quote"
    assert state.from_query(q, stores) == v
    assert v.range == "robust" and state.from_query(q + "&range=robust", stores) == v  # the default: not in the URL
    assert state.to_query(v.replace(range="max"), stores) == q + "&range=max"
    assert state.from_query("?store=1&unit=0:f:2&start=10", stores) == View(store=1, unit="0:f:2", start=0)
    full = view(stores, range="minmax", tab="pattern", sel=[10, 20], theta=0.75, cells=[QUOTE_UNIT, NEG_UNIT])
    q = state.to_query(full, stores)
    assert q == ("?store=quotes&unit=1%3Ac%3A3&start=0&range=minmax&tab=pattern&sel=10-20&theta=0.75"
                 "&cells=1%3Ac%3A3%2C1%3Ah%3A5")
    assert state.from_query(q, stores) == full
    assert full.to_dict()["sel"] == (10, 20) and View.clean(full.to_dict(), stores) == full


def test_query_cannot_reach_other_stores_or_bad_values(stores):
    # A path, an unknown name, an index out of range: all fall back to the first store given at start-up.
    for bad in ("../../etc", "/tmp/quotes", "2", "-1", "quotes/../short"):
        assert state.from_query(f"?store={bad}", stores).store == 0
    v = state.from_query("?unit=9:c:0&cmp=1:c:3&start=-5&feature=no_such_thing", stores)
    assert v == View(unit="0:h:0", cmp=QUOTE_UNIT)
    assert state.from_query("?start=999999", stores).start == stores[0].length - state.WINDOW  # a full window
    assert state.from_query("?feature=re:" + "x" * 1001, stores).feature == ""
    assert state.from_query("?unit=1:c:3&cmp=1:c:3", stores).cmp == ""
    bad = state.from_query("?sel=20-10&theta=nan&range=rainbow&tab=evil&cells=" + ",".join(["1:c:3"] * 100), stores)
    assert (bad.sel, bad.theta, bad.range, bad.tab, bad.cells) == (None, 0.5, "robust", "hyp", (QUOTE_UNIT,))
    for theta in ("-1", "1e400", "inf", "x"):
        assert state.from_query(f"?theta={theta}", stores).theta == 0.5  # the default


def test_store_names_are_unique(tmp_path):
    for sub in ("a/run", "b/run"):
        make_quote_store(tmp_path / sub, length=100)
    s = StoreSet([tmp_path / "a/run", tmp_path / "b/run"])
    assert s.names == ["run", "run-2"]
    assert (s.resolve("run-2"), s.resolve("1"), s.resolve("../b/run"), s.resolve(None)) == (1, 1, None, None)
    with pytest.raises(RnnvizError, match="no such store"):
        StoreSet([tmp_path / "missing"])
    with pytest.raises(RnnvizError, match="at least one store"):
        StoreSet([])


# --- transitions: every control that changes the view, as a pure function ---


def nav(stores, v, trigger, value=None, **kw):
    return tr.apply(stores, v, trigger, value, tr.Inputs(**kw))


def test_load_and_pickers(stores):
    v, msg = nav(stores, None, None, "?store=quotes&unit=1:c:3&start=1000")
    assert (v.unit, v.start, msg) == (QUOTE_UNIT, 1000, "")
    assert nav(stores, v, "layer-pick", 0)[0].unit == "0:c:3"
    assert nav(stores, v, "kind-pick", "f")[0].unit == "1:f:3"
    assert nav(stores, v, "index-pick", 7)[0].unit == "1:c:7"
    assert nav(stores, v, "index-pick", 99) == (v, "no unit '1:c:99' in quotes: indices run from 0 to 7")
    assert nav(stores, v, "index-pick", None) == (v, "a unit index is a whole number from 0 to 7")
    assert nav(stores, v, "index-pick", "1e400")[1] == "a unit index is a whole number from 0 to 7"
    assert nav(stores, v, "unit-next")[0].unit == "1:c:4"
    assert nav(stores, view(stores, unit="0:h:0"), "unit-prev")[0].unit == "1:o:7"  # wraps
    assert nav(stores, v, "store-pick", 1)[0] == v.replace(store=1, start=0)  # unit kept, start clipped
    c = cb_view.controls(stores, v)
    assert (c["layer"], c["kind"], c["index"], c["index_max"], c["query"]) == (
        1, "c", 3, 7, "?store=quotes&unit=1%3Ac%3A3&start=1000")


def test_a_refused_index_is_replaced_in_the_box(stores):
    v = view(stores)
    new, _ = nav(stores, v, "index-pick", 99)
    out = cb_view.changed_controls(stores, v.to_dict(), new, "index-pick")
    assert out["index"] == 3  # written back even though the view did not change
    kind, _ = nav(stores, v, "kind-pick", "h")
    assert cb_view.changed_controls(stores, v.to_dict(), kind, "kind-pick")["index"] == 3


def test_link_problems_are_said(stores):
    assert nav(stores, None, "url", "?feature=nonsense")[1] == (
        "no feature 'nonsense': choose one of " + ", ".join(FEATURES) + ", or re:PATTERN (showing none)")
    assert nav(stores, None, "url", "?unit=7:c:1")[1] == "no unit '7:c:1' in quotes: showing 0:h:0"
    assert nav(stores, None, "url", "?store=etc")[1].startswith("no store 'etc' here")
    assert nav(stores, None, "url", "?range=rainbow")[1] == \
        "no colour range 'rainbow': choose one of max, p99, minmax, robust"
    assert nav(stores, None, "url", "?sel=5-5")[1] == "the selection '5-5' is not a range A-B inside the text (0..3000)"
    assert nav(stores, None, "url", "?theta=nan")[1] == "θ must be a finite number >= 0 (σ), got 'nan'"
    assert nav(stores, None, "url", "?theta=1e400")[1] == "θ must be a finite number >= 0 (σ), got '1e400'"
    assert nav(stores, None, "url", "?cells=1:c:3,9:z:9")[1].startswith("cells: give 1 to 8 units of quotes")


def test_compare_unit(stores):
    v = view(stores)
    assert nav(stores, v, "cmp-input", " 1:h:5 ") == (v.replace(cmp=NEG_UNIT), "")
    bad, msg = nav(stores, v, "cmp-input", "<img src=x>")
    assert bad.cmp == "" and msg == "no unit '<img src=x>' in quotes: give LAYER:KIND:INDEX, e.g. 1:o:7"
    assert nav(stores, v.replace(cmp=NEG_UNIT), "cmp-input", "")[0].cmp == ""


def test_pages_by_full_windows_and_jump(stores):
    T = stores[0].length
    v = view(stores)
    nxt, _ = nav(stores, v, "page-next")
    assert nxt.start == T - 2000  # the last full window, not a window of 1,000
    assert nav(stores, nxt, "page-next") == (nxt, "this is the end of the text")
    assert nav(stores, nxt, "page-prev")[0].start == 0
    assert nav(stores, v, "page-prev") == (v, "this is the start of the text")
    j, _ = nav(stores, v, "jump-go", jump=2500)
    assert (j.start, j.hl) == (1000, (2500, 2501))
    near, _ = nav(stores, v, "jump-go", jump=700)  # on screen: the window stays
    assert (near.start, near.hl) == (0, (700, 701))
    assert nav(stores, v, "jump-go", jump=10**9)[0].hl == (T - 1, T)
    assert nav(stores, v, "jump-go", jump=None) == (v, "type a character position to go to")


def test_find(stores):
    text = stores[0].text
    v = view(stores)
    first = text.index("why")
    f1, msg = nav(stores, v, "find-go", find="why")
    assert (f1.hl, f1.start, msg) == ((first, first + 3), 0, "")
    second = text.index("why", first + 1)
    assert nav(stores, f1, "find-go", find="why")[0].hl == (second, second + 3)
    last = text.rindex("why")
    far = v.replace(start=1000, hl=(last, last + 3))
    wrapped, msg = nav(stores, far, "find-go", find="why")
    assert (wrapped.hl, msg) == ((first, first + 3), "search wrapped around to the top")
    late = text.index("why", 1990)  # past the first window: the window moves to show it with context
    hit, _ = nav(stores, view(stores, hl=[1989, 1990]), "find-go", find="why")
    assert (hit.hl, hit.start) == ((late, late + 3), min(late - 200, 1000))
    assert nav(stores, v, "find-go", find="zebra") == (v, "'zebra' does not occur in quotes")
    assert nav(stores, v, "find-input", find="") == (v, "type some text to find")


def test_feature_and_regex(stores):
    v = view(stores)
    assert nav(stores, v, "feature-pick", "in_quote")[0].feature == "in_quote"
    assert nav(stores, v, "rank-go", regex='"[^"]*"', feature_pick="column")[0].feature == 're:"[^"]*"'
    assert nav(stores, v, "rank-go", regex="", feature_pick="column")[0].feature == "column"
    assert nav(stores, v, "regex-input", regex="(unclosed") == (
        v, "bad regular expression '(unclosed': missing ), unterminated subpattern at position 0")
    too_long = nav(stores, v, "regex-input", regex="x" * 1001)
    assert too_long == (v, "the regular expression is 1001 characters; the limit is 1000")


def test_catastrophic_regex_is_stopped(stores):
    # (a|aa)+$ backtracks exponentially on the 28 a's before "!" (the regex package answers (a+)+$ at
    # once, but not this): the 0.5 s limit stops it.
    v, msg = nav(stores, view(stores), "regex-input", regex="(a|aa)+$")
    assert v.feature == ""
    assert msg == "the regular expression '(a|aa)+$' ran longer than 0.5 s and was stopped; make it simpler"
    v, msg = nav(stores, None, "url", "?feature=re:(a%7Caa)%2B$")  # the same pattern from a link
    assert v.feature == "" and "ran longer than 0.5 s" in msg


def test_table_rows_range_tab_selection_cells_theta(stores):
    v = view(stores, unit="0:h:0")
    assert nav(stores, v, "unit-row", "rank/1:c:3")[0].unit == QUOTE_UNIT
    assert nav(stores, v, "unit-row", "thr/../../1:c:3") == (v, "no unit '../../1:c:3' in quotes")
    # A ranked unit opens where it fires most: its lowest value when it codes by going down (the first quote,
    # before the window), outlined; for a cell of select-to-find, inside the selection.
    s = stores[0]
    low = int(np.argmin(s.unit(NEG_UNIT).astype(np.float32)))
    u, msg = nav(stores, v.replace(start=1000), "unit-row", f"rank/{NEG_UNIT}/-")
    assert (u.unit, u.hl, u.start, msg) == (NEG_UNIT, (low, low + 1), max(0, low - tr.CONTEXT), "")
    a, b = quote_span(s.text, 20)
    high = a + int(np.argmax(s.unit(QUOTE_UNIT)[a:b].astype(np.float32)))
    u, _ = nav(stores, v.replace(sel=(a, b)), "unit-row", f"sel/{QUOTE_UNIT}/+")
    assert u.hl == (high, high + 1) and u.start == 0 and a <= high < b  # in the window: it stays
    m, _ = nav(stores, v, "match-row", "2400-2410")
    assert (m.hl, m.start) == ((2400, 2410), 1000)
    assert nav(stores, v, "range-pick", "p99")[0].range == "p99"
    assert nav(stores, v, "range-pick", "rainbow")[0] == v
    assert nav(stores, v, "tabs", "pattern")[0].tab == "pattern"
    s, _ = nav(stores, v.replace(cells=(NEG_UNIT,)), "sel-view", {"a": 10, "b": 20, "theta": 0.5})
    assert (s.sel, s.theta, s.cells) == ((10, 20), 0.5, ())
    assert nav(stores, v, "sel-view", {"a": 10, "b": 99999})[0] == v
    c, _ = nav(stores, v, "pat-cells", " 1:c:3 , 1:h:5,1:c:3")
    assert c.cells == (QUOTE_UNIT, NEG_UNIT)
    assert nav(stores, v, "pat-cells", "") == (v, "cells: give 1 to 8 units, e.g. 1:o:7")
    assert nav(stores, v, "pat-cells", ",".join(["1:c:3"] * 100)) == (v, "cells: at most 8 at once, got 100")
    assert nav(stores, v, "pat-cells", "1:c:3, 5:q:1") == (v, "no unit '5:q:1' in quotes: give LAYER:KIND:INDEX")
    assert nav(stores, v, "pat-thr", 0.25)[0].theta == 0.25
    for bad in (float("nan"), -1, "1e400", None):
        assert nav(stores, v, "pat-thr", bad)[0] == v and nav(stores, v, "pat-thr", bad)[1].startswith("θ must be")


# --- the text window ---


def test_render_window_values_classes_and_tooltips(stores):
    s = stores[0]
    v = view(stores, start=1000, cmp=NEG_UNIT, feature="in_quote", range="max")
    data, label, _ = cb_text.render_window(stores, v, 2000)
    fig = cb_text.trace(stores, v, 2000)
    assert (data["start"], data["stop"], label) == (1000, 3000, "characters 1,000–3,000 of 3,000")
    text = s.text[1000:3000]
    assert data["chars"] == [display.visible(c) for c in text]
    assert "".join(data["chars"]).replace("\u21b5", "") == text  # the text itself, not markup
    main = s.unit(QUOTE_UNIT)[1000:3000]
    other = s.unit(NEG_UNIT)[1000:3000]
    bins = colour_scale("c", s.stats.loc[QUOTE_UNIT]).bins(main)
    obins = colour_scale("h").bins(other)
    inq = compute_feature("in_quote", s.text)[1000:3000]
    ids, probs = s.topk
    for i in (0, 7, 333, 1999):
        t = 1000 + i
        cls = data["cls"][i].split()
        assert cls[:2] == [f"d{bins[i]}", f"od{obins[i]}"]
        assert ("f4" in cls) == bool(inq[i])
        tip = data["tips"][i].split("\n")
        assert tip[0] == f"{QUOTE_UNIT} = {main[i]!s}" and float(tip[0].split(" = ")[1]) == main[i]
        assert tip[1] == f"{NEG_UNIT} = {other[i]!s}"
        assert tip[2] == f"in_quote = {inq[i]:.3g}"
        assert tip[3] == f"#{t} {display.shown(s.text[t])}  loss {-s.logprob[t - 1]:.3g} nats"
        guess = [f"{display.shown(s.vocab.chars[ids[t, j]])} {round(float(probs[t, j]) * 100)}%" for j in range(3)]
        assert tip[4] == "next: " + "  ".join(guess)
    assert [tr["name"] for tr in fig["data"]] == [QUOTE_UNIT, NEG_UNIT, "in_quote", "loss"]
    assert [(tr["xaxis"], tr["yaxis"]) for tr in fig["data"]] == [("x", "y"), ("x", "y"), ("x2", "y2"), ("x3", "y3")]
    assert np.array_equal(fig["data"][0]["y"], main.astype(np.float32))
    assert np.array_equal(fig["data"][3]["y"], -s.logprob[999:2999])
    assert fig["data"][0]["x"][0] == 1000 and fig["data"][0]["customdata"][:3] == [display.shown(c) for c in text[:3]]


def test_tooltip_guesses_leave_out_ids_outside_the_vocabulary():
    # A damaged store: an id past the vocabulary is left out, a probability outside [0, 1] shown as it is.
    class Fake:
        vocab = Vocab.from_text("ab\n")
        topk = (np.array([[0, 1, 2], [7, 0, 1], [2, 9, 0]], np.uint16),
                np.array([[0.5, 0.25, 0.125], [0.9, 0.05, 0.01], [1.5, 0.2, -0.03]], np.float16))

    n = [display.shown(c) for c in Fake.vocab.chars]
    assert textview._guesses(Fake(), 0, 3) == [
        f"next: {n[0]} 50%  {n[1]} 25%  {n[2]} 12%", f"next: {n[0]} 5%  {n[1]} 1%", f"next: {n[2]} 150%  {n[0]} -3%"]


def test_render_window_first_char_has_no_loss_and_highlight(stores):
    data, *_ = cb_text.render_window(stores, view(stores, hl=[5, 8]), 2000)
    assert data["tips"][0].split("\n")[1] == "#0 H"
    assert [i for i, c in enumerate(data["cls"]) if "hl" in c.split()] == [5, 6, 7]
    assert data["hl"] == [5, 8]
    later, *_ = cb_text.render_window(stores, view(stores, start=1000, hl=[990, 1003]), 2000)
    assert later["hl"] == [0, 3]  # clipped to the window
    assert cb_text.render_window(stores, view(stores, hl=[2500, 2501]), 2000)[0]["hl"] is None


def test_colour_range_modes(stores):
    s = stores[0]
    unit = "0:h:0"
    v = s.unit(unit)[:2000].astype(np.float64)
    lo, hi = float(s.stats.loc[unit, "min"]), float(s.stats.loc[unit, "max"])
    p99 = float(np.percentile(np.abs(s.unit(unit).astype(np.float64)), 99))
    for mode, want in [("max", (v + 1) / 2), ("p99", (np.clip(v / p99, -1, 1) + 1) / 2),
                       ("minmax", np.where(v < 0, (v - lo) / -lo / 2, 0.5 + v / hi / 2))]:
        data, _, leg = cb_text.render_window(stores, view(stores, unit=unit, range=mode), 2000)
        assert [c.split()[0] for c in data["cls"]] == [f"d{int(b)}" for b in np.rint(want * 32)]
    leg = cb_text.render_window(stores, view(stores, unit=unit, range="minmax"), 2000)[2]
    assert f"colour: blue = {lo:.3g}, white = 0, red = {hi:.3g} (per-unit [min, max])" in leg.children[3]
    leg = cb_text.render_window(stores, view(stores, unit=unit), 2000)[2]  # the default range: robust
    rlo, rhi = percentiles(s, unit, ROBUST_Q)
    assert (f"colour: blue = {rlo:.3g}, white = 0, red = {rhi:.3g} (per-unit 1st-99th percentile; beyond: the end "
            "colours)") in leg.children[3]
    leg = textview.legend(s, unit, ColourScale("diverging", 0.2, 0.8), "robust")  # a range that misses 0
    assert "blue = 0.2, white = 0.5 (the middle of the range), red = 0.8" in leg.children[3]


def test_render_window_reads_only_the_window(stores, monkeypatch):
    s = stores[0]
    calls = []
    real = type(s).window

    def spy(self, start, stop, units=None):
        calls.append((start, stop, units))
        return real(self, start, stop, units)

    monkeypatch.setattr(type(s), "window", spy)
    monkeypatch.setattr(type(s), "unit", lambda *a: pytest.fail("read a whole unit"))
    cb_text.render_window(stores, view(stores, start=500, cmp=NEG_UNIT, range="max"), 2000)
    cb_text.trace(stores, view(stores, start=500, cmp=NEG_UNIT, range="max"), 2000)
    assert len(calls) == 2 and all((a, b) == (500, 2500) and u == [QUOTE_UNIT, NEG_UNIT] for a, b, u in calls)


def test_markup_in_the_text_stays_text(stores):
    # The window goes to the browser as data and is drawn with textContent: markup is shown, never parsed.
    i = stores[0].text.index("<script>")
    data, *_ = cb_text.render_window(stores, view(stores, start=i), 2000)
    assert "".join(data["chars"][:25]) == "<script>alert(1)</script>"
    js = (Path(create_app.__code__.co_filename).parent / "assets" / "rnnviz.js").read_text()
    assert "textContent" in js and "innerHTML" not in js


def test_legend_and_visible_characters(stores):
    assert display.visible("\n") == "\u21b5\n" and display.visible("\x07") == "\u2407"
    assert display.visible("\r", "\n") == "\u21b5" and display.visible("\r") == "\u21b5\n"  # never U+240D
    assert display.shown(" ") == "\u2423" and display.visible_line("a\nb c") == "a\u21b5b\u2423c"
    leg = cb_text.render_window(stores, view(stores, range="max"), 2000)[2]
    assert leg.children[0].children == QUOTE_UNIT
    assert "cell state · layer 1 · unit 3" in leg.children[1]
    assert leg.children[3].startswith(" colour: blue = -1, white = 0, red = 1 (±max|v|) · whole store: mean ")


# --- select to find ---




def test_select_range_callback(stores):
    s = stores[0]
    a, b = quote_span(s.text, 3)
    tables, matches, msg = cb_find.select_range(stores, view(stores), a, b + 1, 1.0)  # both quote marks
    assert msg == ""
    rows = tables.children[1].children[1].children
    # The two quote cells first; noise cells that happen to be on over 3 characters rank far below.
    assert {r.id["index"] for r in rows[:2]} == {f"sel/{QUOTE_UNIT}/+", f"sel/{NEG_UNIT}/-"}  # unit and sign
    head, table, columns = matches.children
    assert columns.children.startswith("#: our rank · range: its rows, from–to · score: ")
    match_rows = table.children[1].children
    assert head.children.endswith(f"{len(match_rows)} strong, 0 weak") and len(match_rows) == 20
    x, y = map(int, match_rows[0].id["index"].split("-"))
    assert s.text[x] == '"' and s.text[y] == '"' and y - x == b - a
    assert cb_find.select_range(stores, view(stores), "x", 5)[2].startswith("select some text")
    assert cb_find.select_range(stores, view(stores), 50, 40)[2].startswith("select a range inside the text")
    assert cb_find.select_range(stores, view(stores), 40, 40)[2].startswith("the selection 40..40 is empty")
    assert cb_find.select_range(stores, view(stores), a, b, float("nan"))[2].startswith("θ must be a finite")
    # θ = 50 σ leaves only the two-state cells (on past their own split): still the quote cells here ...
    assert {r.id["index"] for r in cb_find.select_range(stores, view(stores), a, b + 1, 50)[0].children[1]
            .children[1].children} == {f"sel/{QUOTE_UNIT}/+", f"sel/{NEG_UNIT}/-"}
    # ... and a selection across the opening quote is marked by none.
    assert cb_find.select_range(stores, view(stores), a - 3, a + 3, 50)[2].startswith("no cell is on inside")


def test_pattern_view_functions(stores):
    s = stores[0]
    a, b = quote_span(s.text, 3)
    v = view(stores, sel=[a, b + 1], tab="pattern")
    cells, signs, msg = cb_pattern.cell_set(stores, v)
    assert set(cells[:2]) == {QUOTE_UNIT, NEG_UNIT} and msg == ""
    assert dict(zip(cells, signs, strict=True))[NEG_UNIT] == -1
    fig = cb_pattern.pattern_figure(stores, v, 2000, cells, signs)
    names = [f"{c} ({'+' if g > 0 else '−'})" for c, g in zip(cells, signs, strict=True)]
    assert [t["name"] for t in fig["data"]] == names
    assert fig["layout"]["shapes"][0]["y0"] == 0.5 and fig["layout"]["shapes"][0]["editable"]
    assert cb_pattern.theta_from_relayout({"shapes[0].y0": 0.4567, "shapes[0].y1": 0.4567}) == 0.46
    assert cb_pattern.theta_from_relayout({"xaxis.range[0]": 3}) is None
    assert cb_pattern.theta_from_relayout({"shapes[0].y0": -0.7}) == 0  # a drag below 0 gives θ = 0
    assert cb_pattern.brushed_range({"range": {"x": [120.4, 110.2], "y": [0, 1]}}, 3000) == (111, 121)
    assert cb_pattern.brushed_range({"range": {"x": [-5, 2]}}, 3000) == (0, 3)
    for bad in (None, {}, {"range": {"x": ["a", 1]}}, {"range": {"x": [float("nan"), 3]}},
                {"range": {"x": [1.2, 1.4]}}):
        assert cb_pattern.brushed_range(bad, 3000) is None
    # The on-set follows θ: at 3 σ no cell is on, at 0.5 both quote cells are.
    mine = v.replace(cells=(QUOTE_UNIT, NEG_UNIT, "0:h:0"))
    c, sg, _ = cb_pattern.cell_set(stores, mine)
    assert cb_pattern.on_set(s, mine, c, sg) == [QUOTE_UNIT, NEG_UNIT]
    assert cb_pattern.on_set(s, mine.replace(theta=3.0), c, sg) == []
    out, msg = cb_pattern.pattern_matches(stores, mine.replace(feature="in_quote"), c, sg)
    assert msg == "" and len(out.children) == 1 + cb_pattern.HEATMAPS
    heat = out.children[1].children.figure  # each heatmap in its sideways-scrolling box
    assert heat["data"][0]["y"] == [QUOTE_UNIT, NEG_UNIT] and heat["data"][1]["y"] == ["in_quote"]
    assert cb_pattern.cell_set(stores, view(stores))[2].startswith("select some text")


# --- hypotheses, plots, sampling ---


def test_rank_units_for_a_feature_and_a_regex(stores):
    for feature in ("in_quote", 're:"[^"]*"'):
        table, msg = cb_panels.rank_units(stores, view(stores, feature=feature))
        assert msg == ""
        rows = table.children[1].children[1].children
        assert {rows[0].id["index"], rows[1].id["index"]} == {f"rank/{QUOTE_UNIT}/+", f"rank/{NEG_UNIT}/-"}
    assert cb_panels.rank_units(stores, view(stores)) == (None, "")


def test_histogram_by_feature_value(stores):
    fig = cb_panels.histogram(stores, view(stores, feature="in_quote"))
    inq = compute_feature("in_quote", stores[0].text)
    assert [tr.name for tr in fig.data] == [
        f"in_quote = 0 (n={int((inq == 0).sum()):,})", f"in_quote = 1 (n={int((inq == 1).sum()):,})"]
    assert set(np.asarray(fig.data[1].x)) == {1.0}
    assert spaced_blocks(1_000_000) == [(s, s + 10_000) for s in np.linspace(0, 990_000, 20).astype(int)]


def test_histogram_sends_counts_that_draw_the_same_bars(stores):
    # Each group as its distinct values and their counts (summed by plotly): the raw values' histogram.
    blocks = spaced_blocks(stores[0].length)
    raw = stores[0].read([QUOTE_UNIT], blocks=blocks)[:, 0]
    inq = np.concatenate([compute_feature("in_quote", stores[0].text)[a:b] for a, b in blocks])
    for feature, groups in (("", [raw]), ("in_quote", [raw[inq == 0], raw[inq == 1]])):
        fig = cb_panels.histogram(stores, view(stores, feature=feature))
        assert len(fig.data) == len(groups)
        for tr_, values in zip(fig.data, groups, strict=True):
            assert tr_.histfunc == "sum" and len(tr_.x) == len(np.unique(values)) < len(values)
            assert np.array_equal(np.repeat(np.asarray(tr_.x), np.asarray(tr_.y)), np.sort(values))


def test_gate_saturation_scatter(stores):
    fig = cb_panels.saturation(stores, 0)
    stats = stores[0].stats
    pts = {t: (x, y) for tr in fig.data if tr.text is not None for t, x, y in zip(tr.text, tr.x, tr.y, strict=True)}
    assert len(pts) == 2 * 3 * 8  # layers × (i, f, o) × H
    assert pts["1:f:2"] == (stats.loc["1:f:2", "sat_lo"], stats.loc["1:f:2", "sat_hi"])




@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    base = tmp_path_factory.mktemp("rec")
    make_recorded_store(base)
    return base


def test_sample_pair_reproduces_sample_with_and_without_clamp(recorded):
    stores = StoreSet([recorded / "store"])
    v = View.clean({"unit": "1:c:2"}, stores)
    out, msg = cb_panels.sample_pair(stores, v, "He ", 40, 0.8, 3, 5.0)
    assert msg == ""
    model = load_checkpoint(recorded / "ckpt")
    plain = sample(model, 40, prime="He ", temperature=0.8, seed=3)
    clamped = sample(model, 40, prime="He ", temperature=0.8, seed=3, clamp={"1:c:2": 5.0})
    assert [d.children[1].children for d in out] == ["He " + plain, "He " + clamped]
    assert out[1].children[0].children == "1:c:2 clamped to 5"
    too_long = "the priming text is 501 characters; the limit is 500"
    assert cb_panels.sample_pair(stores, v, "x" * 501, 40, 1, 0, 1)[1] == too_long
    not_numbers = "length, temperature, seed and clamp value must be numbers"
    assert cb_panels.sample_pair(stores, v, "", "many", 1, 0, 1)[1] == not_numbers
    assert "not in the model's vocabulary" in cb_panels.sample_pair(stores, v, "Z\u00e9", 5, 1, 0, 1)[1]


def test_sampling_and_gradflow_without_a_checkpoint(stores):
    out, msg = cb_panels.sample_pair(stores, view(stores), "", 10, 1, 0, 1)
    assert out is None and msg.startswith("quotes: the recorded checkpoint is not reachable")
    fig, msg = cb_panels.gradflow(stores)
    assert msg == "checkpoint not reachable for: quotes, short"
    assert fig.layout.annotations[0].text == "no store's checkpoint is reachable: gradient flow needs the model"


def test_gradflow_curves(recorded):
    stores = StoreSet([recorded / "store"])
    fig, msg = cb_panels.gradflow(stores, chars=120, max_lag=20)
    assert msg == "" and [tr.name for tr in fig.data] == ["store (lstm) · layer 0", "store (lstm) · layer 1"]
    assert all(len(tr.x) > 0 and np.all(np.asarray(tr.y) >= 0) for tr in fig.data)


# --- the app, the CLI and the deployable module ---


def test_create_app_serves_layout_and_callbacks(stores):
    app = create_app([s.path for s in stores.stores])
    client = app.server.test_client()
    page = client.get("/")
    assert page.status_code == 200 and b"rnnviz \xc2\xb7 quotes, short" in page.data
    assert client.get("/_dash-layout").status_code == 200
    deps = client.get("/_dash-dependencies").get_json()
    assert any("view.data" in d["output"] for d in deps)
    with pytest.raises(RnnvizError, match="no such store"):
        create_app([stores[0].path.parent / "nope"])


def test_is_loopback():
    assert all(map(is_loopback, ["127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.2", "::", "example.org"]))


def test_cli_serve(stores, monkeypatch):
    import dash

    runs = []
    monkeypatch.setattr(dash.Dash, "run", lambda self, **kw: runs.append(kw))
    paths = [str(s.path) for s in stores.stores]
    r = CliRunner().invoke(cli, ["serve", *paths])
    assert r.exit_code == 0, r.output
    assert runs == [{"host": "127.0.0.1", "port": 8050, "debug": False}]
    assert "Warning" not in r.output and "http://127.0.0.1:8050/" in r.output
    r = CliRunner().invoke(cli, ["serve", paths[0], "--host", "0.0.0.0", "--port", "9000"])
    assert r.exit_code == 0 and runs[-1] == {"host": "0.0.0.0", "port": 9000, "debug": False}
    assert "Warning: listening on 0.0.0.0, not 127.0.0.1" in r.output
    r = CliRunner().invoke(cli, ["serve", paths[0] + "-missing"])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and "no such store" in r.output
    assert "rnnviz serve stores/wp" in CliRunner().invoke(cli, ["serve", "--help"]).output


def test_freeze_gc_moves_the_startup_objects_out_of_the_collector(stores):
    # In a child process: frozen objects stay frozen for the life of a process.
    code = ("import gc, sys; from rnnviz.views.dashboard import create_app; create_app([sys.argv[1]]); "
            "a = gc.get_freeze_count(); create_app([sys.argv[1]], freeze_gc=True); print(a, gc.get_freeze_count())")
    out = subprocess.run([sys.executable, "-c", code, str(stores[0].path)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout.split()
    assert int(out[0]) == 0 and int(out[1]) > 100_000


def load_apps_module():
    spec = importlib.util.spec_from_file_location("apps_dashboard_under_test", ROOT / "apps" / "dashboard.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_apps_module_builds_server_from_env(stores, monkeypatch):
    mod = load_apps_module()
    monkeypatch.delenv("RNNVIZ_STORES", raising=False)
    with pytest.raises(RnnvizError, match="set RNNVIZ_STORES"):
        mod.server  # noqa: B018
    monkeypatch.setenv("RNNVIZ_STORES", ":".join(str(s.path) for s in stores.stores))
    server = mod.server
    assert server.test_client().get("/").status_code == 200
    assert mod.server is server  # built once


def test_apps_module_main(stores, monkeypatch, capsys):
    import dash

    mod = load_apps_module()
    runs = []
    monkeypatch.setattr(dash.Dash, "run", lambda self, **kw: runs.append(kw))
    assert mod.main([str(stores[0].path), "--port", "8123"]) == 0
    assert runs == [{"host": "127.0.0.1", "port": 8123, "debug": False}]
    assert "on http://127.0.0.1:8123/" in capsys.readouterr().err  # what rnnviz serve says: the same command
    assert mod.main([str(stores[0].path) + "-missing"]) == 1
    assert capsys.readouterr().err.startswith("Error: ")


def test_serve_in_jupyter_modes(stores, monkeypatch):
    import sys
    import types

    import dash

    import rnnviz

    ran = []
    monkeypatch.setattr(dash.Dash, "run", lambda self, **kw: ran.append((self, kw)))
    monkeypatch.setitem(sys.modules, "IPython", types.ModuleType("IPython"))  # as in a notebook
    app = rnnviz.serve(stores[0], port=8123, jupyter_mode="inline", height=700)  # a Store, or a path
    assert ran == [(app, dict(host="127.0.0.1", port=8123, debug=False, jupyter_mode="inline", jupyter_height=700))]
    assert app.stores.names == ["quotes"] and app.server.test_client().get("/").status_code == 200
    rnnviz.serve([stores[0].path, stores[1].path], port=8124)
    assert ran[1][1] == dict(host="127.0.0.1", port=8124, debug=False) and ran[1][0].stores.names == ["quotes", "short"]
    with pytest.raises(RnnvizError, match="unknown jupyter_mode 'popup'; choose one of inline, tab, external"):
        rnnviz.serve(stores[0].path, jupyter_mode="popup")
    with pytest.raises(RnnvizError, match="port must be a whole number from 1 to 65535, got 0"):
        rnnviz.serve(stores[0].path, port=0)
    monkeypatch.setitem(sys.modules, "IPython", None)  # no notebook here
    with pytest.raises(RnnvizError, match=r"jupyter_mode='inline' needs a notebook \(IPython is not installed\)"):
        rnnviz.serve(stores[0].path, jupyter_mode="inline")


def test_serve_prints_one_line_and_no_request_log(tmp_path):
    """`rnnviz serve` says where it serves, once: no Flask, Dash or development-server banner, no line per
    request (unless --log-requests)."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    make_quote_store(tmp_path / "st")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for flag, lines in (([], 1), (["--log-requests"], None), (["--feature", "in_quote"], 2)):
        p = subprocess.Popen([sys.executable, "-m", "rnnviz", "serve", str(tmp_path / "st"), "--port", str(port),
                              *flag], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                    break
                except OSError:
                    time.sleep(0.1)
        finally:
            p.terminate()
            out = p.communicate(timeout=30)[0]
        got = [line for line in out.splitlines() if line.strip()]
        assert got[0] == f"Serving st on http://127.0.0.1:{port}/  (Ctrl-C stops)", out
        if lines == 2:  # and the address of the best cell, opened where the feature first holds
            from rnnviz.views.dashboard.state import from_query

            best = got[1].split(",")[1].split(":")[0:3]
            unit = ":".join(best).strip()
            head = f"The best in_quote cell of st, {unit}: http://127.0.0.1:{port}/?"
            assert unit in (QUOTE_UNIT, NEG_UNIT) and got[1].startswith(head) and got[2:] == ["Stopped."], out
            app = create_app([tmp_path / "st"])
            view = from_query(got[1][len(head) - 1 :], app.stores)
            assert (view.unit, view.feature, view.start) == (unit, "in_quote", 0)
        elif lines is not None:
            assert got[1:] == ["Stopped."], out
        else:
            assert any('"GET / HTTP/1.1" 200' in line for line in got), out
