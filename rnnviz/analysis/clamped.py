"""The model run over a text in parallel streams with units clamped inside the recurrence (for :func:`.causal.ablate`).

The text is cut into B parallel windows (:func:`windows`), each started from the clean state one sequential pass
has ``burn_in`` characters before its part (corrected as the recorder corrects its streams:
:mod:`rnnviz.recording.starts`). The clean run goes through torch's fused kernel; a clamped run steps the lowest
clamped layer and those above character by character through :meth:`CharRNN.step` (the layers below cannot feel
the clamp, so they stay in the fused kernel). A clamped run can carry K copies of the windows side by side, each
copy with its own units clamped (a per-row clamp): the random-unit baseline's draws go through the model K at a
time, sharing the layers below and the per-step overhead.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from rnnviz.model.charrnn import WEIGHT_NAMES, CharRNN, ModelConfig, group_units
from rnnviz.threads import choose_threads, step_gemm_flops, step_loop


class _Upper(CharRNN):
    """Layers ``lo..L-1`` of a model as a CharRNN whose input is layer lo-1's h (not a one-hot), so that
    :meth:`CharRNN.step` runs them with its clamp. Shares the model's weights and read-out."""

    def __init__(self, model: CharRNN, lo: int):
        c = model.config
        super().__init__(ModelConfig(vocab_size=c.hidden, cell=c.cell, layers=c.layers - lo, hidden=c.hidden))
        for j in range(c.layers - lo):
            for name, w in zip(WEIGHT_NAMES, model.layer_weights(lo + j), strict=True):
                setattr(self.rnn, f"{name}_l{j}", w)
        self.head = model.head
        self.to(model.device).eval()

    def onehot(self, x: torch.Tensor) -> torch.Tensor:
        return x  # already the lower layer's h: (B, H)


class _Lower:
    """Layers 0..lo-1 in torch's fused single-layer kernels (a clamp at layer lo cannot reach them)."""

    def __init__(self, model: CharRNN, lo: int):
        self.model, self.layers = model, [model.fused_layer(l) for l in range(lo)]

    def blocks(self, x: torch.Tensor, start, steps: int = 1024):
        """Yield (a, b, input of layer lo for steps a:b): (B, b-a) ids when lo = 0, else (B, b-a, H).
        ``start``: the model's state (L, B, H) tensors (h, or (h, c)) the streams start from."""
        states = [_layer_state(start, l) for l in range(len(self.layers))]
        for a in range(0, x.shape[1], steps):
            b = min(a + steps, x.shape[1])
            if not self.layers:
                yield a, b, x[:, a:b]
                continue
            inp = self.model.onehot(x[:, a:b])
            for l, layer in enumerate(self.layers):
                inp, states[l] = layer(inp, states[l])
            yield a, b, inp


def windows(T: int, streams: int, burn_in: int):
    """Stream b predicts positions [s_b, e_b), s_b = b·C, and starts reading at w_b = s_b - min(burn_in, C)
    (0 for stream 0), from the state one sequential pass has there.

    Returns (starts w (B,), first counted position s (B,), end e (B,), steps S, chunk C, burn-in read)."""
    n = T - 1  # positions that have a next character
    C = math.ceil(n / max(1, min(streams, n)))
    B = math.ceil(n / C)
    s = np.arange(B) * C
    e = np.minimum(s + C, n)
    before = min(burn_in, C)
    w = np.maximum(s - before, 0)
    return w, s, e, int((e - w).max()), C, before


def _layer_state(state, l: int):
    """Layer l's part of a model state (h, or (h, c), each (L, B, H)) as a fused single layer takes it."""
    parts = tuple(t[l : l + 1].contiguous() for t in (state if isinstance(state, tuple) else (state,)))
    return parts if isinstance(state, tuple) else parts[0]


def _layers_from(state, lo: int):
    """Layers lo.. of a model state, as :class:`_Upper` takes it."""
    return tuple(t[lo:].clone() for t in state) if isinstance(state, tuple) else state[lo:].clone()


def _nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), targets, reduction="none")


class Windows:
    """The text as B parallel windows of S steps (:func:`windows`): their inputs, next-character targets and the
    steps that count, and progress in steps over ``passes`` runs over the windows (a run counts once however many
    copies it carries). A subclass starts the windows and runs the model over them."""

    def __init__(self, model: CharRNN, ids: np.ndarray, win, passes: int,
                 progress: Callable[[int, int], None] | None):
        w, s, e, S, _, before = win
        T = len(ids)
        self.model, self.dev, self.T, self.B, self.S, self.burn_in = model, model.device, T, len(w), S, before
        # Windows (B, S) of inputs and next-character targets; positions past a stream's end are masked.
        pos = w[:, None] + np.arange(S)[None, :]  # (B, S) text position read at each step
        self.valid = (pos >= s[:, None]) & (pos < e[:, None])
        self.x = torch.as_tensor(np.where(pos < T, ids[np.minimum(pos, T - 1)], 0), device=self.dev)
        self.y = torch.as_tensor(np.where(pos + 1 < T, ids[np.minimum(pos + 1, T - 1)], 0), device=self.dev)
        self.valid_t = torch.as_tensor(self.valid, device=self.dev)
        self.flat_pos = pos[self.valid]  # text position of each counted prediction, in mask order
        self.done, self.total, self.progress = 0, passes * S, progress
        self.start_error: dict | None = None  # of the windows' clean start states (see .starts.StartError)
        self.residual: float | None = None  # the largest clamped-run disagreement seen so far

    def _advance(self, steps: int) -> None:
        self.done += steps
        if self.progress:
            self.progress(self.done, self.total)

    def _per_position(self, nll: torch.Tensor) -> np.ndarray:
        """(K, B, S) losses of K copies -> (K, T-1) per text position, in nats."""
        out = np.full((nll.shape[0], self.T - 1), np.nan)
        out[:, self.flat_pos] = nll[:, self.valid_t].cpu().double().numpy()
        return out

    def run(self, clamp: dict | None, collect: set | None = None) -> tuple[np.ndarray, dict]:
        raise NotImplementedError

    def means(self, keys: set) -> dict:
        """Each unit's mean over the counted positions of the clean text: {(layer, kind): (width,)}."""
        _, sums = self.run(None, keys)
        return {key: (v / int(self.valid.sum())).float() for key, v in sums.items()}


class Streams(Windows):
    """The model run over the windows: clean (torch's fused kernel) or with a clamp (layers ``lo..`` step by
    step). Every window starts from the clean state one sequential pass has there
    (:func:`.recorder.stream_starts`); a clamped window then reads its burn-in clamped."""

    def __init__(self, model: CharRNN, ids: np.ndarray, streams: int, burn_in: int, lo: int, passes: int,
                 progress: Callable[[int, int], None] | None):
        from rnnviz.recording.recorder import stream_starts

        win = windows(len(ids), streams, burn_in)
        super().__init__(model, ids, win, passes, progress)
        w, s, e, _, C, before = win
        self.lo = lo
        h, c, err = stream_starts(model, torch.as_tensor(ids[: self.T - 1], device=self.dev), C, before=before)
        self.start = h if c is None else (h, c)
        self.start_error = None if err is None else err.to_dict()
        # Where window b+1 has read up to s_(b+1) - 1 (the last step of its burn-in), window b has too (its
        # last counted step): their states there should agree.
        self.meet = (e[:-1] - 1 - w[:-1], s[1:] - 1 - w[1:]) if before and self.B > 1 else None
        self.upper = model if lo == 0 else _Upper(model, lo)
        self.lower = _Lower(model, lo)  # time blocks, so memory stays bounded on a long text

    def clean(self) -> np.ndarray:
        """Per-position loss (T-1,) of the unclamped model, through the fused kernel."""
        B, S, V = self.B, self.S, self.model.config.vocab_size
        nll, state = torch.empty(B, S, device=self.dev), self.start
        for a in range(0, S, 1024):
            logits, state = self.model(self.x[:, a : a + 1024], state)
            nll[:, a : a + 1024] = _nll(logits.reshape(-1, V), self.y[:, a : a + 1024].reshape(-1)).view(B, -1)
            self._advance(min(1024, S - a))
        return self._per_position(nll[None])[0]

    def run(self, clamp: dict | None, collect: set | None = None, copies: int = 1) -> tuple[np.ndarray, dict]:
        """Step layers lo.. over ``copies`` copies of the windows side by side (row k·B + b: copy k of window
        b; a per-row ``clamp`` gives each copy its own units). Returns per-position nll (copies, T-1) and, if
        asked, unit sums (H,) for each (layer, kind) in ``collect`` over the counted positions of every copy."""
        K, B = copies, self.B
        state = _layers_from(self.start, self.lo)
        state = tuple(t.repeat(1, K, 1) for t in state) if isinstance(state, tuple) else state.repeat(1, K, 1)
        y, valid = self.y.repeat(K, 1), self.valid_t.repeat(K, 1)  # (K·B, S)
        nll = torch.empty(K * B, self.S, device=self.dev)
        hidden = self.model.config.hidden
        sums = {key: torch.zeros(hidden, dtype=torch.float64, device=self.dev) for key in collect or ()}
        meet = _Meeting(self.meet, B, K, self.dev) if clamp and self.meet is not None else None
        threads = choose_threads(step_gemm_flops(self.model.config.cell, hidden, K * B))  # K copies: larger GEMMs
        for a, b, below in self.lower.blocks(self.x, self.start):  # the layers below: once for every copy
            with step_loop(threads):
                for j in range(b - a):
                    inp = below[:, j].repeat(K, *[1] * (below.dim() - 2))  # (K·B,) ids or (K·B, H), one step
                    out = self.upper.step(inp, state, clamp=clamp, internals=bool(collect))
                    logits, state = out[0], out[1]
                    nll[:, a + j] = _nll(logits, y[:, a + j])
                    for l, kind in collect or ():
                        sums[(l, kind)] += out[2][(l - self.lo, kind)][valid[:, a + j]].double().sum(0)
                    if meet is not None:
                        meet.see(a + j, state)
            self._advance(b - a)
        if meet is not None:
            r = meet.residual()
            self.residual = r if self.residual is None else max(self.residual, r)
        return self._per_position(nll.view(K, B, self.S)), sums


class _Meeting:
    """The states of clamped windows b and b+1 where they have both read up to s_(b+1) - 1, in every copy."""

    def __init__(self, steps: tuple[np.ndarray, np.ndarray], streams: int, copies: int, dev):
        self.end_step, self.pre_step = steps  # (B-1,) each: the step of window b, and of window b+1
        self.first = torch.arange(copies, device=dev) * streams  # (K,) the row of window 0 in each copy
        self.end: dict[int, torch.Tensor] = {}
        self.pre: dict[int, torch.Tensor] = {}

    def see(self, j: int, state) -> None:
        """After step j: keep the layers' state (h, and c) of the windows that meet here."""
        parts = state if isinstance(state, tuple) else (state,)
        for b in np.flatnonzero(self.end_step == j):
            self.end[int(b)] = torch.stack([t[:, self.first + b] for t in parts])
        for b in np.flatnonzero(self.pre_step == j):
            self.pre[int(b)] = torch.stack([t[:, self.first + b + 1] for t in parts])

    def residual(self) -> float:
        return max(float((self.end[b] - self.pre[b]).abs().max()) for b in self.end)


def clamp_for(triples, lo: int, fixed: float | None, means: dict | None, dev) -> dict:
    """Units (layer, kind, index) -> the ``clamp`` of :meth:`CharRNN.step` on layers lo.., each unit
    clamped to ``fixed``, or to its mean (``means``: {(layer, kind): (H,)})."""
    clamp = {}
    for (l, k), (_, idx) in group_units(triples).items():
        val = torch.full((len(idx),), fixed, device=dev) if fixed is not None else means[(l, k)][idx]
        clamp[(l - lo, k)] = (torch.tensor(idx, device=dev), val)
    return clamp


def row_clamp(draws: list, streams: int, hidden: int, lo: int, fixed: float | None, means: dict | None,
              dev) -> dict:
    """K sets of units -> the per-row ``clamp`` of :meth:`Streams.run` with K copies: copy k (rows k·B ..
    k·B + B - 1) clamps ``draws[k]``, as :func:`clamp_for` would. {(layer, kind): (mask, values) (K·B, H)}."""
    K, rows = len(draws), {}
    for k, triples in enumerate(draws):
        for key, (idx, val) in clamp_for(triples, lo, fixed, means, dev).items():
            if key not in rows:
                rows[key] = (torch.zeros(K, hidden, dtype=torch.bool, device=dev), torch.zeros(K, hidden, device=dev))
            rows[key][0][k, idx], rows[key][1][k, idx] = True, val
    return {key: (m.repeat_interleave(streams, 0), v.repeat_interleave(streams, 0)) for key, (m, v) in rows.items()}
