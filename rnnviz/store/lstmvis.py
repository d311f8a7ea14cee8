"""LSTMVis's files, read and written, so that its users can move their states to rnnviz and back.

LSTMVis (HendrikStrobelt/LSTMVis) serves a project folder whose ``lstm.yml`` names three files, which its
``lstmdata/data_handler.py`` reads so:

    states.h5    one dataset (T, H) per layer and kind, float32, named by its ``model/get_states.lua``:
                 ``states1`` (layer 1's cell state c), ``output1`` (its output h), ``states2`` ...
    words.h5     one dataset (T,) of integer word ids, one per time step: ``word_ids`` in its README's
                 lstm.yml, ``words`` in its Keras guide, ``target`` from its ``tools/txt_to_hdf5_dict.py``
    words.dict   one line per word, ``WORD ID`` (``k, v = line.split()``: split on ASCII whitespace)

Dataset names become our ``LAYER:KIND`` (:func:`map_datasets`, the one place of that rule): a name is a
kind and a number, ``KIND`` + ``N`` or ``KIND_N``, case ignored. N is LSTMVis's layer, counted from 1
(``states1`` is our layer 0), unless some name has 0 (then the names count from 0). The kind:

    states, state, cell, cells, cell_state, cell_states, c  ->  c
    output, outputs, hidden_state, hidden_states, h         ->  h
    any other lower-case name                               ->  itself (``forget1`` -> ``0:forget``)

``mapping`` ({dataset: "LAYER:KIND"}, the CLI's ``--map``) names the datasets to import instead, by any
name or path: exactly those are imported. Rows are the words, the text is the words joined by single
spaces (:func:`rnnviz.store.tokens.token_spans`), the store's cell ``lstm`` when every kind is an LSTM's
(``external`` otherwise). Every file is read as :mod:`rnnviz.store.hdf5` allows (SECURITY.md) and the
states are copied a block of rows at a time (:func:`rnnviz.store.arrays.store_from_arrays`).

:func:`export_lstmvis` writes what LSTMVis loads: ``DIR/states.h5`` (float32; c as ``statesN``, h as
``outputN``, any other kind K as ``KN``, or ``K_N`` when K ends in a digit or ``_``; N = layer + 1),
``DIR/words.h5`` (``word_ids``, int64, ids from 1 in order of first use), ``DIR/words.dict`` and
``DIR/lstm.yml``; importing the three files again gives the same store. A token with whitespace in it (a
char store's " " or "\\n") cannot be one word of a dict line: its whitespace is written as a visible
symbol (" " as "␣", "\\n" as "↵", "\\t" as "⇥", "\\r" as "␍", others as ``<U+XXXX>``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from rnnviz import __version__
from rnnviz.errors import RnnvizError
from rnnviz.fsutil import atomic_dir, open_input, read_member
from rnnviz.store.arrays import block_rows, check_array, parse_array_name, store_from_arrays
from rnnviz.store.hdf5 import H5, Rows, checked_dataset, open_hdf5, root_datasets
from rnnviz.store.manifest import EXTERNAL, MAX_LENGTH
from rnnviz.store.reader import Store, open_store

Progress = Callable[[int, int], None]  # (rows done, rows in all)

ALIASES = {**dict.fromkeys(("states", "state", "cell", "cells", "cell_state", "cell_states", "c"), "c"),
           **dict.fromkeys(("output", "outputs", "hidden_state", "hidden_states", "h"), "h")}
_NAME = re.compile(r"(?P<kind>[a-z][a-z0-9_]*?)_?(?P<n>[0-9]{1,3})")  # states1, cell_states_2, forget1
WORD_DATASETS = ("word_ids", "words", "target")  # where LSTMVis's own tools put the word ids
STATES_H5, WORDS_H5, DICT, CONFIG = "states.h5", "words.h5", "words.dict", "lstm.yml"
HEADER = "# LSTMVis project written by rnnviz"  # the first line of an lstm.yml we wrote: --force replaces that
MAX_DICT_BYTES = 64 << 20
_ID = re.compile(rb"[+-]?[0-9]{1,18}")
_SPACE = re.compile(r"\s")
_VISIBLE = {" ": "\u2423", "\n": "\u21b5", "\t": "\u21e5", "\r": "\u240d"}
_GATES = ("i", "f", "o", "r", "z")  # values in [0, 1]: LSTMVis's "unsigned"


def map_datasets(names: list[str], where: str | Path = "") -> dict[str, str]:
    """{dataset name: "LAYER:KIND"} for LSTMVis's names (``states1`` -> ``0:c``), by the rule of the module
    docstring. A name that is not a kind and a number, a layer past 31, or two names for one array is an
    error naming it (``--map`` names the datasets to import instead)."""
    if not names:
        raise RnnvizError(f"{where}: no datasets at its root (name them with --map NAME=LAYER:KIND)")
    found = {}
    for name in names:
        m = _NAME.fullmatch(name.lower())
        kind = ALIASES.get(m["kind"], m["kind"]) if m else None
        if kind is None:
            raise RnnvizError(f"{where}: dataset {name[:60]!r} is not named as LSTMVis names states (a kind and a "
                              "layer, e.g. states1, output2): import with --map NAME=LAYER:KIND for each dataset "
                              "to take (then only those are imported)")
        found[name] = (int(m["n"]), kind)
    base = 0 if min(n for n, _ in found.values()) == 0 else 1
    return _distinct({name: f"{n - base}:{kind}" for name, (n, kind) in found.items()}, where)


def _distinct(mapping: Mapping[str, str], where: str | Path) -> dict[str, str]:
    """``mapping`` with every target checked (:func:`parse_array_name`) and named once."""
    seen: dict[tuple[int, str], str] = {}
    for name, target in mapping.items():
        key = parse_array_name(target)
        if key in seen:
            raise RnnvizError(f"{where}: datasets {seen[key]} and {name} are both {target}: map one elsewhere "
                              "with --map")
        seen[key] = name
    layers = sorted({l for l, _ in seen})
    kinds = list(dict.fromkeys(k for _, k in seen))
    missing = [f"{l}:{k}" for l in layers for k in kinds if (l, k) not in seen]
    if missing:
        raise RnnvizError(f"{where}: a store holds every kind for every layer, and {', '.join(missing[:4])} "
                          f"{'is' if len(missing) == 1 else 'are'} missing (datasets: {_summary(mapping)}): "
                          "import a full set with --map NAME=LAYER:KIND")
    return dict(mapping)


def _summary(mapping: Mapping[str, str]) -> str:
    items = [f"{n} -> {t}" for n, t in mapping.items()]
    return ", ".join(items[:6]) + (", ..." if len(items) > 6 else "")


def read_dict(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """``(ids (V,) int64 ascending, words (V,) in the same order)`` of an LSTMVis dict file: lines ``WORD ID``
    split on ASCII whitespace as LSTMVis splits them, the word UTF-8, the id an integer. Blank lines are
    skipped; a line of other than two fields, an id or a word given twice is an error naming its line."""
    with open_input(path, "a words.dict file", MAX_DICT_BYTES) as (f, size):
        raw = f.read(size)
    by_id: dict[int, tuple[str, int]] = {}
    by_word: dict[str, tuple[int, int]] = {}
    for n, line in enumerate(raw.split(b"\n"), 1):
        parts = line.split()  # bytes: ASCII whitespace only, as LSTMVis (Python 2) splits a line
        if not parts:
            continue
        if len(parts) != 2 or not _ID.fullmatch(parts[1]):
            raise RnnvizError(f"{path}: line {n}: expected WORD ID (a word, a space, an integer), got "
                              f"{line[:60].decode('utf-8', 'replace')!r}")
        try:
            word = parts[0].decode("utf-8")
        except UnicodeDecodeError:
            raise RnnvizError(f"{path}: line {n}: the word is not valid UTF-8") from None
        i = int(parts[1])
        if i in by_id:
            raise RnnvizError(f"{path}: line {n}: id {i} is given twice ({by_id[i][0]!r} on line {by_id[i][1]}, "
                              f"{word!r} here)")
        if word in by_word:
            raise RnnvizError(f"{path}: line {n}: word {word!r} is given twice (id {by_word[word][0]} on line "
                              f"{by_word[word][1]}, id {i} here)")
        by_id[i], by_word[word] = (word, n), (i, n)
    if not by_id:
        raise RnnvizError(f"{path}: no words (expected lines WORD ID)")
    ids = np.array(sorted(by_id), dtype=np.int64)
    return ids, [by_id[i][0] for i in ids.tolist()]


def word_dataset(h5: H5, words_path: str | None) -> str:
    """The dataset of word ids in a words file: ``words_path``, else the first of word_ids, words, target
    at its root, else its only dataset."""
    if words_path:
        return words_path
    names = root_datasets(h5)
    found = [n for n in WORD_DATASETS if n in names] or (names if len(names) == 1 else [])
    if not found:
        raise RnnvizError(f"{h5.path}: which dataset holds the word ids? None is named {', '.join(WORD_DATASETS)} "
                          f"and it holds {len(names)} ({', '.join(names[:6]) or 'none'}): name it with --words-path")
    return found[0]


def read_words(rows: Rows, ids: np.ndarray, words: list[str]) -> list[str]:
    """The word of each time step: ``rows`` (T,) integer ids, each one of the dict's ``ids``, read a block
    at a time. An id not in the dict, or one that is not an integer, is an error naming its time step."""
    if len(rows.shape) != 1 or not 1 <= rows.shape[0] <= MAX_LENGTH:
        raise RnnvizError(f"{rows.label} has shape {rows.shape}: expected (T,), one word id per time step, "
                          f"1 <= T <= {MAX_LENGTH:,}")
    T, step = rows.shape[0], 1 << 20
    index = np.empty(T, dtype=np.int64)
    for s in range(0, T, step):
        b = np.asarray(rows[s : s + step])
        pos, bad = _positions(b, ids)
        if bad.any():
            t = int(np.flatnonzero(bad)[0])
            raise RnnvizError(f"{rows.label}: word id {b[t]} at time step {s + t:,} is not in the dict ({len(ids):,} "
                              f"words, ids {ids[0]} to {ids[-1]})")
        index[s : s + len(b)] = pos
    return np.array(words, dtype=object)[index].tolist()


def _positions(b: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(positions in ids, bad)`` of a block of word ids: bad where an id is not an integer (NaN, 2.5, a
    uint64 past int64) or not one of ``ids`` (ascending)."""
    with np.errstate(invalid="ignore"):
        if b.dtype.kind == "f":
            bad = ~np.isfinite(b) | (b != np.round(b))
        else:
            bad = b > np.iinfo(np.int64).max if b.dtype == np.uint64 else np.zeros(b.shape, dtype=bool)
        v = np.where(bad, ids[0], b).astype(np.int64)
    pos = np.minimum(np.searchsorted(ids, v), len(ids) - 1)
    return pos, bad | (ids[pos] != v)


def import_lstmvis(
    states: str | Path,
    words: str | Path,
    dictionary: str | Path,
    out: str | Path,
    *,
    mapping: Mapping[str, str] | None = None,
    words_path: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Store:
    """A token store at ``out`` from LSTMVis's three files: states (T, H) datasets, word ids (T,), the dict.

    ``mapping`` {dataset: "LAYER:KIND"}: import exactly these datasets (default: every dataset at the
    root of ``states``, by :func:`map_datasets`; the word ids left out when ``states`` is ``words``).
    ``words_path``: the dataset of word ids (default: :func:`word_dataset`). Every dataset is checked
    (:func:`rnnviz.store.hdf5.checked_dataset`, then its shape and dtype by
    :func:`rnnviz.store.arrays.check_array`) before anything is written; values are copied a block of rows
    at a time (NaN, ±inf and values past float16's range refused). On any error nothing is left at ``out``.
    ``progress(rows done, T)`` after each block.
    """
    ids, vocab = read_dict(dictionary)
    with open_hdf5(words) as h5:
        words_name = word_dataset(h5, words_path)
        tokens = read_words(checked_dataset(h5, words_name), ids, vocab)
    same = Path(states).resolve() == Path(words).resolve()  # one file with both: its word ids are no state
    with open_hdf5(states) as h5:
        if mapping:
            named = _distinct(mapping, h5.path)
        else:
            named = map_datasets([n for n in root_datasets(h5) if not (same and n == words_name.strip("/"))], h5.path)
        arrays = {}
        for name, target in named.items():
            arrays[target] = rows = checked_dataset(h5, name)
            check_array(f"{name} ({target}) of {h5.path}", rows, len(tokens), "word")
        recorder = {"source": "lstmvis", "states": str(states), "words": str(words), "dict": str(dictionary),
                    "datasets": dict(named)}
        done = [0]

        def rows_done(n: int) -> None:
            done[0] += n
            progress(done[0], len(tokens))

        return store_from_arrays(tokens, arrays, out, overwrite=overwrite, recorder=recorder,
                                 progress=rows_done if progress else None)


def dataset_name(layer: int, kind: str) -> str:
    """The states.h5 dataset of our ``layer``:``kind`` (the inverse of :func:`map_datasets`): c as
    ``states{layer+1}``, h as ``output{layer+1}``, any other kind K as ``K{layer+1}`` (``K_{layer+1}`` when K
    ends in a digit or ``_``, so that the number stays the layer's). A kind named as LSTMVis names states or
    outputs (``cell``, ``state`` ...) is read back as c or h."""
    n = layer + 1
    if kind in ("c", "h"):
        return f"{'states' if kind == 'c' else 'output'}{n}"
    return f"{kind}_{n}" if kind[-1].isdigit() or kind[-1] == "_" else f"{kind}{n}"


def dict_word(token: str) -> str:
    """``token`` as one word of a dict line: whitespace in it written as visible symbols (see the module)."""
    if not _SPACE.search(token):
        return token
    return "".join(_VISIBLE.get(c, f"<U+{ord(c):04X}>") if c.isspace() or _SPACE.match(c) else c for c in token)


def is_lstmvis_export(path: str | Path) -> bool:
    """Whether ``path`` is a folder :func:`export_lstmvis` wrote (what ``--force`` may replace)."""
    path = Path(path)
    try:
        names = {p.name for p in path.iterdir()}
        first = read_member(path, CONFIG, 1 << 20).decode("utf-8").split("\n", 1)[0]
    except (OSError, RnnvizError, UnicodeDecodeError):
        return False
    return first.startswith(HEADER) and names <= {STATES_H5, WORDS_H5, DICT, CONFIG}


def export_lstmvis(
    store: Store | str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Write ``store`` as an LSTMVis project folder ``out`` (states.h5, words.h5, words.dict, lstm.yml: see
    the module docstring), atomically: it appears complete or not at all. ``overwrite`` replaces only a
    folder this function wrote (or an empty one). ``progress(rows done, rows in all)`` counts the rows of
    every array. Returns {"path", "tokens", "words", "datasets": {name: "LAYER:KIND"}}."""
    import h5py

    st = store if isinstance(store, Store) else open_store(store)
    names = {dataset_name(l, k): f"{l}:{k}" for l in st.layers for k in st.kinds}
    if len(names) != len(st.layers) * len(st.kinds):
        raise RnnvizError(f"{st.path}: kinds {', '.join(st.kinds)} give two datasets one LSTMVis name")
    with atomic_dir(out, overwrite=overwrite, ours=is_lstmvis_export) as tmp:
        ids, words = _token_ids(st)
        with open(tmp / DICT, "wb") as f:
            f.write("".join(f"{w} {i}\n" for i, w in enumerate(words, 1)).encode("utf-8"))
        with h5py.File(tmp / WORDS_H5, "w") as f:
            f.create_dataset("word_ids", data=ids)
        _write_states(st, tmp / STATES_H5, names, progress)
        (tmp / CONFIG).write_text(_lstm_yml(st, names), encoding="utf-8")
    return {"path": str(out), "tokens": st.length, "words": len(words), "datasets": names}


def _token_ids(st: Store) -> tuple[np.ndarray, list[str]]:
    """``(ids (T,) int64, words)``: each row's word id, from 1 in order of first use, and the dict's words
    in id order (each row's token: its span of the text, or its character in a char store)."""
    index: dict[str, int] = {}
    ids = np.empty(st.length, dtype=np.int64)
    step = 1 << 16
    for a in range(0, st.length, step):
        b = min(a + step, st.length)
        if st.spans is None:
            tokens = st.text[a:b]
        else:
            tokens = [st.text[s:e] for s, e in np.asarray(st.spans[a:b]).tolist()]
        ids[a:b] = [index.setdefault(dict_word(t), len(index) + 1) for t in tokens]
    return ids, list(index)


def _write_states(st: Store, path: Path, names: dict[str, str], progress: Progress | None) -> None:
    """Every array of ``st`` into ``path`` as float32 datasets (T, width), a block of rows at a time."""
    import h5py

    total, done = st.length * len(names), 0
    with h5py.File(path, "w") as f:
        for name, target in names.items():
            layer, kind = parse_array_name(target)
            a = st.array(layer, kind)
            ds = f.create_dataset(name, shape=a.shape, dtype="<f4")
            step = block_rows(a.shape[1])
            for s in range(0, st.length, step):
                ds[s : s + step] = np.asarray(a[s : s + step], dtype=np.float32)
                done += min(step, st.length - s)
                if progress:
                    progress(done, total)


def _lstm_yml(st: Store, names: dict[str, str]) -> str:
    """LSTMVis's config for the exported files (as its README's example: files, word_sequence, states)."""
    name = re.sub(r"[^\x20-\x7e]", "?", st.path.resolve().name) or "rnnviz"
    what = "tokens" if st.is_tokens else "characters"
    layers, kinds = ",".join(map(str, st.layers)), ",".join(st.kinds)
    types = []
    for ds, target in names.items():
        layer, kind = parse_array_name(target)
        unsigned = ", unsigned: true" if kind in _GATES and st.cell != EXTERNAL else ""
        types.append(f"    {{type: {'output' if kind == 'h' else 'state'}, layer: {layer + 1}, path: {ds}{unsigned}}}")
    return "\n".join([
        f"{HEADER} {__version__} (rnnviz export-lstmvis); serve it with: python lstm_server.py -dir PARENT",
        f"name: {json.dumps(name)}",
        f"description: {json.dumps(f'{st.length:,} {what}; {st.cell} layers {layers}; kinds {kinds}')}",
        "",
        "files:  # LSTMVis knows a file by its ending: .h5 states and ids, .dict words",
        f"  states: {STATES_H5}",
        f"  word_ids: {WORDS_H5}",
        f"  words: {DICT}",
        "",
        "word_sequence:",
        "  file: word_ids",
        "  path: word_ids",
        "  dict_file: words",
        "",
        "states:",
        "  file: states",
        "  types: [",
        ",\n".join(types),
        "  ]",
        "",
    ])
