"""Data parallelism with PyTorch's own engine: torch.distributed, launched by torchrun.

A process started by ``torchrun --nproc-per-node N -m rnnviz ...`` finds RANK, WORLD_SIZE and
LOCAL_RANK in its environment; :func:`setup` joins the process group (NCCL on CUDA, gloo on CPU) and
returns a :class:`Group` that the trainer and the recorder use to split their streams and to reduce
what must be global. Without torchrun, :func:`setup` returns the one-process group (``world == 1``)
and every helper is a no-op, so the single-process code path is unchanged.

:func:`launch` is what ``rnnviz train --nproc N`` runs: torchrun's own launcher, in this process.

No worker outlives its launcher. torchrun starts each worker in a session of its own (so a Ctrl-C in the
terminal reaches the launcher alone, which forwards it), so a launcher killed with ``kill -9`` could not
take them with it: each worker asks the kernel for SIGTERM when its parent dies (Linux
``prctl(PR_SET_PDEATHSIG)``, :func:`die_with_launcher`), then checks that its parent is still the
launcher that started it (else the launcher died before the request and the worker exits at once). A
worker stops quietly on SIGTERM or SIGHUP (:func:`stop_worker`: temp files removed on the way out, exit
130, no teardown barrier that a gone rank would never join), and is ended by SIGALRM if it is still there
:data:`STOP_GRACE_S` seconds later. A worker whose collective fails because another rank died says
nothing: torchrun stops it within its monitor interval (:func:`wait_to_be_stopped`), and the launcher
names the rank that failed first.
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from rnnviz.errors import RnnvizError
from rnnviz.model.ranks import rank, under_torchrun, world_size  # noqa: F401  (re-exported: the trainer, the CLI)
from rnnviz.stopping import STOP_SIGNALS, STOPPED, remove_leftovers, set_stop_handler

LAUNCHER_PID = "RNNVIZ_LAUNCHER_PID"  # set by launch() for its workers: the process each one dies with
STOP_GRACE_S = 30  # a stopped worker still running after this (stuck in a collective) is ended; torchrun's own wait
PEER_WAIT_S = 5.0  # how long a worker whose collective failed waits for torchrun to stop it (see wait_to_be_stopped)
WORKER_STOP_SIGNALS = (signal.SIGINT, *STOP_SIGNALS)  # see stop_worker
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_stopped = False  # this worker was stopped by a signal: it leaves without the teardown barrier


def shares(n: int, world: int) -> list[tuple[int, int]]:
    """Contiguous shares of ``n`` items over ``world`` ranks: the first ``n % world`` get one more.

    >>> shares(10, 3)
    [(0, 4), (4, 7), (7, 10)]
    """
    if world > n:
        raise RnnvizError(f"{world} processes but only {n} stream(s) to share among them: use at most {n}")
    q, r = divmod(n, world)
    bounds = [i * q + min(i, r) for i in range(world + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


@dataclass(frozen=True)
class Group:
    """This process's place in the job. ``device`` is the one it computes on (``cuda:LOCAL_RANK``)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> tuple[int, int]:
        """This rank's contiguous share ``[lo, hi)`` of ``n`` streams."""
        return shares(n, self.world)[self.rank]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def all_reduce(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Reduce ``t`` over the ranks, in place (sum, min or max); returns it."""
        if self.world > 1:
            ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
            dist.all_reduce(t, op=ops[op])
        return t

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every rank (small picklable values only: a path, a float)."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def gather_streams(self, t: torch.Tensor, n: int) -> torch.Tensor:
        """Concatenate every rank's share of streams along dim 1: (L, hi - lo, H) -> (L, n, H), on all ranks."""
        if self.world == 1:
            return t
        bounds = shares(n, self.world)
        width = max(hi - lo for lo, hi in bounds)
        pad = torch.zeros(t.shape[0], width, *t.shape[2:], dtype=t.dtype, device=t.device)
        pad[:, : t.shape[1]] = t
        parts = [torch.empty_like(pad) for _ in bounds]
        dist.all_gather(parts, pad)  # equal sizes: gloo and NCCL both want them
        return torch.cat([p[:, : hi - lo] for p, (lo, hi) in zip(parts, bounds, strict=True)], 1)


def setup(device: torch.device) -> Group:
    """Join the process group torchrun prepared (once per process) and return this rank's :class:`Group`.

    ``device``: the device asked for; a CUDA rank computes on ``cuda:LOCAL_RANK``. The backend is NCCL
    on CUDA, gloo on CPU. Without torchrun (WORLD_SIZE unset or 1) nothing is initialised.
    """
    world = world_size()
    if world == 1:
        return Group(device=device)
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise RnnvizError(f"{world} processes on this machine but only {torch.cuda.device_count()} GPU(s)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_teardown)
        set_stop_handler(stop_worker, WORKER_STOP_SIGNALS)  # also when a library call, not the CLI, runs here
    return Group(rank=dist.get_rank(), world=dist.get_world_size(), device=device)


def _teardown() -> None:
    """Leave the group together: a rank that tears gloo down while another still talks to it can abort
    ("terminate called without an active exception"). The barrier gives up after 10 s (a rank that died).
    A worker stopped by a signal leaves at once, without the barrier (a rank that is gone would never join
    it, and ranks > 0 wait for it without a time limit) and without destroying the group (which could abort)."""
    if not dist.is_initialized():
        return
    if _stopped:
        remove_leftovers()  # os._exit skips the atexit hook that would (a temp a signal caught unarmed)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(STOPPED)
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=10))
    except RuntimeError:  # another rank is gone: torchrun is stopping the rest anyway
        pass
    dist.destroy_process_group()


def die_with_launcher() -> None:
    """Make this torchrun worker end when its launcher does, however the launcher ends (``kill -9`` too).

    The kernel is asked to send SIGTERM when the parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``; elsewhere
    nothing is set). Then the parent is checked: if it is no longer the launcher that started this worker
    (:data:`LAUNCHER_PID`, set by :func:`launch`; under a plain torchrun, the parent found here), the
    launcher died before the request was made and the signal will never come, so the worker exits now (130).
    """
    if not under_torchrun():
        return
    try:
        expected = int(os.environ[LAUNCHER_PID])
    except (KeyError, ValueError):
        expected = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    if os.getppid() != expected:
        raise SystemExit(STOPPED)


def stop_worker(signum: int, frame) -> None:
    """A worker's handler of :data:`WORKER_STOP_SIGNALS`. SIGTERM and SIGHUP (torchrun stops the other
    workers with SIGTERM when one fails; the kernel sends it when the launcher dies): unwind quietly (context
    managers remove temp files; the launcher says what happened) and exit 130. Ctrl-C (forwarded by the
    launcher): a KeyboardInterrupt, so that rank 0 says what was saved. Either way the worker leaves without
    the teardown barrier, and if it is still running :data:`STOP_GRACE_S` seconds later (stuck in a
    collective), SIGALRM ends it."""
    global _stopped
    _stopped = True
    signal.alarm(STOP_GRACE_S)  # SIGALRM's default action ends the process
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(STOPPED)


def wait_to_be_stopped(seconds: float = PEER_WAIT_S) -> None:
    """In a torchrun worker, before an unexpected error is shown: when another rank failed first, this
    rank's collective fails too ("Connection reset by peer") and its error is only the echo of that one;
    torchrun then stops this worker with SIGTERM within its monitor interval (:func:`stop_worker` ends it
    quietly). Waits up to ``seconds`` for that; returns if nothing came (the error is this rank's own). A
    worker already stopped (its error met on the way out, a collective whose peer left first) ends now, 130."""
    if _stopped:
        raise SystemExit(STOPPED)
    if world_size() > 1:
        time.sleep(seconds)


def check_nproc(nproc: int, streams: int, device: str, option: str) -> None:
    """The errors ``--nproc N`` can meet, checked before any process starts (``option`` sets the streams)."""
    if nproc < 1:
        raise RnnvizError(f"--nproc must be >= 1, got {nproc}")
    if world_size() > 1:
        raise RnnvizError("--nproc launches torchrun: leave it out when torchrun already started this process")
    if nproc > streams:
        raise RnnvizError(f"--nproc {nproc} is more processes than the {streams} stream(s) to share: use at most "
                          f"{streams}, or more streams ({option})")
    gpus = torch.cuda.device_count() if device != "cpu" and torch.cuda.is_available() else 0
    if gpus and nproc > gpus:
        raise RnnvizError(f"--nproc {nproc} but this machine has {gpus} GPU(s): use at most {gpus}, "
                          "or --device cpu")


def launch(nproc: int, args: list[str]) -> int:
    """Run ``torchrun --standalone --nproc-per-node nproc -m rnnviz ARGS`` (torch's launcher, in-process).

    Returns the exit status: 0, or the first failed rank's status after its own ``Error:`` line; a rank
    killed by a signal is a :class:`RnnvizError` that names it. Stopped by SIGTERM or SIGHUP (torchrun
    forwards the signal, the workers stop quietly), or a worker stopped by one, raises KeyboardInterrupt:
    the command ends as Ctrl-C ends it (exit 130). A Ctrl-C reaches the workers too (rank 0 reports it):
    130. The workers learn this process's id (:data:`LAUNCHER_PID`) to die with it (:func:`die_with_launcher`).
    """
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # torchrun's agent logs every failure with a traceback, and a signal it forwards; the rank's own message
    # is the useful one. Each of its modules sets its own logger's level: quiet them all.
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("torch.distributed.elastic")]:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # what torchrun would pick, without its warning
    targs = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "rnnviz"])
    targs.training_script_args = args  # set here: torchrun's parser would take --start for its --start-method
    if hasattr(targs, "signals_to_handle") and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        targs.signals_to_handle = "SIGTERM,SIGINT,SIGQUIT"  # under nohup, SIGHUP stays ignored (torch >= 2.8)
    os.environ[LAUNCHER_PID] = str(os.getpid())
    try:
        run(targs)
    except SignalException as e:  # this launcher was signalled: torchrun has stopped the workers
        if e.sigval == signal.SIGINT:
            return STOPPED
        if e.sigval in STOP_SIGNALS:
            raise KeyboardInterrupt from None
        return 128 + int(e.sigval)
    except ChildFailedError as e:
        rank_, failure = e.get_first_failure()
        if failure.exitcode < 0:
            raise RnnvizError(f"rank {rank_} died ({failure.signal_name()})") from None
        if failure.exitcode == STOPPED:  # a worker was stopped by a signal: the job was interrupted
            raise KeyboardInterrupt from None
        return failure.exitcode
    finally:
        os.environ.pop(LAUNCHER_PID, None)
    return 0
