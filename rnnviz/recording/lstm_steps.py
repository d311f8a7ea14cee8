"""An LSTM layer's recording on a CPU as one TorchScript step loop that writes every kind as it goes.

The fused kernel gives h only; recording the gates and c after it costs a second round of matmuls over
the block (W_hh·h_{t-1} for every step again) and several passes over (B, S, 4·H) float32 tensors that do
not fit in cache. On a CPU a step loop that keeps the gates it computes is faster: one (B, H) x (H, 4·H)
matmul a step, the kinds written into the float16 block the store receives while they are in cache
(``bench/record_throughput.py``). It computes the same cell as torch's kernel (i, f, g, o in torch's row
order, c_t = f·c_{t-1} + i·g, h_t = o·tanh(c_t)); the recorder checks that against the kernel on one
stream of the first block (``gates_vs_kernel_max_abs_error``). On CUDA the kernel and the batched
recomputation stay: a step loop there is launch-bound.
"""

from __future__ import annotations

import functools
import warnings

import torch

# The recording's streams (all of them, not one rank's share: every process takes the same path, so a store's
# bits do not depend on how the streams are shared) from which the step loop records. Below, the kernel and the
# batched recomputation are faster: a step's ops are too small to pay for their dispatch and, on 2 threads, a
# barrier each. 2x256 LSTM, 2-core CPU, steps ÷ kernel+recomputation: 1 thread 0.49 / 1.02 / 1.53 / 1.63 at
# 1 / 4 / 16 / 39 streams; 2 threads 0.33 / 0.54 / 0.91 / 1.28.
MIN_STREAMS = 24

# kinds as slots of the loop: h and c, then the gates in torch's row order
SLOTS = {"h": 0, "c": 1, "i": 2, "f": 3, "g": 4, "o": 5}


def _steps(xp: torch.Tensor, w_hh_t: torch.Tensor, h: torch.Tensor, c: torch.Tensor, hs: torch.Tensor,
           blk: torch.Tensor, slots: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    # xp (S, B, 4H): W_ih·x_t + b_ih + b_hh; h, c (B, H): the start; hs (S, B, H) float32 <- h_t;
    # blk (K, B, S, H) float16 <- the kinds at ``slots``. Returns h, c at the end, Σ_t log f_t and o at the end.
    H = h.shape[1]
    log_f = torch.zeros_like(h)
    o = torch.zeros_like(h)
    for t in range(xp.shape[0]):
        gates = torch.addmm(xp[t], h, w_hh_t)  # (B, 4H)
        gates[:, : 2 * H].sigmoid_()  # i, f
        gates[:, 2 * H : 3 * H].tanh_()  # g
        gates[:, 3 * H :].sigmoid_()  # o
        f, o = gates[:, H : 2 * H], gates[:, 3 * H :]
        c = torch.addcmul(gates[:, :H] * gates[:, 2 * H : 3 * H], f, c)
        h = torch.tanh(c).mul_(o)
        hs[t] = h
        log_f += torch.log(f)
        for j, s in enumerate(slots):
            if s == 0:
                blk[j, :, t] = h
            elif s == 1:
                blk[j, :, t] = c
            else:
                blk[j, :, t] = gates[:, (s - 2) * H : (s - 1) * H]
    return h, c, log_f, o


def record_steps(xp: torch.Tensor, w_hh_t: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, blk: torch.Tensor,
                 kinds: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run an LSTM layer through a block of S steps from h0, c0 (B, H), writing ``kinds`` into ``blk``
    (len(kinds), B, S, H) float16 (each stream's rows of a kind contiguous, as the store's writer takes them).

    xp (S, B, 4·H) time-major: the input projection plus both biases. Returns the layer's h (S, B, H)
    float32 (the next layer's input), h and c at the end (B, H), Σ_t log f_t (B, H) (how much of its start
    each unit's c still carries, for :class:`.recurrence.Carry`) and o at the last step (B, H)."""
    hs = torch.empty(xp.shape[0], *h0.shape, dtype=h0.dtype)
    hT, cT, log_f, o = _scripted()(xp, w_hh_t, h0, c0, hs, blk, [SLOTS[k] for k in kinds])
    return hs, hT, cT, log_f, o


@functools.cache
def _scripted():
    """The step loop compiled by TorchScript (once per process, on first use: importing stays cheap); 1.45x
    the same loop in Python at 50 streams of 128 units. torch 2.13 marks ``torch.jit.script`` deprecated
    (``torch.compile`` needs a C++ compiler on a CPU): should it go, the loop runs as Python."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.script(_steps)
    except Exception:  # noqa: BLE001 (TorchScript removed or unable: the same loop, uncompiled)
        return _steps
