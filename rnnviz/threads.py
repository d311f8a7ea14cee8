"""How many torch intra-op threads a step loop runs on: ``torch_threads`` sets the count for a block and
restores it after; :func:`choose_threads` picks it from the work's matrix sizes and the machine's load.

A recurrent step loop runs one small GEMM per layer per step, each ended by an OpenMP barrier. On an idle
machine a second thread helps once the GEMMs are large (about 1.5x at 64 streams of 256 units); with one
other busy process it is ~1.6x slower than one thread, and at load 10-15 ~19x slower: a thread that waits
at the barrier for a descheduled sibling wastes its turn. So more than one thread only where the GEMM is
large enough to pay for the barrier and the cores are free: the loss on a busy machine is far larger than
the gain on an idle one.

Which cores are free is read from what runs now (Linux: the kernel's count of running tasks less this
process's own threads), not the 1-minute load average: that trails a process started a few seconds ago
by a minute, and counts this process's own work of the minute before as somebody else's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from rnnviz.allocator import keep_freed_memory
from rnnviz.errors import RnnvizError
from rnnviz.model.cells import STEP_GEMM

THREADS_ENV = "OMP_NUM_THREADS"  # the standard override (torch reads it at start-up too): its value is the default


@dataclass(frozen=True)
class ThreadPolicy:
    """When :func:`choose_threads` gives a step loop more than one thread."""

    parallel_flops: float = 4e6  # a step GEMM smaller than this (~30 us on one core) runs on one thread
    busy: float = 0.5  # cores counted free: those not taken by other processes' running tasks, rounded (0.5 up)
    samples: int = 5  # reads of the running count, 2 ms apart: a process busy half the time shows in one of five


POLICY = ThreadPolicy()


def step_gemm_flops(cell: str, hidden: int, rows: int) -> float:
    """FLOPs of one step's recurrent GEMM, (rows, hidden) x (hidden, gates·hidden): the op each step waits on.
    ``rows``: the parallel streams (a batch)."""
    return 2.0 * rows * hidden * STEP_GEMM[cell] * hidden


def usable_cores() -> int:
    """The cores this process may run on, shared among torchrun's processes on this machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))


def choose_threads(gemm_flops: float, requested: int | None = None, policy: ThreadPolicy = POLICY) -> int:
    """Intra-op threads for a step loop whose GEMMs are ``gemm_flops`` each (:func:`step_gemm_flops`).

    ``requested`` (``--threads``) wins, then ``OMP_NUM_THREADS``; otherwise one thread when the GEMMs are
    small or no second core is free (the load average), else one per free core."""
    if requested is not None:
        return check_threads(requested)
    env = os.environ.get(THREADS_ENV, "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    cores = usable_cores()
    if cores == 1 or gemm_flops < policy.parallel_flops:
        return 1
    busy = others_running(policy.samples)
    if busy is None:  # no /proc: the 1-minute load average, every runnable task, niced ones too
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):  # not on this system either: nothing known to be busy
            busy = 0.0
    return max(1, min(cores, int(cores - busy + policy.busy)))


def others_running(samples: int = 5, gap: float = 0.002) -> int | None:
    """Tasks of other processes running or runnable now: the kernel's count (``/proc/loadavg``) less this
    process's own running threads, the most of ``samples`` reads ``gap`` seconds apart. None without /proc."""
    most = 0
    try:
        for k in range(samples):
            if k:
                time.sleep(gap)
            with open("/proc/loadavg", encoding="ascii") as f:
                running = int(f.read().split()[3].split("/")[0])
            most = max(most, running - own_running())
    except (OSError, ValueError, IndexError):
        return None
    return most


def own_running() -> int:
    """This process's threads that are running or runnable (state R in /proc/self/task/*/stat): the one
    reading, and any torch thread still spinning after its last parallel region."""
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii", errors="replace") as f:
                n += f.read().rpartition(")")[2].split()[0] == "R"
        except (OSError, IndexError):  # the thread ended meanwhile
            continue
    return n


def check_threads(n: int) -> int:
    """``n`` if it is a thread count (>= 1), else the one-line error."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise RnnvizError(f"--threads must be a whole number >= 1, got {n!r}")
    return n


@contextmanager
def torch_threads(n: int = 1) -> Iterator[int]:
    """Run torch with ``n`` intra-op threads inside; yields the previous count. Step-by-step loops of
    small ops run several times faster on one thread (no OpenMP barrier per op), more so on a busy
    machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield max(1, old)
    finally:
        torch.set_num_threads(old)


@contextmanager
def step_loop(n: int) -> Iterator[int]:
    """:func:`torch_threads` for a recurrent step loop (record, eval, train, ablate), with the allocator set
    to reuse the blocks the loop frees (:func:`rnnviz.allocator.keep_freed_memory`, once per process)."""
    keep_freed_memory()
    with torch_threads(n) as old:
        yield old
