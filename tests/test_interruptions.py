"""kill -9 during `rnnviz record` and `rnnviz train`, at seeded random points, several times in a row.

What must hold after every kill: nothing at the output path looks complete but is not (a store there
opens and holds exactly one whole recording; a checkpoint there loads and resumes), and carrying on
(rerunning the recording, `train --resume`) ends with exactly what one uninterrupted run gives:
the same store bytes, and the same loss curve on CPU.

The kill points are drawn from seeded generators, measured from events the harness can see (the
recorder's temp directory appearing, training log lines being written), so they land while work is
in progress on a fast or a slow machine alike. Subprocesses run with one thread: on a busy 2-core
machine torch's default thread pool mostly waits for itself.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rnnviz.errors import RnnvizError
from rnnviz.model.checkpoint import load_checkpoint, save_checkpoint
from rnnviz.recording.recorder import record
from rnnviz.store.reader import open_store

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
STORE_FILES = ("text.txt", "stats.json", "logprob.f32", "topk_ids.u16", "topk_p.f16")


def start(args: list, log: Path) -> subprocess.Popen:
    """`python -m rnnviz ARGS`, output to a file (a pipe nobody reads would stall the child)."""
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, "-m", "rnnviz", *map(str, args)], cwd=ROOT, env=ENV,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], delay: float, limit: float = 120.0) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after ``ready()`` first holds. True if it was killed while running."""
    t0 = time.monotonic()
    while proc.poll() is None and not ready():
        if time.monotonic() - t0 > limit:
            proc.kill()
            raise AssertionError("the child never reached the kill point")
        time.sleep(0.005)
    time.sleep(delay)
    if proc.poll() is not None:
        return False  # it finished first: a valid outcome, but not an interruption
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return proc.returncode == -signal.SIGKILL


def finish(proc: subprocess.Popen, log: Path) -> None:
    assert proc.wait(timeout=240) == 0, log.read_text(errors="replace")[-2000:]


# --- record ---


def store_digest(path: Path) -> str:
    """SHA-256 over everything a store holds except the manifest's timings and timestamps."""
    h = hashlib.sha256()
    names = sorted(p.name for p in path.iterdir() if p.name.endswith(".f16") or p.name in STORE_FILES)
    for name in names:
        h.update(name.encode())
        h.update((path / name).read_bytes())
    m = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    for key in ("created", "recorder"):
        m.pop(key)
    h.update(json.dumps(m, sort_keys=True).encode())
    return h.hexdigest()


def visible(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if not p.name.startswith("."))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_9_during_record(tmp_path, make_model):
    rng = np.random.default_rng(0)
    words = ["the ", "cat ", "sat ", "on ", "a ", "mat", ".\n", '"hi" ', "said ", "she ", "(then) "]
    text = "".join(rng.choice(words, size=50_000))  # ~210k characters
    src = tmp_path / "text.txt"
    src.write_text(text, encoding="utf-8")
    ck = save_checkpoint(make_model(layers=2, hidden=16, text=text), tmp_path / "ck")
    log = tmp_path / "log.txt"
    args = ["record", ck, src, "--out"]

    # The two complete stores that may ever sit at the target path: an older, shorter recording ...
    work = tmp_path / "work"
    work.mkdir()
    out = work / "st"
    record(load_checkpoint(ck), text[:30_000], out)
    old = store_digest(out)
    # ... and the full one, recorded once without interruption.
    finish(start([*args, tmp_path / "reference"], log), log)
    new = store_digest(tmp_path / "reference")
    seconds = open_store(tmp_path / "reference").manifest["recorder"]["seconds"]

    # Kills 1-2 hit a --force replacement of the old store; then the old store is deleted and kills 3-4
    # hit a first recording. Each lands a seeded fraction of the reference's recording time after the
    # recorder's temp directory appears.
    draws = random.Random(1234)
    killed = 0
    for attempt in range(4):
        if attempt == 2 and out.exists():
            shutil.rmtree(out)  # as a user would; a kill mid-replace may have left the old one as .st.old
        before = set(work.iterdir())
        proc = start([*args, out, "--force"] if out.exists() else [*args, out], log)

        def recording(before=before) -> bool:
            return any(p.name.startswith(".st.") and p.name.endswith(".tmp") for p in set(work.iterdir()) - before)

        killed += kill_when(proc, recording, draws.uniform(0.0, seconds))
        if out.exists() or (work / ".st.old").exists():
            st = open_store(out)  # recovers a replaced store left as .st.old by a kill between two renames
            assert store_digest(st.path) in (old, new)  # whole: the old recording or the new one, nothing else
        assert visible(work) in ([], ["st"])
    assert killed >= 2, f"only {killed} of 4 kills landed during the recording"

    finish(start([*args, out, "--force"] if out.exists() else [*args, out], log), log)
    assert store_digest(out) == new
    assert visible(work) == ["st"]


def test_a_crash_while_deleting_the_replaced_store_leaves_nothing_to_resurrect(tmp_path, monkeypatch, make_model):
    """The replaced store is kept as .st.old until the new one is in place, then deleted. A crash halfway
    through that deletion must not leave a partial .st.old, which recover_dir would move back into place
    (as a whole store) once st is gone."""
    model = make_model()
    out = tmp_path / "st"
    record(model, "First Citizen:\n", out)

    def dies_halfway(path, ignore_errors=False):
        p = Path(path)
        if p.exists():
            next(p.iterdir()).unlink()
            raise KeyboardInterrupt

    monkeypatch.setattr("rnnviz.fsutil.shutil.rmtree", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        record(model, "Before we proceed", out, overwrite=True)
    monkeypatch.undo()
    assert open_store(out).text == "Before we proceed"  # the new store is whole
    shutil.rmtree(out)  # the user deletes it: nothing may come back
    with pytest.raises(RnnvizError, match="no such store directory"):
        open_store(out)


# --- train ---

TRAIN = ["--layers", 2, "--hidden", 32, "--dropout", 0.1, "--batch", 8, "--seq-len", 32, "--eval-every", 20,
         "--max-steps", 80, "--seed", 3]


def rows(run: Path) -> list[dict]:
    """log.jsonl's rows; a line the child is writing right now is left out (a complete one never is)."""
    try:
        lines = (run / "log.jsonl").read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:  # not yet, or a fresh run has just removed a crashed one's
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # "" after the last newline, or a line being written
    return out


def last_step(run: Path) -> int:
    """The step of the checkpoint in last/ (-1 if none, or while it is being replaced)."""
    try:
        return json.loads((run / "last" / "config.json").read_text(encoding="utf-8"))["metrics"]["step"]
    except (OSError, ValueError, KeyError):
        return -1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_9_during_train_then_resume(tmp_path):
    rng = np.random.default_rng(1)
    words = ["the ", "cat ", "sat ", "on ", "a ", "mat", ".\n", '"hi" ', "said ", "she ", "(then) "]
    src = tmp_path / "text.txt"
    src.write_text("".join(rng.choice(words, size=5000)), encoding="utf-8")
    log = tmp_path / "log.txt"
    ref, run = tmp_path / "reference", tmp_path / "run"
    finish(start(["train", src, "--out", ref, *TRAIN], log), log)
    want = rows(ref)
    assert [r["step"] for r in want] == list(range(10, 81, 10))

    # Where each attempt is killed: "early" (after the first log line, before any checkpoint: the rerun
    # starts afresh), "checkpoint" (just after a new last/ lands, while the sample and the log line for
    # that step are written) or "log" (a few log lines in). Seeded order, seeded delays.
    draws = random.Random(99)
    later = ["checkpoint", "checkpoint", "log"]
    draws.shuffle(later)
    killed, resumed = 0, 0
    for how in ["early", *later]:
        resume = (run / "last").exists()
        resumed += resume
        before = last_step(run)
        proc = start(["train", src, "--out", run, *TRAIN, *(["--resume"] if resume else [])], log)
        if how == "early":
            ready, delay = (lambda: len(rows(run)) >= 1), draws.uniform(0.0, 0.02)
        elif how == "checkpoint":
            ready, delay = (lambda before=before: last_step(run) > before), draws.uniform(0.0, 0.05)
        else:
            target = len(rows(run)) + draws.randint(1, 3)
            ready, delay = (lambda target=target: len(rows(run)) >= target), draws.uniform(0.0, 0.1)
        killed += kill_when(proc, ready, delay)
        # Whatever is at best/ and last/ is a whole checkpoint, and last/ is one we can resume from.
        for sub in ("best", "last"):
            if (run / sub).exists() or (run / f".{sub}.old").exists():
                meta = load_checkpoint(run / sub).meta
                assert meta["metrics"]["step"] % 20 == 0
        if (run / "last").exists():
            assert (run / "last" / "train_state.safetensors").exists()
        assert {p.name for p in run.iterdir() if not p.name.startswith(".")} <= {
            "best", "last", "log.jsonl", "samples.txt"}
    assert killed >= 3 and resumed >= 1, (killed, resumed)

    finish(start(["train", src, "--out", run, *TRAIN, *(["--resume"] if (run / "last").exists() else [])], log), log)
    got = rows(run)
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for key in ("epoch", "lr"):
        assert [r[key] for r in got] == [r[key] for r in want], key
    for key in ("train_loss", "val_loss"):  # val_loss: null between validations
        curve = [math.nan if r[key] is None else r[key] for r in got]
        assert curve == pytest.approx([math.nan if r[key] is None else r[key] for r in want],
                                      rel=1e-6, abs=1e-7, nan_ok=True), key
    # The run ends where the uninterrupted one did: same weights, same samples along the way.
    a, b = load_checkpoint(ref / "last"), load_checkpoint(run / "last")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert np.allclose(x.numpy(), y.numpy(), rtol=1e-5, atol=1e-6), name
    assert (run / "samples.txt").read_text(encoding="utf-8") == (ref / "samples.txt").read_text(encoding="utf-8")
