"""Modern recurrent cells (minGRU, Mamba, sLSTM): each fast form against a naive sequential one, the recording
against a per-step loop, and the cell names, kinds and widths pinned."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import rnnviz
from rnnviz.errors import RnnvizError
from rnnviz.model.cells import KINDS, kind_width, state_shapes
from rnnviz.model.charrnn import CharRNN, ModelConfig, clamp_spec, parse_kinds, parse_unit
from rnnviz.model.vocab import Vocab

pytestmark = pytest.mark.usefixtures("one_thread")
TEXT = 'He said "yes," and then\n  if (x) { y; }\n"No," she said.\n' * 8
SIZES = {"mingru": (2, 8), "mamba": (2, 8), "slstm": (2, 8)}


def _model(cell: str, seed: int = 0) -> CharRNN:
    torch.manual_seed(seed)
    vocab = Vocab(sorted(set(TEXT)))
    layers, hidden = SIZES[cell]
    return CharRNN(ModelConfig(len(vocab), cell, layers, hidden), vocab).eval()


def test_kinds_widths_and_state_shapes_are_pinned():
    assert KINDS["mingru"] == ("h", "z", "n")
    assert KINDS["mamba"] == ("h", "x", "dt", "y", "sn", "s")
    assert KINDS["slstm"] == ("h", "c", "n", "m", "i", "f", "z", "o")
    assert parse_kinds(None, "mamba") == ["h"] and parse_kinds(None, "slstm") == ["h", "c"]
    assert parse_kinds("all", "mamba") == ["h", "x", "dt", "y", "sn"]  # the whole state only on request
    assert parse_kinds("s,h", "mamba") == ["h", "s"]
    assert [kind_width("mamba", 176, k) for k in KINDS["mamba"]] == [176, 352, 352, 352, 352, 352 * 16]
    assert state_shapes("mamba", 4, 3, 176) == [(4, 3, 352, 3), (4, 3, 352, 16)]
    assert state_shapes("slstm", 2, 3, 8) == [(2, 3, 8)] * 4
    cfg = ModelConfig(10, "mamba", 2, 8)
    assert parse_unit("1:dt:15", cfg) == (1, "dt", 15)
    with pytest.raises(RnnvizError, match="layers have 16 units of kind x, 0..15"):
        parse_unit("0:x:16", cfg)


@pytest.mark.parametrize("cell", ["mingru", "mamba", "slstm"])
def test_chunked_forward_equals_one_pass_and_the_step_loop(cell):
    m = _model(cell)
    x = torch.from_numpy(m.vocab.encode(TEXT[:90])).long()[None].repeat(2, 1)
    with torch.no_grad():
        whole, _ = m(x)
        a, s = m(x[:, :37])
        b, _ = m(x[:, 37:], s)
        state, steps = m.init_state(2), []
        for t in range(x.shape[1]):
            logits, state = m.step(x[:, t], state)
            steps.append(logits)
    torch.testing.assert_close(torch.cat([a, b], 1), whole, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(torch.stack(steps, 1), whole, atol=2e-5, rtol=1e-4)


def _naive_mingru(cell, x, h):
    """The paper's sequential minGRU: z = σ(k), n = g(v), h = (1 - z) h + z n, one step at a time."""
    k, v = cell.proj(x).chunk(2, -1)
    z = torch.sigmoid(k)
    n = torch.where(v >= 0, v + 0.5, torch.sigmoid(v))
    hs = []
    for t in range(x.shape[1]):
        h = (1 - z[:, t]) * h + z[:, t] * n[:, t]
        hs.append(h)
    return torch.stack(hs, 1), z, n


def test_mingru_log_space_scan_equals_the_sequential_recurrence_from_a_carried_state():
    torch.manual_seed(1)
    m = _model("mingru")
    cell = m.rnn.mingru[0]
    x, h0 = torch.randn(3, 300, 8), torch.rand(3, 8)
    with torch.no_grad():
        h, z, n = cell(x, h0)
        ref, zr, nr = _naive_mingru(cell, x, h0)
    torch.testing.assert_close(h, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(z, zr)
    torch.testing.assert_close(n, nr)
    assert (h > 0).all()


def test_mamba_equals_mambapy_forward_and_its_sequential_step():
    from mambapy.mamba import MambaBlock

    torch.manual_seed(2)
    m = _model("mamba")
    ours = m.rnn.mixers[0]
    ref = MambaBlock(ours.config)
    ref.load_state_dict(ours.state_dict())
    u = torch.randn(2, 40, 8)
    E, N, K = ours.config.d_inner, ours.config.d_state, ours.config.d_conv
    with torch.no_grad():
        out, conv, s, rec = ours.run(u, torch.zeros(2, E, K - 1), torch.zeros(2, E, N))
        torch.testing.assert_close(out, ref(u), atol=1e-5, rtol=1e-4)  # mambapy's parallel form
        cache, steps = (None, torch.zeros(2, E, K - 1)), []
        for t in range(u.shape[1]):  # mambapy's own sequential form, its (h, inputs) cache carried
            y, cache = ref.step(u[:, t], cache)
            steps.append(y)
        torch.testing.assert_close(out, torch.stack(steps, 1), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(s, cache[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(conv, cache[1])
        # from a carried state: the second half alone equals the second half of the whole
        out2, _, s2, _ = ours.run(u[:, 25:], *ours.run(u[:, :25], torch.zeros(2, E, K - 1),
                                                       torch.zeros(2, E, N))[1:3])
    torch.testing.assert_close(out2, out[:, 25:], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(s2, s, atol=1e-5, rtol=1e-4)
    assert rec["sn"].shape == (2, 40, E) and (rec["dt"] > 0).all()


def test_mamba_cpu_step_loop_scan_and_its_backward_equal_mambapy_pscan_in_float64():
    """The CPU scan (a step loop with a hand-written backward) against mambapy's pscan path, values and every
    gradient, with a carried state and a length that is not a power of two; and torch's gradcheck."""
    from rnnviz.model.modern.mamba import _pscan
    from rnnviz.model.modern.selective_scan import SelectiveScan, selective_scan

    g = torch.Generator().manual_seed(5)
    B, T, E, N = 3, 13, 6, 4
    args = [torch.rand(B, T, E, generator=g), torch.randn(B, T, E, generator=g), torch.randn(B, T, N, generator=g),
            torch.randn(B, T, N, generator=g), -3 * torch.rand(E, N, generator=g), torch.randn(B, E, N, generator=g)]
    args = [a.double().requires_grad_() for a in args]
    dt, x, Bm, C, A, s0 = args
    w_y, w_s = torch.randn(B, T, E, generator=g).double(), torch.randn(B, T, E, N, generator=g).double()
    grads = []
    for scan in (lambda: selective_scan(dt, dt * x, Bm, C, A, s0)[:2], lambda: _pscan(dt, x, Bm, C, A, s0)):
        y, s = scan()
        grads.append((y, s, torch.autograd.grad((y * w_y).sum() + (s * w_s).sum(), args)))
    (y1, s1, g1), (y2, s2, g2) = grads
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(s1, s2)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b)
    with torch.no_grad():  # evaluation: no states kept unless asked, the same outputs, the last state its own
        y0, none, last = selective_scan(dt, dt * x, Bm, C, A, s0, keep_states=False)
        _, kept, _ = selective_scan(dt, dt * x, Bm, C, A, s0)
    assert none is None and last._base is None
    torch.testing.assert_close(y0, y1.detach())
    torch.testing.assert_close(kept, s1.detach())
    torch.testing.assert_close(last, s1[:, -1].detach())
    small = [a.detach().clone().requires_grad_() for a in (dt[:2, :5, :3], x[:2, :5, :3], Bm[:2, :5], C[:2, :5],
                                                           A[:3], s0[:2, :3])]
    assert torch.autograd.gradcheck(SelectiveScan.apply, small)


def test_slstm_step_equals_the_xlstm_package_pointwise():
    from xlstm.blocks.slstm.src.vanilla.slstm import slstm_forward_pointwise

    from rnnviz.model.modern.slstm import pointwise

    torch.manual_seed(3)
    B, H = 4, 6
    state = torch.zeros(4, B, H)
    for _ in range(6):  # from the zero state (n = 0: m takes ĩ), then from the states it produced
        wx, ry, b = torch.randn(B, 4 * H) * 3, torch.randn(B, 4 * H), torch.randn(1, 4 * H)
        ref, ref_gates = slstm_forward_pointwise(wx, ry, b, state, {})
        h, c, n, m, g = pointwise((wx + ry + b).view(B, 4, H), *state)
        torch.testing.assert_close(torch.stack([h, c, n, m]), ref)
        torch.testing.assert_close(torch.stack([g["i"], g["f"], torch.tanh(ref_gates[2]) * 0 + g["z"], g["o"]]),
                                   torch.stack([ref_gates[0], ref_gates[1], torch.tanh(ref_gates[2]), ref_gates[3]]))
        state = ref


@pytest.mark.parametrize("cell", ["mingru", "mamba", "slstm"])
def test_recording_equals_the_per_step_loop_to_float16(tmp_path, cell):
    m = _model(cell, seed=4)
    store = rnnviz.record(m, TEXT, tmp_path / "s", kinds="all", topk=3)
    assert store.cell == cell and store.kinds == [k for k in KINDS[cell] if k != "s"]
    ids = torch.from_numpy(m.vocab.encode(TEXT)).long()
    state, rows, logp = m.init_state(1), {}, []
    with torch.no_grad():
        for t in range(len(ids)):
            logits, state, rec = m.step(ids[t : t + 1], state, internals=True)
            logp.append(F.log_softmax(logits[0], -1))
            for key, v in rec.items():
                rows.setdefault(key, []).append(v[0].numpy())
    for (l, k), vals in rows.items():
        if k in store.kinds:
            ref = np.stack(vals)
            np.testing.assert_allclose(store.array(l, k)[:].astype(np.float64), ref, rtol=2e-3,
                                       atol=2e-3 * max(1.0, float(np.abs(ref).max())))
    want = torch.stack(logp)[torch.arange(len(ids) - 1), ids[1:]].numpy()
    np.testing.assert_allclose(store.logprob[:-1], want, atol=1e-4)
    assert math.isnan(store.logprob[-1])


def test_mamba_whole_state_is_recorded_on_request_and_its_norm_matches(tmp_path):
    m = _model("mamba", seed=5)
    store = rnnviz.record(m, TEXT[:200], tmp_path / "s", kinds="s,sn", layers="1")
    s = store.array(1, "s")[:].astype(np.float64).reshape(200, 16, 16)  # (T, d_inner, d_state)
    np.testing.assert_allclose(np.linalg.norm(s, axis=-1), store.array(1, "sn")[:], rtol=4e-3, atol=1e-3)
    assert store.units[0] == "1:sn:0" and store.units[-1] == "1:s:255"


def test_clamping_a_unit_in_the_parallel_form_equals_clamping_every_step():
    for cell, unit in (("mingru", "0:z:3"), ("mamba", "1:dt:5"), ("slstm", "0:f:2")):
        m = _model(cell, seed=6)
        spec = clamp_spec({unit: 3.0}, m.config)
        x = torch.from_numpy(m.vocab.encode(TEXT[:60])).long()[None]
        with torch.no_grad():
            out, _, _ = m.rnn.run(x, None, None, spec)
            whole = m.head(out)
            state, steps = m.init_state(1), []
            for t in range(x.shape[1]):
                logits, state = m.step(x[:, t], state, clamp=spec)
                steps.append(logits)
            plain, _ = m(x)
        torch.testing.assert_close(torch.stack(steps, 1), whole, atol=2e-5, rtol=1e-4)
        assert (whole - plain).abs().max() > 1e-3, cell  # the clamp changed something


def test_state_read_outs_cannot_be_clamped():
    m = _model("mamba")
    with pytest.raises(RnnvizError, match="a mamba's 'sn' is read from its state and cannot be clamped"):
        m.step(torch.tensor([1]), m.init_state(1), clamp=clamp_spec({"0:sn:1": 0.0}, m.config))


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["mingru", "mamba", "slstm"])
def test_the_cli_trains_resumes_samples_records_ranks_and_ablates_a_modern_cell(tmp_path, cell):
    from click.testing import CliRunner

    from rnnviz.cli import main

    def run(*args):
        r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r.output

    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT * 10, encoding="utf-8")
    out = tmp_path / "run"
    run("train", corpus, "--out", out, "--cell", cell, "--layers", 2, "--hidden", 8, "--batch", 4, "--seq-len", 20,
        "--max-steps", 4, "--eval-every", 2, "--seed", 1, "--device", "cpu")
    run("train", corpus, "--out", out, "--resume", "--max-steps", 6)
    assert '"step": 6' in (out / "log.jsonl").read_text().splitlines()[-1]
    assert len(run("sample", out / "best", "--length", 30, "--seed", 1).strip()) > 0
    assert "nats/char" in run("eval", out / "best", corpus, "--split", "test")
    rec = run("record", out / "best", corpus, "--out", tmp_path / "s", "--kinds", "all")
    n = 2 * {"mingru": 3 * 8, "mamba": 8 + 4 * 16, "slstm": 8 * 8}[cell]
    assert f"x {n:,} units" in rec  # every kind of both layers, Mamba's d_inner-wide kinds included
    assert "in_quote" in run("find", tmp_path / "s", "--feature", "in_quote", "--top", 1)
    unit = {"mingru": "1:h:0", "mamba": "1:y:3", "slstm": "1:c:2"}[cell]
    assert f"Clamped {unit}=0" in run("ablate", out / "best", corpus, "--unit", unit, "--random", 2,
                                      "--length", 400)


def test_a_modern_store_is_exported_with_its_own_words_and_scales(tmp_path):
    from rnnviz.views.colours import scale_kind
    from rnnviz.views.export import export_html

    store = rnnviz.record(_model("mamba", seed=7), TEXT[:300], tmp_path / "s", kinds="all")
    export_html(store, ["0:dt:3", "1:sn:5", "0:h:2"], tmp_path / "p.html")
    page = (tmp_path / "p.html").read_text(encoding="utf-8")
    assert all(w in page for w in ("step size Δ", "state norm", "block output"))
    # an sLSTM's z is its tanh cell input (diverging), its i and f gates in [0, 1] (sequential)
    assert [scale_kind("slstm", k) for k in ("z", "i", "f", "o", "n")] == ["c", "f", "f", "f", "c"]
    assert scale_kind("lstm", "z") == "z" and scale_kind("mingru", "z") == "f"
