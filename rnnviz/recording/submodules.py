"""The recurrent layers inside a user's ``torch.nn.Module``, numbered the way a store numbers layers.

Every ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` submodule is found in module order (``named_modules``); each of
its ``num_layers`` layers gets the next layer number, so an ``nn.LSTM(num_layers=2)`` followed by an
``nn.GRU`` would give layers 0, 1 (the LSTM) and 2 (the GRU). A store holds one cell, so a module whose
recurrent submodules mix cells is refused; so is a bidirectional one (its backward state at token t reads
the tokens after t, which a recording fed in chunks cannot give), and one with no recurrent layer at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rnnviz.errors import RnnvizError

CELL_OF_MODE = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn", "RNN_RELU": "rnn"}  # nn.RNNBase.mode -> cell


@dataclass(frozen=True)
class RecurrentLayer:
    """One layer of a recurrent submodule: store layer ``number`` is layer ``index`` of ``module`` (its
    qualified name in the user's module is ``name``). Widths: ``inputs`` D, ``hidden`` H (c and the gates),
    ``width`` of h (an LSTM's ``proj_size`` P, else H)."""

    number: int
    name: str
    module: nn.RNNBase
    index: int
    inputs: int
    hidden: int
    width: int

    @property
    def cell(self) -> str:
        return CELL_OF_MODE[self.module.mode]

    @property
    def nonlinearity(self) -> str:
        return "relu" if self.module.mode == "RNN_RELU" else "tanh"

    @property
    def last(self) -> bool:
        """Whether this is its submodule's top layer, whose h the submodule returns."""
        return self.index == self.module.num_layers - 1

    def weights(self) -> tuple[torch.Tensor, ...]:
        """(W_ih (G·H, D), W_hh (G·H, P), b_ih, b_hh (G·H,)[, W_hr (P, H)]) in torch's gate row order; zeros
        for the biases of a submodule built with ``bias=False``."""
        m, k = self.module, self.index
        w_ih, w_hh = getattr(m, f"weight_ih_l{k}"), getattr(m, f"weight_hh_l{k}")
        if m.bias:
            b_ih, b_hh = getattr(m, f"bias_ih_l{k}"), getattr(m, f"bias_hh_l{k}")
        else:
            b_ih = b_hh = torch.zeros(w_ih.shape[0], dtype=w_ih.dtype, device=w_ih.device)
        proj = (getattr(m, f"weight_hr_l{k}"),) if getattr(m, "proj_size", 0) else ()
        return (w_ih, w_hh, b_ih, b_hh, *proj)

    def widths(self, kinds: list[str]) -> dict[str, int]:
        """Each kind's width: h is ``width`` wide, c and the gates ``hidden``."""
        return {k: self.width if k == "h" else self.hidden for k in kinds}

    def describe(self) -> dict:
        """This layer's entry in the store's ``source`` table."""
        entry = {"layer": self.number, "module": self.name, "type": type(self.module).__name__,
                 "index": self.index, "inputs": self.inputs, "hidden": self.hidden}
        if self.width != self.hidden:
            entry["proj_size"] = self.width
        if self.cell == "rnn":
            entry["nonlinearity"] = self.nonlinearity
        return entry


def recurrent_layers(module: nn.Module) -> list[RecurrentLayer]:
    """Every recurrent layer of ``module`` in module order, numbered from 0; one-line errors for a module
    with none, a bidirectional one, or cells of more than one kind."""
    subs = [(name, m) for name, m in module.named_modules() if isinstance(m, nn.RNNBase)]
    if not subs:
        raise RnnvizError(f"{type(module).__name__} has no recurrent layer (nn.LSTM, nn.GRU or nn.RNN) to record")
    for name, m in subs:
        if m.mode not in CELL_OF_MODE:
            raise RnnvizError(f"{name or type(module).__name__}: {type(m).__name__} in mode {m.mode!r} is not "
                              "an LSTM, GRU or RNN")
        if m.bidirectional:
            raise RnnvizError(f"{name}: bidirectional layers are not recorded (the backward direction's state "
                              "at a token reads the tokens after it); record a unidirectional model")
    cells = {name: CELL_OF_MODE[m.mode] for name, m in subs}
    if len(set(cells.values())) > 1:
        mix = ", ".join(f"{name} ({cell})" for name, cell in cells.items())
        raise RnnvizError(f"this module mixes cells ({mix}): a store holds one kind, so every recurrent layer "
                          "must be an LSTM, or every one a GRU, or every one an RNN")
    out: list[RecurrentLayer] = []
    for name, m in subs:
        H = m.hidden_size
        P = getattr(m, "proj_size", 0) or H
        for k in range(m.num_layers):
            out.append(RecurrentLayer(len(out), name, m, k, m.input_size if k == 0 else P, H, P))
    return out

