"""Weight snapshots (``train --snapshot-every``): which steps are kept, what they hold, atomic writes,
hostile snapshot directories, and resume."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from rnnviz import fsutil
from rnnviz.cli import main
from rnnviz.errors import RnnvizError
from rnnviz.model.checkpoint import load_checkpoint
from rnnviz.model.snapshots import list_snapshots, load_snapshot_weights, save_snapshot, snapshot_path
from rnnviz.model.trainer import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny step loops: one torch thread (see conftest)

SMALL = dict(layers=1, hidden=8, batch=4, seq_len=16, eval_every=10, log_every=5, sample_chars=0, snapshot_every=5)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def one_line_error(r, *needles):
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_cli_run_keeps_every_nth_step_and_each_checkpoint_with_metadata(tmp_path, text_file, one_thread):
    run = tmp_path / "run"
    r = cli("train", text_file, "--out", run, "--layers", 1, "--hidden", 8, "--batch", 4, "--seq-len", 16,
            "--max-steps", 23, "--eval-every", 10, "--snapshot-every", 6)
    assert r.exit_code == 0, r.output
    snaps = list_snapshots(run)
    # every 6 steps, every checkpoint (10, 20) and the last step (23, a checkpoint)
    assert [s.step for s in snaps] == [6, 10, 12, 18, 20, 23]
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == [f"step-{s:08d}.safetensors" for s in
                                                                      (6, 10, 12, 18, 20, 23)]
    seconds = [s.seconds for s in snaps]
    assert seconds == sorted(seconds) and seconds[0] > 0
    val = {row["step"]: row["val_loss"] for row in _log(run) if row["val_loss"] is not None}
    assert set(val) == {10, 20, 23}
    for s in snaps:
        if s.step in val:  # a checkpoint's snapshot carries that validation's loss
            assert round(s.val_loss, 5) == val[s.step]
        assert 0 < s.val_loss < 10
    # the last snapshot is the last checkpoint's weights in float16
    last = load_checkpoint(run / "last")
    tensors = load_file(str(snaps[-1].path))
    assert set(tensors) == set(last.state_dict())
    for k, v in last.state_dict().items():
        assert tensors[k].dtype == torch.float16
        assert torch.equal(tensors[k], v.half()), k
    # ... and loads back into the run's model as float32
    model = load_checkpoint(run / "last")
    load_snapshot_weights(model, snaps[2])
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.equal(model.state_dict()["head.weight"], load_file(str(snaps[2].path))["head.weight"].float())


def test_no_snapshot_every_means_no_snapshot_dir(tmp_path, text_file, one_thread):
    run = tmp_path / "run"
    train(text_file, run, TrainConfig(max_steps=10, **{**SMALL, "snapshot_every": 0}))
    assert not (run / "snapshots").exists()
    with pytest.raises(RnnvizError, match="no snapshots .train with --snapshot-every"):
        list_snapshots(run)
    with pytest.raises(RnnvizError, match="snapshot-every must be >= 0"):
        TrainConfig(snapshot_every=-1)


# --- atomic writes ---


def test_a_failed_write_leaves_no_partial_snapshot(tmp_path, make_model, monkeypatch):
    model = make_model()
    run = tmp_path / "run"
    good = save_snapshot(model, run, 5, 1.0, 2.5)
    before = good.read_bytes()

    def full_disk(fd):  # the bytes are written, then the disk is full at fsync
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsutil.os, "fsync", full_disk)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    with pytest.raises(RnnvizError, match="cannot write .*step-00000005.safetensors: No space left"):
        save_snapshot(model, run, 5, 2.0, 2.0)  # over the existing one
    with pytest.raises(RnnvizError, match="No space left"):
        save_snapshot(model, run, 10, 2.0, 2.0)  # a new one
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["step-00000005.safetensors"]
    assert good.read_bytes() == before  # the old snapshot is untouched
    monkeypatch.undo()
    assert [(s.step, s.val_loss) for s in list_snapshots(run)] == [(5, 2.5)]


def test_ctrl_c_while_writing_leaves_no_partial_snapshot(tmp_path, make_model, monkeypatch):
    import rnnviz.model.snapshots as snapshots

    real = snapshots.save

    def interrupted(tensors, metadata):
        real(tensors, metadata=metadata)
        raise KeyboardInterrupt

    monkeypatch.setattr(snapshots, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_snapshot(make_model(), tmp_path, 7, 1.0, 2.0)
    assert list((tmp_path / "snapshots").iterdir()) == []


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_kill_9_while_snapshotting_leaves_only_whole_snapshots(tmp_path, text_file):
    """A run snapshotting every step is killed at seeded moments: every snapshot the reader sees loads."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "rnnviz", "train", str(text_file), "--out", str(run), "--layers", "1",
           "--hidden", "64", "--batch", "4", "--seq-len", "16", "--max-steps", "100000", "--eval-every", "1000",
           "--snapshot-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = np.random.default_rng(3)
    for attempt in range(3):
        proc = subprocess.Popen(cmd + (["--force"] if attempt else []), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(list((run / "snapshots").glob("step-*"))) < 3:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.05))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        snaps = list_snapshots(run)
        assert len(snaps) >= 3
        model = load_checkpoint(run / "last") if (run / "last").exists() else None
        for s in snaps:
            tensors = load_file(str(s.path))  # whole: a truncated file would not parse
            assert all(v.dtype == torch.float16 for v in tensors.values())
            if model is not None:
                load_snapshot_weights(model, s)
        # what a kill can leave is a temp file, which is never taken for a snapshot
        for p in (run / "snapshots").iterdir():
            assert p.name.startswith(".step-") or p in {s.path for s in snaps}


# --- hostile snapshot directories ---


@pytest.fixture
def small_run(tmp_path, text_file):
    run = tmp_path / "run"
    train(text_file, run, TrainConfig(max_steps=10, **SMALL))
    return run


def test_junk_names_symlinks_and_stray_temp_files_are_ignored(small_run, tmp_path):
    d = small_run / "snapshots"
    want = [(s.step, s.val_loss) for s in list_snapshots(small_run)]
    assert [w[0] for w in want] == [5, 10]
    outside = tmp_path / "outside.safetensors"
    save_file({"x": torch.zeros(2)}, str(outside), metadata={"step": "99", "seconds": "1", "val_loss": "1"})
    (d / "step-00000099.safetensors").symlink_to(outside)  # a link, even to a readable file, is not ours
    (d / "step-1.safetensors").write_bytes(b"junk")
    (d / "step-00000003.safetensors.bak").write_bytes(b"junk")
    (d / ".step-00000015.safetensors.abc123.tmp").write_bytes(b"half a snapshot")  # what kill -9 leaves
    (d / "README").write_text("hello")
    (d / "step-00000004.safetensors").mkdir()  # a directory under a snapshot's name
    assert [(s.step, s.val_loss) for s in list_snapshots(small_run)] == want


def test_symlinked_snapshot_dir_is_not_followed(small_run, tmp_path):
    real = tmp_path / "elsewhere"
    (small_run / "snapshots").rename(real)
    (small_run / "snapshots").symlink_to(real)
    r = cli("emergence", small_run, tmp_path / "text.txt", "--feature", "word_pos")
    one_line_error(r, "no snapshots", "--snapshot-every")


@pytest.mark.parametrize("damage, needle", [
    (lambda p: p.write_bytes(b"\x00" * 40), "not a readable snapshot"),
    (lambda p: p.write_bytes(p.read_bytes()[:100]), "not a readable snapshot"),
    (lambda p: save_file({"x": torch.zeros(2)}, str(p)), "not a readable snapshot (KeyError)"),
    (lambda p: save_file({"x": torch.zeros(2)}, str(p), metadata={"step": "five", "seconds": "1", "val_loss": "1"}),
     "not a readable snapshot (ValueError)"),
])
def test_damaged_snapshot_is_a_one_line_error(small_run, tmp_path, damage, needle):
    damage(snapshot_path(small_run, 5))
    with pytest.raises(RnnvizError, match="step-00000005.safetensors"):
        list_snapshots(small_run)
    one_line_error(cli("emergence", small_run, tmp_path / "text.txt", "--feature", "word_pos"),
                   "step-00000005.safetensors", needle)


def test_snapshot_of_another_model_is_a_one_line_error(small_run, tmp_path, make_model):
    other = make_model(hidden=12)  # another shape, under a name of this run
    save_snapshot(other, small_run, 5, 1.0, 2.0)
    model = load_checkpoint(small_run / "last")
    with pytest.raises(RnnvizError, match="a snapshot of another model"):  # its stamp says so
        load_snapshot_weights(model, list_snapshots(small_run)[0])
    one_line_error(cli("emergence", small_run, tmp_path / "text.txt", "--feature", "word_pos", "--length", 500),
                   "step-00000005.safetensors: a snapshot of another model")


# --- resume ---


def _snapshot_tensors(run):
    return {s.step: (load_file(str(s.path)), s.val_loss) for s in list_snapshots(run)}


def _same_snapshots(a, b):
    sa, sb = _snapshot_tensors(a), _snapshot_tensors(b)
    assert list(sa) == list(sb)
    for step in sa:
        (ta, la), (tb, lb) = sa[step], sb[step]
        assert la == lb, step
        for k in ta:
            assert torch.equal(ta[k], tb[k]), (step, k)


def test_resume_gives_the_snapshots_of_an_uninterrupted_run(tmp_path, text_file, one_thread):
    # warmup=100 covers every step: the schedule does not depend on max_steps, which the resume changes
    straight = tmp_path / "straight"
    train(text_file, straight, TrainConfig(max_steps=30, warmup=100, **SMALL))
    split = tmp_path / "split"
    train(text_file, split, TrainConfig(max_steps=20, warmup=100, **SMALL))
    train(text_file, split, resume=True, overrides={"max_steps": 30})
    assert [s.step for s in list_snapshots(split)] == [5, 10, 15, 20, 25, 30]
    _same_snapshots(straight, split)


def test_resume_after_ctrl_c_on_a_snapshot_step_writes_that_snapshot(tmp_path, text_file, one_thread,
                                                                     train_until_ctrl_c):
    straight = tmp_path / "straight"
    train(text_file, straight, TrainConfig(max_steps=20, **SMALL))
    run = tmp_path / "run"
    train_until_ctrl_c(text_file, run, TrainConfig(max_steps=20, **SMALL), 15)  # step 15 logged, its snapshot not yet
    assert [s.step for s in list_snapshots(run)] == [5, 10]
    train(text_file, run, resume=True)
    _same_snapshots(straight, run)


def test_resume_drops_snapshots_from_after_the_last_checkpoint(tmp_path, text_file, make_model, one_thread):
    run = tmp_path / "run"
    train(text_file, run, TrainConfig(max_steps=20, **SMALL))
    # a killed run can leave snapshots newer than last/ (written between two checkpoints)
    stale = save_snapshot(load_checkpoint(run / "last"), run, 35, 9.0, 9.9)
    train(text_file, run, resume=True, overrides={"max_steps": 25})  # stops before 35
    assert not stale.exists()
    assert [s.step for s in list_snapshots(run)] == [5, 10, 15, 20, 25]
