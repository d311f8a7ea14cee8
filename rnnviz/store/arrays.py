"""A store from any recurrent model's activations: arrays from Keras, JAX, a state-space model, LSTMVis.

>>> rnnviz.store_from_arrays(words, {"0:h": h0, "0:c": c0, "1:h": h1}, out="store/")

Rows are characters (``tokens_or_text`` a string) or tokens (a list of strings, or spans with ``text=``);
each array is (T, width), any array-like that slices (numpy, a memmap, an h5py dataset): it is copied a
block at a time, so memory stays bounded whatever T is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from rnnviz.errors import RnnvizError
from rnnviz.model.charrnn import CELLS, KINDS
from rnnviz.store.manifest import EXTERNAL
from rnnviz.store.reader import Store
from rnnviz.store.tokens import Tokens, token_spans
from rnnviz.store.writer import write_store


def store_from_arrays(
    tokens_or_text: str | Tokens,
    arrays: Mapping[str, object],
    out: str | Path,
    *,
    text: str | None = None,
    cell: str | None = None,
    vocab: list[str] | None = None,
    logprob: np.ndarray | None = None,
    overwrite: bool = False,
    source: dict | None = None,
    recorder: dict | None = None,
    progress=None,
) -> Store:
    """Write a store of ``arrays`` {"LAYER:KIND": (T, width)} over ``tokens_or_text`` at ``out``.

    ``cell``: rnn, gru or lstm when the kinds are that cell's (h, c, i, f, g, o ...), so that views know
    them; default: such a cell when every kind is one of exactly its kinds, else "external" (kinds are
    then any short lower-case names, e.g. "delta", "y"). ``logprob``: (T,) nats of each next token.
    Every array must have T rows and only finite values (checked a block at a time; nothing is left
    behind on an error).
    """
    parsed = {}
    for name, a in arrays.items():
        parts = name.split(":") if isinstance(name, str) else ()
        if len(parts) != 2 or not (parts[0].isascii() and parts[0].isdigit() and len(parts[0]) <= 2):
            raise RnnvizError(f"array name {name!r}: expected LAYER:KIND, e.g. 0:h or 1:c")
        if len(np.shape(a)) != 2:
            raise RnnvizError(f"array {name} has shape {np.shape(a)}: expected (T, width)")
        parsed[(int(parts[0]), parts[1])] = a
    if not parsed:
        raise RnnvizError("no arrays given")
    if isinstance(tokens_or_text, str):
        if text is not None:
            raise RnnvizError("give the text once: as tokens_or_text, or text= with tokens")
        full, spans = tokens_or_text, None
    else:
        full, spans = token_spans(tokens_or_text, text)
    T = len(full) if spans is None else len(spans)
    lengths = {f"{l}:{k}": np.shape(a)[0] for (l, k), a in parsed.items()}
    if any(n != T for n in lengths.values()):
        raise RnnvizError(f"arrays must have one row per {'character' if spans is None else 'token'} ({T:,}); "
                          f"got {', '.join(f'{k} {n:,}' for k, n in lengths.items() if n != T)}")
    kinds = {k for _, k in parsed}
    cell = cell or next((c for c in ("lstm", "gru", "rnn") if kinds <= set(KINDS[c])), EXTERNAL)
    if cell not in (*CELLS, EXTERNAL):
        raise RnnvizError(f"cell must be one of {', '.join(CELLS)}, {EXTERNAL}, got {cell!r}")
    if vocab is None:
        vocab = sorted(set(full)) if spans is None else []
    return write_store(out, full, parsed, None, vocab, logprob=logprob, overwrite=overwrite, cell=cell,
                       spans=spans, source=source, recorder=recorder, progress=progress,
                       finite=True)
