"""Hostile inputs, round three: arguments that gave a traceback, ran for ever, or were accepted although
wrong. Each is one ``Error:`` line naming the problem (and the limit, where there is one)."""

from __future__ import annotations

import pytest
import torch
from helpers import cli, one_line_error

from rnnviz.errors import RnnvizError, check_seed
from rnnviz.model.charrnn import CharRNN, ModelConfig, parse_unit
from rnnviz.model.checkpoint import save_checkpoint
from rnnviz.model.vocab import Vocab
from rnnviz.recording.recorder import record

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = 'He said "hi" (twice).\nif (x) { y; }\n' * 60
HUGE_UNIT = "0:h:" + "1" * 5000  # int() refuses more than 4,300 digits: it was a ValueError traceback


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(checkpoint, text file, store) of a random 1 x 8 LSTM."""
    d = tmp_path_factory.mktemp("args")
    (d / "t.txt").write_text(TEXT, encoding="utf-8")
    torch.manual_seed(0)
    vocab = Vocab.from_text(TEXT)
    model = CharRNN(ModelConfig(vocab_size=len(vocab), cell="lstm", layers=1, hidden=8), vocab).eval()
    save_checkpoint(model, d / "ck")
    record(model, TEXT, d / "st")
    return d / "ck", d / "t.txt", d / "st"


CASES = {  # name: (arguments with CK, TXT, ST, OUT for the paths, what the error says)
    "unit of 5,000 digits, export": (["export", "ST", "--unit", HUGE_UNIT, "--out", "OUT"], "bad unit name"),
    "unit of 5,000 digits, ablate": (["ablate", "CK", "TXT", "--unit", HUGE_UNIT], "bad unit name"),
    "unit of 5,000 digits, clamp": (["sample", "CK", "--clamp", HUGE_UNIT + "=1"], "bad unit name"),
    "unit of 5,000 digits, find": (["find", "ST", "--feature", "in_quote", "--units", HUGE_UNIT], "bad unit name"),
    "find --seed -1": (["find", "ST", "--feature", "in_quote", "--seed", "-1"], "seed must be a whole number"),
    "ablate --seed -1": (["ablate", "CK", "TXT", "--unit", "0:c:1", "--random", "1", "--seed", "-1"],
                         "seed must be a whole number"),
    "gradflow --seed -1": (["gradflow", "CK", "TXT", "--max-lag", "5", "--seed", "-1"], "seed must be a whole number"),
    "sample --clamp 1e300": (["sample", "CK", "--clamp", "0:h:0=1e300", "--length", "5"], "within ±3.4e+38"),
    "ablate --mode value=1e300": (["ablate", "CK", "TXT", "--unit", "0:c:1", "--mode", "value=1e300",
                                   "--random", "1"], "within ±3.4e+38"),
    "ablate --random 1000000": (["ablate", "CK", "TXT", "--unit", "0:c:1", "--random", "1000000"],
                                "random draws are at most 1,000"),
    "explain --min-score nan": (["explain", "ST", "--min-score", "nan"], "min_score must be a score from 0 to 1"),
    "explain --min-score 2": (["explain", "ST", "--min-score", "2"], "min_score must be a score from 0 to 1"),
    "similar --top -1": (["similar", "ST", "--start", "8", "--end", "12", "--top", "-1"], "top is a whole number"),
    "record --unknown bogus": (["record", "CK", "TXT", "--out", "OUT", "--unknown", "bogus"],
                               "unknown-character policy must be error, skip or replace:X, not 'bogus'"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(CASES))
def test_one_error_line(made, tmp_path, name):
    ck, txt, st = made
    args, needle = CASES[name]
    paths = {"CK": ck, "TXT": txt, "ST": st, "OUT": tmp_path / "out"}
    one_line_error(cli(*[paths.get(a, a) for a in args]), needle)
    assert not (tmp_path / "out").exists()


def test_the_library_keeps_the_same_rules():
    assert check_seed(0) == 0 and check_seed(2**32 - 1) == 2**32 - 1
    for bad in (-1, 2**32, 1.5, True, "3"):
        with pytest.raises(RnnvizError, match="seed must be"):
            check_seed(bad)
    assert parse_unit("31:c:16383") == (31, "c", 16383)
    assert parse_unit("0:c:" + "9" * 64)[2] == int("9" * 64)  # out of any range, but a number: "not in this store"
    with pytest.raises(RnnvizError, match=r"\(5,004 characters\)"):
        parse_unit(HUGE_UNIT)  # the message names the length, not 5,000 digits
    with pytest.raises(RnnvizError, match="policy"):
        Vocab.from_text("abc").prepare("abc", "bogus")  # checked even when every character is known


# --- hangs and memory: texts that are not files, or too big, are refused before reading ---


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", ["eval", "train", "record", "ngram"])
def test_a_fifo_as_the_text_is_refused_without_waiting(made, tmp_path, command):
    import os

    ck, _, _ = made
    fifo = tmp_path / "text.fifo"
    os.mkfifo(fifo)
    args = {"eval": ["eval", ck, fifo], "train": ["train", fifo, "--out", tmp_path / "run"],
            "record": ["record", ck, fifo, "--out", tmp_path / "st"], "ngram": ["ngram", fifo]}[command]
    one_line_error(cli(*args), "not a regular file (a FIFO or device)")


@pytest.mark.timeout(60)
def test_a_device_as_the_text_is_refused(made):
    ck, _, _ = made
    one_line_error(cli("eval", ck, "/dev/zero"), "/dev/zero: not a regular file")


def test_a_text_over_the_cap_is_refused_before_it_is_read(made, monkeypatch):
    from rnnviz.model import data

    ck, txt, _ = made
    monkeypatch.setattr(data, "MAX_TEXT_BYTES", 100)
    one_line_error(cli("eval", ck, txt), "more than the 100 a text may have")


@pytest.mark.timeout(120)
def test_unknown_characters_are_counted_in_one_pass():
    """Each unknown character's count and first position, as the definition says, also for 31,000 distinct
    ones (one scan of the text per character made that a minute on 9 MB)."""
    import numpy as np

    vocab = Vocab.from_text("abc\n ")
    rng = np.random.default_rng(0)
    small = "".join(rng.choice(list("abcxyzé😀\n "), 5000))
    want = {ch: (small.count(ch), small.index(ch)) for ch in sorted(set(small) - set("abc\n "), key=small.index)}
    got = vocab.unknown_chars(small)
    assert got == want and list(got) == list(want)  # first seen first
    many = "".join(chr(c) for c in rng.integers(0x4E00, 0x4E00 + 31_000, 2_000_000))
    found = vocab.unknown_chars(many)
    assert len(found) == len(set(many)) and sum(n for n, _ in found.values()) == len(many)
    assert vocab.unknown_chars("abc") == {}


def test_nan_and_inf_activations_do_not_break_select_to_find(tmp_path):
    """A diverged model's store: units with NaN and ±inf beside a clean quote cell. The quote cell is still
    found first, the broken units are never ranked, and the CLI and the dashboard's search answer."""
    import numpy as np

    from rnnviz.analysis.features import compute_feature
    from rnnviz.analysis.similar import find_similar
    from rnnviz.store.writer import write_store

    text = 'He said "hello there" and left.\nShe asked "why?" twice.\n' * 40
    rng = np.random.default_rng(0)
    h = rng.uniform(-0.3, 0.3, (len(text), 4)).astype(np.float32)
    h[:, 0] = 2 * compute_feature("in_quote", text) - 1  # the quote cell
    h[5:50, 1] = np.nan
    h[:, 2] = np.inf
    h[100:200, 3] = -np.inf
    vocab = Vocab.from_text(text)
    cfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=1, hidden=4)
    st = write_store(tmp_path / "st", text, {(0, "h"): h, (0, "c"): h.copy()}, cfg, vocab)
    a = text.index('"hello')
    cells, matches = find_similar(st, a, a + len('"hello there'))
    assert cells["unit"].iloc[0] in ("0:h:0", "0:c:0") and len(matches) > 0
    assert not set(cells["unit"]) & {"0:h:1", "0:h:2", "0:h:3", "0:c:1", "0:c:2", "0:c:3"}
    r = cli("similar", st.path, "--start", a, "--end", a + 12)
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
