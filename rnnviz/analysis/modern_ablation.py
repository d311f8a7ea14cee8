"""Ablation's parallel windows (:class:`rnnviz.analysis.causal._Streams`) for a modern recurrent cell.

A minGRU's or Mamba's gates and inputs read the current input only, so a unit clamped at every step is exact in
the stack's parallel form (:meth:`rnnviz.model.modern.Stack.run` with ``clamp``): the clean and the clamped runs
both go a block of steps at a time, the sLSTM's stepping inside it. Every window starts from the exact state of
one sequential pass (no correction needed: the pass is cheap in the parallel form), so the start error is zero;
the states of clamped windows are only seen at block ends, so where two meet is not compared
(``clamp_boundary_residual`` stays None).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from rnnviz.model.cells import kind_width
from rnnviz.model.charrnn import CharRNN

BLOCK = 1024  # steps per call of the parallel form


def sequential_starts(model: CharRNN, ids: torch.Tensor, at: np.ndarray) -> tuple:
    """The model's state after reading ids[:a] for each a in ``at`` (sorted), from one sequential pass:
    a state tuple with the len(at) starts as its streams (dim 1)."""
    state, pos, starts = model.init_state(1), 0, []
    for a in at:
        while pos < a:
            b = min(a, pos + BLOCK)
            _, state, _ = model.rnn.run(ids[None, pos:b], state)
            pos = b
        starts.append(state)
    return tuple(torch.cat([s[i] for s in starts], dim=1) for i in range(len(state)))


class ModernStreams:
    """The text as B parallel windows of S steps (:func:`rnnviz.analysis.causal._windows`), run clean or with a
    clamp through the stack's parallel form; the same interface as ``causal._Streams``."""

    def __init__(self, model: CharRNN, ids: np.ndarray, windows, burn_in: int, runs: int,
                 progress: Callable[[int, int], None] | None):
        w, s, e, S, _, before = windows
        T = len(ids)
        self.model, self.dev, self.T, self.B, self.S, self.lo = model, model.device, T, len(w), S, 0
        self.burn_in, self.start_error, self.residual = before, None, None
        pos = w[:, None] + np.arange(S)[None, :]  # (B, S) text position read at each step
        self.valid = (pos >= s[:, None]) & (pos < e[:, None])
        self.x = torch.as_tensor(np.where(pos < T, ids[np.minimum(pos, T - 1)], 0), device=self.dev)
        self.y = torch.as_tensor(np.where(pos + 1 < T, ids[np.minimum(pos + 1, T - 1)], 0), device=self.dev)
        self.valid_t = torch.as_tensor(self.valid, device=self.dev)
        self.flat_pos = pos[self.valid]
        self.start = sequential_starts(model, torch.as_tensor(ids, device=self.dev), w)
        self.done, self.total, self.progress = 0, runs * S, progress

    def _per_position(self, nll: torch.Tensor) -> np.ndarray:
        out = np.full(self.T - 1, np.nan)
        out[self.flat_pos] = nll[self.valid_t].cpu().double().numpy()
        return out

    def clean(self) -> np.ndarray:
        return self.run(None)[0]

    def run(self, clamp: dict | None, collect: set | None = None) -> tuple[np.ndarray, dict]:
        """Per-position nll (T-1,) with ``clamp`` held at every step, and unit sums over the counted positions
        for each (layer, kind) in ``collect``."""
        cfg = self.model.config
        sums = {key: torch.zeros(kind_width(cfg.cell, cfg.hidden, key[1]), dtype=torch.float64, device=self.dev)
                for key in collect or ()}
        nll, state = torch.empty(self.B, self.S, device=self.dev), self.start
        for a in range(0, self.S, BLOCK):
            b = min(self.S, a + BLOCK)
            out, state, rec = self.model.rnn.run(self.x[:, a:b], state, collect, clamp)
            logits = self.model.head(out)  # (B, b-a, V)
            nll[:, a:b] = F.cross_entropy(logits.flatten(0, 1).float(), self.y[:, a:b].flatten(),
                                          reduction="none").view(self.B, -1)
            for key in collect or ():
                sums[key] += rec[key][self.valid_t[:, a:b]].double().sum(0)
            self.done += b - a
            if self.progress:
                self.progress(self.done, self.total)
        return self._per_position(nll), sums

    def means(self, keys: set) -> dict:
        _, sums = self.run(None, keys)
        return {key: (v / int(self.valid.sum())).float() for key, v in sums.items()}
