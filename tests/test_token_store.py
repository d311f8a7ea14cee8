"""Stores whose rows are tokens (issue 25): the format (version 2: spans, widths, external kinds, the
source table), its checks, and the analyses reading character features at each token's last character."""

from __future__ import annotations

import json

import numpy as np
import pytest

import rnnviz
from rnnviz.analysis.evidence import evidence
from rnnviz.analysis.explain import explain, top_contexts
from rnnviz.analysis.ranking import find_cells
from rnnviz.analysis.similar import find_similar
from rnnviz.errors import RnnvizError
from rnnviz.store.reader import open_store
from tests.helpers import cli, one_line_error

WORDS = ("the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "said", "so")


def quoted_words(n: int, seed: int = 0) -> list[str]:
    """``n`` word tokens of seeded prose where some stretches are quoted: '"the', 'cat', 'sat"'."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < n:
        run = [str(w) for w in rng.choice(WORDS, int(rng.integers(2, 6)))]
        if rng.random() < 0.4:
            run[0], run[-1] = '"' + run[0], run[-1] + '"'
        out += run
    return out[:n]


def inside_after(tokens: list[str]) -> np.ndarray:
    """Independently of rnnviz's features: 1 where the text is inside quotes after a token's last character."""
    state, out = 0, []
    for t in tokens:
        for ch in t:
            state ^= ch == '"'
        out.append(state)
    return np.array(out, dtype=np.float32)


@pytest.fixture(scope="module")
def word_store(tmp_path_factory):
    """1,500 word tokens; unit 1:h:2 is +1 inside quotes and -1 outside; everything else seeded noise;
    layer 0's h is 3 wide and c 5 wide (an LSTM with proj_size)."""
    rng = np.random.default_rng(1)
    tokens = quoted_words(1500)
    T = len(tokens)
    arrays = {"0:h": rng.normal(size=(T, 3)), "0:c": rng.normal(size=(T, 5)),
              "1:h": rng.normal(0, 0.3, size=(T, 4)), "1:c": rng.normal(size=(T, 5))}
    arrays["1:h"][:, 2] = 2 * inside_after(tokens) - 1
    out = tmp_path_factory.mktemp("tok") / "store"
    st = rnnviz.store_from_arrays(tokens, arrays, out, source={"class": "LM", "layers": [
        {"layer": 0, "module": "rnn", "type": "LSTM"}, {"layer": 1, "module": "rnn", "type": "LSTM"}]})
    return st, tokens, arrays


def test_a_token_store_round_trips_its_tokens_widths_and_values(word_store):
    st, tokens, arrays = word_store
    st = open_store(st.path)
    assert st.is_tokens and st.length == len(tokens) and st.text == " ".join(tokens)
    assert [st.text[a:b] for a, b in st.spans[:5].tolist()] == tokens[:5]
    assert st.manifest["version"] == 2 and st.manifest["tokens"] == {"chars": len(st.text)}
    assert (st.cell, st.hidden, st.width(0, "h"), st.width(0, "c"), st.width(1, "h")) == ("lstm", 5, 3, 5, 4)
    assert st.manifest["widths"] == {"0:h": 3, "1:h": 4}
    assert list(st.units)[:4] == ["0:h:0", "0:h:1", "0:h:2", "0:c:0"] and len(st.units) == 3 + 5 + 4 + 5
    assert st.units[8] == "1:h:0" and st.units.index("1:c:4") == 16 and "0:h:3" not in st.units
    np.testing.assert_array_equal(st.unit("0:c:4"), arrays["0:c"][:, 4].astype(np.float16))
    np.testing.assert_array_equal(st.window(10, 12, ["1:h:2", "0:h:0"]),
                                  np.stack([arrays["1:h"][10:12, 2], arrays["0:h"][10:12, 0]], 1)
                                  .astype(np.float16).astype(np.float32))
    assert list(st.stats.index) == list(st.units)
    assert st.meta.source["layers"][1]["module"] == "rnn"
    with pytest.raises(RnnvizError, match=r"indices 0\.\.2\)"):
        st.locate("0:h:3")


def test_rows_meet_characters_at_each_tokens_last_character(word_store):
    st, tokens, _ = word_store
    ends = np.cumsum([len(t) + 1 for t in tokens]) - 1  # after each token, a space (none after the last)
    np.testing.assert_array_equal(st.last_chars, ends - 1)
    np.testing.assert_array_equal(st.at_rows(np.arange(len(st.text))), ends - 1)
    a0 = len(tokens[0]) + 1  # the second token's first character
    assert st.chars_of_rows(1, 3) == (a0, a0 + len(tokens[1]) + 1 + len(tokens[2]))
    assert st.rows_of_chars(a0, a0 + 1) == (1, 2)
    assert st.rows_of_chars(a0 - 1, a0) == (1, 1)  # the space between two tokens: no token
    assert st.rows_of_chars(0, len(st.text)) == (0, len(tokens))


def test_find_cells_reads_features_at_token_ends(word_store):
    st, tokens, _ = word_store
    df = find_cells(st, "in_quote", top=3)
    assert df["unit"].iloc[0] == "1:h:2" and df["sign"].iloc[0] == 1
    assert df["auroc"].iloc[0] == pytest.approx(1.0) and df.attrs["length"] == len(tokens)


def test_explain_and_evidence_on_a_token_store(word_store):
    st, tokens, _ = word_store
    df = explain(st, ["1:h:2", "0:h:0"]).set_index("unit")
    assert df.loc["1:h:2", "score"] > 0.99 and df.loc["1:h:2", "explained"]
    assert not df.loc["0:h:0", "explained"]
    ev = evidence(st, "1:h:2", "in_quote", k=2)
    assert ev["histogram"]["groups"]["in_quote = 1"][-1] == int(inside_after(tokens).sum())
    top = ev["top"][0]
    assert top["char"] == tokens[top["pos"]] and st.text.endswith(top["after"]) is False
    ctx = top_contexts(st, "1:h:2", top=1, per_decile=0, context=4)
    p = int(ctx["pos"].iloc[0])
    assert ctx["char"].iloc[0] == tokens[p] and ctx["before"].iloc[0] == st.text[st.spans[p, 0] - 4 : st.spans[p, 0]]


def test_select_to_find_takes_token_rows(word_store):
    st, tokens, _ = word_store
    inside = inside_after(tokens)
    r0 = int(np.flatnonzero(np.diff(inside) == 1)[3]) + 1  # a quoted stretch of tokens
    r1 = r0 + int(np.argmax(inside[r0:] == 0))
    cells, matches = find_similar(st, r0, r1)
    assert cells["unit"].iloc[0] == "1:h:2"
    assert len(matches) and all(inside[m.start : m.stop].mean() > 0.7 for m in matches.itertuples())


def test_the_cli_shows_a_token_selection_as_its_text(word_store):
    st, tokens, _ = word_store
    r = cli("similar", st.path, "--start", 3, "--end", 5)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == f"selection 3..5: {tokens[3]} {tokens[4]}"


def test_char_stores_from_arrays_and_old_stores_stay_version_1(tmp_path):
    rng = np.random.default_rng(2)
    text = 'ab"cd"e' * 30
    st = rnnviz.store_from_arrays(text, {"0:h": rng.normal(size=(len(text), 4))}, tmp_path / "a")
    assert (st.manifest["version"], st.cell, st.is_tokens, st.last_chars) == (1, "lstm", False, None)
    ext = rnnviz.store_from_arrays(text, {"0:delta": rng.normal(size=(len(text), 4))}, tmp_path / "b")
    assert (ext.manifest["version"], ext.cell, list(ext.units)[0]) == (2, "external", "0:delta:0")


# --- a hand-edited version 2 store: one line each, nothing read past the check ---

def _edit(path, **fields):
    m = json.loads((path / "manifest.json").read_text())
    m.update(fields)
    (path / "manifest.json").write_text(json.dumps(m))


@pytest.fixture
def small_tokens(tmp_path):
    rng = np.random.default_rng(3)
    tokens = quoted_words(40)
    st = rnnviz.store_from_arrays(tokens, {"0:h": rng.normal(size=(40, 3)), "0:c": rng.normal(size=(40, 2))},
                                  tmp_path / "s")
    return st.path


@pytest.mark.parametrize("edit, message", [
    (lambda p: _edit(p, tokens={"chars": 10**12}), r"chars must be an integer from 1 to 2,147,483,648"),
    (lambda p: _edit(p, tokens="words"), r"tokens must be \{\"chars\": N\}"),
    (lambda p: _edit(p, tokens={"chars": 100}), r"text\.txt: \d+ characters, the manifest says 100"),
    (lambda p: _edit(p, tokens={"chars": 7}), r"text\.txt: \d+ bytes, more than the 28 this file may hold"),
    (lambda p: _edit(p, widths={"0:h": 0}), r"widths: '0:h' must be a recorded LAYER:KIND with a width 1"),
    (lambda p: _edit(p, widths={"3:h": 2}), r"widths: '3:h' must be a recorded LAYER:KIND"),
    (lambda p: _edit(p, widths={"0:h": 4}), r"L0\.h\.f16: 240 bytes, expected 320"),
    (lambda p: _edit(p, widths=[3]), r"widths must be an object"),
    (lambda p: _edit(p, cell="external", kinds=["h", "../x"]), r"kinds must be distinct short lower-case names"),
    (lambda p: _edit(p, cell="transformer"), r"cell must be one of rnn, gru, lstm, mingru, mamba, slstm, external"),
    (lambda p: _edit(p, source={"class": "M", "layers": [{"layer": 5}]}), r"source names layers \[5\]"),
    (lambda p: _edit(p, source={"class": 3}), r"source must be"),
    (lambda p: _edit(p, vocab=["x" * 1001]), r"at most 1000 characters"),
    (lambda p: _edit(p, version=3), r"store version 3, this rnnviz reads 1, 2"),
    (lambda p: (p / "spans.i64").write_bytes(b"\0" * 16), r"spans\.i64: 16 bytes, expected 640"),
    (lambda p: (p / "spans.i64").unlink(), r"store is incomplete \(spans\.i64 missing\)"),
])
def test_a_hand_edited_token_store_is_one_line(small_tokens, edit, message):
    edit(small_tokens)
    with pytest.raises(RnnvizError, match=message):
        open_store(small_tokens)
    one_line_error(cli("find", small_tokens, "--feature", "in_quote"))


@pytest.mark.parametrize("spans, message", [
    (lambda s: s.__setitem__((5, 1), s[5, 0]), r"token 5 spans \[\d+, \d+\]"),  # empty
    (lambda s: s.__setitem__((6, 0), s[4, 0]), r"token 6 spans"),  # overlaps the one before
    (lambda s: s.__setitem__((39, 1), 10**9), r"token 39 spans"),  # past the text
    (lambda s: s.__setitem__((0, 0), -1), r"token 0 spans \[-1, "),
])
def test_corrupt_spans_are_one_line(small_tokens, spans, message):
    s = np.fromfile(small_tokens / "spans.i64", dtype="<i8").reshape(-1, 2)
    spans(s)
    s.astype("<i8").tofile(small_tokens / "spans.i64")
    with pytest.raises(RnnvizError, match=message + r".*non-empty, in order, without overlap"):
        open_store(small_tokens)
