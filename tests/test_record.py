"""The recorder: fast vs exact vs a naive per-step loop, store contents, atomicity, bad input, CLI."""

from __future__ import annotations

import errno
import importlib
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TEXT

from rnnviz.cli import main
from rnnviz.errors import RnnvizError
from rnnviz.model.checkpoint import load_checkpoint, save_checkpoint, sha256_file
from rnnviz.recording.recorder import record
from rnnviz.store.reader import open_store

pytestmark = pytest.mark.usefixtures("one_thread")

record_mod = importlib.import_module("rnnviz.recording.recorder")
recurrence = importlib.import_module("rnnviz.recording.recurrence")


@pytest.fixture(params=["step loop", "kernel"])
def lstm_path(request, monkeypatch):
    """A CPU LSTM's kinds recorded by the step loop (rnnviz.recording.lstm_steps) at any stream count, or by
    the fused kernel and the batched recomputation at any count (other cells take the kernel path either way)."""
    monkeypatch.setattr(recurrence, "MIN_STREAMS", 0 if request.param == "step loop" else 10**9)
    return request.param
F16_REL = 2.0**-11  # float16 rounding: half an ulp, relative


def _long_text(n: int, seed: int = 0) -> str:
    """n characters of TEXT's words in a seeded random order (all inside the fixtures' vocab)."""
    rng = np.random.default_rng(seed)
    words = TEXT.replace("\n", " \n ").split(" ")
    out, size = [], 0
    while size < n:
        w = words[rng.integers(len(words))]
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:n]


def _naive(model, text: str):
    """Per-step CharRNN.step loop from a zero state: {(layer, kind): (T, H)}, log p(next) (T-1,), probs (T, V)."""
    ids = torch.from_numpy(model.vocab.encode(text))
    state, recs, probs = model.init_state(1), {}, []
    with torch.no_grad():
        for t in range(len(text)):
            logits, state, rec = model.step(ids[t : t + 1], state, internals=True)
            for key, v in rec.items():
                recs.setdefault(key, []).append(v[0])
            probs.append(torch.softmax(logits[0], -1))
    recs = {k: torch.stack(v).numpy() for k, v in recs.items()}
    probs = torch.stack(probs).numpy()
    logp_next = np.log(probs[np.arange(len(text) - 1), ids[1:].numpy()])
    return recs, logp_next, probs


def _assert_close_f16(stored, ref, atol):
    """|stored - ref| <= atol + float16 rounding of ref."""
    stored = np.asarray(stored, dtype=np.float64)
    err = np.abs(stored - ref) - (atol + F16_REL * np.abs(ref))
    assert err.max() <= 0, f"max excess {err.max():.2e} (max abs diff {np.abs(stored - ref).max():.2e})"


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_exact_matches_naive_loop(tmp_path, make_model, cell, lstm_path):
    model = make_model(cell, layers=2, hidden=16)
    text = _long_text(400)
    store = record(model, text, tmp_path / "st", kinds="all", exact=True, topk=3)
    recs, logp_next, probs = _naive(model, text)
    assert store.kinds == list({"lstm": "hcifgo", "gru": "hrzn", "rnn": "h"}[cell])
    for layer in (0, 1):
        for kind in store.kinds:
            _assert_close_f16(store.array(layer, kind), recs[(layer, kind)], 1e-3)
    np.testing.assert_allclose(store.logprob[:-1], logp_next, atol=1e-4)
    assert np.isnan(store.logprob[-1])
    ids, p = store.topk
    np.testing.assert_allclose(p, np.sort(probs, 1)[:, ::-1][:, :3], atol=1e-3)
    np.testing.assert_allclose(np.take_along_axis(probs, ids.astype(np.int64), 1), p, atol=1e-3)
    assert store.manifest["recorder"]["streams"] == 1


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_fast_matches_exact(tmp_path, make_model, cell, lstm_path):
    model = make_model(cell, layers=2, hidden=16, seed=1)
    text = _long_text(3000, seed=1)
    exact = record(model, text, tmp_path / "exact", kinds="all", exact=True)
    # 10 streams of 300: streams 1-3 start within the burn-in (exact warm start), 4-9 read 1000 chars.
    fast = record(model, text, tmp_path / "fast", kinds="all", streams=10, burn_in=1000)
    r = fast.manifest["recorder"]
    assert (r["streams"], r["chunk"], r["burn_in"]) == (10, 300, 1000)
    for key in [(l, k) for l in (0, 1) for k in exact.kinds]:
        a, b = fast.array(*key).astype(np.float64), exact.array(*key).astype(np.float64)
        assert (np.abs(a - b) <= 0.03 + 2 * F16_REL * np.abs(b)).all(), key  # + float16 rounding of both
        assert np.abs(a[: 4 * 300] - b[: 4 * 300]).max() <= 2e-3, key  # the exactly warm-started streams
    np.testing.assert_allclose(fast.logprob, exact.logprob, atol=0.05)


def test_lstm_o_tanh_c_is_h_and_gru_update(tmp_path, make_model, lstm_path):
    lstm = record(make_model("lstm", 2, 16), _long_text(2000), tmp_path / "l", kinds="all", streams=4, burn_in=100)
    assert lstm.manifest["recorder"]["gates_vs_kernel_max_abs_error"] < 1e-5
    for layer in (0, 1):
        o, c, h = (lstm.array(layer, k).astype(np.float64) for k in "och")
        _assert_close_f16(h, o * np.tanh(c), 2e-3)  # both sides rounded to float16
    gru = record(make_model("gru", 2, 16), _long_text(2000), tmp_path / "g", kinds="all", streams=4, burn_in=100)
    assert gru.manifest["recorder"]["gates_vs_kernel_max_abs_error"] < 1e-5
    r, z, n, h = (gru.array(1, k).astype(np.float64) for k in "rznh")
    h_prev = np.vstack([np.zeros((1, 16)), h[:-1]])
    np.testing.assert_allclose(((1 - z) * n + z * h_prev)[1:], h[1:], atol=3e-3)


def test_trained_sample_model(tmp_path, sample_model, shared_data, lstm_path):
    model = load_checkpoint(sample_model)
    text = (shared_data / "tiny_shakespeare.txt").read_text(encoding="utf-8")[100_000:106_000]
    exact = record(model, text, tmp_path / "exact", kinds="all", exact=True)
    fast = record(model, text, tmp_path / "fast", kinds="all", streams=4, burn_in=1000)
    keys = [(l, k) for l in exact.layers for k in exact.kinds]
    for key in keys:  # c reaches |c| > 32, where one float16 step is 0.031: allow rounding of both sides
        a, b = fast.array(*key).astype(np.float64), exact.array(*key).astype(np.float64)
        assert (np.abs(a - b) <= 0.03 + 2 * F16_REL * np.abs(b)).all(), key
    recs, logp_next, _ = _naive(model, text[:1500])
    for key in keys:
        _assert_close_f16(exact.array(*key)[:1500], recs[key], 1e-3)
    np.testing.assert_allclose(exact.logprob[:1499], logp_next, atol=1e-4)
    assert fast.manifest["recorder"]["gates_vs_kernel_max_abs_error"] < 1e-5
    h, c, o = (fast.array(1, k).astype(np.float64) for k in "hco")
    _assert_close_f16(h, o * np.tanh(c), 2e-3)
    assert fast.checkpoint_path == sample_model.resolve()


def test_block_boundaries_do_not_matter(tmp_path, make_model, monkeypatch, lstm_path):
    model = make_model("lstm", 3, 8, seed=2)
    text = _long_text(700, seed=2)
    whole = record(model, text, tmp_path / "a", kinds="all", streams=3, burn_in=50)
    monkeypatch.setattr(record_mod, "MAX_STEPS", 10)  # 234 = 23 blocks of 10 steps + 4
    steps = record(model, text, tmp_path / "b", kinds="all", streams=3, burn_in=50)
    assert (whole.manifest["recorder"]["block_steps"], steps.manifest["recorder"]["block_steps"]) == (234, 10)
    np.testing.assert_allclose(steps.window(0, 700), whole.window(0, 700), atol=1e-3)
    monkeypatch.setattr(record_mod, "HOST_BLOCK_BYTES", 1)  # the memory bound wins: one step per block
    one = record(model, text[:100], tmp_path / "c", kinds="all", streams=3, burn_in=50)
    assert one.manifest["recorder"]["block_steps"] == 1
    np.testing.assert_allclose(one.window(0, 100), whole.window(0, 100), atol=1e-3)
    np.testing.assert_allclose(steps.stats.to_numpy(), whole.stats.to_numpy(), atol=1e-5)


def test_store_contents_and_provenance(tmp_path, tiny_ckpt):
    model = load_checkpoint(tiny_ckpt)
    text = _long_text(500)
    seen = []
    store = record(model, text, tmp_path / "st", layers=[1], kinds=["o", "h"], streams=2, burn_in=100,
                   start=42, source="corpus.txt", progress=lambda d, t: seen.append((d, t)))
    again = open_store(tmp_path / "st")
    assert again.text == text and again.layers == [1] and again.kinds == ["h", "o"]
    assert again.units[:2] == ["1:h:0", "1:h:1"] and len(again.units) == 32
    r = again.manifest["recorder"]
    assert (r["start"], r["source"], r["length"], r["unknown"], r["exact"]) == (42, "corpus.txt", 500, "error", False)
    assert again.manifest["checkpoint"] == {"path": str(tiny_ckpt.resolve()), "sha256": sha256_file(
        tiny_ckpt / "model.safetensors")}
    assert again.checkpoint_path == tiny_ckpt.resolve()
    assert again.manifest["model"] == model.config.to_dict() and again.manifest["vocab"] == model.vocab.chars
    assert seen[-1] == (500, 500) and all(a[0] < b[0] for a, b in zip(seen, seen[1:], strict=False))
    h = store.array(1, "h").astype(np.float64)
    st = again.stats.loc["1:h:5"]
    assert st["mean"] == pytest.approx(h[:, 5].mean(), rel=1e-5) and st["max"] == h[:, 5].max()
    full = record(model, text, tmp_path / "full", kinds="all", streams=2, burn_in=100)
    np.testing.assert_array_equal(store.array(1, "o"), full.array(1, "o"))  # same values without layer 0 kept
    stats = full.stats
    for l, k in ((l, k) for l in full.layers for k in full.kinds):  # saturation: of the sigmoid gates only
        x = full.array(l, k).astype(np.float32)
        names = [f"{l}:{k}:{i}" for i in range(full.hidden)]
        lo, hi = stats.loc[names, "sat_lo"].to_numpy(), stats.loc[names, "sat_hi"].to_numpy()
        if k in ("i", "f", "o"):
            np.testing.assert_array_equal(lo * len(x), (x < 0.1).sum(0))
            np.testing.assert_array_equal(hi * len(x), (x > 0.9).sum(0))
        else:  # h, c, g: a fraction below 0.1 means nothing for a tanh unit
            assert np.isnan(lo).all() and np.isnan(hi).all(), k


def test_interrupted_recording_leaves_nothing(tmp_path, make_model):
    model = make_model()
    text = _long_text(3000)

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        record(model, text, tmp_path / "st", exact=True, progress=stop)
    assert list(tmp_path.iterdir()) == []
    record(model, text[:100], tmp_path / "st")
    with pytest.raises(KeyboardInterrupt):
        record(model, text, tmp_path / "st", exact=True, progress=stop, overwrite=True)
    assert open_store(tmp_path / "st").length == 100  # the old store is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["st"]


def test_full_disk(tmp_path, make_model, monkeypatch):
    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(RnnvizError, match=r"cannot write .*st: No space left on device"):
        record(make_model(), _long_text(300), tmp_path / "st")
    assert list(tmp_path.iterdir()) == []


def test_unknown_characters(tmp_path, make_model):
    model = make_model()
    text = "First Citizen: ~hear~ me§"
    with pytest.raises(RnnvizError, match=r"2 character\(s\) not in the model's vocabulary: '~' x2 \(first at 15\), "
                       r"'§' x1 \(first at 24\)\. Use --unknown skip"):
        record(model, text, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    s = record(model, text, tmp_path / "b", unknown="skip")
    assert s.text == "First Citizen: hear me" and s.manifest["recorder"]["unknown_chars"] == {"~": 2, "§": 1}
    s = record(model, text, tmp_path / "c", unknown="replace: ")
    assert s.text == "First Citizen:  hear  me " and s.manifest["recorder"]["unknown"] == "replace: "
    with pytest.raises(RnnvizError, match="no character of the text is in the model's vocabulary"):
        record(model, "~~~", tmp_path / "d", unknown="skip")


def test_bad_input(tmp_path, make_model):
    lstm, gru = make_model("lstm", 3, 8), make_model("gru", 2, 8)
    out = tmp_path / "st"
    cases = [
        (lstm, dict(text=""), "nothing to record: the text is empty"),
        (lstm, dict(layers=[7]), r"layer 7 does not exist: the model has 3 layer\(s\), 0..2"),
        (lstm, dict(layers="0,x"), "layers must be comma-separated integers"),
        (gru, dict(kinds="c"), r"a gru has no kind 'c' \(it has h, r, z, n\)"),
        (gru, dict(kinds=["h", "q"]), "a gru has no kind 'q'"),
        (lstm, dict(topk=99), "topk must be from 0 to the vocabulary size"),
        (lstm, dict(burn_in=-1), "burn-in must be a whole number >= 0"),
        (lstm, dict(streams=0), "streams must be a whole number >= 1"),
        (lstm, dict(device="tpu9"), "unknown device 'tpu9'"),
    ]
    for model, kw, msg in cases:
        kw = {"text": TEXT, **kw}
        with pytest.raises(RnnvizError, match=msg):
            record(model, kw.pop("text"), out, **kw)
        assert not out.exists()
    record(lstm, TEXT, out)
    with pytest.raises(RnnvizError, match=r"st already exists \(use --force to replace it\)"):
        record(lstm, TEXT, out)
    assert record(gru, TEXT, out, overwrite=True).kinds == ["h"]  # default kinds: h (and c for an LSTM)


def test_text_shorter_than_burn_in(tmp_path, make_model):
    model = make_model()
    auto = record(model, TEXT, tmp_path / "a", kinds="all")
    assert auto.manifest["recorder"]["streams"] == 1  # not worth parallel streams: exact
    forced = record(model, TEXT, tmp_path / "b", kinds="all", streams=4, burn_in=1000)
    assert forced.manifest["recorder"]["streams"] == 4
    np.testing.assert_allclose(forced.window(0, len(TEXT)), auto.window(0, len(TEXT)), atol=1e-3)


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_record(tmp_path, tiny_ckpt, make_model):
    src = tmp_path / "in.txt"
    src.write_text(_long_text(600), encoding="utf-8")
    res = _cli("record", tiny_ckpt, src, "--out", tmp_path / "st", "--start", 100, "--length", 300,
               "--kinds", "h,c,i", "--layers", "1", "--streams", "2", "--burn-in", "50", "--topk", "2")
    assert res.exit_code == 0, res.output
    assert "Recorded 300 chars x 48 units (layers 1; kinds h,c,i) into" in res.output
    assert "2 stream(s) on cpu" in res.output
    assert "\r" not in res.output and "recording:" not in res.output  # piped: no progress bar in a log
    s = open_store(tmp_path / "st")
    assert s.text == src.read_text(encoding="utf-8")[100:400] and s.k == 2
    assert (s.manifest["recorder"]["start"], s.manifest["recorder"]["source"]) == (100, str(src))

    res = _cli("record", tiny_ckpt, src, "--out", tmp_path / "st")
    assert res.exit_code == 1 and "Error: " in res.output and "already exists (use --force" in res.output
    res = _cli("record", tiny_ckpt, src, "--out", tmp_path / "st", "--force", "--exact", "--threads", "2")
    assert res.exit_code == 0 and open_store(tmp_path / "st").length == 600
    assert open_store(tmp_path / "st").manifest["recorder"]["threads"] == 2  # as asked, and said in the manifest

    gru_ckpt = tmp_path / "gru"
    save_checkpoint(make_model("gru", 2, 8), gru_ckpt)
    bad = [
        (gru_ckpt, ["--kinds", "c"], "Error: a gru has no kind 'c' (it has h, r, z, n)"),
        (tiny_ckpt, ["--layers", "7"], "Error: layer 7 does not exist: the model has 2 layer(s), 0..1"),
        (tiny_ckpt, ["--start", "600"], "Error: --start 600 is past the end of"),
        (tiny_ckpt, ["--length", "0"], "Error: --length must be >= 1"),
        (tiny_ckpt, ["--threads", "0"], "Error: --threads must be a whole number >= 1, got 0"),
    ]
    for ckpt, extra, msg in bad:
        res = _cli("record", ckpt, src, "--out", tmp_path / "x", *extra)
        assert res.exit_code == 1 and msg in res.output, res.output
        assert "Traceback" not in res.output
    odd = tmp_path / "odd.txt"
    odd.write_text("First ~ Citizen", encoding="utf-8")
    res = _cli("record", tiny_ckpt, odd, "--out", tmp_path / "x")
    assert res.exit_code == 1 and "'~' x1 (first at 6)" in res.output
    res = _cli("record", tiny_ckpt, odd, "--out", tmp_path / "x", "--unknown", "skip")
    assert res.exit_code == 0 and "1 unknown char(s) handled by --unknown skip" in res.output
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    res = _cli("record", tiny_ckpt, empty, "--out", tmp_path / "y")
    assert res.exit_code == 1 and "the file is empty" in res.output
    assert not (tmp_path / "y").exists()


@pytest.mark.gpu
def test_cuda_matches_cpu(tmp_path, make_model):
    model = make_model("lstm", 2, 32)
    text = _long_text(5000)
    cpu = record(model, text, tmp_path / "cpu", kinds="all", exact=True)
    gpu = record(model, text, tmp_path / "gpu", kinds="all", device="cuda", streams=4, burn_in=500)
    assert gpu.manifest["recorder"]["gates_vs_kernel_max_abs_error"] < 1e-5
    assert np.abs(gpu.window(0, 5000) - cpu.window(0, 5000)).max() <= 0.03


def test_a_window_starts_from_the_state_its_file_leaves_not_from_zero(tmp_path, tiny_ckpt):
    """`record --start N`: the first stream reads the burn-in characters before the window (not a zero state,
    whose first values spike): with N <= --burn-in, the rows are those of a recording of the whole file."""
    src = tmp_path / "in.txt"
    src.write_text(_long_text(2000), encoding="utf-8")
    assert _cli("record", tiny_ckpt, src, "--out", tmp_path / "all", "--exact").exit_code == 0
    r = _cli("record", tiny_ckpt, src, "--out", tmp_path / "w", "--start", 400, "--length", 800, "--burn-in", 500)
    assert r.exit_code == 0, r.output
    whole, window = open_store(tmp_path / "all"), open_store(tmp_path / "w")
    assert window.meta.recorder["context"] == 400 and window.text == whole.text[400:1200]
    np.testing.assert_allclose(window.read(rows=(0, 800)), whole.read(rows=(400, 1200)), atol=2e-3, rtol=2e-3)
    zero = _cli("record", tiny_ckpt, src, "--out", tmp_path / "z", "--start", 400, "--length", 800, "--burn-in", 0)
    assert zero.exit_code == 0 and open_store(tmp_path / "z").meta.recorder["context"] == 0
    assert np.abs(open_store(tmp_path / "z").read(rows=(0, 3)) - whole.read(rows=(400, 403))).max() > 1e-2
