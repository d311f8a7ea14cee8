"""The activation store: round trips, statistics, atomicity, corrupt and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rnnviz.errors import RnnvizError
from rnnviz.model.charrnn import ModelConfig
from rnnviz.model.checkpoint import WEIGHTS, sha256_file
from rnnviz.model.vocab import Vocab
from rnnviz.store.reader import open_store
from rnnviz.store.stats import RunningStats, StreamStats, saturating_ranges
from rnnviz.store.writer import StoreWriter, write_store

TEXT = "hello world\nthe quick brown fox\n"
VOCAB = Vocab.from_text(TEXT)
CFG = ModelConfig(vocab_size=len(VOCAB), cell="lstm", layers=3, hidden=4)


def _arrays(seed=0, layers=(0, 2), kinds=("h", "c", "o")):
    T = len(TEXT)
    rng = np.random.default_rng(seed)
    return {(l, k): rng.uniform(-1.2, 1.2, (T, CFG.hidden)).astype(np.float32) for l in layers for k in kinds}


def _store(tmp_path, name="st", **kw):
    arrays = _arrays()
    T = len(TEXT)
    rng = np.random.default_rng(1)
    logprob = -rng.uniform(0, 5, T).astype(np.float32)
    logprob[-1] = np.nan
    ids = rng.integers(0, len(VOCAB), (T, 3)).astype(np.uint16)
    probs = np.sort(rng.uniform(0, 0.3, (T, 3)), 1)[:, ::-1].astype(np.float16)
    store = write_store(tmp_path / name, TEXT, arrays, CFG, VOCAB, logprob=logprob, topk=(ids, probs),
                        recorder={"note": "synthetic"}, **kw)
    return store, arrays, logprob, ids, probs


def test_round_trip(tmp_path):
    store, arrays, logprob, ids, probs = _store(tmp_path)
    again = open_store(tmp_path / "st")
    for s in (store, again):
        assert s.text == TEXT and s.length == len(TEXT) == len(s)
        assert s.layers == [0, 2] and s.kinds == ["h", "c", "o"] and s.hidden == 4 and s.cell == "lstm"
        assert s.vocab == VOCAB
        assert s.manifest["recorder"] == {"note": "synthetic"} and s.manifest["dtype"] == "float16"
        m = s.meta  # the checked manifest, as a dataclass
        assert (m.length, m.hidden, m.cell, m.layers, m.kinds) == (len(TEXT), 4, "lstm", [0, 2], ["h", "c", "o"])
        assert m.vocab == VOCAB and m.recorder == {"note": "synthetic"} and m.has_logprob
        assert m.model is not None and m.model.to_dict() == s.manifest["model"] and m.created == s.manifest["created"]
        assert s.units[:5] == ["0:h:0", "0:h:1", "0:h:2", "0:h:3", "0:c:0"] and s.units[-1] == "2:o:3"
        assert len(s.units) == 2 * 3 * 4
        a = s.array(2, "c")
        assert isinstance(a, np.memmap) and a.dtype == np.float16 and a.shape == (len(TEXT), 4)
        np.testing.assert_array_equal(a, arrays[(2, "c")].astype(np.float16))
        u = s.unit("2:o:3")
        assert u.dtype == np.float16 and u.shape == (len(TEXT),)
        np.testing.assert_array_equal(u, arrays[(2, "o")][:, 3].astype(np.float16))
        np.testing.assert_array_equal(s.logprob, logprob)
        np.testing.assert_array_equal(s.topk[0], ids)
        np.testing.assert_array_equal(s.topk[1], probs)


def test_window_and_blocks(tmp_path):
    store, arrays, *_ = _store(tmp_path)
    full = np.concatenate([arrays[(l, k)] for l in (0, 2) for k in ("h", "c", "o")], 1).astype(np.float16)
    w = store.window(3, 10)
    assert w.dtype == np.float32 and w.shape == (7, 24)
    np.testing.assert_array_equal(w, full[3:10])
    units = ["2:o:1", "0:h:3", "2:o:0"]
    np.testing.assert_array_equal(
        store.window(5, 9, units),
        np.stack([arrays[(2, "o")][5:9, 1], arrays[(0, "h")][5:9, 3], arrays[(2, "o")][5:9, 0]], 1).astype(
            np.float16
        ),
    )
    assert store.window(30, 1000).shape == (len(TEXT) - 30, 24)  # clipped like a slice
    blocks = list(store.iter_blocks(rows=10, units=units))
    assert [(a, b) for a, b, _ in blocks] == [(0, 10), (10, 20), (20, 30), (30, len(TEXT))]
    np.testing.assert_array_equal(np.concatenate([x for *_, x in blocks]), store.window(0, len(TEXT), units))


def test_stats_match_stored_values(tmp_path):
    store, arrays, *_ = _store(tmp_path)
    df = store.stats
    assert list(df.index) == store.units and list(df.columns) == ["mean", "std", "min", "max", "sat_lo", "sat_hi"]
    x = arrays[(2, "c")][:, 1].astype(np.float16).astype(np.float64)
    row = df.loc["2:c:1"]
    # Block moments are summed in float32 on the recording device, merged in float64.
    assert row["mean"] == pytest.approx(x.mean(), rel=1e-6)
    assert row["std"] == pytest.approx(x.std(), rel=1e-6)
    assert (row["min"], row["max"]) == (x.min(), x.max())
    assert np.isnan(row["sat_lo"]) and np.isnan(row["sat_hi"])  # c is no gate: its saturation means nothing
    o = arrays[(2, "o")][:, 1].astype(np.float16).astype(np.float32)
    row = df.loc["2:o:1"]
    assert (row["sat_lo"], row["sat_hi"]) == ((o < 0.1).sum() / len(o), (o > 0.9).sum() / len(o))
    assert df["sat_lo"].notna().sum() == 2 * 4  # o of layers 0 and 2


def test_saturating_ranges_are_the_sigmoid_kinds_merged():
    assert saturating_ranges(["h", "c", "i", "f", "g", "o"], [4] * 6, ("i", "f", "o")) == [(8, 16), (20, 24)]
    assert saturating_ranges(["h", "c", "i"], [2, 4, 4], ("i", "f", "o")) == [(6, 10)]  # h narrower (a projection)
    assert saturating_ranges(["h", "n"], [4, 4], ("r", "z")) == []


@pytest.mark.parametrize("layout", ["kinds", "flat"])
def test_saturation_counted_in_the_given_units_only(layout):
    rng = np.random.default_rng(5)
    x = rng.uniform(-0.2, 1.2, (3, 700, 4)).astype(np.float16)  # (K, n, H): kinds h, i, f side by side
    x64 = x.astype(np.float64)
    if layout == "kinds":  # the recorder's per-stream statistics: 2 streams of 350 rows
        st = StreamStats(3, 4, 2, saturating=[(4, 12)])
        st.update(torch.from_numpy(x.reshape(3, 2, 350, 4).copy()), 0, [350, 350])
    else:  # one stream, (n, K·H) blocks, a range inside one kind
        st = RunningStats(12, [(5, 7)])
        for a, b in ((0, 1), (1, 500), (500, 700)):
            st.update(torch.from_numpy(np.ascontiguousarray(x[:, a:b].transpose(1, 0, 2).reshape(b - a, 12))))
    cols = st.columns()
    lo, hi = np.array(cols["sat_lo"]), np.array(cols["sat_hi"])
    want = np.zeros(12, bool)  # the units whose saturation is counted: kinds i and f, or units 5 and 6
    want[slice(4, 12) if layout == "kinds" else slice(5, 7)] = True
    flat = x64.transpose(1, 0, 2).reshape(700, 12)
    np.testing.assert_array_equal(np.isnan(lo), ~want)
    np.testing.assert_array_equal(lo[want], (flat[:, want] < 0.1).mean(0))
    np.testing.assert_array_equal(hi[want], (flat[:, want] > 0.9).mean(0))
    np.testing.assert_allclose(cols["mean"], flat.mean(0), rtol=1e-6)


def test_running_stats_merge_blocks():
    rng = np.random.default_rng(3)
    x = (rng.normal(5.0, 0.01, (1000, 3))).astype(np.float16)  # large mean, small spread: no cancellation
    rs = RunningStats(3)
    for s, e in ((0, 1), (1, 300), (300, 301), (301, 1000)):
        rs.update(torch.from_numpy(x[s:e]))
    cols = rs.columns()
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(cols["mean"], x64.mean(0), rtol=1e-7)
    np.testing.assert_allclose(cols["std"], x64.std(0), rtol=1e-4)
    np.testing.assert_array_equal(cols["min"], x64.min(0))


def test_optional_logprob_topk(tmp_path):
    s = write_store(tmp_path / "s", "abc", {(0, "h"): np.zeros((3, 4))}, CFG, VOCAB)
    assert np.isnan(s.logprob).all() and s.logprob.shape == (3,)
    assert s.topk[0].shape == (3, 0) and s.topk[1].dtype == np.float16
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "L0.h.f16", "manifest.json", "stats.json", "text.txt"
    ]


def test_writer_drops_outputs_never_written(tmp_path):
    with StoreWriter(tmp_path / "s", "abc", layers=[0], kinds=["h"], model_config=CFG, vocab=VOCAB, topk=2) as w:
        w.write(0, {(0, "h"): np.ones((3, 4))})
        w.observe({(0, "h"): np.ones((3, 4))})
    s = w.store
    assert np.isnan(s.logprob).all() and s.k == 0 and s.topk[0].shape == (3, 0)
    assert sorted(p.name for p in s.path.iterdir()) == ["L0.h.f16", "manifest.json", "stats.json", "text.txt"]
    assert s.stats.loc["0:h:3", "mean"] == 1.0


def test_existing_dir_refused_then_replaced(tmp_path):
    _store(tmp_path)
    with pytest.raises(RnnvizError, match=r"already exists \(use --force"):
        _store(tmp_path)
    s = write_store(tmp_path / "st", "ab", {(1, "h"): np.ones((2, 4))}, CFG, VOCAB, overwrite=True)
    assert open_store(tmp_path / "st").text == "ab" and s.layers == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["st"]  # no temp or .old dirs left


def test_exception_mid_write_leaves_nothing(tmp_path):
    w = StoreWriter(tmp_path / "st", TEXT, layers=[0], kinds=["h"], model_config=CFG, vocab=VOCAB)
    with pytest.raises(KeyboardInterrupt), w:
        w.write(0, {(0, "h"): np.ones((5, 4))})
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_incomplete_rows_refused(tmp_path):
    with pytest.raises(RnnvizError, match=r"store incomplete: 5 of 32 rows written"):
        with StoreWriter(tmp_path / "st", TEXT, layers=[0], kinds=["h"], model_config=CFG, vocab=VOCAB) as w:
            w.write(0, {(0, "h"): np.ones((5, 4))})
    assert list(tmp_path.iterdir()) == []


def test_writer_bad_input(tmp_path):
    kw = {"model_config": CFG, "vocab": VOCAB}
    with pytest.raises(RnnvizError, match="the text is empty"):
        StoreWriter(tmp_path / "a", "", layers=[0], kinds=["h"], **kw)
    with pytest.raises(RnnvizError, match=r"layer 7 does not exist: the model has 3 layer\(s\), 0..2"):
        StoreWriter(tmp_path / "a", "ab", layers=[0, 7], kinds=["h"], **kw)
    gru = ModelConfig(vocab_size=len(VOCAB), cell="gru", layers=1, hidden=4)
    with pytest.raises(RnnvizError, match=r"a gru has no kind 'c' \(it has h, r, z, n\)"):
        StoreWriter(tmp_path / "a", "ab", layers=[0], kinds=["c"], model_config=gru, vocab=VOCAB)
    with pytest.raises(RnnvizError, match=r"expected \(32, 4\)"):
        write_store(tmp_path / "a", TEXT, {(0, "h"): np.zeros((3, 4))}, CFG, VOCAB)
    with pytest.raises(RnnvizError, match="cover every layer"):
        write_store(tmp_path / "a", TEXT, {(0, "h"): np.zeros((32, 4)), (1, "c"): np.zeros((32, 4))}, CFG, VOCAB)
    assert not (tmp_path / "a").exists()


def test_unit_lookup_errors(tmp_path):
    store, *_ = _store(tmp_path)
    with pytest.raises(RnnvizError, match=r"unit '1:h:0' is not in this store \(layers 0,2; kinds h,c,o"):
        store.unit("1:h:0")
    with pytest.raises(RnnvizError, match=r"'0:h:4' is not in this store .*indices 0..3"):
        store.window(0, 5, ["0:h:4"])
    with pytest.raises(RnnvizError, match="bad unit name"):
        store.unit("h:0")


def test_corrupt_stores(tmp_path):
    _store(tmp_path)
    d = tmp_path / "st"
    with open(d / "L2.c.f16", "r+b") as f:
        f.truncate(10)
    with pytest.raises(RnnvizError, match=r"L2.c.f16: 10 bytes, expected 256 .*corrupt store"):
        open_store(d)
    (d / "L2.c.f16").unlink()
    with pytest.raises(RnnvizError, match=r"incomplete \(L2.c.f16 missing\)"):
        open_store(d)
    (d / "manifest.json").unlink()
    with pytest.raises(RnnvizError, match="not an rnnviz store"):
        open_store(d)
    with pytest.raises(RnnvizError, match="no such store directory"):
        open_store(tmp_path / "nope")
    _store(tmp_path, "t2")
    (tmp_path / "t2" / "text.txt").write_text(TEXT[:-1] + "é", encoding="utf-8")  # same chars, more bytes
    m = json.loads((tmp_path / "t2" / "manifest.json").read_text())
    assert m["length"] == len(TEXT)
    assert open_store(tmp_path / "t2").text.endswith("é")
    (tmp_path / "t2" / "text.txt").write_text(TEXT[:-2], encoding="utf-8")
    with pytest.raises(RnnvizError, match=r"30 characters, the manifest says 32"):
        open_store(tmp_path / "t2")


def test_checkpoint_path(tmp_path, tiny_ckpt):
    sha = sha256_file(tiny_ckpt / WEIGHTS)
    s = write_store(tmp_path / "s", "ab", {(0, "h"): np.zeros((2, 4))}, CFG, VOCAB,
                    checkpoint={"path": str(tiny_ckpt), "sha256": sha})
    assert s.checkpoint_path == tiny_ckpt
    with open(tiny_ckpt / WEIGHTS, "ab") as f:
        f.write(b"x")
    assert open_store(tmp_path / "s").checkpoint_path is None  # weights changed since recording
    assert write_store(tmp_path / "t", "ab", {(0, "h"): np.zeros((2, 4))}, CFG, VOCAB).checkpoint_path is None
