"""The model side: text in, a trained character model out.

``vocab`` maps characters to ids; ``data`` reads text strictly, splits it 90/5/5 and cuts it into batch
streams; ``charrnn`` is the model (one-hot input, torch's fused RNN/GRU/LSTM, and the same weights as plain
per-step math for clamping) with the unit-name rules ``LAYER:KIND:INDEX``; ``reference`` is min-char-rnn in
NumPy, the ground truth the model is tested against; ``trainer`` and ``resume`` train and continue runs;
``checkpoint`` and ``snapshots`` keep weights (safetensors + JSON, never code); ``sampling`` generates text;
``distributed`` shares streams among torchrun processes; ``ngram`` is the paper's n-gram baseline.
"""
