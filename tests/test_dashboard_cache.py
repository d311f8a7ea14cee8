"""Issue 26, speed: the two-state split and the catalog's explain kept beside the store (rnnviz.store.column_cache's
cache files), and the page opening on the store's strongest cell. Round trips (written once, read back equal to
a fresh computation, bit for bit), invalidation when the store changes, corrupt files rebuilt (never an error),
and the callbacks as the page posts them."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import QUOTE_UNIT, make_quote_store, quote_text, small_store

from rnnviz.analysis import explain_cache, two_state
from rnnviz.analysis.explain import explain
from rnnviz.analysis.explain_cache import CACHE, CATALOG, cached_explain, stored_explain
from rnnviz.analysis.features import compute_feature
from rnnviz.analysis.two_state import otsu, stored_two_states, two_states
from rnnviz.cli import main
from rnnviz.model.charrnn import ModelConfig
from rnnviz.model.vocab import Vocab
from rnnviz.store.column_cache import cached_json, read_cache, write_cache
from rnnviz.store.reader import open_store
from rnnviz.store.writer import write_store
from rnnviz.views.dashboard import create_app
from rnnviz.views.dashboard.guard import callback_body
from rnnviz.views.dashboard.opening import strongest_cell

LENGTH = 3000


@pytest.fixture
def store(tmp_path):
    return make_quote_store(tmp_path / "quotes", LENGTH)


def fresh(st):
    """The same store opened again, as a new server process opens it (nothing kept in memory)."""
    return open_store(st.path)


def computed_two_states(st) -> pd.DataFrame:
    return otsu(two_state._sample(st)).set_index(pd.Index(list(st.units), name="unit"))


def count_calls(monkeypatch, module, name: str) -> list:
    """Count the calls of ``module.name`` (still called through)."""
    calls, real = [], getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def touch_array(st) -> None:
    """Negate the store's first array in place (a store edited, or recorded again over itself)."""
    path = st.path / "L0.h.f16"
    (-np.fromfile(path, dtype="<f2")).tofile(path)


def flip_payload_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the last byte of the payload: the header still parses, a row's CRC fails
    path.write_bytes(bytes(data))


# --- the two-state split ---


def test_rnnviz_record_writes_the_two_state_split(tmp_path, tiny_ckpt):
    (tmp_path / "t.txt").write_text(quote_text(600), encoding="utf-8")
    out = tmp_path / "rec"
    r = CliRunner().invoke(main, ["record", str(tiny_ckpt), str(tmp_path / "t.txt"), "--out", str(out),
                                  "--unknown", "skip"])
    assert r.exit_code == 0, r.output
    st = open_store(out)
    got = stored_two_states(st)  # read only: never computed
    assert got is not None
    pd.testing.assert_frame_equal(got, computed_two_states(st), check_exact=True)


def test_the_two_state_split_is_read_back_equal_by_a_new_process(store, monkeypatch):
    two_states(store)  # first use: computed and written beside the store
    assert (store.path / two_state.CACHE).is_file()
    calls = count_calls(monkeypatch, two_state, "otsu")
    got = stored_two_states(fresh(store))  # read only: never computed
    assert calls == []
    pd.testing.assert_frame_equal(got, computed_two_states(store), check_exact=True)
    pd.testing.assert_frame_equal(two_states(fresh(store)), got, check_exact=True)
    assert calls == []  # read back, never computed (computed_two_states calls its own otsu)


def test_a_store_without_the_file_computes_it_once_and_writes_it(store, monkeypatch):
    assert not (store.path / two_state.CACHE).exists()  # written by write_store: nothing beside it yet
    assert stored_two_states(fresh(store)) is None  # a page load never computes it
    calls = count_calls(monkeypatch, two_state, "otsu")
    first = two_states(fresh(store))
    assert calls == [1] and (store.path / two_state.CACHE).is_file()
    again = two_states(fresh(store))
    assert calls == [1]  # read back, not computed
    pd.testing.assert_frame_equal(again, first, check_exact=True)


def test_a_changed_store_ignores_the_old_file_and_writes_a_new_one(store):
    before = two_states(fresh(store))
    touch_array(store)
    st = fresh(store)
    assert stored_two_states(st) is None  # stale: the array's size, mtime or inode differ
    after = two_states(st)
    pd.testing.assert_frame_equal(after, computed_two_states(st), check_exact=True)
    assert after.loc["0:h:0", "low"] == pytest.approx(-before.loc["0:h:0", "high"], abs=0.02)  # negated
    pd.testing.assert_frame_equal(stored_two_states(fresh(store)), after, check_exact=True)


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_a_corrupt_two_state_file_is_rebuilt(store, damage):
    two_states(store)
    path = store.path / two_state.CACHE
    if damage == "flip":
        flip_payload_byte(path)
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:-8])
    else:
        path.write_bytes(b"" if damage == "empty" else b"RNNVIZC1" + os.urandom(4000))
    assert stored_two_states(fresh(store)) is None
    pd.testing.assert_frame_equal(two_states(fresh(store)), computed_two_states(store), check_exact=True)
    pd.testing.assert_frame_equal(stored_two_states(fresh(store)), computed_two_states(store), check_exact=True)


def test_the_file_is_of_numbers_checked_by_shape(store):
    """The payload is float64 numbers of the header's shape (no pickle): a file for a store of other units is
    not taken."""
    two_states(store)
    expect = {"kind": "two_state"}
    got, meta = read_cache(store.path / two_state.CACHE, expect, "<f8", (5, len(store.units)))
    assert meta["dtype"] == "<f8" and meta["shape"] == [5, len(store.units)]
    np.testing.assert_array_equal(got, computed_two_states(store)[two_state.COLUMNS].to_numpy().T)
    assert read_cache(store.path / two_state.CACHE, expect, "<f8", (5, len(store.units) - 1)) is None


# --- the catalog's explain ---


def test_explain_is_cached_once_and_read_back_exactly(store, monkeypatch):
    calls = count_calls(monkeypatch, explain_cache, "explain")
    assert stored_explain(store, **CATALOG) is None
    first = cached_explain(store, **CATALOG)
    assert calls == [1] and (store.path / CACHE).is_file()
    again = stored_explain(fresh(store), **CATALOG)
    assert calls == [1]
    pd.testing.assert_frame_equal(again, first, check_exact=True)  # values, NaN, NA, lists and dtypes
    assert again.attrs == first.attrs
    direct = explain(store, intervals=False)  # a fresh computation: the same table (attrs hold its seconds)
    pd.testing.assert_frame_equal(again, direct, check_exact=True)
    assert again.loc[again["unit"] == QUOTE_UNIT, "rule"].item() == "feature:in_quote"
    assert list(again["coef"].map(type).unique()) == list(direct["coef"].map(type).unique())


def test_explain_cache_is_keyed_by_settings_and_by_the_text(store):
    cached_explain(store, **CATALOG)
    assert stored_explain(store, **CATALOG) is not None
    assert stored_explain(store, intervals=False, min_score=0.5) is None  # other settings: another result
    assert stored_explain(store) is None  # explain's default computes intervals: not the catalog's
    (store.path / "text.txt").write_text(store.text[::-1], encoding="utf-8")  # same size, other text
    assert stored_explain(fresh(store), **CATALOG) is None


def test_a_corrupt_explain_file_is_rebuilt(store):
    first = cached_explain(store, **CATALOG)
    flip_payload_byte(store.path / CACHE)
    assert stored_explain(fresh(store), **CATALOG) is None
    pd.testing.assert_frame_equal(cached_explain(fresh(store), **CATALOG), first, check_exact=True)
    pd.testing.assert_frame_equal(stored_explain(fresh(store), **CATALOG), first, check_exact=True)


def test_a_cache_whose_crc_holds_over_bytes_that_are_not_json_is_recomputed(store):
    expect = explain_cache._expect(store, explain_cache.settings_of(**CATALOG))
    raw = np.frombuffer(b"import os; os.system('x')", dtype=np.uint8)[None]  # never run: not even parsed
    write_cache(store.path / CACHE, expect, "u1", raw.shape, lambda w: (w(0, raw), [__import__("zlib").crc32(raw)])[1])
    assert read_cache(store.path / CACHE, expect, "u1", None) is not None  # a valid file of bytes
    assert stored_explain(store, **CATALOG) is None
    assert cached_json(store, "cache.other", {"kind": "x"}, lambda: {"a": [1.5, None]}) == {"a": [1.5, None]}
    pd.testing.assert_frame_equal(cached_explain(store, **CATALOG), explain(store, intervals=False), check_exact=True)


# --- the page: where it opens, the catalog from the cache ---


def post(app, output: str, values: dict, changed: str) -> dict:
    r = app.server.test_client().post("/_dash-update-component", json=callback_body(app.callback_map, output, values,
                                                                                     changed))
    assert r.status_code == 200, r.data[:300]
    return r.get_json()["response"]


def test_the_page_opens_on_the_best_explained_cell_where_it_fires(store):
    df = cached_explain(store, **CATALOG)
    cells = df[(df["role"] == "cell") & df["kind"].isin(["h", "c"])]  # an LSTM's states before its gates
    cells = cells.sort_values(["score", "unit"], ascending=[False, True], kind="stable")
    best, sign = cells["unit"].iloc[0], int(cells["sign"].iloc[0])
    assert best == QUOTE_UNIT  # the planted quote cell: r = 1 (1:h:5 too, later in unit order)
    assert strongest_cell(fresh(store)) == (best, sign)
    out = post(create_app([store.path]), "view.data", {"url.search": ""}, "url.search")
    x = store.unit(best).astype(np.float32) * sign
    peak = int(np.argmax(x))  # the first of its highest values: the whole store is in the sample
    view = out["view"]["data"]
    start = max(0, min(peak - 200, LENGTH - 2000))
    assert (view["unit"], view["hl"], view["start"]) == (best, [peak, peak + 1], start)
    assert out["url"]["search"] == f"?store=quotes&unit={best.replace(':', '%3A')}&start={start}"


def test_a_state_cell_comes_before_a_better_explained_gate(tmp_path):
    """A forget gate that follows quotes exactly and a cell that follows them through noise: the page opens on the
    cell (a researcher opens a store to see its states); with no state cell explained, on the gate."""
    text = quote_text(LENGTH)
    inq = compute_feature("in_quote", text).astype(np.float32)
    rng = np.random.default_rng(1)
    arrays = {(0, k): rng.uniform(-0.3, 0.3, (LENGTH, 4)).astype(np.float32) for k in ("h", "c", "i", "f", "g", "o")}
    arrays[(0, "f")][:, 1] = inq
    arrays[(0, "c")][:, 2] = inq + rng.uniform(-0.4, 0.4, LENGTH)
    vocab = Vocab.from_text(text)
    st = write_store(tmp_path / "g", text, arrays, ModelConfig(vocab_size=len(vocab), cell="lstm", layers=1, hidden=4),
                     vocab)
    df = cached_explain(st, **CATALOG).set_index("unit")
    assert df.loc["0:f:1", "score"] > df.loc["0:c:2", "score"] > 0.5
    assert df["score"].idxmax() == "0:f:1" and strongest_cell(fresh(st)) == ("0:c:2", 1)


def test_without_explanations_the_page_opens_on_the_clearest_two_state_cell(store):
    st = two_states(store)
    share = np.minimum(st["on_share"], 1 - st["on_share"])
    eligible = st[(share >= 0.01) & np.array([u.split(":")[1] in "hc" for u in st.index])]  # states first
    assert eligible["eta"].max() == pytest.approx(1.0, abs=1e-9)  # the planted quote cells take two values only
    unit = eligible["eta"].idxmax()  # the first of them in the store's order
    assert strongest_cell(fresh(store)) == (unit, 1 if st.loc[unit, "on_share"] <= 0.5 else -1)
    view = post(create_app([store.path]), "view.data", {"url.search": "?start=1000"}, "url.search")["view"]["data"]
    assert (view["unit"], view["start"], view["hl"]) == (unit, 1000, None)  # a link's start is kept


def test_with_nothing_cached_the_page_opens_as_before(store):
    assert strongest_cell(fresh(store)) is None
    view = post(create_app([store.path]), "view.data", {"url.search": ""}, "url.search")["view"]["data"]
    assert (view["unit"], view["start"]) == (store.units[0], 0)
    assert not (store.path / two_state.CACHE).exists()  # a page load computes nothing


def test_a_new_process_shows_a_cached_catalog_when_the_tab_opens(store):
    first = cached_explain(store, **CATALOG)
    app = create_app([store.path])
    view = {"store": 0, "unit": store.units[0], "tab": "catalog"}
    out = post(app, "catalog-table.rowData", {"tabs.value": "catalog", "catalog-hide.value": [], "view.data": view},
               "tabs.value")
    assert [r["unit"] for r in out["catalog-table"]["rowData"]] == list(first["unit"])
    assert out["catalog-msg"]["children"].startswith("quotes: ") and out["catalog-poll"]["disabled"] is True


def test_a_corrupt_catalog_cache_is_never_an_error_in_the_page(store):
    cached_explain(store, **CATALOG)
    two_states(store)
    (store.path / CACHE).write_bytes(b"RNNVIZC1\xff\xff\xff\xff\xff\xff\xff\xff")
    app = create_app([store.path])
    out = post(app, "view.data", {"url.search": ""}, "url.search")  # falls back to the two-state choice
    assert out["view"]["data"]["unit"] == strongest_cell(fresh(store))[0]
    view = {"store": 0, "unit": store.units[0], "tab": "catalog"}
    out = post(app, "catalog-table.rowData", {"tabs.value": "catalog", "view.data": view}, "tabs.value")
    assert "catalog-table" not in out and out["catalog-poll"]["disabled"] is True  # nothing yet: click to compute


def test_an_explain_that_fails_in_the_background_says_why_in_the_tab(tmp_path):
    st = small_store(tmp_path / "small")  # 35 characters: too short to explain
    app = create_app([st.path])
    values = {"catalog-hide.value": [], "view.data": {"store": 0, "unit": st.units[0], "tab": "catalog"}}
    out = post(app, "catalog-table.rowData", {**values, "catalog-go.n_clicks": 1}, "catalog-go.n_clicks")
    for n in range(1, 300):  # the tab polls until the job is over (it may fail before the click's answer)
        if out["catalog-poll"]["disabled"]:
            break
        time.sleep(0.05)
        out = post(app, "catalog-table.rowData", {**values, "catalog-poll.n_intervals": n}, "catalog-poll.n_intervals")
    assert out["catalog-msg"] == {"children": f"the store has {st.length} characters; explain needs at least 200 (half "
                                  "to choose each rule on, half to score it on)", "className": "msg"}
    assert out["catalog-table"]["rowData"] == [] and out["catalog-progress"]["style"]["display"] == "none"
