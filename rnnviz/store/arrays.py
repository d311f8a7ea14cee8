"""A store from any recurrent model's activations: arrays from Keras, JAX, a state-space model, LSTMVis.

>>> rnnviz.store_from_arrays(words, {"0:h": h0, "0:c": c0, "1:h": h1}, out="store/")

Rows are characters (``tokens_or_text`` a string) or tokens (a list of strings, or spans with ``text=``);
each array is (T, width), any array-like that slices (numpy, a memmap, an h5py dataset): it is copied a
block at a time, so memory stays bounded whatever T is. What an array must be is checked here, in one
place (:func:`parse_array_name`, :func:`check_array`, :func:`check_numeric`), before anything is read or
written; the values themselves (finite, within float16's range) a block at a time as they are copied.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

from rnnviz import memory
from rnnviz.errors import RnnvizError
from rnnviz.model.cells import CELLS, KINDS, MAX_HIDDEN, MAX_LAYERS
from rnnviz.store.manifest import EXTERNAL, KIND_NAME
from rnnviz.store.reader import Store
from rnnviz.store.tokens import Tokens, token_spans

NUMERIC = "iuf"  # numpy dtype kinds an array may hold: signed and unsigned integers, floats

BLOCK_ROWS = 65536  # arrays are copied in blocks of at most this many rows, and rnnviz.memory.BLOCK_BYTES of float32


def block_rows(width: int) -> int:
    """Rows copied at once from or to an array ``width`` wide: at most 65,536, and BLOCK_BYTES of float32."""
    return min(BLOCK_ROWS, memory.block_rows(4 * width, None))


def parse_array_name(name: object) -> tuple[int, str]:
    """``(layer, kind)`` of an array's name ``"LAYER:KIND"``: the layer a plain decimal 0 to 31 (``"00"``
    is refused, so two names cannot mean one array), the kind a short lower-case name (h, c, i, or any
    external name such as ``forget``: letters, digits, ``_``, at most 24 characters, starting with a letter)."""
    parts = name.split(":") if isinstance(name, str) else ()
    ok = (len(parts) == 2 and parts[0].isascii() and parts[0].isdigit() and len(parts[0]) <= 2
          and str(int(parts[0])) == parts[0] and int(parts[0]) < MAX_LAYERS and KIND_NAME.match(parts[1]))
    if not ok:
        raise RnnvizError(f"array name {str(name)[:60]!r}: expected LAYER:KIND, a layer 0 to {MAX_LAYERS - 1} and a "
                          "lower-case kind, e.g. 0:h or 1:c")
    return int(parts[0]), parts[1]


def check_array(label: str, a: object, rows: int, row_name: str) -> None:
    """Refuse an array that is not (``rows``, width) numbers with a width of 1 to 16,384, from its shape and
    dtype alone (nothing is read). ``label`` names it in the error, ``row_name`` says what a row is."""
    shape = tuple(np.shape(a))
    if len(shape) != 2:
        raise RnnvizError(f"array {label} has shape {shape}: expected ({rows:,}, width), one row per {row_name}")
    if shape[0] != rows:
        raise RnnvizError(f"array {label} has {shape[0]:,} rows: expected one per {row_name} ({rows:,})")
    if not 1 <= shape[1] <= MAX_HIDDEN:
        raise RnnvizError(f"array {label} is {shape[1]:,} wide: expected 1 to {MAX_HIDDEN:,} units")
    check_numeric(getattr(a, "dtype", np.float32), f"array {label}")


def check_numeric(dtype: DTypeLike, label: str) -> None:
    """Refuse a dtype that is not integers or floats (strings, objects, records, complex), naming ``label``."""
    dtype = np.dtype(dtype)
    if dtype.kind not in NUMERIC:
        raise RnnvizError(f"{label} holds {dtype} values: expected numbers (integers or floats)")


def _sliceable(name: str, a: object) -> object:
    """``a`` itself when it has a shape and slices (numpy, a memmap, an h5py dataset), else as a numpy array
    (a list of lists: in memory already)."""
    if hasattr(a, "shape") and hasattr(a, "__getitem__"):
        return a
    try:
        return np.asarray(a)
    except (ValueError, TypeError) as e:
        raise RnnvizError(f"array {name} is not a (T, width) array of numbers ({e})") from None


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
    Every array must have T rows of numbers, only finite values within float16's ±65,504 (checked a
    block at a time; nothing is left behind on an error). ``progress(rows)`` is called after each block
    of rows is copied.
    """
    parsed = {parse_array_name(name): _sliceable(name, a) for name, a in arrays.items()}
    if not parsed:
        raise RnnvizError("no arrays given")
    if isinstance(tokens_or_text, str):
        if text is not None:
            raise RnnvizError("give the text once: as tokens_or_text, or text= with tokens")
        full, spans = tokens_or_text, None
    else:
        full, spans = token_spans(tokens_or_text, text)
    T = len(full) if spans is None else len(spans)
    for (layer, kind), a in parsed.items():
        check_array(f"{layer}:{kind}", a, T, "character" if spans is None else "token")
    kinds = {k for _, k in parsed}
    cell = cell or next((c for c in ("lstm", "gru", "rnn") if kinds <= set(KINDS[c])), EXTERNAL)
    if cell not in (*CELLS, EXTERNAL):
        raise RnnvizError(f"cell must be one of {', '.join(CELLS)}, {EXTERNAL}, got {cell!r}")
    if vocab is None:
        vocab = sorted(set(full)) if spans is None else []
    from rnnviz.store.writer import write_store  # torch: only to write, not to check (export-lstmvis)

    return write_store(out, full, parsed, None, vocab, logprob=logprob, overwrite=overwrite, cell=cell,
                       spans=spans, source=source, recorder=recorder, progress=progress,
                       finite=True)
