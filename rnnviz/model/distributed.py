"""Data parallelism with PyTorch's own engine: torch.distributed, launched by torchrun.

A process started by ``torchrun --nproc-per-node N -m rnnviz ...`` finds RANK, WORLD_SIZE and
LOCAL_RANK in its environment; :func:`setup` joins the process group (NCCL on CUDA, gloo on CPU) and
returns a :class:`Group` that the trainer and the recorder use to split their streams and to reduce
what must be global. Without torchrun, :func:`setup` returns the one-process group (``world == 1``)
and every helper is a no-op, so the single-process code path is unchanged.

:func:`launch` is what ``rnnviz train --nproc N`` runs: torchrun's own launcher, in this process.
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass

import torch
import torch.distributed as dist

from rnnviz.errors import RnnvizError


def world_size() -> int:
    """Processes in the job torchrun started (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


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
        _stop_cleanly_on_sigterm()
    return Group(rank=dist.get_rank(), world=dist.get_world_size(), device=device)


def _teardown() -> None:
    """Leave the group together: a rank that tears gloo down while another still talks to it can abort
    ("terminate called without an active exception"). The barrier gives up after 10 s (a rank that died)."""
    if not dist.is_initialized():
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=10))
    except RuntimeError:  # another rank is gone: torchrun is stopping the rest anyway
        pass
    dist.destroy_process_group()


def _stop_cleanly_on_sigterm() -> None:
    """torchrun stops the other workers with SIGTERM when one fails: unwind (temp files are removed by
    their context managers) instead of dying on the spot."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


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
    killed by a signal is a :class:`RnnvizError` that names it.
    """
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # torchrun's agent logs every failure with a traceback; the rank's own message is the useful one.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # what torchrun would pick, without its warning
    targs = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "rnnviz"])
    targs.training_script_args = args  # set here: torchrun's parser would take --start for its --start-method
    try:
        run(targs)
    except SignalException as e:  # Ctrl-C (or a kill) of this launcher: torchrun has stopped the workers
        return 128 + int(e.sigval)
    except ChildFailedError as e:
        rank_, failure = e.get_first_failure()
        if failure.exitcode < 0:
            raise RnnvizError(f"rank {rank_} died ({failure.signal_name()})") from None
        return failure.exitcode
    return 0
