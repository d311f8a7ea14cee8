"""Data parallelism under torchrun, on CPU (gloo, 2 processes): the result must equal one process's.

Each torchrun launch starts fresh Python processes (a few seconds each on a busy machine): slow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from rnnviz.analysis.two_state import two_states
from rnnviz.errors import RnnvizError
from rnnviz.model.charrnn import CharRNN, ModelConfig
from rnnviz.model.checkpoint import load_checkpoint, save_checkpoint
from rnnviz.model.distributed import shares
from rnnviz.model.snapshots import list_snapshots
from rnnviz.model.trainer import TrainConfig, train
from rnnviz.model.vocab import Vocab
from rnnviz.store.reader import open_store

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
# Dropout 0: with dropout each rank draws its own masks, which one process cannot reproduce.
SMALL = dict(layers=2, hidden=16, dropout=0.0, batch=16, seq_len=16, warmup=5, eval_every=15, log_every=1,
             device="cpu")
FLAGS = ["--layers", "2", "--hidden", "16", "--dropout", "0", "--batch", "16", "--seq-len", "16", "--warmup", "5",
         "--eval-every", "15", "--device", "cpu"]


def rnnviz(*args, nproc: int | None = None) -> subprocess.CompletedProcess:
    """``rnnviz ARGS``, under ``torchrun --nproc-per-node NPROC`` when given."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc else []
    cmd = [sys.executable, *launcher, "-m", "rnnviz", *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["train_loss"]) for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())]


def assert_same_run(a: Path, b: Path) -> None:
    """Same logged losses (each rounded to 5 decimals by the log: one unit apart at most when the true
    values are within 1e-5) and the same final weights within 1e-5."""
    la, lb = losses(a), losses(b)
    assert [s for s, _ in la] == [s for s, _ in lb] == list(range(1, 31))
    assert max(abs(x - y) for (_, x), (_, y) in zip(la, lb, strict=True)) <= 1e-5 + 1e-12
    wa, wb = load_checkpoint(a / "last").state_dict(), load_checkpoint(b / "last").state_dict()
    assert wa.keys() == wb.keys()
    for k in wa:
        assert (wa[k] - wb[k]).abs().max().item() <= 1e-5, k


def test_shares_are_contiguous_and_balanced():
    assert shares(16, 2) == [(0, 8), (8, 16)]
    assert shares(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert shares(3, 3) == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(RnnvizError, match="4 processes but only 3 stream"):
        shares(3, 4)


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [2, 3])  # 3: shares of 6, 5 and 5 streams, each rank's loss weighted by its share
def test_ranks_train_like_one_process(tmp_path, text_file, nproc):
    one, two = tmp_path / "one", tmp_path / "two"
    train(text_file, one, TrainConfig(max_steps=30, **SMALL))
    ok(rnnviz("train", text_file, "--out", two, "--max-steps", 30, "--log-every", 1, "--snapshot-every", 10, *FLAGS,
              nproc=nproc))
    assert_same_run(one, two)  # snapshots read the model, they do not change the training
    # rank 0 alone wrote: one log line per step, one sample per validation, one snapshot each
    assert (two / "samples.txt").read_text().count("=== step") == 2
    assert [s.step for s in list_snapshots(two)] == [10, 15, 20, 30]
    state = json.loads((two / "last" / "train_state.json").read_text())
    assert state["world_size"] == nproc and state["step"] == 30


@pytest.mark.slow
def test_resume_with_another_number_of_processes(tmp_path, text_file, train_until_ctrl_c):
    cfg = dict(SMALL, schedule="constant")  # a run stopped by --max-steps 15 has the same lr as one of 30
    one = tmp_path / "one"
    train(text_file, one, TrainConfig(max_steps=30, **cfg))

    # Stopped (Ctrl-C) at step 15 in one process, resumed in two through `rnnviz train --nproc 2`.
    a = tmp_path / "a"
    train_until_ctrl_c(text_file, a, TrainConfig(max_steps=30, **cfg), 15)
    ok(rnnviz("train", text_file, "--out", a, "--resume", "--nproc", 2))
    assert_same_run(one, a)

    # Stopped at step 15 in two processes (global hidden state saved), resumed in one.
    b = tmp_path / "b"
    ok(rnnviz("train", text_file, "--out", b, "--max-steps", 15, "--log-every", 1, "--schedule", "constant", *FLAGS,
              nproc=2))
    train(text_file, b, resume=True, overrides={"max_steps": 30})
    assert_same_run(one, b)


def test_bad_nproc_is_one_line_before_any_process(tmp_path, text_file):
    from click.testing import CliRunner

    from rnnviz.cli import main

    run = tmp_path / "run"
    cases = [
        (["--nproc", "0"], "--nproc must be >= 1, got 0"),
        (["--nproc", "5", "--batch", "4"], "--nproc 5 is more processes than the 4 stream(s) to share"),
        (["--nproc", "2", "--resume"], "nothing to resume"),
    ]
    for extra, message in cases:
        r = CliRunner().invoke(main, ["train", str(text_file), "--out", str(run), *extra])
        assert r.exit_code == 1 and r.output.count("\n") == 1 and message in r.output, r.output
    train(text_file, run, TrainConfig(max_steps=2, **dict(SMALL, batch=4)))
    r = CliRunner().invoke(main, ["train", str(text_file), "--out", str(run), "--resume", "--nproc", "8"])
    assert r.exit_code == 1 and r.output.count("\n") == 1, r.output
    assert f"{run} was trained with --batch 4: it cannot be resumed in 8 processes (at most 4)" in r.output
    r = CliRunner().invoke(main, ["train", str(text_file), "--out", str(run), "--nproc", "2"])
    assert r.exit_code == 1 and "already holds a run" in r.output
    r = CliRunner().invoke(main, ["train", str(tmp_path / "missing.txt"), "--out", str(run), "--nproc", "2"])
    assert r.exit_code == 1 and "no such file" in r.output


# --- recording ---


def make_ckpt(path: Path, text: str, cell: str, hidden: int = 32) -> Path:
    torch.manual_seed(0)
    vocab = Vocab.from_text(text)
    return save_checkpoint(CharRNN(ModelConfig(len(vocab), cell, 2, hidden), vocab), path)


def manifest_without_timings(store: Path) -> dict:
    m = json.loads((store / "manifest.json").read_text())
    for key in ("seconds", "chars_per_s", "processes"):
        del m["recorder"][key]
    del m["created"]
    return m


@pytest.mark.slow
@pytest.mark.parametrize(("cell", "streams", "burn_in"), [("lstm", 8, 1500), ("gru", 8, 1500), ("lstm", 25, 200)])
def test_two_ranks_record_the_same_store(tmp_path, text_file, cell, streams, burn_in):
    """8 streams of 1,359 chars: stream 1 starts within the burn-in (exact pass), 2..7 read 1,500 chars first.
    25 streams: an LSTM's kinds come from the step loop (lstm_steps.MIN_STREAMS), on ranks of 13 and 12."""
    from click.testing import CliRunner

    from rnnviz.cli import main

    ckpt = make_ckpt(tmp_path / "ckpt", text_file.read_text(), cell)
    args = [ckpt, text_file, "--streams", streams, "--burn-in", burn_in, "--kinds", "all"]
    one, two = tmp_path / "one", tmp_path / "two"
    r = CliRunner().invoke(main, ["record", *map(str, args), "--out", str(one)])
    assert r.exit_code == 0, r.output
    out = ok(rnnviz("record", *args, "--out", two, nproc=2)).stdout
    assert out.count("Recorded 10,867 chars") == 1  # rank 0 reports for both
    names = sorted(p.name for p in one.iterdir())
    assert names == sorted(p.name for p in two.iterdir())
    for name in names:
        if name != "manifest.json" and not name.startswith("cache."):  # a cache's header: the files' inodes
            assert (one / name).read_bytes() == (two / name).read_bytes(), name
    pd.testing.assert_frame_equal(two_states(open_store(one)), two_states(open_store(two)), check_exact=True)
    assert manifest_without_timings(one) == manifest_without_timings(two)
    assert json.loads((two / "manifest.json").read_text())["recorder"]["processes"] == 2


def rank_pid(rank: int, marker: str) -> int | None:
    """The pid of the torchrun worker with RANK=rank whose command line contains ``marker``."""
    for proc in Path("/proc").iterdir():
        try:
            if marker in (proc / "cmdline").read_text() and f"\0RANK={rank}\0" in "\0" + (proc / "environ").read_text():
                return int(proc.name)
        except (OSError, ValueError):
            continue
    return None


@pytest.mark.slow
def test_a_rank_that_dies_leaves_no_store_and_is_named(tmp_path, text_file):
    text = text_file.read_text() * 20  # ~217k characters: seconds of recording to kill rank 1 in
    big = tmp_path / "big.txt"
    big.write_text(text, encoding="utf-8")
    ckpt = make_ckpt(tmp_path / "ckpt", text, "lstm", hidden=48)
    out = tmp_path / "store"
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "rnnviz", "record", str(ckpt), str(big), "--out", str(out),
                                 "--streams", "8", "--kinds", "all", "--nproc", "2"], cwd=ROOT, env=ENV,
                                stdout=log, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while not any(p.name.startswith(".store.") and p.name.endswith(".tmp") for p in tmp_path.iterdir()):  # rank 0
        # made the files (not only its lock, .store.lock, taken before the text is read)
        assert proc.poll() is None and time.monotonic() - t0 < 120, (tmp_path / "log").read_text()
        time.sleep(0.01)
    pid = rank_pid(1, str(out))
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=120) == 1
    assert "Error: rank 1 died (SIGKILL)" in (tmp_path / "log").read_text()
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt", "ckpt", "log", "text.txt"]  # no temp left


def test_record_nproc_errors_before_any_process(tmp_path, text_file):
    from click.testing import CliRunner

    from rnnviz.cli import main

    ckpt = make_ckpt(tmp_path / "ckpt", text_file.read_text(), "lstm")
    base = ["record", str(ckpt), str(text_file), "--out", str(tmp_path / "s")]
    for extra, message in [(["--nproc", "0"], "--nproc must be >= 1, got 0"),
                           (["--streams", "2", "--nproc", "3"],
                            "--nproc 3 is more processes than the 2 stream(s) to share: use at most 2, or more "
                            "streams (--streams)"),
                           (["--exact", "--nproc", "2"], "--nproc 2 is more processes than the 1 stream(s)")]:
        r = CliRunner().invoke(main, [*base, *extra])
        assert r.exit_code == 1 and r.output.count("\n") == 1 and message in r.output, r.output
    assert not (tmp_path / "s").exists()
