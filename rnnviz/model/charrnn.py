"""CharRNN: a character-level vanilla RNN (tanh), GRU or LSTM with any number of layers.

Input is the one-hot vector of the character (as in Karpathy, Johnson & Fei-Fei,
"Visualizing and Understanding Recurrent Networks", 2015, and min-char-rnn): layer 0's input size is the
vocabulary size V, so every weight of layer 0 belongs to one character. Training and recording
use torch's fused multi-layer ``nn.RNN/GRU/LSTM`` (cuDNN on GPU); :meth:`CharRNN.step` is the plain
per-step math of the same weights, used for sampling with clamped cells, ablation, and as the naive
reference that the fast paths are tested against.

Unit names are ``LAYER:KIND:INDEX`` (0-based), KIND one of ``h``; ``c i f g o`` (LSTM); ``r z n`` (GRU).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rnnviz.errors import RnnvizError
from rnnviz.model.cells import (  # noqa: F401
    CELLS,
    DEFAULT_KINDS,
    GATES,
    KINDS,
    MAX_HIDDEN,
    MAX_LAYERS,
    MAX_VOCAB,
    MODERN,
    ON_REQUEST,
    SIGMOID_KINDS,
    kind_width,
    state_shapes,
)
from rnnviz.model.units import (  # noqa: F401 (torch-free: re-exported, their old home)
    ModelConfig,
    group_units,
    parse_kinds,
    parse_layers,
    parse_unit,
    unit_names,
)

_TORCH_CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # torch's per-layer names: NAME_l{layer}


def _fused(cell: str, inputs: int, hidden: int, layers: int, dropout: float = 0.0, proj: int = 0,
           nonlinearity: str = "tanh") -> nn.Module:
    """torch's fused module for ``cell`` (batch first; the vanilla RNN is tanh unless told otherwise; an LSTM
    with ``proj`` > 0 projects h to that width)."""
    kw = {"nonlinearity": nonlinearity} if cell == "rnn" else {"proj_size": proj} if proj else {}
    return _TORCH_CELLS[cell](inputs, hidden, layers, dropout=dropout, batch_first=True, **kw)


def single_layer(cell: str, weights: tuple[torch.Tensor, ...], device=None, dtype=None,
                 nonlinearity: str = "tanh") -> nn.Module:
    """One recurrent layer alone as torch's fused single-layer module (batch first, cuDNN on GPU) holding a
    copy of ``weights`` = (W_ih (G·H, D), W_hh (G·H, P), b_ih (G·H,), b_hh (G·H,)[, W_hr (P, H)]) in torch's
    gate row order (W_hr: an LSTM's projection, P = its width; without it P = H). Input (B, T, D) -> (B, T, P),
    state (1, B, P) (and c (1, B, H)). In eval mode, no gradients; on ``device`` (default the weights') in
    ``dtype`` (default torch's default, float32)."""
    w_ih, w_hh = weights[:2]
    proj = weights[4].shape[0] if len(weights) > 4 else 0
    fused = _fused(cell, w_ih.shape[1], w_hh.shape[0] // max(1, len(GATES[cell])), 1, proj=proj,
                   nonlinearity=nonlinearity)
    fused = fused.to(device or w_ih.device, dtype).eval()
    names = WEIGHT_NAMES + ("weight_hr",)
    with torch.no_grad():
        for name, w in zip(names, weights, strict=False):
            getattr(fused, f"{name}_l0").copy_(w)
    fused.requires_grad_(False)
    fused.flatten_parameters()
    return fused


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode inside the block and back in its previous mode after it, even when
    the block raises (dropout off while sampling, evaluating or ablating)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def clamped(t: torch.Tensor, layer: int, kind: str, clamp) -> torch.Tensor:
    """``t`` (..., H) with the units ``clamp`` names for (layer, kind) forced to their values: {(layer, kind): (index
    LongTensor (n,), values (n,))} at every position, or (mask BoolTensor (B, H), values (B, H)) per row of a
    (B, H) step. The one clamp of :meth:`CharRNN.step` and of the modern stacks' parallel forms."""
    if clamp and (layer, kind) in clamp:
        idx, val = clamp[(layer, kind)]
        if idx.dtype == torch.bool:  # a clamp per row: mask (B, H), values (B, H)
            return torch.where(idx, val.to(t.dtype), t)
        t = t.clone()
        t[..., idx] = val.to(t.dtype)
    return t


class CharRNN(nn.Module):
    """A stack of recurrent layers over one-hot characters and a linear read-out.

    ``forward(x)``: x (B, T) int64 ids -> logits (B, T, V), new state.
    State is ``(h, c)`` for an LSTM, ``h`` otherwise, each (L, B, H).
    """

    def __init__(self, config: ModelConfig, vocab=None):
        super().__init__()
        self.config = config
        self.vocab = vocab  # a Vocab, attached by the checkpoint loader / trainer
        self.meta: dict = {}  # the checkpoint's config.json, when loaded from one
        self.checkpoint_dir: Path | None = None  # ... and the directory it was read from
        V, H, L = config.vocab_size, config.hidden, config.layers
        self.modern = config.cell in MODERN
        if self.modern:
            from rnnviz.model.modern import build_stack

            self.rnn = build_stack(config.cell, V, L, H, config.dropout)
        else:
            self.rnn = _fused(config.cell, V, H, L, dropout=config.dropout if L > 1 else 0.0)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(H, V)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def init_state(self, batch: int, device=None):
        """Zero state for ``batch`` streams: (L, B, H) tensors (a modern cell's: :func:`.cells.state_shapes`)."""
        c = self.config
        if self.modern:
            return self.rnn.init_state(batch, device)
        z = torch.zeros(c.layers, batch, c.hidden, device=device or self.device)
        return (z, z.clone()) if c.cell == "lstm" else z

    def onehot(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, V) float one-hot in the weights' dtype."""
        return F.one_hot(x, self.config.vocab_size).to(self.head.weight.dtype)

    def forward(self, x: torch.Tensor, state=None):
        out, state = self.rnn(x if self.modern else self.onehot(x), state)  # (B, T, H)
        return self.head(self.drop(out)), state  # (B, T, V)

    def layer_weights(self, layer: int):
        """(W_ih (G·H, D), W_hh (G·H, H), b_ih (G·H), b_hh (G·H)) of one layer, rows in torch's gate order."""
        return tuple(getattr(self.rnn, f"{n}_l{layer}") for n in WEIGHT_NAMES)

    def fused_layer(self, layer: int, device=None, dtype=None) -> nn.Module:
        """Layer ``layer`` alone as torch's fused single-layer module (:func:`single_layer`), holding a copy
        of the model's weights: input (B, T, D) -> (B, T, H), state (1, B, H); on ``device`` (default the
        model's)."""
        return single_layer(self.config.cell, self.layer_weights(layer), device or self.device, dtype)

    def step(self, x_t: torch.Tensor, state, clamp=None, internals: bool = False):
        """One character through every layer with plain tensor math (no fused kernel).

        x_t: (B,) ids. ``clamp``: {(layer, kind): (index LongTensor (n,), values (n,))}: those units are
        forced to the values as soon as they are computed, so the clamp acts inside the recurrence; or
        (mask BoolTensor (B, H), values (B, H)): each row its own units (ablation's batched random draws).
        Returns logits (B, V), new state, and (if ``internals``) {(layer, kind): (B, H)} for every kind.
        """
        cell = self.config.cell
        if self.modern:  # one step of the parallel form is the step
            want = {(l, k) for l in range(self.config.layers) for k in self.config.kinds} if internals else None
            out, state, rec = self.rnn.run(x_t[:, None], state, want, clamp)
            logits = self.head(out[:, 0])
            return (logits, state, {key: v[:, 0] for key, v in rec.items()}) if internals else (logits, state)
        h_all, c_all = state if cell == "lstm" else (state, None)
        inp = self.onehot(x_t)  # (B, V)
        hs, cs, rec = [], [], {}
        for l in range(self.config.layers):
            w_ih, w_hh, b_ih, b_hh = self.layer_weights(l)
            h = h_all[l]
            gi, gh = F.linear(inp, w_ih, b_ih), F.linear(h, w_hh, b_hh)  # (B, G·H) each
            if cell == "rnn":
                h = torch.tanh(gi + gh)
            elif cell == "gru":
                ir, iz, in_ = gi.chunk(3, 1)
                hr, hz, hn = gh.chunk(3, 1)
                r = clamped(torch.sigmoid(ir + hr), l, "r", clamp)
                z = clamped(torch.sigmoid(iz + hz), l, "z", clamp)
                n = clamped(torch.tanh(in_ + r * hn), l, "n", clamp)
                h = (1 - z) * n + z * h
                rec.update({(l, "r"): r, (l, "z"): z, (l, "n"): n})
            else:
                i, f, g, o = (gi + gh).chunk(4, 1)
                i = clamped(torch.sigmoid(i), l, "i", clamp)
                f = clamped(torch.sigmoid(f), l, "f", clamp)
                g = clamped(torch.tanh(g), l, "g", clamp)
                o = clamped(torch.sigmoid(o), l, "o", clamp)
                c = clamped(f * c_all[l] + i * g, l, "c", clamp)
                h = o * torch.tanh(c)
                cs.append(c)
                rec.update({(l, "i"): i, (l, "f"): f, (l, "g"): g, (l, "o"): o, (l, "c"): c})
            h = clamped(h, l, "h", clamp)
            rec[(l, "h")] = h
            hs.append(h)
            inp = h
        logits = self.head(inp)
        new_state = (torch.stack(hs), torch.stack(cs)) if cell == "lstm" else torch.stack(hs)
        return (logits, new_state, rec) if internals else (logits, new_state)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


FLOAT32_MAX = 3.4028234663852886e38


def check_clamp_value(value, what: str) -> float:
    """A value to clamp a unit to: finite, and within float32's range (the model computes in float32)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not (math.isfinite(v) and abs(v) <= FLOAT32_MAX):
        raise RnnvizError(f"clamp value for {what} must be a finite number within ±{FLOAT32_MAX:.3g}, got {value}")
    return v


def clamp_spec(clamps: dict[str, float], config: ModelConfig, device=None) -> dict:
    """{"1:c:42": 1.0, ...} -> the ``clamp`` argument of :meth:`CharRNN.step`."""
    units, values = [], []
    for name, value in clamps.items():
        units.append(parse_unit(name, config))
        values.append(check_clamp_value(value, name))
    return {
        key: (torch.tensor(idx, device=device), torch.tensor([values[p] for p in pos], device=device))
        for key, (pos, idx) in group_units(units).items()
    }
