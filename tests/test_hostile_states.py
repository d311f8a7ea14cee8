"""Hostile inputs, round three: hand-edited or damaged states that gave a traceback or were taken although
wrong. A run's train state (``last/train_state.*``) and a run's weight snapshots (``emergence``): each is one
``Error:`` line naming the problem, and nothing of the run is changed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import cli, one_line_error
from safetensors.torch import load_file, save_file

from rnnviz.model.trainer import TrainConfig, train
from rnnviz.threads import torch_threads

pytestmark = pytest.mark.usefixtures("one_thread")


def make_run(base: Path, cell: str = "lstm", optimizer: str = "adamw", **cfg) -> tuple[Path, Path]:
    """(text file, a 4-step 1 x 8 run of ``cell`` and ``optimizer`` with a resumable last/)."""
    rng = np.random.default_rng(0)
    src = base / "t.txt"
    src.write_text("".join(rng.choice(["the ", "cat ", "sat. ", '"hi" ', "(on) ", "mat\n"], size=400)),
                   encoding="utf-8")
    settings = dict(cell=cell, optimizer=optimizer, layers=1, hidden=8, batch=2, seq_len=16, max_steps=4,
                    eval_every=2, log_every=2, sample_chars=8, seed=0, warmup=100)  # 100: the lr follows the step alone
    with torch_threads(1):
        train(src, base / "run", TrainConfig(**{**settings, **cfg}))
    return src, base / "run"


def contents(run: Path) -> dict[str, bytes]:
    """Every file of the run, by its path inside it: what a refused resume must leave as it was."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def edit_tensors(run: Path, edit) -> None:
    f = run / "last" / "train_state.safetensors"
    tensors = load_file(f)
    edit(tensors)
    save_file(tensors, f)


def edit_info(run: Path, edit) -> None:
    f = run / "last" / "train_state.json"
    d = json.loads(f.read_text(encoding="utf-8"))
    edit(d)
    f.write_text(json.dumps(d), encoding="utf-8")


def group(key, value):
    """An edit of the optimizer's first parameter group in train_state.json (None: the key deleted)."""
    def edit(d):
        if value is None:
            del d["param_groups"][0][key]
        else:
            d["param_groups"][0][key] = value
    return edit


def tensor(name, make):
    """An edit of one tensor of train_state.safetensors: ``make(old)`` is the new one (None: deleted)."""
    def edit(t):
        new = make(t[name])
        if new is None:
            del t[name]
        else:
            t[name] = new.contiguous()
    return edit


def nan_at(v: torch.Tensor) -> torch.Tensor:
    v = v.clone()
    v.view(-1)[0] = float("nan")
    return v


STATE_CASES = {  # name: (edit of the tensors, of the JSON, what the error says)
    "a moment of the wrong shape": (tensor("opt.0.exp_avg", lambda v: torch.zeros(3, 3)), None,
                                    "opt.0.exp_avg is float32 (3, 3), expected float32 (32, 16)"),
    "a moment missing": (tensor("opt.2.exp_avg_sq", lambda v: None), None, "missing: ['opt.2.exp_avg_sq']"),
    "a parameter's whole state missing": (lambda t: [t.pop(k) for k in list(t) if k.startswith("opt.5.")], None,
                                          "missing: ['opt.5.exp_avg', 'opt.5.exp_avg_sq', 'opt.5.step']"),
    "an extra optimizer tensor": (lambda t: t.update({"opt.0.bogus": torch.zeros(2)}), None,
                                  "unexpected: ['opt.0.bogus']"),
    "a parameter the model lacks": (lambda t: t.update({"opt.9.exp_avg": torch.zeros(2)}), None,
                                    "unexpected: ['opt.9.exp_avg']"),
    "a tensor of no kind": (lambda t: t.update({"evil": torch.zeros(1)}), None, "unexpected: ['evil']"),
    "hidden state of the wrong shape": (tensor("hidden.0", lambda v: torch.zeros(1, 3, 8)), None,
                                        "hidden.0 is float32 (1, 3, 8), expected float32/bfloat16/float16 (1, 2, 8)"),
    "half the LSTM's hidden state": (tensor("hidden.1", lambda v: None), None, "missing: ['hidden.1']"),
    "hidden state of the wrong dtype": (tensor("hidden.0", lambda v: v.double()), None,
                                        "hidden.0 is float64 (1, 2, 8)"),
    "NaN in the hidden state": (tensor("hidden.1", nan_at), None, "hidden.1 holds NaN or infinite values"),
    "a vector step": (tensor("opt.0.step", lambda v: torch.tensor([4.0, 4.0])), None,
                      "opt.0.step is float32 (2,), expected float32 ()"),
    "a negative step": (tensor("opt.1.step", lambda v: torch.tensor(-5.0)), None,
                        "opt.1.step is -5.0, not a whole number of steps from 0 to 4"),
    "a fractional step": (tensor("opt.1.step", lambda v: torch.tensor(2.5)), None, "opt.1.step is 2.5"),
    "more optimizer steps than the run's": (tensor("opt.0.step", lambda v: torch.tensor(40.0)), None,
                                            "opt.0.step is 40.0"),
    "NaN in a first moment": (tensor("opt.3.exp_avg", nan_at), None, "opt.3.exp_avg holds NaN or infinite values"),
    "inf in a second moment": (tensor("opt.4.exp_avg_sq", lambda v: v + float("inf")), None,
                               "opt.4.exp_avg_sq holds NaN or infinite values"),
    "a negative second moment": (tensor("opt.4.exp_avg_sq", lambda v: v - 1), None,
                                 "opt.4.exp_avg_sq holds negative values"),
    "a moment of the wrong dtype": (tensor("opt.0.exp_avg", lambda v: v.double()), None,
                                    "opt.0.exp_avg is float64 (32, 16)"),
    "an integer step": (tensor("opt.0.step", lambda v: v.long()), None, "opt.0.step is int64 ()"),
    "a CPU RNG state that is no MT19937 state": (tensor("rng.cpu", torch.zeros_like), None,
                                                 "rng.cpu is not a random generator's state"),
    "no CPU RNG state": (tensor("rng.cpu", lambda v: None), None, "missing: ['rng.cpu']"),
    'betas "xx"': (None, group("betas", "xx"), "param_groups[0].betas is 'xx', the run's settings make [0.9, 0.999]"),
    "betas out of [0, 1)": (None, group("betas", [1.5, 0.999]), "param_groups[0].betas is [1.5, 0.999]"),
    "a string weight_decay": (None, group("weight_decay", "0.1"), "param_groups[0].weight_decay is '0.1'"),
    "weight_decay false": (None, group("weight_decay", False), "param_groups[0].weight_decay is False"),
    "amsgrad switched on": (None, group("amsgrad", True), "param_groups[0].amsgrad is True"),
    "eps missing": (None, group("eps", None), "param_groups[0] lacks 'eps'"),
    "an unknown setting": (None, group("nesterov", True), "param_groups[0] has 'nesterov'"),
    "lr NaN": (None, group("lr", float("nan")), "param_groups[0].lr is nan, not a learning rate >= 0"),
    "lr negative": (None, group("lr", -0.1), "param_groups[0].lr is -0.1"),
    "two parameter groups": (None, lambda d: d["param_groups"].append(d["param_groups"][0]),
                             "param_groups has 2 groups, the optimizer 1"),
    "best_val missing": (None, lambda d: d.pop("best_val"), "best_val is None"),
    "a scaler that is not one": (None, lambda d: d.update(scaler={"scale": "big"}), "scaler is"),
    "world_size 0": (None, lambda d: d.update(world_size=0), "world_size is 0"),
}


@pytest.mark.parametrize("name", list(STATE_CASES))
def test_a_hand_edited_train_state_is_one_line_and_touches_nothing(tmp_path, name):
    src, run = make_run(tmp_path)
    edit_t, edit_j, message = STATE_CASES[name]
    if edit_t is not None:
        edit_tensors(run, edit_t)
    if edit_j is not None:
        edit_info(run, edit_j)
    before = contents(run)
    r = cli("train", src, "--out", run, "--resume", "--max-steps", 8)
    one_line_error(r, "cannot resume", message)
    assert contents(run) == before  # nothing rewound, appended, pruned or saved


@pytest.mark.parametrize("optimizer,cell,edit,message", [
    ("rmsprop", "gru", group("momentum", 0.9), "param_groups[0].momentum is 0.9, the run's settings make 0"),
    ("rmsprop", "gru", tensor("opt.0.square_avg", lambda v: v - 1), "opt.0.square_avg holds negative values"),
    ("adagrad", "rnn", tensor("opt.1.sum", lambda v: v.half()), "opt.1.sum is float16"),
    ("adagrad", "rnn", lambda t: t.update({"hidden.1": t["hidden.0"].clone()}), "unexpected: ['hidden.1']"),
])
def test_other_optimizers_and_cells(tmp_path, optimizer, cell, edit, message):
    src, run = make_run(tmp_path, cell, optimizer)
    if "param_groups" in message:
        edit_info(run, edit)
    else:
        edit_tensors(run, edit)
    before = contents(run)
    one_line_error(cli("train", src, "--out", run, "--resume", "--max-steps", 8), "cannot resume", message)
    assert contents(run) == before


def test_an_untouched_state_still_resumes_exactly(tmp_path):
    """The checks refuse nothing a run writes: 4 + 4 steps resumed equal 8 uninterrupted (all three optimizers)."""
    for optimizer, cell in (("adamw", "lstm"), ("rmsprop", "gru"), ("adagrad", "rnn")):
        d = tmp_path / optimizer
        d.mkdir()
        src, run = make_run(d, cell, optimizer)
        r = cli("train", src, "--out", run, "--resume", "--max-steps", 8)
        assert r.exit_code == 0, r.output
        whole = d / "whole"
        with torch_threads(1):
            train(src, whole, TrainConfig(cell=cell, optimizer=optimizer, layers=1, hidden=8, batch=2, seq_len=16,
                                          max_steps=8, eval_every=2, log_every=2, sample_chars=8, seed=0,
                                          warmup=100))
        a, b = load_file(run / "last" / "model.safetensors"), load_file(whole / "last" / "model.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)


# --- emergence: weight snapshots that are damaged, hand-edited or another model's ---


@pytest.fixture(scope="module")
def snapshot_run(tmp_path_factory) -> tuple[Path, Path]:
    """(text file, a 20-step RNN run with snapshots at steps 5, 10, 15 and 20): copied by each test."""
    from conftest import train_snapshot_rnn, words_text

    d = tmp_path_factory.mktemp("snaps")
    (d / "t.txt").write_text(words_text(), encoding="utf-8")
    return d / "t.txt", train_snapshot_rnn(d / "t.txt", d / "run")


def snap(run: Path, step: int) -> Path:
    return run / "snapshots" / f"step-{step:08d}.safetensors"


def rewrite_snapshot(path: Path, weights=None, meta=None) -> None:
    """Write ``path`` again with ``weights(tensors)`` and ``meta(metadata)`` applied (each edits in place)."""
    from safetensors import safe_open
    from safetensors.torch import save

    with safe_open(str(path), "pt") as f:
        m = f.metadata()
    t = load_file(path)
    if weights:
        weights(t)
    if meta:
        meta(m)
    path.write_bytes(save(t, metadata=m))


def poke(name: str, value: float, at: int = 0):
    """A weights edit: element ``at`` of tensor ``name`` set to ``value``."""
    def edit(t):
        t[name] = t[name].clone()
        t[name].view(-1)[at] = value
    return edit


def another_vocabulary(run: Path) -> None:
    """Step 10's snapshot replaced by one of a model of the same shapes whose vocabulary is in another order
    (a snapshot copied from a run on another text): every weight fits, and means something else."""
    from rnnviz.model.checkpoint import load_checkpoint
    from rnnviz.model.snapshots import save_snapshot
    from rnnviz.model.vocab import Vocab

    model = load_checkpoint(run / "last")
    model.vocab = Vocab.from_json(list(reversed(model.vocab.to_json())))
    save_snapshot(model, run, 10, 1.0, 2.0)


SNAPSHOT_CASES = {  # name: (edit of the run, what the error says)
    "NaN in a middle snapshot": (lambda r: rewrite_snapshot(snap(r, 10), poke("head.bias", float("nan"))),
                                 "step-00000010.safetensors: weights hold NaN or infinite values (head.bias)"),
    "+inf in the last snapshot": (lambda r: rewrite_snapshot(snap(r, 20), poke("rnn.weight_hh_l0", float("inf"), 3)),
                                  "step-00000020.safetensors: weights hold NaN or infinite values (rnn.weight_hh_l0)"),
    "-inf in the first snapshot": (lambda r: rewrite_snapshot(snap(r, 5), poke("rnn.bias_ih_l0", -float("inf"))),
                                   "step-00000005.safetensors: weights hold NaN or infinite values (rnn.bias_ih_l0)"),
    "integer weights": (lambda r: rewrite_snapshot(snap(r, 15), lambda t: t.update(
        {k: (v * 100).to(torch.int8) for k, v in t.items()})), "weights are not floating point"),
    "another vocabulary, same shapes": (another_vocabulary, "step-00000010.safetensors: a snapshot of another model"),
    "a negative step": (lambda r: rewrite_snapshot(snap(r, 10), meta=lambda m: m.update(step="-5")),
                        "its metadata says step -5, its name 10"),
    "a step that is not its name's": (lambda r: rewrite_snapshot(snap(r, 10), meta=lambda m: m.update(step="15")),
                                      "its metadata says step 15, its name 10"),
    "seconds NaN": (lambda r: rewrite_snapshot(snap(r, 10), meta=lambda m: m.update(seconds="nan")),
                    "seconds is nan, not a finite number >= 0"),
    "seconds negative": (lambda r: rewrite_snapshot(snap(r, 15), meta=lambda m: m.update(seconds="-3")),
                         "seconds is -3.0"),
    "val_loss inf": (lambda r: rewrite_snapshot(snap(r, 10), meta=lambda m: m.update(val_loss="inf")),
                     "val_loss is inf"),
    "val_loss NaN": (lambda r: rewrite_snapshot(snap(r, 20), meta=lambda m: m.update(val_loss="NaN")),
                     "val_loss is nan"),
    "val_loss negative": (lambda r: rewrite_snapshot(snap(r, 5), meta=lambda m: m.update(val_loss="-1")),
                          "val_loss is -1.0"),
    "a truncated snapshot": (lambda r: snap(r, 10).write_bytes(snap(r, 10).read_bytes()[:300]),
                             "not a readable snapshot (damaged or truncated"),
}


@pytest.mark.parametrize("name", list(SNAPSHOT_CASES))
def test_a_bad_snapshot_is_one_line_before_any_recording(snapshot_run, tmp_path, name):
    import shutil

    src, run0 = snapshot_run
    run = tmp_path / "run"
    shutil.copytree(run0, run)
    edit, message = SNAPSHOT_CASES[name]
    edit(run)
    before = contents(run)
    r = cli("emergence", run, src, "--feature", "in_quote", "--length", 1500, "--out", tmp_path / "e.html")
    one_line_error(r, message)  # no progress bar: found before the first snapshot is recorded
    assert contents(run) == before and not (tmp_path / "e.html").exists()


@pytest.mark.parametrize("damage,message", [
    (lambda r: [p.unlink() for p in (r / "snapshots").iterdir()], "no snapshots (train with --snapshot-every N"),
    (lambda r: rewrite_snapshot(snap(r, 10), meta=lambda m: m.update(step="ten")), "not a readable snapshot"),
    (lambda r: snap(r, 5).write_bytes(b""), "not a readable snapshot (damaged or truncated"),
])
def test_snapshots_that_were_already_refused_still_are(snapshot_run, tmp_path, damage, message):
    import shutil

    src, run0 = snapshot_run
    run = tmp_path / "run"
    shutil.copytree(run0, run)
    damage(run)
    one_line_error(cli("emergence", run, src, "--feature", "in_quote", "--length", 1500), message)
