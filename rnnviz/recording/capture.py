"""Forward hooks on a user's recurrent submodules: what each one reads and returns while the module runs its
own forward over one chunk of ids, and the state each one carries into the next chunk.

A forward pre-hook takes the submodule's input and the state it starts from; from the second chunk on it
replaces that state with the one the submodule ended the previous chunk in, so a text fed in chunks gives
what one forward over the whole text gives, whatever state the module's own forward passes (a
``word_language_model``-style ``forward(input, hidden)`` passes zeros each call). A forward hook takes the
output (the submodule's top layer's h) and final state. Everything is handed over batch first, as one
sequence: (1, n, width).

A multi-layer submodule returns only its top layer's sequence. Where it is torch's own ``nn.LSTM/GRU/RNN``
(no ``forward`` of its own) in float32, it runs *layer by layer* while recorded: its ``forward`` is replaced
for the recording by torch's fused kernel for each layer in turn (:class:`.recurrence.Layer`, the same
computation, dropout aside, which eval mode turns off), so every layer's h is kept from the one pass and
the module still gets exactly what the submodule returns. Any other submodule runs as it is, and the layers
under its top one are recomputed afterwards from its input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rnnviz.errors import RnnvizError
from rnnviz.recording.recurrence import Layer


@dataclass(frozen=True)
class Seen:
    """One submodule's call in one chunk of n tokens, float32 on its device: ``x`` (1, n, D) its input,
    ``h0`` (L, 1, P) and ``c0`` (L, 1, H) (None unless an LSTM) the state it started from, ``out`` (1, n, P)
    its output, ``hn`` / ``cn`` its final state, shaped as ``h0`` / ``c0``."""

    x: torch.Tensor
    h0: torch.Tensor
    c0: torch.Tensor | None
    out: torch.Tensor
    hn: torch.Tensor
    cn: torch.Tensor | None
    layers: list[torch.Tensor] | None = None  # every layer's h (1, n, P) when it ran layer by layer


def runs_layerwise(m: nn.RNNBase) -> bool:
    """Whether a submodule can run layer by layer while recorded: torch's own class and forward, several
    layers, float32 weights."""
    own = type(m).forward in (nn.LSTM.forward, nn.GRU.forward, nn.RNN.forward) and "forward" not in vars(m)
    return own and m.num_layers > 1 and m.weight_hh_l0.dtype == torch.float32


def _batched(t: torch.Tensor, batched: bool) -> torch.Tensor:
    """A state (L, B, W), or (L, W) from an unbatched call, as (L, B, W) float32."""
    return (t if batched else t[:, None]).float()


class Capture:
    """``with Capture(subs, layerwise) as cap:`` hooks every submodule of ``subs`` [(qualified name,
    nn.RNNBase)]; ``layerwise`` {index in subs: [Layer per layer]}: the submodules that run layer by layer.
    Per chunk, :meth:`start` (n tokens), the module's forward, then :meth:`seen` gives one :class:`Seen`
    per submodule. Each submodule must run exactly once per forward, on one sequence of n steps."""

    def __init__(self, subs: list[tuple[str, nn.RNNBase]], layerwise: dict[int, list[Layer]] | None = None):
        self.subs, self.layerwise = subs, layerwise or {}
        self.carried: list = [None] * len(subs)  # each one's final state, as torch returned it
        self.n = 0
        self._seen: list[Seen | None] = []
        self._pending: dict[int, tuple] = {}
        self._layers: dict[int, list[torch.Tensor]] = {}
        self._handles: list = []

    def __enter__(self) -> Capture:
        for i, (_, m) in enumerate(self.subs):
            self._handles.append(m.register_forward_pre_hook(self._pre(i), with_kwargs=True))
            self._handles.append(m.register_forward_hook(self._post(i)))
            if i in self.layerwise:
                m.forward = self._by_layer(i)  # an instance attribute: the class's forward is back on exit
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for i in self.layerwise:
            vars(self.subs[i][1]).pop("forward", None)

    def start(self, n: int) -> None:
        """A chunk of ``n`` tokens is about to go through the module."""
        self.n, self._seen, self._pending = n, [None] * len(self.subs), {}

    def seen(self) -> list[Seen]:
        """What every submodule read and returned in this chunk (an error naming one that did not run)."""
        missing = [self.subs[i][0] for i, s in enumerate(self._seen) if s is None]
        if missing:
            raise RnnvizError(f"{missing[0]} did not run in the module's forward: every recurrent submodule must "
                              "read the ids' sequence (give forward=... if the module needs more to run)")
        return self._seen

    def _pre(self, i: int):
        name, m = self.subs[i]

        def hook(module, args, kwargs):
            if self._seen[i] is not None or i in self._pending:
                raise RnnvizError(f"{name} ran twice in one forward: rnnviz records a submodule that reads the "
                                  "sequence once")
            x = args[0] if args else kwargs.get("input")
            if not isinstance(x, torch.Tensor):
                raise RnnvizError(f"{name} was given a {type(x).__name__}: rnnviz records recurrent submodules "
                                  "that read a tensor (not a PackedSequence)")
            hx = args[1] if len(args) > 1 else kwargs.get("hx")
            batched = x.dim() == 3
            xb = (x if m.batch_first else x.transpose(0, 1)) if batched else x[None]  # (B, n, D)
            if xb.shape[0] != 1 or xb.shape[1] != self.n:
                raise RnnvizError(f"{name} read {xb.shape[0]} sequence(s) of {xb.shape[1]} steps for a chunk of "
                                  f"{self.n} tokens: it must read one sequence, one step per id (give forward=...)")
            hx = hx if self.carried[i] is None else self.carried[i]
            L, P, H = m.num_layers, getattr(m, "proj_size", 0) or m.hidden_size, m.hidden_size
            if hx is None:
                h0 = xb.new_zeros(L, 1, P, dtype=torch.float32)
                c0 = xb.new_zeros(L, 1, H, dtype=torch.float32) if m.mode == "LSTM" else None
            else:
                h0, c0 = hx if m.mode == "LSTM" else (hx, None)
                h0, c0 = _batched(h0, batched), None if c0 is None else _batched(c0, batched)
            self._pending[i] = (xb.float(), h0, c0, batched)
            rest = {k: v for k, v in kwargs.items() if k not in ("input", "hx")}
            return (x, hx), rest

        return hook

    def _post(self, i: int):
        m = self.subs[i][1]

        def hook(module, args, output):
            x, h0, c0, batched = self._pending.pop(i)
            out, state = output
            self.carried[i] = state
            hn, cn = state if m.mode == "LSTM" else (state, None)
            outb = (out if m.batch_first else out.transpose(0, 1)) if batched else out[None]  # (1, n, P)
            self._seen[i] = Seen(x, h0, c0, outb.float(), _batched(hn, batched),
                                 None if cn is None else _batched(cn, batched), self._layers.pop(i, None))

        return hook

    def _by_layer(self, i: int):
        """The forward of submodule i, one layer at a time with ``layerwise[i]``: what torch's forward
        returns, (output, h_n) or (output, (h_n, c_n)) in the submodule's layout, every layer's h kept."""
        m, layers = self.subs[i][1], self.layerwise[i]

        def forward(input: torch.Tensor, hx=None):
            x, h0, c0, batched = self._pending[i]  # (1, n, D), the start state (L, 1, width): from the pre-hook
            outs, hn, cn = [], [], []
            for k, layer in enumerate(layers):
                x, (hT, cT), _, _ = layer.run(x, h0[k], None if c0 is None else c0[k], gates=False)
                outs.append(x)
                hn.append(hT)
                cn.append(cT)
            self._layers[i] = outs
            y = x.to(input.dtype)
            y = (y if m.batch_first else y.transpose(0, 1)) if batched else y[0]
            state = [torch.stack(s).to(input.dtype) for s in ((hn, cn) if c0 is not None else (hn,))]
            state = [s if batched else s[:, 0] for s in state]
            return y, (tuple(state) if c0 is not None else state[0])

        return forward
