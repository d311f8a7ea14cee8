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
