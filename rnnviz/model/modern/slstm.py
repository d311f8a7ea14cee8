"""sLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory"): an LSTM with exponential input and
forget gates, a normaliser n and a stabiliser m, its recurrent weights block-diagonal over SLSTM_HEADS heads:

    (ĩ, f̃, z̃, õ) = W x_t + R h_(t-1) + b,      m_t = max(log σ(f̃) + m_(t-1), ĩ)   (ĩ alone when n_(t-1) = 0)
    i = exp(ĩ - m_t),  f = exp(log σ(f̃) + m_(t-1) - m_t),  c_t = f c_(t-1) + i tanh(z̃),  n_t = f n_(t-1) + i,
    h_t = σ(õ) c_t / n_t

(the xLSTM package's ``slstm_forward_pointwise``; tests check ours against it). The recurrence reads h_(t-1)
through R, so it runs step by step; W x for the whole chunk is one matmul. Layers stack as the LSTM's do.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rnnviz.errors import RnnvizError
from rnnviz.model.cells import SLSTM_HEADS
from rnnviz.model.charrnn import clamped
from rnnviz.model.modern import Clamp, Stack, Want

STATE = ("h", "c", "n", "m")  # the carried state, in order


def pointwise(raw: torch.Tensor, h, c, n, m, layer: int = 0, clamp: Clamp | None = None):
    """One step from pre-activations ``raw`` (B, 4, H) (rows ĩ f̃ z̃ õ) and the state (B, H) each ->
    (h, c, n, m, gates {i, f, z, o})."""
    ir, fr, zr, orr = raw.unbind(1)
    logf_m = m + F.logsigmoid(fr)
    m_new = clamped(torch.where(n == 0, ir, torch.maximum(ir, logf_m)), layer, "m", clamp)
    i = clamped(torch.minimum(torch.exp(ir - m_new), torch.ones_like(ir)), layer, "i", clamp)
    f = clamped(torch.minimum(torch.exp(logf_m - m_new), torch.ones_like(ir)), layer, "f", clamp)
    z = clamped(torch.tanh(zr), layer, "z", clamp)
    o = clamped(torch.sigmoid(orr), layer, "o", clamp)
    c_new = clamped(f * c + i * z, layer, "c", clamp)
    n_new = clamped(f * n + i, layer, "n", clamp)
    h_new = clamped(o * c_new / n_new, layer, "h", clamp)
    return h_new, c_new, n_new, m_new, {"i": i, "f": f, "z": z, "o": o}


class SLSTM(nn.Module):
    """One sLSTM layer: (B, T, D) -> (B, T, H)."""

    def __init__(self, d_in: int, hidden: int, heads: int = SLSTM_HEADS):
        super().__init__()
        if hidden % heads:
            raise RnnvizError(f"an sLSTM's hidden size must be a multiple of its {heads} heads, got {hidden}")
        self.hidden, self.heads, dh = hidden, heads, hidden // heads
        self.w = nn.Linear(d_in, 4 * hidden)  # rows: ĩ, f̃, z̃, õ, each H
        self.r = nn.Parameter(torch.randn(heads, dh, 4, dh) / math.sqrt(dh))  # head k: h[k] (dh) -> 4 gates of k
        with torch.no_grad():  # forget gates open at the start (xLSTM: a linspace of forget biases from 3 to 6)
            self.w.bias[hidden : 2 * hidden] = torch.linspace(3.0, 6.0, hidden)

    def recur(self, h: torch.Tensor) -> torch.Tensor:
        """R h: (B, H) -> (B, 4, H)."""
        B = h.shape[0]
        return torch.einsum("bkd,kdge->bgke", h.view(B, self.heads, -1), self.r).reshape(B, 4, self.hidden)

    def forward(self, x: torch.Tensor, state, layer: int = 0, clamp: Clamp | None = None, want: set | None = None):
        """x (B, T, D), state (h, c, n, m) (B, H) each -> (h (B, T, H), state, {kind: (B, T, H)} for ``want``)."""
        wx = self.w(x).view(x.shape[0], x.shape[1], 4, self.hidden)  # (B, T, 4, H)
        rec: dict[str, list] = {k: [] for k in want or ()}
        hs = []
        for t in range(x.shape[1]):
            *state, gates = pointwise(wx[:, t] + self.recur(state[0]), *state, layer, clamp)
            hs.append(state[0])
            for k in rec:
                rec[k].append(gates[k] if k in gates else state[STATE.index(k)])
        return torch.stack(hs, 1), tuple(state), {k: torch.stack(v, 1) for k, v in rec.items()}


class SLSTMStack(Stack):
    cell = "slstm"

    def __init__(self, vocab_size: int, layers: int, hidden: int, dropout: float):
        super().__init__(vocab_size, layers, hidden, dropout)
        self.slstm = nn.ModuleList(SLSTM(hidden, hidden) for _ in range(layers))

    def run(self, x: torch.Tensor, state=None, want: Want | None = None, clamp: Clamp | None = None):
        self.check_clamp(clamp)
        state = state if state is not None else self.init_state(x.shape[0])  # 4 × (L, B, H)
        u, new, rec = self.embed(x), [], {}
        for l in range(self.layers):
            kinds = {k for (ll, k) in want or () if ll == l}
            u, s, inner = self.slstm[l](u if l == 0 else self.drop(u), tuple(t[l] for t in state), l, clamp, kinds)
            new.append(s)
            rec.update({(l, k): v for k, v in inner.items()})
        return self.drop(u), tuple(torch.stack(t) for t in zip(*new, strict=True)), rec
