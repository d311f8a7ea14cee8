"""The cells rnnviz trains and records, their kinds of unit, and the size limits every config is checked
against: torch-free, so that the CLI can build its options without importing torch."""

CELLS = ("rnn", "gru", "lstm")
KINDS = {"rnn": ("h",), "gru": ("h", "r", "z", "n"), "lstm": ("h", "c", "i", "f", "g", "o")}
GATES = {"rnn": (), "gru": ("r", "z", "n"), "lstm": ("i", "f", "g", "o")}  # torch's weight row order
SIGMOID_KINDS = {"rnn": (), "gru": ("r", "z"), "lstm": ("i", "f", "o")}  # gates in [0, 1] (n, g are tanh)
# Limits checked before any allocation, so that a hostile config.json cannot exhaust memory.
MAX_HIDDEN, MAX_LAYERS, MAX_VOCAB = 16384, 32, 1 << 16
