"""Issue 27, processes: no process of ours outlives its parent, and a stopped command cleans up and exits 130.

- ``rnnviz train|record --nproc N`` runs torchrun's launcher in-process; its workers run in sessions of their
  own. ``kill -9`` of the launcher (while the workers start, train, validate or record) must end every
  worker, and they must stop writing: each asks the kernel for SIGTERM when its parent dies
  (``rnnviz.model.distributed.die_with_launcher``) and unwinds, so no temp folder or lock is left.
- SIGTERM, SIGHUP and Ctrl-C end a command as Ctrl-C does, exit 130 (``rnnviz.stopping``), with the launcher
  or a worker signalled alike; a SIGHUP ignored at start (``nohup``) stays ignored; a worker killed with
  ``kill -9`` is one ``Error:`` line naming its rank, with no traceback from the ranks it leaves behind.
- ``emergence`` works in a private folder in ``$TMPDIR`` (``rnnviz.fsutil.scratch_dir``): removed when it
  is stopped, and by the next emergence after a ``kill -9`` — never a folder that is not certainly ours.

Every child runs ``python -m rnnviz`` on one thread with its output in a file; whatever a test leaves
running (a launcher, its workers) is killed when it ends. Every test starts several Python processes on
a busy machine: slow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import TEXT as CKPT_TEXT  # the tiny checkpoint's vocabulary
from conftest import WORDS, train_snapshot_rnn, words_text
from helpers import alive, children, wait_for

from rnnviz.fsutil import process_lock

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), pytest.mark.usefixtures("one_thread")]

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
# A tiny LSTM that trains for ever (until stopped) in two processes, logging every step.
TRAIN = ["--layers", 1, "--hidden", 8, "--batch", 4, "--seq-len", 16, "--max-steps", 100000, "--eval-every", 100000,
         "--log-every", 1, "--device", "cpu", "--seed", 0]
GONE_WITHIN = 30.0  # seconds for every worker to be gone once its launcher is (torchrun's own grace period)


class Job:
    """A ``python -m rnnviz ARGS`` child, its stdout and stderr in ``log``; ``seen``: its descendants so far."""

    def __init__(self, args: list, log: Path, env: dict | None = None, preexec_fn: Callable | None = None):
        self.log = log
        with open(log, "wb") as f:
            self.proc = subprocess.Popen([sys.executable, "-m", "rnnviz", *map(str, args)], cwd=ROOT,
                                         env=env or ENV, stdout=f, stderr=subprocess.STDOUT,
                                         preexec_fn=preexec_fn or default_sighup)
        self.seen: set[int] = set()

    def workers(self) -> dict[int, int]:
        """{rank: pid} of the torchrun workers running under this launcher now."""
        kids = children(self.proc.pid)
        self.seen |= kids
        ranks = {}
        for pid in kids:
            try:
                env = (Path(f"/proc/{pid}/environ").read_bytes() + b"\0").split(b"\0")
            except OSError:
                continue
            rank = next((int(v[5:]) for v in env if v.startswith(b"RANK=")), None)
            if rank is not None:
                ranks[rank] = pid
        return ranks

    def wait_for_workers(self, n: int = 2) -> dict[int, int]:
        wait_for(lambda: len(self.workers()) == n, timeout=120, proc=self.proc)
        return self.workers()

    def wait(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout=timeout)

    def messages(self) -> list[str]:
        """The output's lines, progress-bar redraws and blank lines left out."""
        text = self.log.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
        return [line for line in text.splitlines() if line.strip() and "%|" not in line]

    def kill_all(self) -> None:
        """SIGKILL this child and every descendant it was seen with that still runs rnnviz."""
        for pid in {self.proc.pid, *self.seen}:
            try:
                if alive(pid) and b"rnnviz" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=30)


@pytest.fixture
def jobs(tmp_path) -> Iterator[Callable[..., Job]]:
    """``start(*args, env=None, preexec_fn=None)`` -> a :class:`Job`; all are killed, with their workers,
    when the test ends."""
    started: list[Job] = []

    def start(*args, env: dict | None = None, preexec_fn: Callable | None = None) -> Job:
        job = Job(list(args), tmp_path / f"job{len(started)}.log", env, preexec_fn)
        started.append(job)
        return job

    yield start
    for job in started:
        job.kill_all()


def all_gone(pids, within: float = GONE_WITHIN) -> bool:
    """Whether every process in ``pids`` has ended within ``within`` seconds."""
    deadline = time.monotonic() + within
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def logged_steps(run: Path) -> int:
    try:
        return (run / "log.jsonl").read_text(encoding="utf-8").count("\n")
    except FileNotFoundError:
        return 0


def hidden(d: Path) -> list[str]:
    """The hidden entries of ``d``: a temp folder (``.last.*.tmp``), a lock (``.run.lock``) or ``.NAME.old``."""
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


def state_of(d: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``d`` with its size and modification time: a writer still at work changes it."""
    return {str(p.relative_to(d)): (p.stat().st_size, p.stat().st_mtime_ns) for p in d.rglob("*") if p.is_file()}


def default_sighup() -> None:
    """A job starts as from a terminal, whatever started the tests (a CI run under nohup ignores SIGHUP, and
    its children would inherit that)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def ignore_sighup() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup does before it runs the command


@pytest.fixture
def record_job(tmp_path, make_model):
    """``(checkpoint, text, out)`` for a recording of a few seconds in two processes (217k characters)."""
    from rnnviz.model.checkpoint import save_checkpoint

    text = words_text(n=50_000)
    src = tmp_path / "big.txt"
    src.write_text(text, encoding="utf-8")
    ckpt = save_checkpoint(make_model(layers=2, hidden=48, text=text), tmp_path / "ckpt")
    work = tmp_path / "work"
    work.mkdir()
    return ckpt, src, work / "store"


def recording(out: Path) -> bool:
    """Rank 0 has made the store's temp folder beside ``out`` (not only taken its lock, .NAME.lock)."""
    return any(p.name.startswith(f".{out.name}.") and p.is_dir() for p in out.parent.iterdir())


# --- kill -9 of the launcher ---


@pytest.mark.parametrize("when", ["training", "validating"])
def test_kill_9_of_the_train_launcher_ends_its_workers(tmp_path, jobs, when):
    src, run = tmp_path / "text.txt", tmp_path / "run"
    if when == "training":
        src.write_text(words_text(), encoding="utf-8")
        flags = TRAIN
    else:  # 20k characters to validate every 2 steps: rank 0 is nearly always validating, rank 1 waiting for it
        src.write_text(words_text(n=100_000), encoding="utf-8")
        flags = [*TRAIN, "--eval-every", 2]  # the last value of an option is the one taken
    job = jobs("train", src, "--out", run, *flags, "--nproc", 2)
    workers = job.wait_for_workers()
    if when == "training":
        wait_for(lambda: logged_steps(run) >= 3, proc=job.proc)
    else:
        wait_for(lambda: (run / "last").is_dir(), proc=job.proc)
        time.sleep(0.3)
    job.proc.kill()
    job.wait()
    assert all_gone(workers.values()), "a worker outlived its launcher"
    before = state_of(run)
    time.sleep(1.0)
    assert state_of(run) == before  # nothing writes to the run any more
    assert hidden(run) == []  # rank 0 unwound: no temp folder, no lock left


def test_kill_9_of_the_launcher_while_its_workers_start(tmp_path, text_file, jobs):
    job = jobs("train", text_file, "--out", tmp_path / "run", *TRAIN, "--nproc", 2)
    workers = job.wait_for_workers()  # started, still importing torch
    job.proc.kill()
    job.wait()
    assert all_gone(workers.values()), "a worker that started as its launcher died went on"
    assert not (tmp_path / "run" / "log.jsonl").exists()


@pytest.mark.parametrize("nproc", [1, 2])  # a job of one worker too (it outlived its launcher, finishing the store)
def test_kill_9_of_the_record_launcher_ends_its_workers(jobs, record_job, nproc):
    ckpt, src, out = record_job
    job = jobs("record", ckpt, src, "--out", out, "--streams", 8, "--kinds", "all", "--nproc", nproc)
    workers = job.wait_for_workers(nproc)
    wait_for(lambda: recording(out), proc=job.proc)
    job.proc.kill()
    job.wait()
    assert all_gone(workers.values()), "a worker outlived its launcher"
    assert sorted(p.name for p in out.parent.iterdir()) == []  # no store finished by orphans, no temp folder


# --- signals to the launcher, and to one worker ---


@pytest.mark.parametrize("command, signum", [("train", signal.SIGTERM), ("train", signal.SIGHUP),
                                             ("train", signal.SIGINT), ("record", signal.SIGTERM)],
                         ids=["train-SIGTERM", "train-SIGHUP", "train-SIGINT", "record-SIGTERM"])
def test_a_signalled_launcher_exits_130_and_leaves_nothing(tmp_path, text_file, jobs, record_job, command, signum):
    run = tmp_path / "run"
    ckpt, src, out = record_job
    if command == "train":
        job = jobs("train", text_file, "--out", run, *TRAIN, "--nproc", 2)
        workers = job.wait_for_workers()
        wait_for(lambda: logged_steps(run) >= 3, proc=job.proc)
    else:
        job = jobs("record", ckpt, src, "--out", out, "--streams", 8, "--kinds", "all", "--nproc", 2)
        workers = job.wait_for_workers()
        wait_for(lambda: recording(out), proc=job.proc)
    job.proc.send_signal(signum)
    assert job.wait() == 130, job.messages()
    messages = job.messages()
    # One line says so (rank 0 for a Ctrl-C, which reaches the workers too; the launcher otherwise); no
    # traceback, and no rank left behind in a teardown barrier ("Rank 1 failed to pass monitoredBarrier").
    assert len(messages) == 1 and messages[0].startswith("Interrupted"), messages
    assert all_gone(workers.values())
    if command == "train":
        assert hidden(run) == []
    else:
        assert sorted(p.name for p in out.parent.iterdir()) == []


def test_sigterm_to_a_worker_stops_the_command_with_130(tmp_path, text_file, jobs):
    run = tmp_path / "run"
    job = jobs("train", text_file, "--out", run, *TRAIN, "--nproc", 2)
    workers = job.wait_for_workers()
    wait_for(lambda: logged_steps(run) >= 3, proc=job.proc)
    os.kill(workers[1], signal.SIGTERM)
    assert job.wait(timeout=60) == 130, job.messages()  # not a rank waiting for ever for the one that left
    assert job.messages() == ["Interrupted."]
    assert all_gone(workers.values())
    assert hidden(run) == []


def test_a_worker_killed_is_one_error_line_naming_its_rank(tmp_path, text_file, jobs):
    run = tmp_path / "run"
    job = jobs("train", text_file, "--out", run, *TRAIN, "--nproc", 2)
    workers = job.wait_for_workers()
    wait_for(lambda: logged_steps(run) >= 3, proc=job.proc)
    os.kill(workers[1], signal.SIGKILL)
    assert job.wait() == 1, job.messages()
    # rank 0's collective fails with "Connection reset by peer": an echo of rank 1's death, not shown
    assert job.messages() == ["Error: rank 1 died (SIGKILL)"]
    assert all_gone(workers.values())
    assert hidden(run) == []


@pytest.mark.parametrize("nproc", [None, 2], ids=["one-process", "launcher"])
def test_sighup_ignored_at_start_stays_ignored(tmp_path, text_file, jobs, nproc):
    """``nohup rnnviz train ...``: closing the terminal must not stop it (torchrun would forward the SIGHUP)."""
    run = tmp_path / "run"
    job = jobs("train", text_file, "--out", run, *TRAIN, *(["--nproc", nproc] if nproc else []),
               preexec_fn=ignore_sighup)
    workers = job.wait_for_workers() if nproc else {}
    wait_for(lambda: logged_steps(run) >= 3, proc=job.proc)
    job.proc.send_signal(signal.SIGHUP)
    for pid in workers.values():
        os.kill(pid, signal.SIGHUP)  # the workers inherit nohup's choice
    steps = logged_steps(run)
    wait_for(lambda: logged_steps(run) >= steps + 20, timeout=60, proc=job.proc)  # still training
    job.proc.send_signal(signal.SIGTERM)
    assert job.wait() == 130, job.messages()
    assert all_gone(workers.values())


# --- a stop signal the moment the store's temp folder exists, before anything is armed to remove it ---

# Loaded by every Python process of a job through PYTHONPATH (the launcher and torchrun's workers alike): the
# process that makes the store's temp folder (rank 0, or the one process) sends itself SIGTERM at the moment
# named by SIGNAL_AT: inside mkdtemp just after the mkdir, or as atomic_dir hands the folder to its caller (before
# the caller's ExitStack has taken charge of it). A kill -9 of the launcher delivers the same SIGTERM there when
# the machine is busy (the CI run that found this: the worker was descheduled just after its mkdir).
SITECUSTOMIZE = """
import contextlib, os, signal, tempfile
AT = os.environ.get("SIGNAL_AT")
if AT and os.environ.get("RANK", "0") == "0":
    real_mkdtemp, real_enter = tempfile.mkdtemp, contextlib._GeneratorContextManager.__enter__

    def mkdtemp(*args, **kwargs):
        made = real_mkdtemp(*args, **kwargs)
        if AT == "mkdtemp" and kwargs.get("prefix", "").startswith(".store."):
            os.kill(os.getpid(), signal.SIGTERM)
        return made

    def enter(self):
        value = real_enter(self)
        if AT == "yield" and self.gen.gi_code.co_name == "atomic_dir":
            os.kill(os.getpid(), signal.SIGTERM)
        return value

    tempfile.mkdtemp, contextlib._GeneratorContextManager.__enter__ = mkdtemp, enter
"""


@pytest.mark.parametrize("nproc", [1, 2], ids=["one-process", "two-processes"])
@pytest.mark.parametrize("at", ["mkdtemp", "yield"])
def test_a_stop_signal_as_the_temp_folder_is_made_leaves_nothing(tmp_path, jobs, record_job, at, nproc):
    ckpt, src, out = record_job
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    env = {**ENV, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}", "SIGNAL_AT": at}
    job = jobs("record", ckpt, src, "--out", out, "--streams", 8, "--nproc", nproc, env=env)
    assert job.wait() == 130, job.messages()
    assert sorted(p.name for p in out.parent.iterdir()) == []
    assert job.messages() == ["Interrupted."]  # once; not an error from the rank left waiting for rank 0


# --- one process: SIGHUP ends a command as Ctrl-C does ---


def test_sighup_to_train_saves_last_like_ctrl_c(tmp_path, text_file, jobs):
    run = tmp_path / "run"
    job = jobs("train", text_file, "--out", run, *TRAIN)
    wait_for(lambda: logged_steps(run) >= 3, proc=job.proc)
    job.proc.send_signal(signal.SIGHUP)
    assert job.wait() == 130, job.messages()
    assert job.messages()[-1].startswith("Interrupted: the last completed step is saved")
    assert (run / "last" / "train_state.json").is_file()
    assert hidden(run) == []


def test_sighup_to_record_removes_its_temp_folder(tmp_path, tiny_ckpt, jobs):
    src = tmp_path / "t.txt"
    src.write_text(CKPT_TEXT * 20000, encoding="utf-8")
    out = tmp_path / "work" / "st"
    out.parent.mkdir()
    job = jobs("record", tiny_ckpt, src, "--out", out, "--exact", "--device", "cpu")
    wait_for(lambda: recording(out), proc=job.proc)
    time.sleep(0.3)
    job.proc.send_signal(signal.SIGHUP)
    assert job.wait() == 130, job.messages()
    assert sorted(p.name for p in out.parent.iterdir()) == []


# --- emergence: its working folder in $TMPDIR ---


@pytest.fixture
def emergence_args(tmp_path) -> list:
    """``emergence RUN TEXT ...`` over 80k characters (a few seconds), for a run with four snapshots."""
    src = tmp_path / "text.txt"
    src.write_text(words_text([*WORDS, '"no, ', 'not yet" '], n=20_000), encoding="utf-8")
    run = train_snapshot_rnn(src, tmp_path / "run")
    return [run, src, "--feature", "in_quote", "--split", "all", "--length", 80_000, "--device", "cpu"]


def tmpdir_env(tmp: Path) -> dict:
    tmp.mkdir(exist_ok=True)
    return {**ENV, "TMPDIR": str(tmp)}


def working_folder(tmp: Path) -> bool:
    return any(p.name.startswith("rnnviz-emergence-") for p in tmp.iterdir())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stopped_emergence_removes_its_working_folder(tmp_path, jobs, emergence_args, signum):
    tmp = tmp_path / "tmp"
    job = jobs("emergence", *emergence_args, env=tmpdir_env(tmp))
    wait_for(lambda: working_folder(tmp), proc=job.proc)
    time.sleep(0.3)
    job.proc.send_signal(signum)
    assert job.wait() == 130, job.messages()
    assert job.messages()[-1] == "Interrupted."
    assert list(tmp.iterdir()) == []


def test_the_next_emergence_removes_a_killed_one_s_folder_and_nothing_else(tmp_path, jobs, emergence_args):
    from rnnviz.fsutil import SCRATCH_LOCK

    tmp = tmp_path / "tmp"
    env = tmpdir_env(tmp)
    job = jobs("emergence", *emergence_args, env=env)
    wait_for(lambda: working_folder(tmp), proc=job.proc)
    time.sleep(0.3)
    job.proc.kill()
    job.wait()
    (stale,) = list(tmp.iterdir())  # what kill -9 leaves: nothing can clean up on the way out

    # Folders that are not certainly a dead emergence's own, beside it: each must be left as it is.
    def folder(name: str, marker: bool = True) -> Path:
        d = tmp / name
        d.mkdir()
        (d / "notes.txt").write_text("the user's", encoding="utf-8")
        if marker:
            (d / SCRATCH_LOCK).write_text("", encoding="utf-8")
        return d

    folder("rnnviz-emergence-abcdefgh", marker=False)  # our name, no lock file: a user's folder
    folder("rnnviz-emergence-toolongname")  # not a name mkdtemp makes
    folder("other-prefix-abcdefgh")
    live = folder("rnnviz-emergence-livelive")  # a running emergence holds its lock
    outside = folder("../outside-abcdefgh")
    (tmp / "rnnviz-emergence-linklink").symlink_to(outside, target_is_directory=True)  # a link, not a folder
    linked = folder("rnnviz-emergence-markmark", marker=False)
    (linked / SCRATCH_LOCK).symlink_to(outside / SCRATCH_LOCK)  # a lock file that is a link
    keep = sorted(p.name for p in tmp.iterdir() if p != stale)

    with process_lock(live / SCRATCH_LOCK) as held:
        assert held
        again = jobs("emergence", *emergence_args, "--length", 2000, env=env)
        assert again.wait() == 0, again.messages()
    assert sorted(p.name for p in tmp.iterdir()) == keep  # the dead one's folder is gone, its own too
    for d in [tmp / n for n in keep] + [outside]:
        assert (d / "notes.txt").read_text(encoding="utf-8") == "the user's"
