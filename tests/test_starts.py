"""The recorder's parallel streams start where one sequential pass would be, for cells that count too.

Planted cells: an LSTM unit that counts a character with its forget gate at 1 (c grows without bound)
and one that decays slowly (f = 0.998: a memory of ~500 characters), a GRU unit that keeps h with z near 1.
A burn-in guess gets these wrong; the corrected recording agrees with ``exact=True`` within the tolerance,
and the error it reports is the error it has.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TEXT

from rnnviz.analysis.causal import ablate
from rnnviz.cli import main
from rnnviz.model.checkpoint import save_checkpoint
from rnnviz.recording.recorder import TOLERANCE, record
from rnnviz.recording.starts import Tolerance, settle, start_error, sweep

pytestmark = pytest.mark.usefixtures("one_thread")

F16_REL = 2.0**-11  # float16 rounding: half an ulp, relative
# What the recording promises, beyond float16 rounding of both sides: h and the gates within 0.01,
# c within 0.01 + 2e-3·|c| (c can grow without bound; the boundary tolerance is 1e-3 + 2e-3·|c|).
VALUE_ABS, VALUE_REL = 0.01, TOLERANCE.rel


def _text(n: int, seed: int = 0) -> str:
    """n characters of TEXT's alphabet in a seeded random order."""
    alphabet = sorted(set(TEXT))
    return "".join(np.random.default_rng(seed).choice(alphabet, size=n))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def planted(make_model, cell: str = "lstm"):
    """A random 2 x 16 model with planted long-memory units in layer 0.

    LSTM: unit 0 counts 'e' (f = 1 - 2e-9, i = 1, g = tanh(3) on 'e', 0 elsewhere: c grows by ~1 per
    'e'); unit 1 decays slowly (f = 0.998) towards tanh(2) on every 's'. GRU: unit 0 keeps its h with
    z = 0.9995 and moves it towards n = tanh(3), tanh(-3) on 's': it rises over thousands of characters."""
    model = make_model(cell, 2, 16, seed=3)
    vocab, H = model.vocab, 16
    e, s = vocab.encode("e")[0], vocab.encode("s")[0]
    w_ih, w_hh, b_ih, b_hh = model.layer_weights(0)
    with torch.no_grad():
        if cell == "lstm":
            i, f, g, o = (slice(k * H, (k + 1) * H) for k in range(4))
            for gate in (i, f, g, o):  # the planted units read nothing but their character
                w_hh[gate][:2] = 0
                w_ih[gate][:2] = 0
                b_ih[gate][:2] = 0
                b_hh[gate][:2] = 0
            b_ih[i][:2] = 10.0  # always writing
            b_ih[o][:2] = 10.0
            b_ih[f][0] = 20.0  # sigmoid(20) = 1 - 2e-9: a counter
            b_ih[f][1] = _logit(0.998)
            w_ih[g][0, e] = 3.0
            w_ih[g][1, s] = 2.0
        else:
            r, z, n = (slice(k * H, (k + 1) * H) for k in range(3))
            for gate in (r, z, n):
                w_hh[gate][0] = 0
                w_ih[gate][0] = 0
                b_ih[gate][0] = 0
                b_hh[gate][0] = 0
            b_ih[z][0] = _logit(0.9995)
            b_ih[n][0], w_ih[n][0, s] = 3.0, -6.0
    return model


def _excess(fast: np.ndarray, exact: np.ndarray, kind: str) -> np.ndarray:
    """How far |fast - exact| is over what the recording promises (<= 0 everywhere when it keeps it)."""
    a, b = fast.astype(np.float64), exact.astype(np.float64)
    rel = VALUE_REL if kind == "c" else 0.0
    return np.abs(a - b) - (VALUE_ABS + (rel + 2 * F16_REL) * np.abs(b))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_planted_long_memory_cells_fast_equals_exact(tmp_path, make_model, cell):
    model = planted(make_model, cell)
    text = _text(6000)
    exact = record(model, text, tmp_path / "exact", kinds="all", exact=True)
    fast = record(model, text, tmp_path / "fast", kinds="all", streams=12, burn_in=100)
    old = record(model, text, tmp_path / "old", kinds="all", streams=12, burn_in=100, max_passes=0)
    counter = exact.unit("0:c:0" if cell == "lstm" else "0:h:0").astype(np.float64)
    if cell == "lstm":  # the planted counter counts: c ends near the number of 'e's
        assert abs(counter[-1] - math.tanh(3) * text.count("e")) < 1.0
    for key in [(l, k) for l in exact.layers for k in exact.kinds]:
        assert _excess(fast.array(*key), exact.array(*key), key[1]).max() <= 0, key
    r = fast.manifest["recorder"]
    assert r["start_error"]["within"] and r["passes"] >= 1
    assert r["start_error_of_guess"]["units_over"] > 0  # the burn-in guess was wrong, and said so
    # Today's path (the guess, uncorrected) fails the same comparison on the planted units, and says so.
    planted_key = (0, "c") if cell == "lstm" else (0, "h")
    assert _excess(old.array(*planted_key), exact.array(*planted_key), planted_key[1])[:, 0].max() > 0
    assert not old.manifest["recorder"]["start_error"]["within"]
    assert old.manifest["recorder"]["start_error"]["unit"].startswith("0:")


def test_reported_error_is_the_error(tmp_path, make_model):
    """Uncorrected: the boundary error reported for the counter is its error in the store, at the first row
    of the stream that started wrong (a counter carries its start error along unchanged)."""
    model = planted(make_model, "lstm")
    text = _text(6000, seed=1)
    exact = record(model, text, tmp_path / "exact", kinds="h,c", exact=True)
    old = record(model, text, tmp_path / "old", kinds="h,c", streams=12, burn_in=100, max_passes=0)
    rep = old.manifest["recorder"]["start_error"]
    assert rep["unit"] == "0:c:0"  # the counter is the worst unit
    C = old.manifest["recorder"]["chunk"]
    row = rep["stream"] * C
    measured = abs(float(old.unit("0:c:0")[row]) - float(exact.unit("0:c:0")[row]))
    assert measured == pytest.approx(rep["error"], abs=4 * F16_REL * abs(float(exact.unit("0:c:0")[row])) + 1e-3)
    assert rep["value"] == pytest.approx(float(exact.unit("0:c:0")[row - 1]), rel=2e-3)
    # Corrected: the reported error bounds what the store has at every stream's first row, beyond float16.
    fast = record(model, text, tmp_path / "fast", kinds="h,c", streams=12, burn_in=100)
    rep = fast.manifest["recorder"]["start_error"]
    starts = np.arange(1, 12) * C
    for key in [(l, k) for l in (0, 1) for k in "hc"]:
        a, b = (s.array(*key)[starts].astype(np.float64) for s in (fast, exact))
        assert (np.abs(a - b) - 2 * F16_REL * np.abs(b)).max() <= rep["error"] + 1e-5, key


def test_one_pass_settles_a_contractive_model_and_counters_need_the_sweep(tmp_path, make_model):
    # A random model forgets within a chunk: the first pass finds the guess close enough (or one sweep does).
    plain = record(make_model("lstm", 2, 16, seed=5), _text(4000), tmp_path / "plain", streams=8, burn_in=200)
    assert plain.manifest["recorder"]["passes"] == 1 and plain.manifest["recorder"]["recordings"] == 1
    # Exact (one stream): no boundary, nothing to settle, said as such.
    one = record(make_model("lstm", 2, 16, seed=5), _text(4000), tmp_path / "one", exact=True)
    r = one.manifest["recorder"]
    assert (r["passes"], r["start_error"], r["start_error_of_guess"]) == (0, None, None)


def test_sweep_on_a_linear_chain():
    """F_b(x) = a_b·x + u_b per unit: the sweep with D = a gives the exact starts at once; with D = 0
    (restart from the predecessor's end) the first k boundaries are exact after k passes."""
    gen = torch.Generator().manual_seed(0)
    K, L, B, H = 2, 1, 6, 3
    a = torch.rand(K, L, B, H, generator=gen)
    a[:, :, :, 0] = 1.0  # a counter
    u = torch.randn(K, L, B, H, generator=gen) * 5
    exact = torch.zeros(K, L, B, H)
    for b in range(1, B):
        exact[:, :, b] = a[:, :, b - 1] * exact[:, :, b - 1] + u[:, :, b - 1]
    X = torch.randn(K, L, B, H, generator=gen)
    X[:, :, 0] = 0
    D = torch.zeros(K, K, L, B, H)
    D[0, 0], D[1, 1] = a[0], a[1]
    torch.testing.assert_close(sweep(X, a * X + u, D), exact)
    Xj = X
    for k in range(1, B):
        Xj = sweep(Xj, a * Xj + u, torch.zeros_like(D))
        torch.testing.assert_close(Xj[:, :, : k + 1], exact[:, :, : k + 1])


def test_settle_counts_passes_and_reports_the_guess():
    K, L, B, H = 1, 1, 5, 2
    a = torch.tensor([1.0, 0.0]).expand(K, L, B, H)
    u = torch.ones(K, L, B, H)

    def run(X):
        D = torch.zeros(K, K, L, B, H)
        D[0, 0] = a
        return a * X + u, D

    got = settle(torch.zeros(K, L, B, H), run, ("h",), Tolerance(), max_passes=8)
    assert got.passes == 2  # one pass measures and sweeps, the second finds every boundary within
    # every stream missed its predecessor's end by 1, and unit 0 carries its predecessor's miss: stream 4 is 4 off
    assert (got.guess_error.unit, got.guess_error.error, got.guess_error.stream) == ("0:h:0", 4.0, 4)
    assert got.guess_error.units_over == 2
    torch.testing.assert_close(got.starts[0, 0, :, 0], torch.arange(B, dtype=torch.float32))
    none = settle(torch.zeros(K, L, B, H), run, ("h",), Tolerance(), max_passes=0)
    assert (none.passes, none.guess_error) == (0, None)


def test_start_error_scales_c_by_its_size():
    X = torch.zeros(2, 1, 2, 2)
    Y = torch.zeros(2, 1, 2, 2)
    Y[1, 0, 0, 0] = 1000.0  # c of unit 0 ends at 1000, stream 1 started at 999: within 1e-3 + 2e-3·1000
    X[1, 0, 1, 0] = 999.0
    Y[0, 0, 0, 1] = 0.5  # h of unit 1 ends at 0.5, stream 1 started at 0.49: over 1e-3 + 2e-3·0.5
    X[0, 0, 1, 1] = 0.49
    D = torch.zeros(2, 2, 1, 2, 2)
    e = start_error(X, Y, D, ("h", "c"), Tolerance())
    assert (e.unit, e.units_over, e.units, e.stream) == ("0:h:1", 1, 4, 1)
    assert e.error == pytest.approx(0.01) and e.scaled == pytest.approx(0.01 / 0.002)
    assert start_error(X[:, :, :1], Y[:, :, :1], D[:, :, :, :1], ("h", "c"), Tolerance()) is None


def test_cli_reports_the_boundary_check(tmp_path, make_model):
    ckpt = tmp_path / "ckpt"
    save_checkpoint(planted(make_model, "lstm"), ckpt)
    src = tmp_path / "t.txt"
    src.write_text(_text(6000), encoding="utf-8")
    run = CliRunner().invoke(main, ["record", str(ckpt), str(src), "--out", str(tmp_path / "st"), "--streams", "12",
                                    "--burn-in", "100"])
    assert run.exit_code == 0, run.output
    lines = run.output.strip().splitlines()
    assert lines[-2].startswith("Stream starts: 12 streams settled in ")
    assert "the burn-in guess was off by " in lines[-2] and " at 0:c:0" in lines[-2]
    assert lines[-1].startswith("Stream starts agree with one sequential pass within tolerance "
                                "(|error| <= 0.001 + 0.002·|value|): worst ")
    old = CliRunner().invoke(main, ["record", str(ckpt), str(src), "--out", str(tmp_path / "old"), "--streams", "12",
                                    "--burn-in", "100", "--max-passes", "0"])
    assert old.exit_code == 0, old.output
    last = old.output.strip().splitlines()[-1]
    assert last.startswith("Warning: stream starts over tolerance at ") and "0:c:0" in last
    assert "record with --exact" in last


def test_ablation_streams_start_where_one_pass_is(make_model):
    """The slow unit 0:c:1 holds |c| ~ 10 after a few hundred characters: streams started from zero 20
    characters early read it as ~0 (h = o·tanh(c) differs), and every unit that reads h with it."""
    model = planted(make_model, "lstm")
    text = _text(3000, seed=2)
    one = ablate(model, text, ["1:c:3"], streams=1, random=0)
    many = ablate(model, text, ["1:c:3"], streams=8, burn_in=20, random=0)
    assert many.streams == 8 and many.burn_in == 20 and many.start_error["within"]
    assert many.clean_loss == pytest.approx(one.clean_loss, abs=1e-5)
    assert many.ablated_loss == pytest.approx(one.ablated_loss, abs=1e-4)
    assert many.clamp_boundary_residual < 1e-3
    assert one.start_error is None and one.clamp_boundary_residual is None
