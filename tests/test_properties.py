"""Properties over arbitrary input (hypothesis; derandomized, so every run tries the same examples):
the features never crash and stay in range, HTML escaping never makes a tag, the vocabulary round-trips,
and the dashboard turns any JSON a browser (or anyone) sends into a valid view or a message."""

from __future__ import annotations

import json
import re
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from helpers import ALLOWED_TAGS, Page
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnviz.analysis.features import FEATURES, compute_feature
from rnnviz.errors import RnnvizError
from rnnviz.model.charrnn import ModelConfig
from rnnviz.model.vocab import UnknownCharsError, Vocab
from rnnviz.store.writer import write_store
from rnnviz.views.dashboard import state
from rnnviz.views.dashboard import transitions as tr
from rnnviz.views.dashboard.callbacks import find as cb_find
from rnnviz.views.dashboard.callbacks import text as cb_text
from rnnviz.views.dashboard.state import View
from rnnviz.views.dashboard.stores import StoreSet
from rnnviz.views.export import _script_json, escape_text, export_html


def examples(n: int) -> settings:
    """``n`` examples, the same ones every run (derandomized), no example database written to the repo."""
    return settings(max_examples=n, derandomize=True, database=None, deadline=None)

# Text that exercises the features' rules (quotes, brackets, comments, strings, keywords, line ends), mixed
# with arbitrary Unicode (no lone surrogates: no UTF-8 file holds them; test_hostile_inputs covers them).
TOKENS = ['"', "'", "\u201c", "\u201d", "\u201e", "\u2019", "(", ")", "{", "}", "[", "]", ";", "/", "*", "/*", "*/",
          "//", "\\", "#if", "#", "if", "if (", "else", "while", "do", "for", "switch", "x", "_", "0", " ", "  ",
          "\t", "\n", "\r", "\r\n", "\n\n", "\n \n", ". ", "! ", "?", "don't", "\0", "\u2028", "e\u0301",
          "\U0001f600", "'\"'", "'\\''"]
TEXTS = st.one_of(
    st.lists(st.sampled_from(TOKENS), max_size=60).map("".join),
    st.text(st.characters(codec="utf-8"), max_size=80),
    st.lists(st.one_of(st.sampled_from(TOKENS), st.characters(codec="utf-8")), max_size=60).map("".join),
)
LINE_ENDS = "\r\n"


def column_reference(text: str) -> list[int]:
    out, col = [], 0
    for ch in text:
        col = 0 if ch in LINE_ENDS else col + 1
        out.append(col)
    return out


def to_line_end_reference(text: str) -> list[int]:
    out = []
    for t in range(len(text)):
        nxt = next((u for u in range(t + 1, len(text)) if text[u] in LINE_ENDS), len(text))
        out.append(nxt - t - 1)
    return out


CAUSAL = ("in_quote", "column", "in_parens", "indent")  # the value at t depends on text[: t + 1] only


@examples(150)
@given(text=TEXTS)
def test_features_never_crash_and_stay_in_range(text):
    T = len(text)
    values = {}
    for name, f in FEATURES.items():
        v = values[name] = compute_feature(name, text)
        assert v.shape == (T,) and v.dtype == np.float32 and np.isfinite(v).all(), name
        if f.type == "binary":
            assert np.isin(v, (0.0, 1.0)).all(), name
        else:
            assert (v >= 0).all() and (v == np.round(v)).all(), name
        targets = f.targets(text, v)
        assert targets.shape == (T,) and targets.dtype == bool, name
    assert values["column"].tolist() == column_reference(text)
    assert values["to_line_end"].tolist() == to_line_end_reference(text)
    for name in ("brace_depth", "paren_depth"):
        d = values[name]
        assert d.max(initial=0) <= T and (np.abs(np.diff(d, prepend=0)) <= 1).all(), name
    w = values["word_pos"]
    for t in np.flatnonzero(w).tolist():
        assert text[t].isalnum() or text[t] in "'\u2019", (t, text[t])
        assert w[t] == 1 or w[t] == w[t - 1] + 1
    assert values["indent"].max(initial=0) <= 8 * T
    for name in CAUSAL:
        k = T // 2
        assert compute_feature(name, text[:k]).tolist() == values[name][:k].tolist(), name


class Tags(HTMLParser):
    def __init__(self, doc: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.data, self.attrs = [], [], []
        self.feed(doc)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.append(dict(attrs))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_data(self, data):
        self.data.append(data)

    def handle_comment(self, data):
        self.tags.append("<!--")

    def handle_decl(self, decl):
        self.tags.append("<!")

    def unknown_decl(self, data):
        self.tags.append("<![")

    def handle_pi(self, data):
        self.tags.append("<?")


MARKUP = st.lists(st.sampled_from(["<", ">", "&", '"', "'", "/", "!", "-", "--", "<!--", "-->", "<script>",
                                   "</script>", "<b>", "&amp;", "&#", "&lt", ";", "=", "x", "\r", "\0", "\n",
                                   "<![CDATA[", "]]>", "<?", "\u2028", "\ufeff"])
                  | st.characters(codec="utf-8"), max_size=40).map("".join)


@examples(300)
@given(s=st.one_of(MARKUP, st.text(st.characters(codec="utf-8"))))
def test_escaped_text_never_makes_a_tag(s):
    out = escape_text(s)
    assert not set(out) & set("<>\r\0\"'")
    p = Tags(f"<p>{out}</p>")
    assert p.tags == ["p"]
    assert "".join(p.data) == s.replace("\0", "\ufffd")
    body = _script_json({"t": s, s: [s]})
    assert not set(body) & set("<>&")
    assert json.loads(body) == {"t": s, s: [s]}


@examples(40)
@given(text=st.one_of(MARKUP, TEXTS).filter(bool), title=MARKUP)
def test_an_exported_page_shows_any_text_and_title_as_text(text, title):
    vocab = Vocab.from_text(text)
    cfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=1, hidden=2)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        st_ = write_store(Path(tmp) / "st", text, {(0, "h"): rng.uniform(-1, 1, (len(text), 2))}, cfg, vocab)
        page = export_html(st_, ["0:h:1"], titles={"0:h:1": title})
    doc = Page(page.html)
    assert {t for t, _ in doc.tags} <= ALLOWED_TAGS and [t for t, _ in doc.tags].count("script") == 2
    assert doc.text(0) == text.replace("\0", "\ufffd")
    assert doc.titles == ([title.replace("\0", "\ufffd")] if title else [])
    iframe = Tags(page._repr_html_())
    assert iframe.tags == ["iframe"] and iframe.attrs[0]["srcdoc"] == page.html


@examples(200)
@given(text=st.text(st.characters(codec="utf-8"), min_size=1))
def test_vocab_round_trip(text):
    v = Vocab.from_text(text)
    ids = v.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert ((ids >= 0) & (ids < len(v))).all()
    assert v.decode(ids) == text
    assert v.chars == sorted(set(text))
    assert Vocab.from_json(json.loads(json.dumps(v.to_json(), ensure_ascii=False))) == v


@examples(200)
@given(text=st.text(st.characters(codec="utf-8")), known=st.text(st.characters(codec="utf-8"), min_size=1))
def test_unknown_characters_are_listed_skipped_or_replaced(text, known):
    v = Vocab.from_text(known)
    expected = {}
    for t, ch in enumerate(text):
        if ch not in v:
            n, first = expected.get(ch, (0, t))
            expected[ch] = (n + 1, first)
    assert v.unknown_chars(text) == expected and list(v.unknown_chars(text)) == list(expected)
    kept = "".join(ch for ch in text if ch in v)
    assert v.prepare(text, "skip") == kept and v.decode(v.encode(kept)) == kept
    replaced = v.prepare(text, "replace:" + known[0])
    assert len(replaced) == len(text) and v.decode(v.encode(replaced)) == replaced
    if expected:
        with pytest.raises(UnknownCharsError) as e:
            v.encode(text)
        assert e.value.unknown == expected
    else:
        assert v.prepare(text, "error") == text


# --- the dashboard: any JSON from a browser ---

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
NAMES = st.sampled_from(["0:h:0", "1:c:3", "0:h:99", "9:c:0", "0:zz:1", "0:h:\u00b2", "", "0:h:", "../x"])
FIELDS = {
    "store": st.one_of(JSON, st.sampled_from(["st", "0", "1", "../st", "/etc/passwd"])),
    "unit": st.one_of(JSON, NAMES), "cmp": st.one_of(JSON, NAMES),
    "start": st.one_of(JSON, st.integers(-10**30, 10**30), st.sampled_from([float("inf"), float("nan"), "1e400"])),
    "feature": st.one_of(JSON, st.sampled_from(["in_quote", "column", "nope", "re:", "re:(", "re:a+"])),
    "hl": st.one_of(JSON, st.lists(st.integers(), min_size=2, max_size=2)),
    "sel": st.one_of(JSON, st.lists(st.integers(), min_size=2, max_size=2)),
    "theta": st.one_of(JSON, st.sampled_from([float("nan"), -1.0, float("inf"), "1e400", 0.5])),
    "cells": st.one_of(JSON, st.lists(NAMES, max_size=12)),
    "range": st.one_of(JSON, st.sampled_from(["max", "p99", "minmax", "rainbow"])),
    "tab": st.one_of(JSON, st.sampled_from(["hyp", "sel", "pattern", "evil"])),
}
VIEWS = st.one_of(JSON, st.fixed_dictionaries({}, optional=FIELDS))
TRIGGERS = st.sampled_from([None, "url", "store-pick", "layer-pick", "kind-pick", "index-pick", "unit-prev",
                            "unit-next", "cmp-input", "page-prev", "page-next", "jump-go", "jump-input", "find-go",
                            "find-input", "feature-pick", "regex-input", "rank-go", "unit-row", "match-row",
                            "range-pick", "tabs", "sel-view", "pat-cells", "pat-thr", "bogus"])


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> StoreSet:
    text = ('He said "hi" (twice).\nif (x) { y; }\n' * 80)
    vocab = Vocab.from_text(text)
    cfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=2, hidden=4)
    rng = np.random.default_rng(0)
    arrays = {(l, k): rng.uniform(-1, 1, (len(text), 4)) for l in (0, 1) for k in ("h", "c")}
    path = tmp_path_factory.mktemp("props") / "st"
    write_store(path, text, arrays, cfg, vocab, logprob=-rng.uniform(0, 3, len(text)).astype(np.float32))
    return StoreSet([path], regex_timeout=0.5)


def assert_valid(view: View, stores: StoreSet) -> None:
    store = stores[view.store]
    assert isinstance(view, View)
    assert view.unit in store.units and (view.cmp == "" or view.cmp in store.units)
    assert view.cmp != view.unit and 0 <= view.start < store.length and type(view.start) is int
    assert view.feature == state.valid_feature(view.feature)
    for span in (view.hl, view.sel):
        assert span is None or (len(span) == 2 and all(type(x) is int for x in span) and 0 <= span[0] < span[1])
    assert view.theta >= 0 and np.isfinite(view.theta)
    assert all(c in store.units for c in view.cells) and len(view.cells) <= 8


@examples(300)
@given(view=VIEWS, search=st.one_of(st.none(), st.text(max_size=40), st.lists(
    st.tuples(st.sampled_from(list(FIELDS)), st.text(max_size=8)), max_size=25).map(
    lambda kv: "?" + "&".join(f"{k}={v}" for k, v in kv))))
def test_any_view_or_link_becomes_a_valid_view(stores, view, search):
    v = View.clean(view, stores)
    assert_valid(v, stores)
    assert View.clean(v.to_dict(), stores) == v
    assert_valid(state.from_query(search, stores), stores)
    new, msg = tr.apply(stores, None, "url", search)
    assert_valid(new, stores)
    assert "\n" not in msg
    data, _, _ = cb_text.render_window(stores, v, 2000)
    assert data["start"] == v.start and len(data["chars"]) == min(2000, stores[0].length - v.start)


@examples(300)
@given(view=VIEWS, trigger=TRIGGERS, value=st.one_of(JSON, NAMES), jump=JSON, find=JSON,
       regex=st.one_of(st.none(), st.sampled_from(["", "a+", "(", "x" * 201]), JSON), feature_pick=JSON)
def test_any_action_gives_a_valid_view_and_a_message(stores, view, trigger, value, jump, find, regex, feature_pick):
    if trigger == "bogus":  # the Dash wiring never asks for a control it does not know
        with pytest.raises(KeyError):
            tr.apply(stores, view, trigger, value)
        return
    try:
        new, msg = tr.apply(stores, view, trigger, value,
                            tr.Inputs(feature_pick=feature_pick, regex=regex, jump=jump, find=find))
    except RnnvizError as e:  # the Dash wiring shows it as the page's message
        assert "\n" not in str(e)
        return
    assert_valid(new, stores)
    assert isinstance(msg, str) and "\n" not in msg


@examples(150)
@given(view=VIEWS, a=JSON, b=JSON, threshold=JSON)
def test_any_selection_gives_tables_or_a_message(stores, view, a, b, threshold):
    tables, matches, msg = cb_find.select_range(stores, View.clean(view, stores), a, b, threshold)
    assert isinstance(msg, str) and (tables is not None or msg)
    assert (matches is None) == bool(msg)  # matches, or a message saying why there are none
    if tables is not None:  # the tables are about a real range of the text
        note = tables.children[0].children
        lo, hi = (int(x.replace(",", "")) for x in re.search(r"inside (-?[\d,]+)–(-?[\d,]+)", note).groups())
        assert 0 <= lo < hi <= stores[0].length, note
