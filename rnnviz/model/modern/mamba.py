"""Mamba (Gu & Dao 2023, "Linear-Time Sequence Modeling with Selective State Spaces") on mambapy's block.

:class:`Mamba` is mambapy's ``MambaBlock`` (its parameters, initialisation and parallel scan ``pscan``; pure
PyTorch, runs on a CPU) with the two things truncated BPTT and recording need: a state carried in from the
previous chunk (the last d_conv-1 conv inputs and the scan state s, (B, d_inner, d_state)) and the internals:

    x = SiLU(conv(W_in u))  (channel input),  Δ = softplus(W_Δ W_x x)  (step size),
    s_t = exp(Δ_t A) ⊙ s_(t-1) + Δ_t B_t x_t,   y_t = s_t C_t + D ⊙ x_t,   out = W_out (y ⊙ SiLU(z)).

A carried state s_0 is the scan's step 0. Blocks are pre-norm
and residual (mambapy's ``ResidualBlock``); the kind ``h`` is the residual stream after each block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mambapy.mamba import MambaBlock, MambaConfig
from mambapy.pscan import pscan
from torch import nn

from rnnviz.model.cells import MAMBA_CONV, MAMBA_EXPAND, MAMBA_STATE
from rnnviz.model.charrnn import clamped
from rnnviz.model.modern import Clamp, Stack, Want
from rnnviz.model.modern.selective_scan import selective_scan


def mamba_config(hidden: int, layers: int) -> MambaConfig:
    return MambaConfig(d_model=hidden, n_layers=layers, d_state=MAMBA_STATE, expand_factor=MAMBA_EXPAND,
                       d_conv=MAMBA_CONV)


def _pscan(dt, x, B, C, A, s0):
    """The scan by mambapy's ``pscan``: the same (y, states) as :func:`selective_scan`."""
    decay = torch.exp(dt.unsqueeze(-1) * A)  # (B, T, E, N)
    inject = dt.unsqueeze(-1) * B.unsqueeze(2) * x.unsqueeze(-1)  # (B, T, E, N)
    # The carried state enters as step 0 of the scan (its decay is never used), so one zero-start scan
    # over 1 + T steps gives every state.
    s = pscan(torch.cat([torch.ones_like(decay[:, :1]), decay], 1), torch.cat([s0.unsqueeze(1), inject], 1))
    s = s[:, 1:]  # (B, T, E, N)
    return (s @ C.unsqueeze(-1)).squeeze(-1), s


class Mamba(MambaBlock):
    """mambapy's block with a carried state and its internals: (B, T, D) -> (B, T, D)."""

    def run(self, u: torch.Tensor, conv0: torch.Tensor, s0: torch.Tensor, layer: int = 0,
            clamp: Clamp | None = None, keep_state: bool = False, want_inner: bool = True):
        """u (B, T, D), conv0 (B, E, K-1) the previous raw conv inputs, s0 (B, E, N) -> (out (B, T, D), conv (B, E,
        K-1), s_T (B, E, N), {kind: (B, T, E)} for x, dt, y, sn (sn only with ``want_inner``, and s (B, T, E·N) when
        ``keep_state``))."""
        cfg, T = self.config, u.shape[1]
        xr, z = self.in_proj(u).chunk(2, dim=-1)  # (B, T, E) each
        seq = torch.cat([conv0, xr.transpose(1, 2)], dim=2)  # (B, E, K-1+T)
        x = F.conv1d(seq, self.conv1d.weight, self.conv1d.bias, groups=cfg.d_inner).transpose(1, 2)  # (B, T, E)
        x = clamped(F.silu(x), layer, "x", clamp)
        dt, B, C = torch.split(self.x_proj(x), [cfg.dt_rank, cfg.d_state, cfg.d_state], dim=-1)
        dt = clamped(F.softplus(self.dt_proj(dt)), layer, "dt", clamp)  # (B, T, E)
        A = -torch.exp(self.A_log.float())  # (E, N)
        if u.device.type == "cpu":  # the step loop: in-cache slices, no (B, T, E, N) temporaries (selective_scan.py)
            y, s, last = selective_scan(dt, dt * x, B, C, A, s0, keep_states=want_inner or keep_state)
        else:  # mambapy's parallel scan: log T sweeps over whole tensors, what a GPU does well
            y, s = _pscan(dt, x, B, C, A, s0)
            last = s[:, -1].clone()  # its own tensor: a view would keep every state alive
        y = clamped(y + self.D.float() * x, layer, "y", clamp)  # (B, T, E)
        out = self.out_proj(y * F.silu(z))
        rec = {"x": x, "dt": dt, "y": y}
        if want_inner:
            rec["sn"] = s.norm(dim=-1)
        if keep_state:
            rec["s"] = s.flatten(2)
        return out, seq[:, :, T:], last, rec


class MambaStack(Stack):
    cell = "mamba"
    unclampable = ("sn", "s")

    def __init__(self, vocab_size: int, layers: int, hidden: int, dropout: float):
        super().__init__(vocab_size, layers, hidden, dropout)
        cfg = mamba_config(hidden, layers)
        self.norms = nn.ModuleList(nn.RMSNorm(hidden, eps=cfg.rms_norm_eps) for _ in range(layers))
        self.mixers = nn.ModuleList(Mamba(cfg) for _ in range(layers))
        self.norm_f = nn.RMSNorm(hidden, eps=cfg.rms_norm_eps)

    def run(self, x: torch.Tensor, state=None, want: Want | None = None, clamp: Clamp | None = None):
        self.check_clamp(clamp)
        conv_all, s_all = state if state is not None else self.init_state(x.shape[0])  # (L, B, E, K-1), (L, B, E, N)
        u, convs, ss, rec = self.embed(x), [], [], {}  # u: the residual stream (B, T, D)
        for l in range(self.layers):
            keep, norm = bool(want) and (l, "s") in want, bool(want) and (l, "sn") in want
            out, conv, s, inner = self.mixers[l].run(self.norms[l](u), conv_all[l], s_all[l], l, clamp, keep, norm)
            u = clamped(u + self.drop(out), l, "h", clamp)
            convs.append(conv)
            ss.append(s)
            inner["h"] = u
            rec.update({(l, k): v for k, v in inner.items() if want and (l, k) in want})
        return self.norm_f(u), (torch.stack(convs), torch.stack(ss)), rec
