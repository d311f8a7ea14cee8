"""Recording a modern recurrent cell (minGRU, Mamba, sLSTM: :mod:`rnnviz.model.modern`).

The text is one stream read in chunks of ``chunk`` characters, each through the stack's parallel form
(:meth:`rnnviz.model.modern.Stack.run`: minGRU's log-space scan, Mamba's selective scan; the sLSTM steps)
with the state carried from chunk to chunk, so the recording is exact: the state after character t from a
zero state at text[0] (or after ``context``), as for ``record(exact=True)`` of an LSTM. Tests check every kind
against a naive per-step loop of each cell's sequential form.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from rnnviz.model.charrnn import CharRNN
from rnnviz.store.reader import Store
from rnnviz.store.writer import StoreWriter

CHUNK = 512  # characters per forward: Mamba's scan holds (chunk, d_inner, d_state) floats per layer


@torch.no_grad()
def record_modern(model: CharRNN, text: str, writer: StoreWriter, context: str = "",
                  progress: Callable[[int, int], None] | None = None, chunk: int = CHUNK) -> Store:
    """Record the writer's layers and kinds of ``model`` over ``text`` (already in the model's vocabulary) into
    ``writer`` (not yet entered); returns the opened :class:`Store`."""
    dev = model.device
    want = {(l, k) for l in writer.layers for k in writer.kinds}
    ids = torch.from_numpy(model.vocab.encode(text)).long()
    t0 = time.perf_counter()
    with writer:
        state = None
        if context:  # the first state: after reading what came before the text
            _, state, _ = model.rnn.run(torch.from_numpy(model.vocab.encode(context)).long().to(dev)[None], None)
        for a in range(0, len(ids), chunk):
            n = min(chunk, len(ids) - a)
            out, state, rec = model.rnn.run(ids[None, a : a + n].to(dev), state, want)
            arrays = {key: v[0].half().cpu() for key, v in rec.items()}  # (n, width) each
            writer.observe(arrays)
            writer.write_logits(a, arrays, model.head(out[0]), ids)
            if progress is not None:
                progress(a + n, len(ids))
        seconds = time.perf_counter() - t0
        writer.recorder.update(seconds=round(seconds, 3), chars_per_s=round(len(ids) / max(seconds, 1e-9)))
    return writer.store
