import json
import pickle

import pytest
import torch

from rnnviz.errors import RnnvizError
from rnnviz.model.cells import CLASSIC
from rnnviz.model.charrnn import CharRNN, ModelConfig, clamp_spec, eval_mode, group_units, parse_unit, unit_names
from rnnviz.model.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint


@pytest.mark.parametrize("cell", CLASSIC)
def test_fused_forward_equals_per_step_math(make_model, cell):
    model = make_model(cell=cell, layers=3, hidden=7).double()
    x = torch.randint(0, model.config.vocab_size, (2, 15), generator=torch.Generator().manual_seed(1))
    fused, fused_state = model(x)
    state = model.init_state(2)
    state = tuple(s.double() for s in state) if cell == "lstm" else state.double()
    steps = []
    for t in range(x.shape[1]):
        logits, state = model.step(x[:, t], state)
        steps.append(logits)
    assert (torch.stack(steps, 1) - fused).abs().max().item() < 1e-12
    pairs = zip(state, fused_state, strict=True) if cell == "lstm" else [(state, fused_state)]
    for a, b in pairs:
        assert (a - b).abs().max().item() < 1e-12


def test_vanilla_rnn_is_the_lectures_equation(make_model):
    model = make_model(cell="rnn", layers=1, hidden=5).double()
    w_ih, w_hh, b_ih, b_hh = model.layer_weights(0)
    x = torch.tensor([3])
    h0 = torch.randn(1, 1, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    _, h1 = model.step(x, h0)
    onehot = torch.zeros(model.config.vocab_size, dtype=torch.float64)
    onehot[3] = 1
    expected = torch.tanh(w_hh @ h0[0, 0] + w_ih @ onehot + b_ih + b_hh)
    assert torch.allclose(h1[0, 0], expected, atol=1e-14)


def test_unit_names_are_pinned(make_model):
    # Stable dotted names, as in TransformerLens: a change here breaks every saved store and link.
    assert unit_names([0, 1], list(make_model("lstm").config.kinds), 2) == [
        "0:h:0", "0:h:1", "0:c:0", "0:c:1", "0:i:0", "0:i:1", "0:f:0", "0:f:1", "0:g:0", "0:g:1", "0:o:0", "0:o:1",
        "1:h:0", "1:h:1", "1:c:0", "1:c:1", "1:i:0", "1:i:1", "1:f:0", "1:f:1", "1:g:0", "1:g:1", "1:o:0", "1:o:1",
    ]
    assert make_model("gru").config.kinds == ("h", "r", "z", "n")
    assert make_model("rnn").config.kinds == ("h",)


def test_parse_unit_errors(make_model):
    cfg = make_model("gru", layers=2, hidden=16).config
    assert parse_unit("1:z:15", cfg) == (1, "z", 15)
    with pytest.raises(RnnvizError, match="expected LAYER:KIND:INDEX"):
        parse_unit("1-c-3", cfg)
    with pytest.raises(RnnvizError, match="a gru has no kind 'c'"):
        parse_unit("1:c:3", cfg)
    with pytest.raises(RnnvizError, match="the model has 2 layer"):
        parse_unit("2:h:3", cfg)
    with pytest.raises(RnnvizError, match="layers have 16 units"):
        parse_unit("0:h:16", cfg)


@pytest.mark.parametrize(
    "kw,msg",
    [({"hidden": 0}, "hidden must be an integer from 1"), ({"cell": "transformer"}, "unknown cell"),
     ({"layers": 1000}, "layers must be an integer from 1 to 32"), ({"dropout": 1.5}, "dropout must be a number in")],
)
def test_model_config_validation(kw, msg):
    with pytest.raises(RnnvizError, match=msg):
        ModelConfig(vocab_size=10, **kw)


def test_clamp_acts_inside_the_recurrence(make_model):
    model = make_model("lstm", layers=2, hidden=8)
    spec = clamp_spec({"0:c:3": 0.75, "1:h:5": -0.5}, model.config)
    state = model.init_state(1)
    for ch in [1, 2, 3]:
        logits, state, rec = model.step(torch.tensor([ch]), state, clamp=spec, internals=True)
        assert rec[(0, "c")][0, 3].item() == 0.75 and rec[(1, "h")][0, 5].item() == -0.5
        # h of layer 0 is computed from the clamped c
        assert torch.allclose(rec[(0, "h")], rec[(0, "o")] * torch.tanh(rec[(0, "c")]))
    free, _ = model.step(torch.tensor([1]), model.init_state(1))
    clamped, _ = model.step(torch.tensor([1]), model.init_state(1), clamp=spec)
    assert not torch.allclose(free, clamped)


def test_checkpoint_round_trip(tmp_path, make_model):
    model = make_model("gru", layers=2, hidden=12)
    save_checkpoint(model, tmp_path / "ck", extra={"metrics": {"val_loss": 1.5}})
    loaded = load_checkpoint(tmp_path / "ck")
    assert loaded.config == model.config and loaded.vocab == model.vocab
    assert loaded.meta["metrics"] == {"val_loss": 1.5} and loaded.meta["dtype"] == "float32"
    assert loaded.checkpoint_dir == tmp_path / "ck" and model.checkpoint_dir is None
    assert not any(k.startswith("_") for k in loaded.meta)  # the file's contents, nothing added
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert not loaded.training


def test_float16_checkpoint_halves_size_and_loads_as_float32(tmp_path, make_model):
    model = make_model("lstm", layers=2, hidden=64)
    save_checkpoint(model, tmp_path / "f32")
    save_checkpoint(model, tmp_path / "f16", dtype=torch.float16)
    s32, s16 = ((tmp_path / d / "model.safetensors").stat().st_size for d in ("f32", "f16"))
    assert s16 < 0.52 * s32
    loaded = load_checkpoint(tmp_path / "f16")
    assert loaded.head.weight.dtype == torch.float32
    assert torch.equal(loaded.head.weight, model.head.weight.half().float())


def test_run_directory_resolves_to_best_then_last(tmp_path, make_model):
    save_checkpoint(make_model(seed=1), tmp_path / "run" / "last")
    assert resolve_checkpoint(tmp_path / "run") == tmp_path / "run" / "last"
    save_checkpoint(make_model(seed=2), tmp_path / "run" / "best")
    assert resolve_checkpoint(tmp_path / "run") == tmp_path / "run" / "best"


def test_checkpoint_errors(tmp_path, make_model):
    with pytest.raises(RnnvizError, match="no such checkpoint directory"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RnnvizError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "empty")
    ck = save_checkpoint(make_model(), tmp_path / "ck")
    (ck / "model.safetensors").unlink()
    with pytest.raises(RnnvizError, match="model.safetensors is missing"):
        load_checkpoint(ck)


def test_truncated_weights_are_refused(tmp_path, make_model):
    ck = save_checkpoint(make_model(), tmp_path / "ck")
    w = ck / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(RnnvizError, match="do not match the hash"):
        load_checkpoint(ck)
    cfg = json.loads((ck / "config.json").read_text())
    del cfg["weights_sha256"]
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RnnvizError, match="not a readable safetensors file"):
        load_checkpoint(ck)


def test_weights_from_another_model_are_refused(tmp_path, make_model):
    a = save_checkpoint(make_model(hidden=16), tmp_path / "a")
    b = save_checkpoint(make_model(hidden=24), tmp_path / "b")
    (a / "model.safetensors").write_bytes((b / "model.safetensors").read_bytes())
    cfg = json.loads((a / "config.json").read_text())
    del cfg["weights_sha256"]
    (a / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RnnvizError, match="weights do not fit the model"):
        load_checkpoint(a)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_weights_never_run(tmp_path, make_model):
    ck = save_checkpoint(make_model(), tmp_path / "ck")
    marker = tmp_path / "pwned"
    (ck / "model.safetensors").write_bytes(pickle.dumps(_Evil(str(marker))))
    cfg = json.loads((ck / "config.json").read_text())
    del cfg["weights_sha256"]
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RnnvizError, match="not a readable safetensors file"):
        load_checkpoint(ck)
    assert not marker.exists()


def test_absurd_sizes_are_refused_before_allocation(tmp_path, make_model):
    ck = save_checkpoint(make_model(), tmp_path / "ck")
    cfg = json.loads((ck / "config.json").read_text())
    cfg["model"]["hidden"] = 10**9
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RnnvizError, match="hidden must be an integer from 1 to 16384"):
        load_checkpoint(ck)


def test_failed_save_leaves_the_old_checkpoint(tmp_path, make_model, monkeypatch):
    old = make_model(seed=1)
    ck = save_checkpoint(old, tmp_path / "ck")

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("rnnviz.model.checkpoint.write_json", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(make_model(seed=2), ck)
    assert torch.equal(load_checkpoint(ck).head.weight, old.head.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temp dirs left behind


def test_model_on_meta_device_has_the_same_names():
    with torch.device("meta"):
        m = CharRNN(ModelConfig(vocab_size=5, cell="lstm", layers=2, hidden=3))
    assert list(m.state_dict()) == [
        "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
        "rnn.weight_ih_l1", "rnn.weight_hh_l1", "rnn.bias_ih_l1", "rnn.bias_hh_l1", "head.weight", "head.bias",
    ]


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_restores_the_mode_after_an_exception(make_model, training):
    model = make_model(cell="gru", layers=2, hidden=4)
    model.train(training)
    with pytest.raises(ValueError, match="inside"), eval_mode(model):
        assert not model.training and not model.rnn.training
        raise ValueError("inside")
    assert model.training is training and model.rnn.training is training


def test_ablate_leaves_a_training_model_training_when_it_raises(make_model):
    from rnnviz.analysis.causal import ablate

    model = make_model(cell="lstm", layers=1, hidden=4).train()
    with pytest.raises(RnnvizError, match="unknown feature"):
        ablate(model, "hello world, hello", "0:c:1", feature="no_such_feature", random=0, streams=1)
    assert model.training


@pytest.mark.parametrize("cell", CLASSIC)
def test_fused_layer_is_that_layer_of_the_model(make_model, cell):
    model = make_model(cell=cell, layers=2, hidden=6).double()
    x = torch.randint(0, model.config.vocab_size, (3, 9), generator=torch.Generator().manual_seed(2))
    full, _ = model.rnn(model.onehot(x))  # (B, T, H) of the top layer
    h0, _ = model.fused_layer(0, dtype=torch.float64)(model.onehot(x))
    h1, _ = model.fused_layer(1, dtype=torch.float64)(h0)
    assert (h1 - full).abs().max().item() < 1e-12
    layer = model.fused_layer(1)
    assert not layer.training and not any(p.requires_grad for p in layer.parameters())
    assert layer.weight_hh_l0.dtype == torch.float32  # a copy, not the model's float64 tensor
    assert layer.weight_hh_l0.data_ptr() != model.rnn.weight_hh_l1.data_ptr()


def test_group_units_by_array_in_first_seen_order():
    names = ["1:c:5", "0:h:2", "1:c:0", "0:h:2", "1:h:7"]
    groups = group_units(parse_unit(n) for n in names)
    assert list(groups.items()) == [((1, "c"), ([0, 2], [5, 0])), ((0, "h"), ([1, 3], [2, 2])), ((1, "h"), ([4], [7]))]
    assert group_units([]) == {}


def test_torch_threads_sets_and_restores_the_count_even_on_error():
    from rnnviz.threads import torch_threads

    before = torch.get_num_threads()
    n = 2 if before == 1 else 1  # a count that differs from the current one
    with pytest.raises(KeyError), torch_threads(n) as previous:
        assert previous == before and torch.get_num_threads() == n
        raise KeyError("x")
    assert torch.get_num_threads() == before
