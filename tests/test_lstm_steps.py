"""The CPU LSTM recording's step loop (rnnviz.recording.lstm_steps) against a naive per-step nn.LSTMCell."""

from __future__ import annotations

import pytest
import torch

from rnnviz.recording import lstm_steps
from rnnviz.recording.lstm_steps import record_steps

B, S, H, D = 3, 11, 8, 5


def naive(x, cell, h, c):
    """Every kind (S, B, H) of an nn.LSTMCell run a step at a time, gates computed as torch documents them."""
    kinds = {k: [] for k in "hcifgo"}
    for t in range(x.shape[0]):
        pre = x[t] @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
        i, f, g, o = pre.chunk(4, -1)
        i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
        h_cell, c_cell = cell(x[t], (h, c))
        c = f * c + i * g
        h = o * c.tanh()
        torch.testing.assert_close(h, h_cell, rtol=0, atol=1e-6)  # the gates are the cell's
        for k, v in zip("hcifgo", (h, c, i, f, g, o), strict=True):
            kinds[k].append(v)
    return {k: torch.stack(v) for k, v in kinds.items()}


@pytest.fixture
def lstm_case(one_thread):
    torch.manual_seed(0)
    cell = torch.nn.LSTMCell(D, H)
    x = torch.randn(S, B, D)
    h0, c0 = torch.randn(B, H) * 0.5, torch.randn(B, H)
    with torch.no_grad():
        xp = (x @ cell.weight_ih.T + cell.bias_ih + cell.bias_hh).contiguous()  # (S, B, 4H)
        want = naive(x, cell, h0, c0)
    return cell, xp, h0, c0, want


@pytest.mark.parametrize("kinds", [list("hcifgo"), ["o", "h", "f"], ["c"]])
def test_every_kind_any_order_equals_a_per_step_cell(lstm_case, kinds):
    cell, xp, h0, c0, want = lstm_case
    blk = torch.full((len(kinds), B, S, H), torch.nan, dtype=torch.float16)
    hs, hT, cT, log_f, o = record_steps(xp, cell.weight_hh.detach().T.contiguous(), h0, c0, blk, kinds)
    for j, k in enumerate(kinds):  # stream-major float16, as the store's writer takes it
        torch.testing.assert_close(blk[j].float(), want[k].transpose(0, 1), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(hs, want["h"], rtol=0, atol=1e-6)
    torch.testing.assert_close(hT, want["h"][-1], rtol=0, atol=1e-6)
    torch.testing.assert_close(cT, want["c"][-1], rtol=0, atol=1e-6)
    torch.testing.assert_close(log_f, want["f"].log().sum(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(o, want["o"][-1], rtol=0, atol=1e-6)


def test_the_python_loop_is_the_scripted_one(lstm_case):
    """Should TorchScript go, the uncompiled loop runs: the same values to the bit."""
    cell, xp, h0, c0, _ = lstm_case
    w = cell.weight_hh.detach().T.contiguous()
    outs = []
    for steps in (lstm_steps._scripted(), lstm_steps._steps):
        blk = torch.empty(6, B, S, H, dtype=torch.float16)
        hs = torch.empty(S, B, H)
        outs.append((blk, hs, *steps(xp, w, h0, c0, hs, blk, list(range(6)))))
    assert lstm_steps._scripted() is not lstm_steps._steps  # compiled here
    for a, b in zip(*outs, strict=True):
        assert torch.equal(a, b)
