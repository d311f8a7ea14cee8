"""The activation store, which owns every read and write of activations.

``reader`` opens a store (memory-mapped float16 arrays, one per layer × kind, the text, the predictions) and is
the one place that reads it: :meth:`~rnnviz.store.reader.Store.check_units` checks unit names,
:meth:`~rnnviz.store.reader.Store.read` reads units over rows, blocks or a spaced sample, from the column
cache when it has them; ``writer`` writes a store atomically; ``stats`` keeps the per-unit statistics
while it is written; ``column_cache`` keeps units column by column beside it for fast reads. ``arrays`` makes a
store from any model's arrays, ``lstmvis`` from LSTMVis's files (and writes them back), reading HDF5 only
through ``hdf5``, which refuses what a hostile file could make us read.
"""
