import json
import math
import re

import numpy as np
import pytest
import torch

from rnnviz.errors import RnnvizError
from rnnviz.model.checkpoint import load_checkpoint
from rnnviz.model.sampling import sample
from rnnviz.model.trainer import TrainConfig, evaluate, train

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny step loops: one torch thread (see conftest)

SMALL = dict(layers=2, hidden=16, dropout=0.2, batch=4, seq_len=16, eval_every=10, log_every=5, sample_chars=40)


def _log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_resume_continues_exactly(tmp_path, text_file):
    straight = tmp_path / "straight"
    # warm-up 100: all 40 steps ramp by step alone (a cosine's shape would change with the resume's max-steps)
    train(text_file, straight, TrainConfig(max_steps=40, warmup=100, **SMALL))
    split_run = tmp_path / "split"
    train(text_file, split_run, TrainConfig(max_steps=20, warmup=100, **SMALL))
    train(text_file, split_run, resume=True, overrides={"max_steps": 40})
    a, b = _log(straight), _log(split_run)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(5, 41, 5))
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    assert [r["val_loss"] for r in a] == [r["val_loss"] for r in b]
    wa, wb = load_checkpoint(straight / "last"), load_checkpoint(split_run / "last")
    for (k, x), (_, y) in zip(wa.state_dict().items(), wb.state_dict().items(), strict=True):
        assert torch.equal(x, y), k


def test_interrupt_saves_a_usable_checkpoint_and_resume_matches(tmp_path, text_file, train_until_ctrl_c):
    straight = tmp_path / "straight"
    train(text_file, straight, TrainConfig(max_steps=30, **SMALL))
    run = tmp_path / "run"
    train_until_ctrl_c(text_file, run, TrainConfig(max_steps=30, **SMALL), 15)
    meta = load_checkpoint(run / "last").meta
    assert meta["metrics"]["step"] == 15
    train(text_file, run, resume=True)
    assert [r["train_loss"] for r in _log(run)] == [r["train_loss"] for r in _log(straight)]


def test_run_directory_contents(tmp_path, text_file):
    run = tmp_path / "run"
    r = train(text_file, run, TrainConfig(max_steps=25, **SMALL))
    assert r["steps"] == 25
    log = _log(run)
    assert set(log[0]) == {"step", "epoch", "time", "train_loss", "val_loss", "lr", "chars_per_s"}
    assert [row["step"] for row in log if row["val_loss"] is not None] == [10, 20, 25]
    best = load_checkpoint(run)  # the run dir resolves to best/
    assert best.meta["metrics"]["val_loss"] == pytest.approx(min(r["val_loss"] for r in log if r["val_loss"]), abs=1e-5)
    assert best.meta["train"]["hidden"] == 16 and best.meta["data"]["split"] == "90/5/5"
    samples = (run / "samples.txt").read_text()
    assert samples.count("=== step") == 3  # steps 10, 20 and the final 25


def test_existing_run_needs_resume_or_force(tmp_path, text_file):
    run = tmp_path / "run"
    train(text_file, run, TrainConfig(max_steps=5, **SMALL))
    with pytest.raises(RnnvizError, match="already holds a run"):
        train(text_file, run, TrainConfig(max_steps=5, **SMALL))
    train(text_file, run, TrainConfig(max_steps=5, **SMALL), force=True)
    with pytest.raises(RnnvizError, match="nothing to resume"):
        train(text_file, tmp_path / "other", resume=True)


def test_text_too_short(tmp_path):
    p = tmp_path / "short.txt"
    p.write_text("abc" * 15)
    with pytest.raises(RnnvizError, match="text too short"):
        train(p, tmp_path / "run", TrainConfig(max_steps=5, **SMALL))


def test_evaluate_equals_a_manual_per_character_sum(make_model):
    model = make_model("gru", hidden=8)
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, 300)
    state, total = model.init_state(1), 0.0
    with torch.no_grad():
        for t in range(len(ids) - 1):
            logits, state = model.step(torch.tensor([ids[t]]), state)
            total -= torch.log_softmax(logits[0].double(), -1)[ids[t + 1]].item()
    assert evaluate(model, ids, streams=1, chunk=37) == pytest.approx(total / (len(ids) - 1), rel=1e-5)
    assert evaluate(model, ids, streams=3) == pytest.approx(total / (len(ids) - 1), rel=0.05)


@pytest.mark.slow
def test_seed_recipe_learns(tmp_path, shared_data):
    # min-char-rnn's recipe: vanilla RNN, 1 x 100, seq 25, Adagrad 0.1 (batch 1 as in the seed).
    p = tmp_path / "ts.txt"
    p.write_text((shared_data / "tiny_shakespeare.txt").read_text(encoding="utf-8")[:100_000], encoding="utf-8")
    cfg = TrainConfig(cell="rnn", layers=1, hidden=100, seq_len=25, batch=1, optimizer="adagrad", lr=0.1,
                      schedule="constant", max_steps=3000, eval_every=3000, log_every=100, sample_chars=0)
    r = train(p, tmp_path / "run", cfg)
    vocab_size = len(load_checkpoint(tmp_path / "run").vocab)
    assert r["val_loss"] < 0.75 * math.log(vocab_size)  # ln(V) = 4.1 for a uniform guess
    assert len(sample(load_checkpoint(tmp_path / "run"), 50, seed=0)) == 50


def test_init_from_starts_at_the_checkpoint_weights_with_a_new_schedule(tmp_path, text_file):
    from rnnviz.model.trainer import _init_from

    base = tmp_path / "base"
    train(text_file, base, TrainConfig(max_steps=20, **SMALL))
    cfg, model = _init_from(TrainConfig(init_from=str(base / "best"), dropout=0.5), torch.device("cpu"))
    assert (cfg.cell, cfg.layers, cfg.hidden, cfg.dropout) == ("lstm", 2, 16, 0.5)  # its shape, this run's dropout
    want = load_checkpoint(base / "best")
    assert model.config.dropout == 0.5 and model.vocab.chars == want.vocab.chars
    for (k, x), (_, y) in zip(model.state_dict().items(), want.state_dict().items(), strict=True):
        assert torch.equal(x, y), k
    tuned = tmp_path / "tuned"
    train(text_file, tuned, TrainConfig(max_steps=10, init_from=str(base / "best"), lr=1e-3, eval_every=10,
                                        batch=4, seq_len=16, log_every=5))
    meta = load_checkpoint(tuned / "last").meta["train"]
    assert (meta["hidden"], meta["init_from"], meta["lr"]) == (16, str(base / "best"), 1e-3)
    assert [r["step"] for r in _log(tuned)] == [5, 10]  # a new run: its own steps and logs from 0


def test_init_from_a_text_outside_its_vocabulary(tmp_path, text_file):
    base = tmp_path / "base"
    train(text_file, base, TrainConfig(max_steps=5, **SMALL))
    other = tmp_path / "other.txt"
    other.write_text("\u2603" * 500 + text_file.read_text())
    with pytest.raises(RnnvizError, match="outside the vocabulary|not in the vocabulary|unknown"):
        train(other, tmp_path / "run", TrainConfig(max_steps=5, init_from=str(base / "best")))
    with pytest.raises(RnnvizError):
        train(text_file, tmp_path / "run2", TrainConfig(max_steps=5, init_from=str(tmp_path / "nothing")))


def test_a_resume_that_raises_the_learning_rate_warns(tmp_path, text_file):
    from click.testing import CliRunner

    from rnnviz.cli import main

    run = tmp_path / "run"
    train(text_file, run, TrainConfig(max_steps=30, warmup=5, lr=2e-3, schedule="cosine", **SMALL))
    events = []
    train(text_file, run, resume=True, overrides={"max_steps": 33}, callback=events.append)
    assert [e for e in events if e["type"] == "warning"] == []  # the schedule goes on from where it was
    before, lo = _log(run)[-1]["lr"], 2e-3 * 0.1
    now = lo + 0.5 * (2e-3 - lo) * (1 + math.cos(math.pi * 33 / 120))  # 120 steps: the cosine stretched back up
    r = CliRunner().invoke(main, ["train", str(text_file), "--out", str(run), "--resume", "--max-steps", "120"])
    assert r.exit_code == 0, r.output
    assert (f"Warning: resuming raises the learning rate from {before:.2e} to {now:.2e} (the schedule follows "
            f"the new stop setting); to train on from these weights at a low rate, start a new run with "
            f"--init-from {run} and a small --lr") in r.output


def test_a_stop_option_given_with_resume_replaces_the_saved_ones(tmp_path, text_file, one_thread):
    """The README's lines: a run that stopped at its time budget continues to --max-steps (the saved budget
    no longer applies), and the run's settings then say so."""
    from click.testing import CliRunner

    from rnnviz.cli import main

    run = tmp_path / "r"
    train(text_file, run, TrainConfig(max_steps=10, time_budget=1e-9, **SMALL))  # stops at its first step
    first = _log(run)[-1]["step"] if (run / "log.jsonl").stat().st_size else 1
    assert first < 10
    r = CliRunner().invoke(main, ["train", str(text_file), "--out", str(run), "--resume", "--max-steps", "15"])
    assert r.exit_code == 0, r.output
    assert "done: 15 steps" in r.output
    saved = json.loads((run / "last" / "config.json").read_text())["train"]
    assert (saved["max_steps"], saved["time_budget"], saved["epochs"]) == (15, None, None)


def _cli_train(*args):
    from click.testing import CliRunner

    from rnnviz.cli import main

    return CliRunner().invoke(main, ["train", *map(str, args)])


def test_a_budget_that_ends_inside_the_warm_up_is_said_early(tmp_path, text_file, one_thread):
    r = _cli_train(text_file, "--out", tmp_path / "r", "--layers", 1, "--hidden", 8, "--batch", 4, "--seq-len", 16,
                   "--time-budget", 3, "--warmup", 100000)
    assert r.exit_code == 0, r.output
    lines = r.output.replace("\r", "\n").splitlines()
    warning = next(line for line in lines if "steps/s" in line)
    assert re.search(r"Warning: pace: [\d.]+ steps/s, [\d.]+k chars/s; the time budget of 3 s allows about [\d,]+ "
                     r"steps, inside the 100000 warm-up steps: the model will learn little; give a larger "
                     r"--time-budget \(or a smaller --warmup\)$", warning), warning


def test_a_run_no_better_than_counting_characters_is_warned_about(tmp_path, text_file, one_thread):
    common = ("--layers", 1, "--hidden", 32, "--batch", 8, "--seq-len", 32, "--lr", "1e-2", "--warmup", 10)
    r = _cli_train(text_file, "--out", tmp_path / "a", *common, "--max-steps", 3)
    assert r.exit_code == 0, r.output
    assert re.search(r"Warning: the best validation loss [\d.]+ nats/char is no better than counting characters "
                     r"\(a unigram model scores [\d.]+\): after 3 steps \(warm-up 10\) the model has learned nothing "
                     r"to look inside; train longer", r.output), r.output
    r = _cli_train(text_file, "--out", tmp_path / "b", *common, "--max-steps", 300)
    assert r.exit_code == 0 and "done: 300 steps" in r.output and "no better than counting" not in r.output


def test_unigram_loss_is_the_cross_entropy_of_character_frequencies():
    from rnnviz.model.trainer import unigram_loss

    train_ids, val_ids = np.array([0, 0, 0, 1]), np.array([0, 1])
    p = np.array([4, 2]) / 6  # add-one counts
    assert unigram_loss(train_ids, val_ids, 2) == pytest.approx(-(np.log(p[0]) + np.log(p[1])) / 2)


def test_evaluate_keeps_no_autograd_graph(make_model):
    saved = []
    model = make_model()
    ids = np.arange(300) % model.config.vocab_size
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(1) or t, lambda t: t):
        evaluate(model, ids, chunk=64)
    assert saved == []


def test_a_command_given_a_run_says_which_checkpoint_it_used(tmp_path, text_file, one_thread):
    from click.testing import CliRunner

    from rnnviz.cli import main

    run = tmp_path / "r"
    train(text_file, run, TrainConfig(max_steps=10, **SMALL))
    val = json.loads((run / "best" / "config.json").read_text())["metrics"]["val_loss"]
    r = CliRunner().invoke(main, ["sample", str(run), "--length", "20", "--seed", "1"])
    assert r.exit_code == 0 and r.stderr == f"Using {run}/best (step 10, val loss {val:.4f} nats/char)\n"
    assert len(r.stdout) == 21  # the sample alone on stdout
    r = CliRunner().invoke(main, ["sample", str(run / "last"), "--length", "20", "--seed", "1"])
    assert r.exit_code == 0 and r.stderr == ""  # a checkpoint named directly: nothing to say


def _budget_run(text_file, out, budget: float, **kw) -> tuple[dict, list[dict]]:
    events: list[dict] = []
    cfg = TrainConfig(time_budget=budget, **{**SMALL, "eval_every": 10_000, "log_every": 50, **kw})
    return train(text_file, out, cfg, callback=events.append), events


def test_an_auto_warm_up_is_a_small_fraction_of_the_steps_a_run_is_expected_to_make(tmp_path, text_file):
    from rnnviz.model.settings import AUTO_WARMUP_FRAC, auto_warmup

    r, events = _budget_run(text_file, tmp_path / "budget", 2)
    told = next(e["message"] for e in events if "steps/s" in e.get("message", ""))
    m = re.search(r"allows about ([\d,]+) steps, warm-up (\d+) steps$", told)
    assert m, told
    expected, warmup = int(m[1].replace(",", "")), int(m[2])
    assert r["warmup"] == warmup == auto_warmup(expected) <= max(1, round(AUTO_WARMUP_FRAC * expected))
    assert [e for e in events if e["type"] == "warning"] == []
    short = tmp_path / "short"  # a small max-steps: chosen at the start, 2% of 50 steps
    assert train(text_file, short, TrainConfig(max_steps=50, schedule="cosine", **SMALL))["warmup"] == 1
    lo = 2e-3 * 0.1  # step 5 ran (as step index 4) on the cosine already
    assert _log(short)[0]["lr"] == pytest.approx(lo + 0.5 * (2e-3 - lo) * (1 + math.cos(math.pi * 4 / 50)), rel=1e-12)


def test_the_wsd_schedule_is_stable_then_decays_linearly_over_the_last_fifth(tmp_path, text_file):
    train(text_file, tmp_path / "wsd", TrainConfig(max_steps=50, warmup=2, schedule="wsd", **SMALL))
    lrs = {r["step"]: r["lr"] for r in _log(tmp_path / "wsd")}  # step s ran as index s - 1, at progress (s-1)/50
    assert [lrs[s] for s in range(5, 45, 5)] == [2e-3] * 8  # stable through progress 0.78
    lo = 2e-3 * 0.1
    assert lrs[45] == pytest.approx(2e-3 - (2e-3 - lo) * (44 / 50 - 0.8) / 0.2, rel=1e-12)
    assert lrs[50] == pytest.approx(2e-3 - (2e-3 - lo) * (49 / 50 - 0.8) / 0.2, rel=1e-12)


def test_an_explicit_warm_up_is_kept(tmp_path, text_file):
    r = train(text_file, tmp_path / "steps", TrainConfig(max_steps=50, warmup=30, **SMALL))
    assert r["warmup"] == 30 and _log(tmp_path / "steps")[1]["lr"] == 2e-3 * 10 / 30  # step 10 ran at (9+1)/30
    assert json.loads((tmp_path / "steps" / "last" / "train_state.json").read_text())["warmup"] == 30
    r, events = _budget_run(text_file, tmp_path / "budget", 1, warmup=7)
    assert r["warmup"] == 7
    assert not any("warm-up 7" in e.get("message", "") for e in events)  # said only of an auto choice
    assert re.search(r"--warmup INTEGER\s+Warm-up steps \(wsd, cosine\); default: auto,", _cli_train("--help").output)


def test_a_resumed_auto_run_continues_the_same_schedule(tmp_path, text_file, train_until_ctrl_c):
    kw = {**SMALL, "eval_every": 100, "log_every": 1}
    straight = tmp_path / "straight"
    assert train(text_file, straight, TrainConfig(max_steps=300, **kw))["warmup"] == 6
    run = tmp_path / "run"
    train_until_ctrl_c(text_file, run, TrainConfig(max_steps=300, **kw), 3)  # inside the 6 warm-up steps
    assert train(text_file, run, resume=True)["warmup"] == 6
    assert [r["lr"] for r in _log(run)] == [r["lr"] for r in _log(straight)]
    assert [r["train_loss"] for r in _log(run)] == [r["train_loss"] for r in _log(straight)]
    # The choice is saved: a resume with a longer stop setting keeps it (2% of 100 steps, not of 300) ...
    longer = tmp_path / "longer"
    assert train(text_file, longer, TrainConfig(max_steps=100, **kw))["warmup"] == 2
    assert train(text_file, longer, resume=True, overrides={"max_steps": 300})["warmup"] == 2
    # ... as is one made from a time budget's pace.
    r, _ = _budget_run(text_file, tmp_path / "budget", 1)
    assert train(text_file, tmp_path / "budget", resume=True, overrides={"time_budget": 2})["warmup"] == r["warmup"]


def test_denormals_are_flushed_while_training_on_the_cpu_and_restored_after(tmp_path, text_file):
    from rnnviz.model.trainer import denormals_flushed

    seen: list[bool] = []
    for before in (False, True):
        torch.set_flush_denormal(before)
        try:
            train(text_file, tmp_path / str(before), TrainConfig(max_steps=5, **SMALL),
                  callback=lambda e: seen.append(denormals_flushed()))
            assert denormals_flushed() is before
        finally:
            torch.set_flush_denormal(False)
    assert seen and all(seen)
