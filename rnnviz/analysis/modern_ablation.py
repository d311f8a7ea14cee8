"""Ablation's parallel windows (:class:`rnnviz.analysis.clamped.Streams`) for a modern recurrent cell.

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

from rnnviz.analysis.clamped import Windows
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


class ModernStreams(Windows):
    """The windows (:class:`rnnviz.analysis.clamped.Windows`) run clean or with a clamp through the stack's parallel
    form; the interface of ``clamped.Streams`` with one copy per run."""

    def __init__(self, model: CharRNN, ids: np.ndarray, win, passes: int,
                 progress: Callable[[int, int], None] | None):
        super().__init__(model, ids, win, passes, progress)
        self.lo = 0
        self.start = sequential_starts(model, torch.as_tensor(ids, device=self.dev), win[0])

    def clean(self) -> np.ndarray:
        return self.run(None)[0][0]

    def run(self, clamp: dict | None, collect: set | None = None) -> tuple[np.ndarray, dict]:
        """Per-position nll (1, T-1) with ``clamp`` held at every step, and unit sums over the counted positions
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
            self._advance(b - a)
        return self._per_position(nll[None]), sums
