"""The recorder: a model and a text in, every cell's activation at every character out, into a store.

``recorder`` cuts the text into parallel streams and writes every layer's h, c and gates through the store's
writer; ``recurrence`` runs one layer on the recording device (the fused kernel for h, the gates recomputed in
batched matmuls, states-only passes); ``starts`` corrects each stream's start state until it agrees with one
sequential pass, and measures the error that is left. Any other ``torch.nn.Module`` with LSTM, GRU or RNN
layers is recorded by ``module``: ``submodules`` finds and numbers its recurrent layers, ``capture`` hooks
them while the module runs its own forward in chunks, ``module_input`` checks its ids and tokens, and each
layer is recomputed by ``recurrence``; ``user_code`` loads a user's code and weights for the CLI.
"""

MAX_PASSES = 8  # correction passes before recording anyway (the error is still measured and reported)
