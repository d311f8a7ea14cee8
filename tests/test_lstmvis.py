"""LSTMVis's files in and out (rnnviz.store.lstmvis, the import-lstmvis and export-lstmvis commands), the checks
on a hostile HDF5 file (rnnviz.store.hdf5), and store_from_arrays's refusals. Every file is written here,
seeded, with h5py."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import cli, one_line_error, small_store

from rnnviz.errors import RnnvizError
from rnnviz.store.arrays import store_from_arrays
from rnnviz.store.lstmvis import export_lstmvis, import_lstmvis
from rnnviz.store.reader import open_store

T, H = 300, 8
WORDS = ["<s>", "the", "cat", "sat", "on", "a", "mat", ".", "</s>", "said", '"hi"', "naïve", "日本"]


def write_triple(d: Path, seed: int = 0, T: int = T, H: int = H) -> tuple[Path, Path, Path, dict, list[str]]:
    """LSTMVis's three files as its tools write them: states.h5 (states1/2 = c, output1/2 = h, float32),
    train.h5 (word_ids, int64), words.dict (WORD ID, ids from 1). Returns the paths, the arrays and the words."""
    rng = np.random.default_rng(seed)
    arrays = {}
    with h5py.File(d / "states.h5", "w") as f:
        for n in (1, 2):
            arrays[f"states{n}"] = (rng.standard_normal((T, H)) * 3).astype(np.float32)
            arrays[f"output{n}"] = np.tanh(rng.standard_normal((T, H))).astype(np.float32)
            f[f"states{n}"], f[f"output{n}"] = arrays[f"states{n}"], arrays[f"output{n}"]
    ids = rng.integers(1, len(WORDS) + 1, T)
    with h5py.File(d / "train.h5", "w") as f:
        f["word_ids"] = ids
    (d / "words.dict").write_text("".join(f"{w} {i}\n" for i, w in enumerate(WORDS, 1)), encoding="utf-8")
    return d / "states.h5", d / "train.h5", d / "words.dict", arrays, [WORDS[i - 1] for i in ids]


@pytest.fixture
def triple(tmp_path):
    return write_triple(tmp_path)


def nothing_left(out: Path) -> None:
    """No store at ``out`` and no temp directory beside it."""
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


# --- round trips ---


def test_import_gives_every_value_to_float16_and_the_words_as_rows(tmp_path, triple):
    states, words, dictionary, arrays, tokens = triple
    st = import_lstmvis(states, words, dictionary, tmp_path / "st")
    st = open_store(st.path)
    assert (st.cell, st.layers, st.is_tokens, st.length) == ("lstm", [0, 1], True, T)
    assert sorted(st.kinds) == ["c", "h"] and len(st.units) == 2 * 2 * H
    for name, a in arrays.items():
        layer, kind = int(name[-1]) - 1, "c" if name.startswith("states") else "h"
        np.testing.assert_array_equal(np.asarray(st.array(layer, kind)), a.astype(np.float16))
    assert st.text == " ".join(tokens)
    assert [st.text[s:e] for s, e in np.asarray(st.spans)] == tokens
    assert st.chars_of_rows(0, 2) == (0, len(tokens[0]) + 1 + len(tokens[1]))
    assert st.meta.recorder["datasets"] == {"output1": "0:h", "output2": "1:h", "states1": "0:c", "states2": "1:c"}


def same_store(a, b) -> None:
    assert (a.text, a.cell, a.layers, a.kinds, a.meta.widths, a.length) == \
        (b.text, b.cell, b.layers, b.kinds, b.meta.widths, b.length)
    np.testing.assert_array_equal(np.asarray(a.spans), np.asarray(b.spans))
    for layer in a.layers:
        for kind in a.kinds:
            np.testing.assert_array_equal(np.asarray(a.array(layer, kind)), np.asarray(b.array(layer, kind)))


def lstmvis_reads(folder: Path) -> tuple[list[str], dict[str, tuple]]:
    """What LSTMVis's data_handler.py takes from the files its lstm.yml names: the dict parsed as it parses
    it (``k, v = line.split()``), each position's word, each state dataset's shape."""
    vk = {}
    with open(folder / "words.dict", encoding="utf-8") as f:
        for line in f:
            if len(line) > 0:
                k, v = line.split()
                vk[int(v)] = k
    with h5py.File(folder / "words.h5", "r") as f:
        words = [vk[x] for x in f["word_ids"][:].tolist()]
    with h5py.File(folder / "states.h5", "r") as f:
        shapes = {name: (f[name].shape, f[name].dtype) for name in f}
    return words, shapes


YML = """\
# LSTMVis project written by rnnviz 0.1.0 (rnnviz export-lstmvis); serve it with: python lstm_server.py -dir PARENT
name: "st"
description: "300 tokens; lstm layers 0,1; kinds h,c"

files:  # LSTMVis knows a file by its ending: .h5 states and ids, .dict words
  states: states.h5
  word_ids: words.h5
  words: words.dict

word_sequence:
  file: word_ids
  path: word_ids
  dict_file: words

states:
  file: states
  types: [
    {type: output, layer: 1, path: output1},
    {type: state, layer: 1, path: states1},
    {type: output, layer: 2, path: output2},
    {type: state, layer: 2, path: states2}
  ]
"""


def test_export_is_what_lstmvis_reads_and_imports_back_to_the_same_store(tmp_path, triple):
    states, words, dictionary, arrays, tokens = triple
    st = import_lstmvis(states, words, dictionary, tmp_path / "st")
    r = export_lstmvis(st, tmp_path / "lv")
    assert sorted(p.name for p in (tmp_path / "lv").iterdir()) == ["lstm.yml", "states.h5", "words.dict", "words.h5"]
    assert (tmp_path / "lv" / "lstm.yml").read_text(encoding="utf-8") == YML
    seen, shapes = lstmvis_reads(tmp_path / "lv")
    assert seen == tokens and r["words"] == len(set(tokens))
    assert shapes == {n: ((T, H), np.dtype("<f4")) for n in ("output1", "output2", "states1", "states2")}
    with h5py.File(tmp_path / "lv" / "states.h5", "r") as f:
        for name, a in arrays.items():
            np.testing.assert_array_equal(f[name][:], a.astype(np.float16).astype(np.float32))
    lv = tmp_path / "lv"
    again = import_lstmvis(lv / "states.h5", lv / "words.h5", lv / "words.dict", tmp_path / "st2")
    same_store(st, again)


def test_a_char_store_exports_with_its_characters_as_words(tmp_path):
    st = small_store(tmp_path / "chars")  # 'He said "hi" (twice).\nif (x) { y; }\n': spaces and line ends
    export_lstmvis(st, tmp_path / "lv")
    seen, shapes = lstmvis_reads(tmp_path / "lv")
    visible = {" ": "\u2423", "\n": "\u21b5"}
    assert seen == [visible.get(c, c) for c in st.text]
    assert set(shapes) == {"output1", "states1"}
    lines = (tmp_path / "lv" / "words.dict").read_text(encoding="utf-8").splitlines()
    assert all(len(line.split()) == 2 for line in lines) and len(lines) == len(set(st.text))
    lv = tmp_path / "lv"
    back = import_lstmvis(lv / "states.h5", lv / "words.h5", lv / "words.dict", tmp_path / "back")
    assert back.is_tokens and back.length == st.length
    for kind in ("h", "c"):
        np.testing.assert_array_equal(np.asarray(back.array(0, kind)), np.asarray(st.array(0, kind)))


def test_other_kinds_and_layers_keep_their_names_both_ways(tmp_path):
    rng = np.random.default_rng(3)
    names = [f"{layer}:{kind}" for layer in (0, 2) for kind in ("forget", "x2", "y_")]
    a = {name: rng.uniform(0, 1, (40, 3)).astype(np.float32) for name in names}
    st = store_from_arrays([f"w{i % 7}" for i in range(40)], a, tmp_path / "st")
    r = export_lstmvis(st, tmp_path / "lv")
    assert r["datasets"] == {"forget1": "0:forget", "x2_1": "0:x2", "y__1": "0:y_", "forget3": "2:forget",
                             "x2_3": "2:x2", "y__3": "2:y_"}
    lv = tmp_path / "lv"
    same_store(st, import_lstmvis(lv / "states.h5", lv / "words.h5", lv / "words.dict", tmp_path / "back"))


def test_names_counted_from_zero_and_the_keras_guide_layout(tmp_path):
    """Keras's guide: ``states1`` (its LSTM's output, so --map states1=0:h) and ``words`` as the ids."""
    rng = np.random.default_rng(1)
    h = np.tanh(rng.standard_normal((20, 4))).astype(np.float32)
    with h5py.File(tmp_path / "states.hdf5", "w") as f:
        f["states1"] = h
    with h5py.File(tmp_path / "train.hdf5", "w") as f:
        f["words"] = np.arange(20) % 3
    (tmp_path / "w.dict").write_text("a 0\nb 1\nc 2\n", encoding="utf-8")
    st = import_lstmvis(tmp_path / "states.hdf5", tmp_path / "train.hdf5", tmp_path / "w.dict", tmp_path / "st",
                        mapping={"states1": "0:h"})
    assert (st.layers, st.kinds, st.text[:11]) == ([0], ["h"], "a b c a b c")
    with h5py.File(tmp_path / "s0.h5", "w") as f:
        f["cell_states_0"], f["hidden_states_0"], f["cell_states_1"], f["hidden_states_1"] = h, h, h, h
    st = import_lstmvis(tmp_path / "s0.h5", tmp_path / "train.hdf5", tmp_path / "w.dict", tmp_path / "st0")
    assert (st.layers, sorted(st.kinds)) == ([0, 1], ["c", "h"])


def test_one_file_holding_the_states_and_the_word_ids(tmp_path, triple):
    states, words, dictionary, _, tokens = triple
    with h5py.File(words, "r") as f:
        ids = f["word_ids"][:]
    _rewrite(states, word_ids=ids.astype(np.float64))  # whole floats are ids too (LSTMVis looks them up so)
    st = import_lstmvis(states, states, dictionary, tmp_path / "st")
    assert st.text == " ".join(tokens) and sorted(st.kinds) == ["c", "h"] and st.layers == [0, 1]


# --- the commands ---


def test_cli_import_and_export_print_exactly_this(tmp_path, triple):
    states, words, dictionary, _, tokens = triple
    out = tmp_path / "st"
    r = cli("import-lstmvis", states, words, dictionary, "--out", out)
    assert r.exit_code == 0, r.output
    assert r.output == (
        f"Imported 300 words x 32 units (cell lstm; layers 0,1; kinds h,c) into {out}:\n"
        "  output1 -> 0:h  (300 x 8)\n"
        "  output2 -> 1:h  (300 x 8)\n"
        "  states1 -> 0:c  (300 x 8)\n"
        "  states2 -> 1:c  (300 x 8)\n")
    lv = tmp_path / "lv"
    r = cli("export-lstmvis", out, "--out", lv)
    assert r.exit_code == 0, r.output
    assert r.output == (
        f"Wrote {lv} for LSTMVis: 300 time steps, {len(set(tokens))} distinct words, 4 dataset(s) in states.h5:\n"
        "  0:h -> output1  (300 x 8)\n"
        "  0:c -> states1  (300 x 8)\n"
        "  1:h -> output2  (300 x 8)\n"
        "  1:c -> states2  (300 x 8)\n")
    r = cli("import-lstmvis", states, words, dictionary, "--out", tmp_path / "m", "--map", "states2=0:c",
            "--map", "output2=0:h")
    assert r.exit_code == 0 and r.output.splitlines()[1:] == ["  states2 -> 0:c  (300 x 8)",
                                                              "  output2 -> 0:h  (300 x 8)"], r.output


def test_cli_force_replaces_only_its_own(tmp_path, triple):
    states, words, dictionary, _, _ = triple
    out, lv = tmp_path / "st", tmp_path / "lv"
    assert cli("import-lstmvis", states, words, dictionary, "--out", out).exit_code == 0
    one_line_error(cli("import-lstmvis", states, words, dictionary, "--out", out), "already exists")
    assert cli("import-lstmvis", states, words, dictionary, "--out", out, "--force").exit_code == 0
    assert cli("export-lstmvis", out, "--out", lv).exit_code == 0
    one_line_error(cli("export-lstmvis", out, "--out", lv), "already exists")
    assert cli("export-lstmvis", out, "--out", lv, "--force").exit_code == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    one_line_error(cli("export-lstmvis", out, "--out", mine, "--force"), "a folder of 1 entry: notes.txt")
    one_line_error(cli("import-lstmvis", states, words, dictionary, "--out", mine, "--force"), "notes.txt")
    assert (mine / "notes.txt").read_text() == "keep me"
    one_line_error(cli("import-lstmvis", states, words, dictionary, "--out", tmp_path / "x", "--map", "states1"),
                   "--map wants NAME=LAYER:KIND")


# --- bad input: one line, nothing written ---


def _rewrite(path: Path, **datasets) -> None:
    """Replace (or add, or with None remove) datasets of an HDF5 file."""
    with h5py.File(path, "a") as f:
        for name, value in datasets.items():
            if name in f:
                del f[name]
            if value is not None:
                f[name] = value


def _states(d):
    return d / "states.h5"


BAD_STATES = {
    "3-d": (dict(states1=np.zeros((T, 2, H), np.float32)), "has shape (300, 2, 8)"),
    "1-d": (dict(states1=np.zeros(T, np.float32)), "has shape (300,)"),
    "short": (dict(states2=np.zeros((T - 1, H), np.float32)), "states2 (1:c) of",
              "has 299 rows: expected one per word"),
    "strings": (dict(output1=np.array([[b"x"] * H] * T)), "holds |S1 values: expected numbers"),
    "compound": (dict(output1=np.zeros((T, H), dtype=[("a", "f4"), ("b", "i4")])), "expected numbers"),
    "complex": (dict(output1=np.zeros((T, H), np.complex64)), "expected numbers"),
    "nan": (dict(states2=np.where(np.arange(T)[:, None] == 7, np.nan, 1.0).repeat(H, 1).astype(np.float32)),
            "array 1:c", "holds nan at row 7"),
    "inf": (dict(output2=np.full((T, H), np.inf, np.float32)), "holds inf at row 0"),
    "past float16": (dict(states1=np.full((T, H), 1e6, np.float64)), "holds 1000000.0 at row 0", "±65,504"),
    "unnamed": (dict(embeddings=np.zeros((T, H), np.float32)), "'embeddings' is not named as LSTMVis names states"),
    "gap": (dict(output1=None), "0:h is missing"),  # LSTMVis's README example: states1, states2, output2
    "twice": (dict(cell1=np.zeros((T, H), np.float32)), "are both 0:c"),
    "layer 40": (dict(states40=np.zeros((T, H), np.float32)), "layer 0 to 31"),
}


@pytest.mark.parametrize("case", list(BAD_STATES))
def test_bad_states_files(tmp_path, triple, case):
    datasets, *needles = BAD_STATES[case]
    states, words, dictionary, _, _ = triple
    _rewrite(states, **datasets)
    r = cli("import-lstmvis", states, words, dictionary, "--out", tmp_path / "st")
    one_line_error(r, *needles, after_progress=case in ("nan", "inf", "past float16"))
    nothing_left(tmp_path / "st")


BAD_WORDS = {
    "not in dict": (np.array([1, 2, 99] + [1] * (T - 3)),
                    "word id 99 at time step 2 is not in the dict (13 words, ids 1 to 13)"),
    "zero": (np.zeros(T, np.int64), "word id 0 at time step 0"),
    "negative": (np.full(T, -1), "word id -1"),
    "fraction": (np.array([1.0, 2.5] + [1.0] * (T - 2)), "word id 2.5 at time step 1"),
    "nan": (np.array([np.nan] + [1.0] * (T - 1)), "word id nan"),
    "huge uint": (np.array([2**64 - 1] + [1] * (T - 1), np.uint64), "word id 18446744073709551615"),
    "2-d": (np.ones((T, 1), np.int64), "expected (T,), one word id per time step"),
    "empty": (np.ones(0, np.int64), "has shape (0,)"),
    "longer": (np.ones(T + 1, np.int64), "has 300 rows: expected one per word (301)"),
    "strings": (np.array([b"the"] * T), "holds |S3 values"),
}


@pytest.mark.parametrize("case", list(BAD_WORDS))
def test_bad_word_ids(tmp_path, triple, case):
    ids, needle = BAD_WORDS[case]
    states, words, dictionary, _, _ = triple
    _rewrite(words, word_ids=ids)
    with pytest.raises(RnnvizError, match=None) as e:
        import_lstmvis(states, words, dictionary, tmp_path / "st")
    assert needle in str(e.value)
    nothing_left(tmp_path / "st")


BAD_DICTS = {
    "duplicate id": ("the 1\ncat 2\ndog 2\n", "line 3: id 2 is given twice ('cat' on line 2, 'dog' here)"),
    "duplicate word": ("the 1\ncat 2\nthe 3\n", "line 3: word 'the' is given twice (id 1 on line 1, id 3 here)"),
    "one field": ("the 1\ncat\n", "line 2: expected WORD ID"),
    "three fields": ("the 1\nice cream 2\n", "line 2: expected WORD ID"),
    "not an id": ("the 1\ncat two\n", "line 2: expected WORD ID"),
    "underscored id": ("the 1\ncat 1_0\n", "line 2: expected WORD ID"),
    "empty": ("\n\n", "no words"),
}


@pytest.mark.parametrize("case", list(BAD_DICTS))
def test_bad_dicts(tmp_path, triple, case):
    content, needle = BAD_DICTS[case]
    states, words, dictionary, _, _ = triple
    dictionary.write_text(content, encoding="utf-8")
    one_line_error(cli("import-lstmvis", states, words, dictionary, "--out", tmp_path / "st"), needle)
    nothing_left(tmp_path / "st")


def test_a_dict_that_is_not_utf8_or_too_large(tmp_path, triple):
    states, words, dictionary, _, _ = triple
    dictionary.write_bytes(b"the 1\n\xff\xfe 2\n")
    one_line_error(cli("import-lstmvis", states, words, dictionary, "--out", tmp_path / "st"),
                   "line 2: the word is not valid UTF-8")
    with open(dictionary, "wb") as f:
        f.truncate((64 << 20) + 1)  # sparse: nothing is read
    one_line_error(cli("import-lstmvis", states, words, dictionary, "--out", tmp_path / "st"), "67,108,865 bytes")
    nothing_left(tmp_path / "st")


def test_blank_lines_and_crlf_in_a_dict_are_fine(tmp_path, triple):
    states, words, dictionary, _, tokens = triple
    dictionary.write_bytes(b"\r\n".join(f"{w} {i}".encode() for i, w in enumerate(WORDS, 1)) + b"\r\n\r\n")
    assert import_lstmvis(states, words, dictionary, tmp_path / "st").text == " ".join(tokens)


# --- HDF5 that would make us read another file, or more than the file holds ---


def _import_error(tmp_path, states, words, dictionary, *needles, mapping=None):
    with pytest.raises(RnnvizError) as e:
        import_lstmvis(states, words, dictionary, tmp_path / "st", mapping=mapping)
    for n in needles:
        assert n in str(e.value), str(e.value)
    nothing_left(tmp_path / "st")


def test_links_to_other_files_are_refused(tmp_path, triple):
    states, words, dictionary, arrays, _ = triple
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["secret"] = arrays["states1"]
        f.create_group("g")["states1"] = arrays["states1"]
    with h5py.File(states, "a") as f:
        del f["states1"]
        f["states1"] = h5py.ExternalLink(str(other), "/secret")
    _import_error(tmp_path, states, words, dictionary, "/states1 is an external link to", "other.h5:/secret")
    _import_error(tmp_path, states, words, dictionary, "external link", mapping={"states1": "0:c"})
    with h5py.File(states, "a") as f:
        del f["states1"]
        f["grp"] = h5py.ExternalLink(str(other), "/g")  # a step of the path leads out: refused before taken
        f["soft"] = h5py.SoftLink("/grp/states1")
    _import_error(tmp_path, states, words, dictionary, "/grp is an external link",
                  mapping={"grp/states1": "0:c", "output1": "0:h"})
    _import_error(tmp_path, states, words, dictionary, "/soft is a soft link to /grp/states1",
                  mapping={"soft": "0:c", "output1": "0:h"})


def test_virtual_datasets_and_external_storage_are_refused(tmp_path, triple):
    states, words, dictionary, arrays, _ = triple
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["secret"] = arrays["states1"]
    layout = h5py.VirtualLayout(shape=(T, H), dtype="f4")
    layout[:] = h5py.VirtualSource(str(other), "secret", shape=(T, H))
    raw = tmp_path / "raw.bin"
    arrays["states2"].tofile(raw)
    with h5py.File(states, "a") as f:
        del f["states1"], f["states2"]
        f.create_virtual_dataset("states1", layout)
        f.create_dataset("states2", shape=(T, H), dtype="<f4", external=[(str(raw), 0, T * H * 4)])
    _import_error(tmp_path, states, words, dictionary, "states1 is a virtual dataset")
    _import_error(tmp_path, states, words, dictionary, "states2 keeps its data in external files",
                  mapping={"states2": "0:c", "output2": "0:h"})


def test_a_filter_that_is_a_plugin_is_refused(tmp_path, triple):
    states, words, dictionary, arrays, _ = triple
    with h5py.File(states, "a") as f:
        del f["states1"]
        f.create_dataset("states1", shape=(T, H), dtype="f4", chunks=(T, H), compression=32001,
                         compression_opts=(0, 0, 0, 0, 5, 1, 1), allow_unknown_filter=True)
        f["states1"].id.write_direct_chunk((0, 0), arrays["states1"].tobytes())
    _import_error(tmp_path, states, words, dictionary, "needs filter 32001, a plugin")


def test_a_shape_the_file_cannot_back_is_refused_before_anything_is_allocated(tmp_path, triple):
    states, words, dictionary, _, _ = triple
    with h5py.File(states, "a") as f:  # 2^31 - 1 rows of 8 floats, 64 GiB declared, nothing stored
        del f["states1"]
        f.create_dataset("states1", shape=((1 << 31) - 1, H), dtype="f4", chunks=(1024, H))
    _import_error(tmp_path, states, words, dictionary, "declares shape (2147483647, 8)", "holds 0 bytes",
                  "cannot back")
    with h5py.File(words, "a") as f:
        del f["word_ids"]
        f.create_dataset("word_ids", shape=((1 << 31) - 1,), dtype="i8", chunks=(1 << 16,), compression="gzip")
    _import_error(tmp_path, states, words, dictionary, "dataset word_ids declares shape (2147483647,)",
                  "compressed")


def test_a_chunk_larger_than_64_mb_is_refused(tmp_path, triple):
    states, words, dictionary, arrays, _ = triple
    with h5py.File(states, "a") as f:  # one chunk of 4M x 8 floats (128 MiB) holding 300 rows, compressed
        del f["states1"]
        f.create_dataset("states1", data=arrays["states1"], maxshape=(None, H), chunks=(1 << 22, H),
                         compression="gzip")
    _import_error(tmp_path, states, words, dictionary, "has chunks of 134,217,728 bytes")


def test_a_truncated_file_is_one_clear_error(tmp_path, triple):
    states, words, dictionary, _, _ = triple
    size = states.stat().st_size
    with open(states, "r+b") as f:
        f.truncate(size // 2)
    one_line_error(cli("import-lstmvis", states, words, dictionary, "--out", tmp_path / "st"), str(states))
    nothing_left(tmp_path / "st")


def test_files_that_are_not_hdf5_or_not_there(tmp_path, triple):
    states, words, dictionary, _, _ = triple
    out = tmp_path / "st"
    one_line_error(cli("import-lstmvis", dictionary, words, dictionary, "--out", out), "not an HDF5 file")
    one_line_error(cli("import-lstmvis", tmp_path / "nope.h5", words, dictionary, "--out", out), "no such file")
    fifo = tmp_path / "fifo.h5"
    os.mkfifo(fifo)
    one_line_error(cli("import-lstmvis", fifo, words, dictionary, "--out", out), "not a regular file")
    one_line_error(cli("import-lstmvis", states, words, fifo, "--out", out), "not a regular file")
    one_line_error(cli("import-lstmvis", states, words, dictionary, "--out", out, "--map", "nope=0:c"),
                   "no dataset 'nope'", "states1")
    _rewrite(words, word_ids=None, a=np.ones(T), b=np.ones(T))
    one_line_error(cli("import-lstmvis", states, words, dictionary, "--out", out),
                   "which dataset holds the word ids?", "--words-path")
    nothing_left(out)


# --- store_from_arrays: the same refusals for arrays from anywhere ---


def _arrays_error(tmp_path, tokens, arrays, *needles):
    with pytest.raises(RnnvizError) as e:
        store_from_arrays(tokens, arrays, tmp_path / "st")
    for n in needles:
        assert n in str(e.value), str(e.value)
    nothing_left(tmp_path / "st")


A = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
TOKENS = ["a", "b", "c", "d", "e", "f"]


@pytest.mark.parametrize("name", ["0:H", "0:h:1", "a:h", "-1:h", "0:", ":h", "0:../x", "32:h", "0:h c", 3])
def test_store_from_arrays_refuses_bad_names(tmp_path, name):
    _arrays_error(tmp_path, TOKENS, {name: A}, "expected LAYER:KIND")


def test_two_names_for_one_array_are_refused(tmp_path):
    _arrays_error(tmp_path, TOKENS, {"0:h": A, "00:h": A * 2}, "'00:h'")


def test_store_from_arrays_refuses_mismatched_lengths_and_token_counts(tmp_path):
    _arrays_error(tmp_path, TOKENS, {"0:h": A, "0:c": A[:5]}, "array 0:c has 5 rows: expected one per token (6)")
    _arrays_error(tmp_path, TOKENS[:5], {"0:h": A}, "array 0:h has 6 rows: expected one per token (5)")
    _arrays_error(tmp_path, "abcde", {"0:h": A}, "one per character (5)")
    _arrays_error(tmp_path, TOKENS, {"0:h": A[:, :0]}, "is 0 wide")


def test_store_from_arrays_refuses_nan_inf_and_values_float16_cannot_hold(tmp_path):
    for value, shown in ((np.nan, "nan"), (-np.inf, "-inf"), (7e4, "70000.0")):
        b = A.copy()
        b[4, 2] = value
        _arrays_error(tmp_path, TOKENS, {"0:h": A, "0:c": b}, f"array 0:c holds {shown} at row 4")
    big = A.astype(np.float64)
    big[1, 1] = 1e300  # past float32 too
    _arrays_error(tmp_path, TOKENS, {"0:h": big}, "holds inf at row 1")


def test_store_from_arrays_refuses_what_is_not_numbers(tmp_path):
    _arrays_error(tmp_path, TOKENS, {"0:h": A.astype(str)}, "holds <U", "expected numbers")
    _arrays_error(tmp_path, TOKENS, {"0:h": A.astype(object)}, "holds object values")
    _arrays_error(tmp_path, TOKENS, {"0:h": A.astype(np.complex64)}, "holds complex64 values")
    _arrays_error(tmp_path, TOKENS, {"0:h": [[1.0, 2.0], [3.0]] * 3}, "array 0:h is not a (T, width) array")
    st = store_from_arrays(TOKENS, {"0:h": A.tolist(), "0:c": (A * 100).astype(np.int16)}, tmp_path / "ok")
    np.testing.assert_array_equal(np.asarray(st.array(0, "h")), A.astype(np.float16))
