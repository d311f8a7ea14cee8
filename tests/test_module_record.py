"""Recording a user's own PyTorch module: every kind equals the module's own outputs and a naive per-step
LSTMCell / GRUCell loop, to float16 rounding; chunks change nothing; log-probabilities are the module's;
bad input is one line and writes nothing."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rnnviz
from rnnviz.errors import RnnvizError
from rnnviz.recording.capture import Capture, runs_layerwise
from rnnviz.recording.recurrence import Layer
from rnnviz.recording.submodules import CELL_OF_MODE, recurrent_layers

pytestmark = pytest.mark.usefixtures("one_thread")

F16_REL = 2.0**-11  # float16 rounding: half an ulp, relative
ATOL = 1e-5  # float32 against a float64 reference, over a few hundred steps


class WordLM(nn.Module):
    """PyTorch's examples/word_language_model RNNModel (LSTM): time-major, forward(input, hidden)."""

    def __init__(self, ntoken=50, ninp=12, nhid=16, nlayers=2, dropout=0.5):
        super().__init__()
        self.ntoken, self.nlayers, self.nhid = ntoken, nlayers, nhid
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        w = next(self.parameters())
        return w.new_zeros(self.nlayers, bsz, self.nhid), w.new_zeros(self.nlayers, bsz, self.nhid)


def lm_forward(m, x):
    return m(x, m.init_hidden(1))


class GRUTagger(nn.Module):
    """A 2-layer GRU, time-major (batch_first=False), with a 4-tag head: activations only."""

    def __init__(self):
        super().__init__()
        self.emb, self.gru, self.tags = nn.Embedding(30, 8), nn.GRU(8, 10, 2, batch_first=False), nn.Linear(10, 4)

    def forward(self, x):
        return self.tags(self.gru(self.emb(x))[0])


class ProjLM(nn.Module):
    """A batch-first 2-layer LSTM with proj_size 5 (h 5 wide, c and gates 12) and next-token logits."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(40, 8)
        self.lstm = nn.LSTM(8, 12, 2, batch_first=True, proj_size=5)
        self.head = nn.Linear(5, 40)

    def forward(self, x):
        return self.head(self.lstm(self.emb(x))[0])


class Classifier(nn.Module):
    """Two LSTM submodules (the second 2-layer and without biases) with a LayerNorm between them and a
    mean-pooling head: layers 0 (lstm_a), 1 and 2 (lstm_b), activations only."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(30, 8)
        self.lstm_a = nn.LSTM(8, 10, batch_first=True)
        self.norm = nn.LayerNorm(10)
        self.lstm_b = nn.LSTM(10, 6, 2, batch_first=True, bias=False)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        h = self.lstm_b(self.norm(self.lstm_a(self.emb(x))[0]))[0]
        return self.head(h.mean(1))


class ReluRNN(nn.Module):
    """A batch-first 2-layer vanilla RNN with ReLU: its only kind is h."""

    def __init__(self):
        super().__init__()
        self.emb, self.rnn = nn.Embedding(30, 8), nn.RNN(8, 10, 2, nonlinearity="relu", batch_first=True)

    def forward(self, x):
        return self.rnn(self.emb(x))[0]


class OwnForwardLSTM(nn.LSTM):
    """A subclass with a forward of its own: it runs as it is, its inner layer is recomputed afterwards."""

    def forward(self, input, hx=None):
        return super().forward(input, hx)


class SubclassLM(nn.Module):
    """A time-major 2-layer :class:`OwnForwardLSTM` with next-token logits."""

    def __init__(self):
        super().__init__()
        self.emb, self.rnn, self.head = nn.Embedding(30, 8), OwnForwardLSTM(8, 10, 2), nn.Linear(10, 30)

    def forward(self, x):
        return self.head(self.rnn(self.emb(x))[0])


MODELS = {  # name: (factory, vocabulary size, forward, logits)
    "word_lm": (WordLM, 50, lm_forward, True),
    "gru": (GRUTagger, 30, None, False),
    "proj": (ProjLM, 40, None, True),
    "classifier": (Classifier, 30, None, False),
    "relu_rnn": (ReluRNN, 30, None, False),
    "subclass": (SubclassLM, 30, None, True),
}


def make(name: str, T: int = 300, seed: int = 0):
    factory, V, forward, _ = MODELS[name]
    torch.manual_seed(seed)
    model = factory()
    ids = torch.randint(0, V, (T,), generator=torch.Generator().manual_seed(seed + 1))
    return model, ids, forward


def own_run(model: nn.Module, ids: torch.Tensor, forward) -> tuple[dict, object]:
    """The module's own forward over all ids at once, in eval mode: each recurrent submodule's input and
    output {name: (x (T, D), out (T, P))} (plain torch hooks) and the forward's output."""
    seen, handles = {}, []
    for name, m in model.named_modules():
        if isinstance(m, nn.RNNBase):
            def hook(mod, args, output, name=name):
                x, out = args[0], output[0]
                seen[name] = (x[0], out[0]) if mod.batch_first else (x[:, 0], out[:, 0])
            handles.append(m.register_forward_hook(hook))
    batch_first = next(m for m in model.modules() if isinstance(m, nn.RNNBase)).batch_first
    x = ids[None] if batch_first else ids[:, None]
    with torch.no_grad():
        out = model.eval()(x) if forward is None else forward(model.eval(), x)
    for h in handles:
        h.remove()
    return seen, out


@torch.no_grad()
def naive_layer(rnn: nn.RNNBase, k: int, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Layer k of ``rnn`` over x (T, D) from a zero state, one step at a time in float64: h and c from
    torch's LSTMCell / GRUCell (a projected LSTM's h by hand), the gates from their equations."""
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if rnn.bias else [])
    w = {n: getattr(rnn, f"{n}_l{k}").detach().double() for n in names}
    w_ih, w_hh = w["weight_ih"], w["weight_hh"]
    b_ih = w.get("bias_ih", torch.zeros(w_ih.shape[0], dtype=torch.float64))
    b_hh = w.get("bias_hh", torch.zeros(w_ih.shape[0], dtype=torch.float64))
    lstm, proj = rnn.mode == "LSTM", getattr(rnn, "proj_size", 0)
    H = rnn.hidden_size
    if rnn.mode.startswith("RNN"):
        cell = nn.RNNCell(w_ih.shape[1], H, nonlinearity=rnn.nonlinearity).double()
    else:
        cell = (nn.LSTMCell if lstm else nn.GRUCell)(w_ih.shape[1], H).double()
    cell.weight_ih.copy_(w_ih), cell.bias_ih.copy_(b_ih), cell.bias_hh.copy_(b_hh)
    if not proj:
        cell.weight_hh.copy_(w_hh)
    h = torch.zeros(1, proj or H, dtype=torch.float64)
    c = torch.zeros(1, H, dtype=torch.float64)
    out: dict[str, list] = {}
    for t in range(len(x)):
        xt = x[t : t + 1].detach().double()
        gi, gh = xt @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        if lstm:
            i, f, g, o = (gi + gh).chunk(4, 1)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            if proj:
                c = f * c + i * g
                h = (o * torch.tanh(c)) @ getattr(rnn, f"weight_hr_l{k}").detach().double().T
            else:
                h, c = cell(xt, (h, c))
            step = {"h": h, "c": c, "i": i, "f": f, "g": g, "o": o}
        elif rnn.mode.startswith("RNN"):
            h = cell(xt, h)
            step = {"h": h}
        else:
            (ir, iz, in_), (hr, hz, hn) = gi.chunk(3, 1), gh.chunk(3, 1)
            r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            n = torch.tanh(in_ + r * hn)
            h = cell(xt, h)
            step = {"h": h, "r": r, "z": z, "n": n}
        for kind, v in step.items():
            out.setdefault(kind, []).append(v[0])
    return {kind: torch.stack(v).numpy() for kind, v in out.items()}


def assert_f16(stored, ref, atol: float = ATOL) -> None:
    """|stored - ref| <= atol + float16 rounding of ref, everywhere."""
    stored, ref = np.asarray(stored, np.float64), np.asarray(ref, np.float64)
    assert stored.shape == ref.shape
    excess = np.abs(stored - ref) - (atol + F16_REL * np.abs(ref))
    assert excess.max() <= 0, f"max excess {excess.max():.2e} (max abs diff {np.abs(stored - ref).max():.2e})"


def references(model: nn.Module, ids: torch.Tensor, forward) -> tuple[dict, dict, object]:
    """({layer: naive kinds}, {layer: the module's own h or None}, the forward's output): each submodule's
    first layer reads what the module gave it, each layer above the naive h of the one below."""
    seen, output = own_run(model, ids, forward)
    naive, own, n = {}, {}, 0
    for name, m in model.named_modules():
        if isinstance(m, nn.RNNBase):
            x = seen[name][0]
            for k in range(m.num_layers):
                naive[n] = naive_layer(m, k, x)
                own[n] = seen[name][1].numpy() if k == m.num_layers - 1 else None
                x, n = torch.from_numpy(naive[n]["h"]), n + 1
    return naive, own, output


@pytest.mark.parametrize("name", list(MODELS))
def test_every_kind_equals_the_module_and_a_per_step_cell_loop(tmp_path, name):
    model, ids, forward = make(name)
    store = rnnviz.record(model, ids, out=tmp_path / "st", kinds="all", forward=forward, chunk=64)
    naive, own, _ = references(copy.deepcopy(model), ids, forward)
    cell = {"gru": "gru", "relu_rnn": "rnn"}.get(name, "lstm")
    assert (store.cell, store.kinds, store.layers) == (cell, list({"lstm": "hcifgo", "gru": "hrzn", "rnn": "h"}[cell]),
                                                      sorted(naive))
    for layer, kinds in naive.items():
        for kind, ref in kinds.items():
            assert_f16(store.array(layer, kind), ref)
        if own[layer] is not None:  # the submodule's top layer: what the module itself computed
            assert_f16(store.array(layer, "h"), own[layer])
    assert model.training  # the recording ran in eval mode and gave the module back as it was
    r = store.meta.recorder
    assert (r["gates_vs_kernel_max_abs_error"] or 0) < 1e-5 and r["chunk"] == 64


def test_layers_are_numbered_over_every_recurrent_layer_with_their_submodules(tmp_path):
    model, ids, _ = make("classifier", T=40)
    store = rnnviz.record(model, ids, out=tmp_path / "st", kinds="h,c")
    assert store.meta.source == {"class": "test_module_record.Classifier", "layers": [
        {"layer": 0, "module": "lstm_a", "type": "LSTM", "index": 0, "inputs": 8, "hidden": 10},
        {"layer": 1, "module": "lstm_b", "type": "LSTM", "index": 0, "inputs": 10, "hidden": 6},
        {"layer": 2, "module": "lstm_b", "type": "LSTM", "index": 1, "inputs": 6, "hidden": 6}]}
    assert [store.width(l, "h") for l in (0, 1, 2)] == [10, 6, 6]
    assert (store.meta.has_logprob, store.k) == (False, 0)


def test_proj_size_h_is_proj_wide_and_c_hidden_wide(tmp_path):
    model, ids, _ = make("proj", T=50)
    store = rnnviz.record(model, ids, out=tmp_path / "st", kinds="all")
    assert {(l, k): store.width(l, k) for l in (0, 1) for k in ("h", "c", "o")} == {
        (0, "h"): 5, (0, "c"): 12, (0, "o"): 12, (1, "h"): 5, (1, "c"): 12, (1, "o"): 12}
    assert store.meta.source["layers"][1] == {"layer": 1, "module": "lstm", "type": "LSTM", "index": 1, "inputs": 5,
                                              "hidden": 12, "proj_size": 5}


@pytest.mark.parametrize("name", ["word_lm", "gru", "classifier"])
def test_chunks_give_what_one_chunk_gives(tmp_path, name):
    model, ids, forward = make(name, T=200)
    one = rnnviz.record(model, ids, out=tmp_path / "one", kinds="all", forward=forward, chunk=200)
    many = rnnviz.record(model, ids, out=tmp_path / "many", kinds="all", forward=forward, chunk=7)
    assert many.meta.recorder["chunk"] == 7
    for layer in one.layers:
        for kind in one.kinds:
            a, b = np.asarray(one.array(layer, kind), np.float64), np.asarray(many.array(layer, kind), np.float64)
            assert np.abs(a - b).max() <= 2 * F16_REL * max(1.0, np.abs(a).max())  # at most a float16 step apart
    if one.meta.has_logprob:
        np.testing.assert_allclose(one.logprob, many.logprob, atol=1e-5)


@pytest.mark.parametrize("name", ["word_lm", "proj"])
def test_logprob_and_topk_are_the_modules_log_softmax(tmp_path, name):
    model, ids, forward = make(name, T=120)
    store = rnnviz.record(model, ids, out=tmp_path / "st", forward=forward, topk=3, chunk=50)
    _, output = own_run(copy.deepcopy(model), ids, forward)
    logits = (output[0] if isinstance(output, tuple) else output).reshape(len(ids), -1)
    logp = logits.double().log_softmax(-1).numpy()
    assert store.meta.has_logprob and store.k == 3 and len(store.vocab) == logits.shape[1]
    np.testing.assert_allclose(store.logprob[:-1], logp[np.arange(len(ids) - 1), ids[1:].numpy()], atol=1e-5)
    assert np.isnan(store.logprob[-1])
    top_ids, top_p = store.topk
    np.testing.assert_array_equal(top_ids, np.argsort(-logp, 1)[:, :3])
    np.testing.assert_allclose(top_p, np.exp(np.sort(logp, 1)[:, ::-1][:, :3]), atol=1e-3)
    assert store.vocab.chars[:3] == ["0", "1", "2"]


def test_logits_in_a_dict_output(tmp_path):
    model, ids, _ = make("proj", T=20)
    store = rnnviz.record(model, ids, out=tmp_path / "st", forward=lambda m, x: {"logits": m(x), "extra": 1})
    assert store.meta.has_logprob and store.k == 5


def test_a_module_without_logits_stores_activations_only(tmp_path):
    model, ids, _ = make("gru", T=30)
    store = rnnviz.record(model, ids, out=tmp_path / "st", topk=5)
    assert (store.meta.has_logprob, store.k, len(store.vocab)) == (False, 0, 0)
    assert not (tmp_path / "st" / "logprob.f32").exists()


def test_tokens_default_to_decimal_ids_or_the_vocab(tmp_path):
    model, ids, forward = make("word_lm", T=4)
    ids = torch.tensor([3, 0, 12, 3])
    plain = rnnviz.record(model, ids, out=tmp_path / "a", forward=forward)
    assert (plain.text, plain.spans.tolist()) == ("3 0 12 3", [[0, 1], [2, 3], [4, 6], [7, 8]])
    words = [f"w{i}" for i in range(50)]
    words[3] = "<eos>"
    named = rnnviz.record(model, ids, out=tmp_path / "b", forward=forward, vocab=words)
    assert named.text == "<eos> w0 w12 <eos>" and named.vocab.chars == words
    found = rnnviz.record(model, ids, out=tmp_path / "c", forward=forward, tokens=["The", "cat", "sat", "."],
                          token_text="The cat sat.")
    assert (found.text, found.spans.tolist()) == ("The cat sat.", [[0, 3], [4, 7], [8, 11], [11, 12]])
    split = rnnviz.record(model, ids, out=tmp_path / "d", forward=forward, tokens=str.split, token_text="a bb c d")
    assert split.spans.tolist() == [[0, 1], [2, 4], [5, 6], [7, 8]]


@pytest.mark.parametrize("name", ["word_lm", "subclass"])
def test_recording_some_layers_only(tmp_path, name):
    model, ids, forward = make(name, T=60)
    top = rnnviz.record(model, ids, out=tmp_path / "top", forward=forward, kinds="h", layers=[1])
    full = rnnviz.record(model, ids, out=tmp_path / "full", forward=forward, kinds="h")
    assert top.layers == [1] and top.meta.recorder["inner_layers_vs_module_max_abs_error"] is None
    np.testing.assert_array_equal(top.array(1, "h"), full.array(1, "h"))
    inner = full.meta.recorder["inner_layers_vs_module_max_abs_error"]  # layer 0 recomputed after the forward
    assert inner is None if name == "word_lm" else inner < 1e-6  # word_lm's nn.LSTM ran layer by layer


def flat(output) -> list[torch.Tensor]:
    """A recurrent module's (output, h_n) or (output, (h_n, c_n)) as a list of tensors."""
    out, state = output
    return [out, *(state if isinstance(state, tuple) else (state,))]


@pytest.mark.parametrize("name", ["word_lm", "proj", "gru"])
@pytest.mark.parametrize("batched", [True, False])
def test_a_submodule_run_layer_by_layer_returns_what_it_returns(name, batched):
    model, ids, _ = make(name, T=50)
    (_, rnn), = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.RNNBase)]
    assert runs_layerwise(rnn.eval())
    layers = {0: [Layer(CELL_OF_MODE[rnn.mode], rl.weights(), torch.device("cpu")) for rl in recurrent_layers(rnn)]}
    g = torch.Generator().manual_seed(3)
    x = torch.randn(50, rnn.input_size, generator=g)  # one sequence, given a start state of its own
    P = rnn.proj_size or rnn.hidden_size
    hx = [torch.randn(rnn.num_layers, P, generator=g), torch.randn(rnn.num_layers, rnn.hidden_size, generator=g)]
    if batched:
        x, hx = (x[None] if rnn.batch_first else x[:, None]), [h[:, None] for h in hx]
    hx = tuple(hx) if rnn.mode == "LSTM" else hx[0]
    with torch.no_grad():
        want = flat(rnn(x, hx))
        with Capture([("rnn", rnn)], layers) as cap:
            cap.start(50)
            got = flat(rnn(x, hx))
            assert len(cap.seen()[0].layers) == 2
        again = flat(rnn(x, hx))
    assert "forward" not in vars(rnn)  # the class's own forward is back
    for w, g_, a in zip(want, got, again, strict=True):
        assert (w.shape, w.dtype) == (g_.shape, g_.dtype)
        torch.testing.assert_close(g_, w, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(a, w, atol=0, rtol=0)


class NoRNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.out = nn.Embedding(10, 4), nn.Linear(4, 10)

    def forward(self, x):
        return self.out(self.emb(x))


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.lstm, self.gru = nn.Embedding(10, 4), nn.LSTM(4, 4), nn.GRU(4, 4)

    def forward(self, x):
        return self.gru(self.lstm(self.emb(x))[0])[0]


class BiLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.rnn = nn.Embedding(10, 4), nn.LSTM(4, 4, bidirectional=True)

    def forward(self, x):
        return self.rnn(self.emb(x))[0]


BAD = {
    "no recurrent layer": (NoRNN, torch.tensor([1, 2]), {},
                           "NoRNN has no recurrent layer (nn.LSTM, nn.GRU or nn.RNN) to record"),
    "id out of range": (WordLM, torch.tensor([1, 2, 50, 3]), {"forward": lm_forward},
                        "id 50 at position 2 is outside the module's vocabulary of 50 (0 to 49)"),
    "negative id": (WordLM, torch.tensor([1, -2]), {"forward": lm_forward},
                    "id -2 at position 1 is outside the module's vocabulary of 50 (0 to 49)"),
    "float ids": (WordLM, torch.tensor([1.0, 2.0]), {"forward": lm_forward},
                  "ids must be a 1-D sequence of whole-number token ids, got shape (2,) of torch.float32"),
    "token count": (WordLM, torch.tensor([1, 2, 3]), {"forward": lm_forward, "tokens": ["a", "b"]},
                    "2 tokens for 3 ids: give one token per id"),
    "forward fails": (WordLM, torch.tensor([1, 2, 3]), {},
                      "the module's forward failed on tokens 0 to 2: TypeError: WordLM.forward() missing 1 required "
                      "positional argument: 'hidden'"),
    "mixed cells": (Mixed, torch.tensor([1, 2]), {},
                    "this module mixes cells (lstm (lstm), gru (gru)): a store holds one kind, so every recurrent "
                    "layer must be an LSTM, or every one a GRU, or every one an RNN"),
    "bidirectional": (BiLSTM, torch.tensor([1, 2]), {},
                      "rnn: bidirectional layers are not recorded (the backward direction's state at a token reads "
                      "the tokens after it); record a unidirectional model"),
    "vocab size": (WordLM, torch.tensor([1, 2]), {"forward": lm_forward, "vocab": ["a", "b"]},
                   "the vocabulary has 2 tokens, the module's embedding encoder 50: give one token string per id"),
    "charrnn option": (WordLM, torch.tensor([1, 2]), {"forward": lm_forward, "burn_in": 5},
                       "burn_in= applies to recording a CharRNN; a module is recorded as one sequence, on its own "
                       "device"),
}


def test_module_options_are_not_for_a_charrnn_and_typos_are_named(tmp_path, make_model):
    with pytest.raises(RnnvizError) as e:
        rnnviz.record(make_model(), "First", tmp_path / "st", vocab=["a"])
    assert str(e.value) == "vocab: options for recording a user's module, not a CharRNN (which reads characters)"
    with pytest.raises(TypeError, match="unexpected keyword argument 'kindz'"):
        rnnviz.record(make("gru")[0], torch.tensor([1]), tmp_path / "st", kindz="all")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, case):
    factory, ids, options, message = BAD[case]
    torch.manual_seed(0)
    with pytest.raises(RnnvizError) as e:
        rnnviz.record(factory(), ids, out=tmp_path / "st", **options)
    assert str(e.value) == message
    assert not (tmp_path / "st").exists() and list(tmp_path.iterdir()) == []


def test_a_forward_failing_in_a_later_chunk_leaves_nothing(tmp_path):
    model, ids, _ = make("word_lm", T=100)
    calls = []

    def flaky(m, x):
        calls.append(len(x))
        if len(calls) == 3:
            raise RuntimeError("out of memory\non the third call")
        return lm_forward(m, x)

    with pytest.raises(RnnvizError) as e:
        rnnviz.record(model, ids, out=tmp_path / "st", forward=flaky, chunk=30)
    assert str(e.value) == ("the module's forward failed on tokens 60 to 89: RuntimeError: out of memory on the third "
                            "call")
    assert list(tmp_path.iterdir()) == []
