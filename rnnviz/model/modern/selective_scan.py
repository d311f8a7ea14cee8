"""Mamba's selective scan as a step loop with a hand-written backward, for the CPU.

    s_t = exp(Δ_t A) ⊙ s_(t-1) + u_t B_t,   y_t = s_t C_t          (u_t = Δ_t x_t, computed by the caller)

mambapy's ``pscan`` materialises the decay, the input and their gradients as (B, T, E, N) tensors (E = d_inner,
N = d_state), padded to a power of two, and sweeps them log T times: on a CPU that is memory traffic and page
faults (a 4×176 model trained at ~460 chars/s on one thread, 70% of it in ``mul``/``fill_``). Here each step works
on one (B, E, N) slice that stays in cache, the decay is recomputed in the backward instead of stored, and only
the states (T, B, E, N) are kept: they are an output anyway (recording reads ``sn`` and ``s`` from them).

The loop is the recurrence itself, so its forward is exact by construction; the backward is checked against
autograd through the same loop and the forward against ``pscan`` (tests/test_modern.py).
"""

from __future__ import annotations

import torch


class SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dt, u, Bm, C, A, s0):
        """dt, u (B, T, E); Bm, C (B, T, N); A (E, N); s0 (B, E, N) -> (y (B, T, E), states (T, B, E, N))."""
        dtT, uT, BT, CT = _time_major(dt, u, Bm, C)
        states = s0.new_empty((dtT.shape[0], *s0.shape))  # (T, B, E, N)
        y, _ = _steps(dtT, uT, BT, CT, A, s0, states)
        ctx.save_for_backward(dtT, uT, BT, CT, A, s0, states)
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None (no zeros added per step)
        return y.transpose(0, 1), states

    @staticmethod
    def backward(ctx, gy, gstates):
        """Walks the steps backwards with g_s = ∂L/∂s_t; the gradients of the decay's exponent Δ_t A give those of
        Δ and A."""
        dtT, uT, BT, CT, A, s0, states = ctx.saved_tensors
        T = dtT.shape[0]
        gyT = gy.transpose(0, 1).contiguous() if gy is not None else torch.zeros_like(dtT)  # (T, B, E)
        gdt, gu = torch.empty_like(dtT), torch.empty_like(uT)  # (T, B, E)
        gB, gC = torch.empty_like(BT), torch.empty_like(CT)  # (T, B, N)
        gA = torch.zeros_like(s0)  # (B, E, N): summed over B at the end
        g_s = torch.zeros_like(s0)  # (B, E, N)
        for t in range(T - 1, -1, -1):
            s_prev = states[t - 1] if t > 0 else s0
            torch.bmm(gyT[t].unsqueeze(1), states[t], out=gC[t].unsqueeze(1))  # (B, 1, E) @ (B, E, N)
            g_s.addcmul_(gyT[t].unsqueeze(-1), CT[t].unsqueeze(1))
            if gstates is not None:
                g_s.add_(gstates[t])
            torch.bmm(g_s, BT[t].unsqueeze(-1), out=gu[t].unsqueeze(-1))  # (B, E, N) @ (B, N, 1)
            torch.bmm(uT[t].unsqueeze(1), g_s, out=gB[t].unsqueeze(1))  # (B, 1, E) @ (B, E, N)
            decay = torch.exp(dtT[t].unsqueeze(-1) * A)
            g_exp = g_s * s_prev * decay  # ∂L/∂(Δ_t A)
            gdt[t] = (g_exp * A).sum(-1)
            gA.addcmul_(g_exp, dtT[t].unsqueeze(-1))
            g_s.mul_(decay)
        return (gdt.transpose(0, 1), gu.transpose(0, 1), gB.transpose(0, 1), gC.transpose(0, 1), gA.sum(0), g_s)


def _time_major(dt, u, Bm, C):
    """(B, T, ...) -> contiguous (T, B, ...): each step's slice is one block of memory."""
    return tuple(a.transpose(0, 1).contiguous() for a in (dt, u, Bm, C))


def _steps(dtT, uT, BT, CT, A, s0, states=None):
    """The recurrence: dtT, uT (T, B, E); BT, CT (T, B, N) -> (y (T, B, E), s_T (B, E, N)); every state written
    into ``states`` (T, B, E, N) when given, else only the last one kept."""
    y = dtT.new_empty(dtT.shape)  # (T, B, E)
    s = s0
    for t in range(dtT.shape[0]):
        decay = torch.exp(dtT[t].unsqueeze(-1) * A)  # (B, E, N)
        out = states[t] if states is not None else None
        s = torch.addcmul(decay * s, uT[t].unsqueeze(-1), BT[t].unsqueeze(1), out=out)
        torch.bmm(s, CT[t].unsqueeze(-1), out=y[t].unsqueeze(-1))
    return y, s


def selective_scan(dt: torch.Tensor, u: torch.Tensor, Bm: torch.Tensor, C: torch.Tensor, A: torch.Tensor,
                   s0: torch.Tensor, keep_states: bool = True
                   ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """dt, u (B, T, E); Bm, C (B, T, N); A (E, N); s0 (B, E, N) -> y (B, T, E), every state (B, T, E, N) (None
    when not ``keep_states`` and nothing needs a gradient: evaluation then holds one (B, E, N) state, not T of
    them) and the last state (B, E, N), a tensor of its own (a view would keep every state alive while the
    next chunk runs)."""
    if torch.is_grad_enabled() and any(a.requires_grad for a in (dt, u, Bm, C, A, s0)):
        y, states = SelectiveScan.apply(dt, u, Bm, C, A, s0)
        return y, states.transpose(0, 1), states[-1].clone()
    with torch.no_grad():
        dtT, uT, BT, CT = _time_major(dt, u, Bm, C)
        states = s0.new_empty((dtT.shape[0], *s0.shape)) if keep_states else None
        y, last = _steps(dtT, uT, BT, CT, A, s0, states)
    return y.transpose(0, 1), None if states is None else states.transpose(0, 1), last
