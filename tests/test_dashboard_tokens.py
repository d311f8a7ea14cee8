"""The dashboard on a token store, without a browser: rows are tokens with spans in the text (issue 25). Each
token's characters take its colour (characters between tokens none), tooltips name the token and its row,
a mouse selection over characters becomes token rows, the find box outlines tokens, unit bounds follow each
array's width, the layer table of the user's module is shown, what needs a model's logits is hidden.
Browser tests are in test_dashboard_tokens_e2e.py."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import LAYER_TABLE, NEG_UNIT, QUOTE_UNIT, make_quote_store, make_token_store

from rnnviz.analysis.features import compute_feature
from rnnviz.views import display
from rnnviz.views.colours import colour_scale
from rnnviz.views.dashboard import layout
from rnnviz.views.dashboard import transitions as tr
from rnnviz.views.dashboard.callbacks import find as cb_find
from rnnviz.views.dashboard.callbacks import info as cb_info
from rnnviz.views.dashboard.callbacks import panels as cb_panels
from rnnviz.views.dashboard.callbacks import text as cb_text
from rnnviz.views.dashboard.callbacks import view as cb_view
from rnnviz.views.dashboard.state import View, from_query
from rnnviz.views.dashboard.stores import StoreSet


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> StoreSet:
    base = tmp_path_factory.mktemp("tokens")
    make_token_store(base / "tok")
    make_token_store(base / "ext", external=True)
    make_quote_store(base / "quotes", length=500)
    return StoreSet([base / "tok", base / "ext", base / "quotes"], regex_timeout=0.5)


def view(stores, window: int = 2000, **kw) -> View:
    return View.clean({"unit": QUOTE_UNIT, **kw}, stores, window)


def quotes(text: str) -> list[tuple[int, int]]:
    """[a, b) of every double-quoted run of the text, both quote marks included."""
    return [m.span() for m in re.finditer(r'"[^"]*"', text)]


def test_a_window_of_tokens_colours_each_tokens_characters(stores):
    s = stores[0]
    v = view(stores, 50, start=100, cmp=NEG_UNIT, feature="in_quote", range="max")
    data, label, legend = cb_text.render_window(stores, v, 50)
    assert (data["start"], data["stop"], label) == (100, 150, "tokens 100–150 of 1,500")
    a, b = int(s.spans[100, 0]), int(s.spans[149, 1])
    assert "".join(data["chars"]) == s.text[a:b]  # the tokens' text, the spaces between them included
    main, other = s.unit(QUOTE_UNIT)[100:150], s.unit(NEG_UNIT)[100:150]
    bins = colour_scale("c", s.stats.loc[QUOTE_UNIT]).bins(main)
    obins = colour_scale("h").bins(other)
    feature = stores.feature(0, "in_quote")[100:150]
    assert len(data["tips"]) == 50 and len(data["rows"]) == len(data["chars"]) == b - a
    for j, r in enumerate(data["rows"]):
        inside = [t for t in range(100, 150) if s.spans[t, 0] <= a + j < s.spans[t, 1]]
        assert r == (inside[0] - 100 if inside else -1)
        if r < 0:
            assert data["cls"][j] == "" and s.text[a + j] == " "
        else:
            cls = data["cls"][j].split()
            assert cls[:2] == [f"d{bins[r]}", f"od{obins[r]}"] and ("f4" in cls) == bool(feature[r])
    token = s.text[s.spans[103, 0] : s.spans[103, 1]]
    tip = data["tips"][3].split("\n")
    assert tip == [f"{QUOTE_UNIT} = {main[3]!s}", f"{NEG_UNIT} = {other[3]!s}", f"in_quote = {feature[3]:.3g}",
                   f"#103 {token}"]  # no loss, no next-token guesses: the store has no predictions
    assert "external state" not in str(legend) and "cell state" in str(legend)


def test_the_planted_unit_is_red_on_quoted_tokens_and_blue_elsewhere(stores):
    s = stores[0]
    data, *_ = cb_text.render_window(stores, view(stores), 2000)
    a, b = quotes(s.text)[0]
    assert {data["cls"][j] for j in range(a, b) if s.text[j] != " "} == {"d32"}
    assert {data["cls"][j] for j in range(a) if s.text[j] != " "} == {"d0"}
    assert {data["cls"][j] for j in range(b) if s.text[j] == " "} == {""}


def test_an_outlined_run_covers_its_tokens_characters(stores):
    s = stores[0]
    data, *_ = cb_text.render_window(stores, view(stores, 100, start=10, hl=[12, 14]), 100)
    a = int(s.spans[10, 0])
    c0, c1 = int(s.spans[12, 0]) - a, int(s.spans[13, 1]) - a
    assert data["hl"] == [c0, c1]
    assert [j for j, c in enumerate(data["cls"]) if "hl" in c.split()] == list(range(c0, c1))


def test_trace_over_token_rows_without_a_loss_row(stores):
    s = stores[0]
    fig = cb_text.trace(stores, view(stores, 30, start=20, feature="in_quote"), 30)
    assert [t["name"] for t in fig["data"]] == [QUOTE_UNIT, "in_quote"]  # no loss: no predictions
    assert list(fig["data"][0]["x"]) == list(range(20, 50))
    assert fig["data"][0]["customdata"][:2] == [display.visible_line(s.text[slice(*s.spans[t])]) for t in (20, 21)]
    assert [a["text"] for a in fig["layout"]["annotations"]] == ["activation", "feature in_quote"]


def test_a_mouse_selection_over_characters_becomes_token_rows(stores):
    s = stores[0]
    a, b = quotes(s.text)[1]
    first = int(s.spans[5, 0])  # a window drawn from row 5: the page reports offsets into its characters
    assert cb_find.selected_rows(s, 5, 2000, a - first, b - first) == s.rows_of_chars(a, b)
    r0, r1 = s.rows_of_chars(a, b)
    assert s.text[s.spans[r0, 0]] == '"' and s.text[s.spans[r1 - 1, 1] - 1] == '"'
    # half a token selected: its whole row
    assert cb_find.selected_rows(s, 5, 2000, a - first + 2, a - first + 3) == (r0, r0 + 1)
    # in a char store rows are characters
    q = stores[2]
    assert cb_find.selected_rows(q, 40, 2000, 3, 9) == (43, 49)


def test_select_range_finds_the_planted_units_by_rows(stores):
    s = stores[0]
    r0, r1 = s.rows_of_chars(*quotes(s.text)[1])
    tables, matches, msg = cb_find.select_range(stores, view(stores), r0, r1)
    assert msg == ""
    units = [r.id["index"].split("/")[1] for r in tables.children[1].children[1].children]
    assert set(units[:2]) == {QUOTE_UNIT, NEG_UNIT}
    assert "2 tokens of slack at each edge" in tables.children[0].children
    rows = matches.children[1].children[1].children
    x, y = (int(v) for v in rows[0].id["index"].split("-"))
    snippet = rows[0].children[4].children
    a, b = s.spans[x, 0], s.spans[y - 1, 1]  # the match's characters, in bold, 15 characters around them
    assert [snippet[0], snippet[1].children, snippet[2]] == [s.text[a - 15 : a], s.text[a:b], s.text[b : b + 15]]
    assert cb_find.select_range(stores, view(stores), "x", 5)[2] == \
        "select some text, or type a range: from and to are token positions"


def test_find_outlines_the_tokens_of_a_match(stores):
    s = stores[0]
    v = view(stores)
    i = s.text.index("mat she")
    new, msg = tr.apply(stores, v, "find-go", None, tr.Inputs(find="mat she"))
    assert msg == "" and new.hl == s.rows_of_chars(i, i + 7) and new.hl[1] - new.hl[0] == 2
    again, _ = tr.apply(stores, new, "find-go", None, tr.Inputs(find="mat she"))
    assert again.hl == s.rows_of_chars(*(lambda j: (j, j + 7))(s.text.index("mat she", i + 1)))
    assert tr.apply(stores, v, "jump-go", None, tr.Inputs(jump="x"))[1] == "type a token position to go to"


def test_unit_bounds_follow_each_arrays_width(stores):
    s = stores[0]
    assert (s.width(0, "h"), s.width(0, "c")) == (6, 8)
    v = view(stores, unit="0:c:7")
    assert cb_view.controls(stores, v)["index_max"] == 7
    h, msg = tr.apply(stores, v, "kind-pick", "h")
    assert (h.unit, msg) == ("0:h:5", "")  # the narrower array's last unit
    assert cb_view.controls(stores, h)["index_max"] == 5
    assert tr.apply(stores, h, "index-pick", 7) == (h, "no unit '0:h:7' in tok: indices run from 0 to 5")
    assert tr.apply(stores, h, "index-pick", None)[1] == "a unit index is a whole number from 0 to 5"
    assert tr.apply(stores, h, "kind-pick", "c")[0].unit == "0:c:5"


def test_the_layer_table_is_shown(stores):
    c = cb_view.controls(stores, view(stores))
    assert c["layers"] == [{"label": "0", "value": 0, "title": "encoder.rnn (LSTM)"},
                           {"label": "1", "value": 1, "title": "decoder.rnn (LSTM)"}]
    table = next(x for x in cb_info.store_info(stores[0]) if getattr(x, "id", None) == "layer-table")
    caption, head, body = table.children
    assert caption.children == "layers of WordLM"
    assert [th.children for th in head.children.children] == ["layer", "module", "type", "proj_size"]
    assert [[td.children for td in tr_.children] for tr_ in body.children] == [
        [str(e[k]) for k in ("layer", "module", "type", "proj_size")] for e in LAYER_TABLE["layers"]]
    assert cb_view.controls(stores, view(stores, store=2))["layers"] == [{"label": "0", "value": 0},
                                                                         {"label": "1", "value": 1}]


def test_what_needs_logits_or_our_model_is_hidden(stores):
    lines = [getattr(x, "children", None) for x in cb_info.store_info(stores[0])]
    assert lines[0] == f"rows are tokens: 1,500 tokens over {len(stores[0].text):,} characters; a feature is read " \
                       "at each token's last character"
    assert cb_info.NO_PREDICTIONS in lines and cb_info.NO_PREDICTIONS.startswith("this store has no predictions")
    assert cb_info.store_info(stores[2]) == []  # one of our char stores: nothing to say
    # The sampling and emergence tabs do not exist for it: a link or a click on them shows the first tab.
    assert from_query("?store=tok&tab=sample", stores).tab == "hyp"
    assert from_query("?store=quotes&tab=sample", stores).tab == "sample"
    v = view(stores)
    assert tr.apply(stores, v, "tabs", "emerge")[0].tab == "hyp"
    assert cb_panels.sample_pair(stores, v, "", 10, 1, 0, 1) == (
        None, "tok: not recorded from an rnnviz model, so there is nothing to sample from")
    fig, msg = cb_panels.gradflow(StoreSet([stores[0].path, stores[1].path]))
    assert msg == "" and fig.layout.annotations[0].text == \
        "no store here was recorded from an rnnviz model: gradient flow needs the model"
    assert cb_panels.gradflow(stores)[1] == "checkpoint not reachable for: quotes"  # the token stores are not asked


def test_store_labels_and_an_external_stores_kinds(stores):
    assert [layout._store_label(stores, i) for i in range(3)] == [
        "tok · lstm 2×8 · 1,500 tokens", "ext · external 2×8 · 1,500 tokens", "quotes · lstm 2×8 · 500 chars"]
    ext = view(stores, store=1, unit="1:y:3")
    assert ext.unit == "1:y:3"
    assert [o["value"] for o in cb_view.controls(stores, ext)["kinds"]] == ["delta", "y"]
    assert cb_info.store_info(stores[1])[1].children == "states recorded elsewhere: kinds delta, y"
    data, _, legend = cb_text.render_window(stores, ext, 2000)
    s = stores[1]
    m = float(np.abs(s.unit("1:y:3")).max())  # scaled as a cell state: ±max|v| of its recording
    assert {data["cls"][j] for j in range(quotes(s.text)[0][0]) if s.text[j] != " "} == {"d0"} and m == 1.0
    assert legend.children[0].children == "1:y:3" and legend.children[1] == " external state · layer 1 · unit 3 · "


def test_histogram_over_token_rows(stores):
    fig = cb_panels.histogram(stores, view(stores, feature="in_quote"))
    assert fig.layout.title.text == f"{QUOTE_UNIT} by in_quote (all tokens)"
    feature = stores.feature(0, "in_quote")
    assert feature.shape == (1500,)
    np.testing.assert_array_equal(feature, stores[0].at_rows(compute_feature("in_quote", stores[0].text)))
