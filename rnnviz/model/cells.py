"""The cells rnnviz trains and records, their kinds of unit, and the size limits every config is checked
against: torch-free, so that the CLI can build its options without importing torch.

Classic cells (one-hot input, torch's fused kernels): ``rnn``, ``gru``, ``lstm``. Modern recurrent cells
(:mod:`rnnviz.model.modern`), whose fixed architecture constants are here so that unit widths are known
without torch:

- ``mingru`` (Feng et al. 2024, "Were RNNs All We Needed?"): pre-norm residual blocks of a minGRU
  (h, its update gate z, its candidate n) and an MLP; ``hidden`` = the model width = the state width.
- ``mamba`` (Gu & Dao 2023): pre-norm residual Mamba blocks (mambapy's layout); ``hidden`` = d_model,
  the selective scan runs over d_inner = MAMBA_EXPAND·hidden channels with MAMBA_STATE states each.
- ``slstm`` (Beck et al. 2024, xLSTM): a stack of sLSTM layers like the LSTM's (exponential input and
  forget gates, a normaliser n and a stabiliser m), recurrent weights block-diagonal over SLSTM_HEADS heads.
"""

CLASSIC = ("rnn", "gru", "lstm")
MODERN = ("mingru", "mamba", "slstm")
CELLS = CLASSIC + MODERN
KINDS = {
    "rnn": ("h",), "gru": ("h", "r", "z", "n"), "lstm": ("h", "c", "i", "f", "g", "o"),
    "mingru": ("h", "z", "n"),  # state, update gate, candidate (g(·) > 0 of the paper's log-space form)
    # block output (residual stream), channel input after conv+SiLU, step size Δ (softplus), scan output
    # (before the z gate), per-channel state norm ||s||, and the whole state (d_inner·d_state, on request only)
    "mamba": ("h", "x", "dt", "y", "sn", "s"),
    # output h (xLSTM's y), cell c, normaliser n, stabiliser m, stabilised gates i f (in [0, 1]), input z, gate o
    "slstm": ("h", "c", "n", "m", "i", "f", "z", "o"),
}
GATES = {"rnn": (), "gru": ("r", "z", "n"), "lstm": ("i", "f", "g", "o")}  # torch's weight row order
SIGMOID_KINDS = {"rnn": (), "gru": ("r", "z"), "lstm": ("i", "f", "o"),  # gates in [0, 1] (n, g are tanh)
                 "mingru": ("z",), "mamba": (), "slstm": ("i", "f", "o")}
ON_REQUEST = {"mamba": ("s",)}  # kinds "all" leaves out: the whole Mamba state is d_state times wider
# Kinds of the cell that carry memory from step to step, as the recorder's "h and c" default takes them.
DEFAULT_KINDS = {"lstm": ("h", "c"), "slstm": ("h", "c")}

MAMBA_EXPAND, MAMBA_STATE, MAMBA_CONV = 2, 16, 4  # d_inner = 2·d_model, 16 states per channel, conv width 4
MINGRU_MLP = 4  # the MLP after each minGRU is 4·hidden wide
SLSTM_HEADS = 4  # block-diagonal recurrent weights: hidden must be a multiple of this
# Outputs per unit of a step's widest matmul (the recurrent GEMM's gates; Mamba's in_proj to 2·d_inner, minGRU's to
# z and n): what the thread policy sizes a step by (rnnviz.threads.step_gemm_flops).
STEP_GEMM = {"rnn": 1, "gru": 3, "lstm": 4, "mingru": 2, "mamba": 2 * MAMBA_EXPAND, "slstm": 4}

# Limits checked before any allocation, so that a hostile config.json cannot exhaust memory.
MAX_HIDDEN, MAX_LAYERS, MAX_VOCAB = 16384, 32, 1 << 16


def kind_width(cell: str, hidden: int, kind: str) -> int:
    """How many units one layer has of ``kind``: ``hidden`` except Mamba's d_inner-wide kinds."""
    if cell == "mamba" and kind != "h":
        inner = MAMBA_EXPAND * hidden
        return inner * MAMBA_STATE if kind == "s" else inner
    return hidden


def state_shapes(cell: str, layers: int, batch: int, hidden: int) -> list[tuple[int, ...]]:
    """The shapes of the state a model carries between chunks of text, streams on dim 1: ``(L, B, H)`` for h
    (and c of an LSTM; y, c, n, m of an sLSTM); Mamba's last MAMBA_CONV-1 conv inputs and its scan state."""
    if cell == "mamba":
        inner = MAMBA_EXPAND * hidden
        return [(layers, batch, inner, MAMBA_CONV - 1), (layers, batch, inner, MAMBA_STATE)]
    n = {"lstm": 2, "slstm": 4}.get(cell, 1)
    return [(layers, batch, hidden)] * n
