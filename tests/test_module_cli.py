"""``rnnviz record --module FILE.py:FACTORY --weights FILE IDS``: the user's own code and weights (never
unpickled), exact output on the happy path, one ``Error:`` line and nothing written on bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from helpers import cli, one_line_error
from safetensors.torch import save_file

import rnnviz
from rnnviz.recording.user_code import load_object

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL_PY = '''
import torch.nn.functional as F
from torch import nn


class RNNModel(nn.Module):
    """PyTorch's examples/word_language_model layout: time-major, forward(input, hidden)."""

    def __init__(self, ntoken=20, ninp=6, nhid=8, nlayers=2):
        super().__init__()
        self.ntoken, self.nlayers, self.nhid = ntoken, nlayers, nhid
        self.drop = nn.Dropout(0.5)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=0.5)
        self.decoder = nn.Linear(nhid, ntoken)

    def forward(self, input, hidden):
        output, hidden = self.rnn(self.drop(self.encoder(input)), hidden)
        return F.log_softmax(self.decoder(self.drop(output)).view(-1, self.ntoken), dim=1), hidden

    def init_hidden(self, bsz):
        w = next(self.parameters())
        return w.new_zeros(self.nlayers, bsz, self.nhid), w.new_zeros(self.nlayers, bsz, self.nhid)


def build():
    return RNNModel()


def build_wider():
    return RNNModel(nhid=9)


def run(model, x):
    return model(x, model.init_hidden(1))


def broken():
    raise ValueError("no config\\nfor this model")
'''

IDS = [3, 0, 7, 19, 3, 5, 0, 12, 3, 8, 1, 2]
WORDS = ["<eos>", "the", "a", "cat", "sat", "on", "mat", "dog", "ran", "far", *[f"w{i}" for i in range(10, 20)]]


@pytest.fixture
def user(tmp_path):
    """The user's files: model.py, weights (safetensors, a torch state_dict, a pickled whole model), ids, vocab."""
    (tmp_path / "model.py").write_text(MODEL_PY, encoding="utf-8")
    model = load_object(f"{tmp_path}/model.py:build")()
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.uniform_(p, -0.3, 0.3)
    save_file(model.state_dict(), tmp_path / "lm.safetensors")
    torch.save(model.state_dict(), tmp_path / "lm.pt")
    torch.save(torch.nn.LSTM(2, 2), tmp_path / "whole.pt")  # a pickled module object: refused
    (tmp_path / "ids.txt").write_text(" ".join(map(str, IDS[:6])) + "\n" + " ".join(map(str, IDS[6:])) + "\n")
    (tmp_path / "vocab.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    return tmp_path, model


def module_args(d, *extra, weights="lm.safetensors", factory="build"):
    return ("record", "--module", f"{d}/model.py:{factory}", "--weights", d / weights, d / "ids.txt",
            "--forward", f"{d}/model.py:run", "--device", "cpu", "--out", d / "st", *extra)


TIMING = re.compile(r"in [\d.]+ s \([\d,]+ tokens/s")


def test_happy_path_output_and_store(user):
    d, model = user
    r = cli(*module_args(d, "--vocab", d / "vocab.txt", "--kinds", "all", "--topk", "3"))
    assert r.exit_code == 0, r.output
    assert TIMING.sub("in T s (N tokens/s", r.output) == (
        f"Recorded 12 tokens x 96 units (layers 0,1; kinds h,c,i,f,g,o) of rnnviz_user_model.RNNModel into {d}/st: "
        "0.0 MB in T s (N tokens/s on cpu); next-token log-probabilities and top-3 predictions kept\n"
        "Layers: 0 = rnn[0] (LSTM), 1 = rnn[1] (LSTM)\n")
    store = rnnviz.open_store(d / "st")
    assert store.text == "cat <eos> dog w19 cat on <eos> w12 cat ran the a" and store.k == 3
    with torch.no_grad():
        logp, _ = model.eval()(torch.tensor(IDS)[:, None], model.init_hidden(1))
    np.testing.assert_allclose(store.logprob[:-1], logp[np.arange(11), IDS[1:]].numpy(), atol=1e-5)
    assert store.meta.recorder["source"] == str(d / "ids.txt")


def test_a_torch_state_dict_and_a_tokens_file(user):
    d, _ = user
    (d / "tokens.txt").write_text("\n".join(f"t{i}" for i in range(12)) + "\n", encoding="utf-8")
    r = cli(*module_args(d, "--tokens", d / "tokens.txt", weights="lm.pt"))
    assert r.exit_code == 0, r.output
    store = rnnviz.open_store(d / "st")
    assert store.text == " ".join(f"t{i}" for i in range(12)) and store.kinds == ["h", "c"]
    assert store.vocab.chars[:2] == ["0", "1"]


def test_help_shows_an_example():
    r = cli("record", "--help")
    assert "rnnviz record --module model.py:build --weights lm.safetensors test_ids.txt" in r.output


ERRORS = {
    "no weights": (lambda d: ("record", "--module", f"{d}/model.py:build", d / "ids.txt", "--out", d / "st"),
                   "Error: --module needs --weights: the module's state_dict (safetensors or a torch file)"),
    "bad spec": (lambda d: module_args(d)[:2] + ("model.py",) + module_args(d)[3:],
                 "Error: --module 'model.py': expected FILE.py:NAME or package.module:NAME, e.g. model.py:build"),
    "no such factory": (lambda d: module_args(d, factory="nope"),
                        "Error: --module '{d}/model.py:nope': {d}/model.py has no nope"),
    "factory fails": (lambda d: module_args(d, factory="broken"),
                      "Error: --module '{d}/model.py:broken': building the module failed: ValueError: no config for "
                      "this model"),
    "weights do not fit": (lambda d: module_args(d, factory="build_wider"),
                           "Error: {d}/lm.safetensors: weights do not fit the module (missing: [], unexpected: [], "
                           "wrong shape: ['decoder.weight', 'rnn.bias_hh_l0', 'rnn.bias_hh_l1'])"),
    "ids not numbers": (lambda d: (d / "ids.txt").write_text("1 2 cat 3") and module_args(d),
                        "Error: {d}/ids.txt: id 2 is 'cat', not a whole number"),
    "id out of range": (lambda d: (d / "ids.txt").write_text("1 20 3") and module_args(d),
                        "Error: id 20 at position 1 is outside the module's vocabulary of 20 (0 to 19)"),
    "tokens count": (lambda d: (d / "t.txt").write_text("a\nb\n") and module_args(d, "--tokens", d / "t.txt"),
                     "Error: 2 tokens for 12 ids: give one token per id"),
    "forward fails": (lambda d: module_args(d)[:6] + module_args(d)[8:],
                      "Error: the module's forward failed on tokens 0 to 11: TypeError: RNNModel.forward() missing 1 "
                      "required positional argument: 'hidden'"),
    "checkpoint option": (lambda d: module_args(d, "--burn-in", "5"),
                          "Error: --burn-in: not for --module, which records every id of IDS as one sequence"),
    "module option alone": (lambda d: ("record", d / "ckpt", d / "ids.txt", "--weights", d / "lm.pt", "--out",
                                       d / "st"),
                            "Error: --weights goes with --module"),
    "import fails": (lambda d: (d / "bad.py").write_text("def build(:\n") and
                     ("record", "--module", f"{d}/bad.py:build", "--weights", d / "lm.pt", d / "ids.txt", "--out",
                      d / "st"),
                     "Error: --module '{d}/bad.py:build': importing {d}/bad.py failed: SyntaxError: invalid syntax "
                     "(bad.py, line 1)"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_input_is_one_error_line_and_nothing_written(user, case):
    d, _ = user
    args, message = ERRORS[case]
    r = cli(*args(d))
    one_line_error(r)
    assert r.output == message.format(d=d) + "\n"
    assert not (d / "st").exists()


def test_a_pickled_model_is_never_unpickled(user):
    d, _ = user
    r = cli(*module_args(d, weights="whole.pt"))
    one_line_error(r, f"Error: {d}/whole.pt: not a safetensors file or a weights-only torch file (rnnviz never "
                      "unpickles code; save model.state_dict()): UnpicklingError: ")
    assert not (d / "st").exists()
