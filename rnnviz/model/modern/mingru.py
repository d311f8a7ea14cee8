"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): a GRU whose gate and candidate read the input only,

    z_t = σ(W_z x_t),   n_t = g(W_n x_t),   h_t = (1 - z_t) ⊙ h_(t-1) + z_t ⊙ n_t,

g(v) = v + 0.5 for v >= 0, σ(v) otherwise (> 0, so that h stays positive and the scan can run in log space).
Because nothing inside the step reads h_(t-1) but the update itself, the whole sequence is one parallel scan:
log h_t = a*_t + logcumsumexp_s(log b_s - a*_s) with a*_t = Σ log(1 - z) and b = z ⊙ n (the paper's Listing).
Blocks are pre-norm and residual, as in the paper's language model: x + W_o h(norm(x)), then x + MLP(norm(x)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rnnviz.model.cells import MINGRU_MLP
from rnnviz.model.charrnn import clamped
from rnnviz.model.modern import Clamp, Stack, Want


def log_g(v: torch.Tensor) -> torch.Tensor:
    """log g(v): log(v + 0.5) for v >= 0, log σ(v) = -softplus(-v) otherwise."""
    return torch.where(v >= 0, torch.log(F.relu(v) + 0.5), -F.softplus(-v))


def log_scan(log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """h_t = a_t h_(t-1) + b_t from logs: log_a, log_b (B, T, H), h0 (B, H) >= 0 -> h (B, T, H)."""
    a_star = F.pad(torch.cumsum(log_a, dim=1), (0, 0, 1, 0))  # (B, T+1, H): Σ_{r<=t} log a_r, 0 at t=0
    log_h0 = torch.log(h0).unsqueeze(1)  # (B, 1, H); log 0 = -inf is the zero state, exactly
    log_h = a_star + torch.logcumsumexp(torch.cat([log_h0, log_b], dim=1) - a_star, dim=1)
    return torch.exp(log_h[:, 1:])


class MinGRU(nn.Module):
    """One minGRU layer: (B, T, D) -> h (B, T, H), with z and n."""

    def __init__(self, d_in: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(d_in, 2 * hidden)  # rows: z then n

    def forward(self, x: torch.Tensor, h0: torch.Tensor, layer: int = 0, clamp: Clamp | None = None):
        k, v = self.proj(x).chunk(2, dim=-1)  # (B, T, H) each
        zc, nc = clamp and (layer, "z") in clamp, clamp and (layer, "n") in clamp
        if not (zc or nc):  # the log-space scan: no division by small numbers, stable over long chunks
            log_n = log_g(v)
            h = log_scan(-F.softplus(k), -F.softplus(-k) + log_n, h0)
            z, n = torch.sigmoid(k), torch.exp(log_n)
        else:  # clamped values may be 0, 1 or negative: the linear-space recurrence, step by step
            z = clamped(torch.sigmoid(k), layer, "z", clamp)
            n = clamped(torch.exp(log_g(v)), layer, "n", clamp)
            h, hs = h0, []
            for t in range(x.shape[1]):
                h = (1 - z[:, t]) * h + z[:, t] * n[:, t]
                hs.append(h)
            h = torch.stack(hs, dim=1)
        return clamped(h, layer, "h", clamp), z, n


class MinGRUStack(Stack):
    cell = "mingru"

    def __init__(self, vocab_size: int, layers: int, hidden: int, dropout: float):
        super().__init__(vocab_size, layers, hidden, dropout)
        H = hidden
        self.norm1 = nn.ModuleList(nn.RMSNorm(H, eps=1e-5) for _ in range(layers))
        self.mingru = nn.ModuleList(MinGRU(H, H) for _ in range(layers))
        self.out = nn.ModuleList(nn.Linear(H, H) for _ in range(layers))
        self.norm2 = nn.ModuleList(nn.RMSNorm(H, eps=1e-5) for _ in range(layers))
        self.mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(H, MINGRU_MLP * H), nn.GELU(), nn.Linear(MINGRU_MLP * H, H)) for _ in range(layers))
        self.norm_f = nn.RMSNorm(H, eps=1e-5)

    def run(self, x: torch.Tensor, state=None, want: Want | None = None, clamp: Clamp | None = None):
        self.check_clamp(clamp)
        (h_all,) = state if state is not None else self.init_state(x.shape[0])  # (L, B, H)
        u, last, rec = self.embed(x), [], {}  # u: the residual stream (B, T, H)
        for l in range(self.layers):
            h, z, n = self.mingru[l](self.norm1[l](u), h_all[l], l, clamp)
            u = u + self.drop(self.out[l](h))
            u = u + self.drop(self.mlp[l](self.norm2[l](u)))
            last.append(h[:, -1])
            rec.update({(l, k): v for k, v in (("h", h), ("z", z), ("n", n)) if want and (l, k) in want})
        return self.norm_f(u), (torch.stack(last),), rec
