"""Modern recurrent cells as :class:`Stack` modules that :class:`rnnviz.model.charrnn.CharRNN` holds in place of
torch's fused RNN: minGRU (:mod:`.mingru`), Mamba (:mod:`.mamba`) and sLSTM (:mod:`.slstm`). Architecture
constants and kinds of unit: :mod:`rnnviz.model.cells`.

Every stack reads character ids (an embedding stands for the one-hot input) and gives the features the
read-out reads. The state carried between chunks of text is a tuple of tensors with the streams on dim 1
(:func:`rnnviz.model.cells.state_shapes`). :meth:`Stack.run` is the parallel form with the internals the
recorder stores and the clamps ablation forces; a clamp holds a unit at a value at every step, which for the
three cells here is exact in the parallel form too (their gates and inputs depend on the current input only,
not on the previous state), except for the sLSTM, whose recurrence runs step by step anyway.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnviz.errors import RnnvizError
from rnnviz.model.cells import KINDS, state_shapes

Clamp = dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]  # {(layer, kind): (indices (n,), values (n,))}
Want = set[tuple[int, str]]  # the (layer, kind) arrays to return


class Stack(nn.Module):
    """Embedding, recurrent layers, final features: ids (B, T) -> (B, T, H)."""

    cell = ""
    unclampable: tuple[str, ...] = ()  # kinds that are read-outs of the state, not values a step uses

    def __init__(self, vocab_size: int, layers: int, hidden: int, dropout: float):
        super().__init__()
        self.layers, self.hidden = layers, hidden
        self.embed = nn.Embedding(vocab_size, hidden)
        self.drop = nn.Dropout(dropout)

    def init_state(self, batch: int, device=None) -> tuple[torch.Tensor, ...]:
        dev = device or self.embed.weight.device
        return tuple(torch.zeros(s, device=dev) for s in state_shapes(self.cell, self.layers, batch, self.hidden))

    def forward(self, x: torch.Tensor, state=None):
        out, state, _ = self.run(x, state)
        return out, state

    def run(self, x: torch.Tensor, state=None, want: Want | None = None, clamp: Clamp | None = None):
        """ids (B, T) -> (features (B, T, H), new state, {(layer, kind): (B, T, width)} for ``want``)."""
        raise NotImplementedError

    def check_clamp(self, clamp: Clamp | None) -> None:
        for _, kind in clamp or ():
            if kind in self.unclampable:
                ok = ", ".join(k for k in KINDS[self.cell] if k not in self.unclampable)
                raise RnnvizError(f"a {self.cell}'s {kind!r} is read from its state and cannot be clamped "
                                  f"(clamp one of {ok})")


def build_stack(cell: str, vocab_size: int, layers: int, hidden: int, dropout: float) -> Stack:
    from rnnviz.model.modern.mamba import MambaStack
    from rnnviz.model.modern.mingru import MinGRUStack
    from rnnviz.model.modern.slstm import SLSTMStack

    cls = {"mingru": MinGRUStack, "mamba": MambaStack, "slstm": SLSTMStack}[cell]
    return cls(vocab_size, layers, hidden, dropout)
