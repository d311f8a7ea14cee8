"""The thread policy: an explicit count wins, then OMP_NUM_THREADS; else one thread for small GEMMs or a busy
machine, one per free core otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch
from conftest import TEXT

from rnnviz import threads
from rnnviz.errors import RnnvizError
from rnnviz.threads import choose_threads, step_gemm_flops

BIG = step_gemm_flops("lstm", 256, 64)  # the recorder's 64 streams of a 2x256 LSTM


@pytest.fixture
def machine(monkeypatch):
    """set(cores, busy, proc=True): a machine of that many cores where ``busy`` tasks of other processes run
    now (``proc``), or without /proc at that 1-minute load average; no thread variables."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)

    def set_(cores: int, busy: float, proc: bool = True) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
        monkeypatch.setattr(threads, "others_running", lambda samples: busy if proc else None)
        monkeypatch.setattr(os, "getloadavg", lambda: (99.0,) * 3 if proc else (busy,) * 3)

    return set_


def test_step_gemm_flops():
    assert step_gemm_flops("lstm", 256, 64) == 2 * 64 * 256 * 1024 == BIG
    assert step_gemm_flops("gru", 10, 3) == 2 * 3 * 10 * 30
    assert step_gemm_flops("rnn", 10, 3) == 2 * 3 * 10 * 10


@pytest.mark.parametrize(("cores", "busy", "want"), [
    (2, 0, 2), (2, 1, 1), (2, 12, 1),  # one busy process: no second thread
    (4, 0, 4), (4, 2, 2), (4, 3, 1), (4, 9, 1), (1, 0, 1),
])
def test_threads_follow_the_free_cores_now(machine, cores, busy, want):
    """The running count decides, whatever the load average (set to 99 here)."""
    machine(cores, busy)
    assert choose_threads(BIG) == want


@pytest.mark.parametrize(("cores", "load", "want"), [
    (2, 0.0, 2), (2, 0.49, 2), (2, 0.51, 1), (2, 1.0, 1), (4, 0.2, 4), (4, 1.7, 2), (4, 3.6, 1),
])
def test_without_proc_the_load_average_decides(machine, cores, load, want):
    machine(cores, load, proc=False)
    assert choose_threads(BIG) == want


def test_a_busy_process_is_seen_at_once_and_our_own_threads_are_not_counted():
    """A competitor started a moment ago counts (the load average would take a minute); a thread of ours
    that spins is ours, not another process's."""
    import threading

    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        assert threads.own_running() >= 2  # the reader and the spinner
    finally:
        stop.set()
        spinner.join()
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert threads.others_running(samples=5) >= 1
    finally:
        spin.kill()
        spin.wait()


def test_small_gemms_run_on_one_thread_even_when_idle(machine):
    machine(8, 0)
    assert choose_threads(step_gemm_flops("lstm", 128, 1)) == 1  # eval's one stream, exact recording
    assert choose_threads(threads.POLICY.parallel_flops) == 8


def test_requested_then_environment_then_policy(machine, monkeypatch):
    machine(2, 9)
    assert choose_threads(BIG, 2) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads(BIG) == 3 and choose_threads(BIG, 1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")  # not a count: the policy decides
    assert choose_threads(BIG) == 1


def test_torchrun_processes_share_the_cores(machine, monkeypatch):
    machine(4, 0)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert choose_threads(BIG) == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_thread_count(bad):
    with pytest.raises(RnnvizError, match=rf"^--threads must be a whole number >= 1, got {bad!r}$"):
        choose_threads(BIG, bad)


def test_evaluate_runs_on_the_chosen_count_and_restores_it(make_model, machine, monkeypatch):
    from rnnviz.model.trainer import evaluate

    machine(2, 0.0)
    model = make_model("lstm", 1, 8)
    seen = []
    real = model.forward
    monkeypatch.setattr(model, "forward", lambda *a: seen.append(torch.get_num_threads()) or real(*a))
    before = torch.get_num_threads()
    ids = model.vocab.encode(TEXT[:60])
    assert evaluate(model, ids, threads=2) == pytest.approx(evaluate(model, ids), rel=1e-6)
    assert seen == [2, 1] and torch.get_num_threads() == before  # tiny GEMMs: one thread by default


FAULTS = """
import resource, sys, torch
from rnnviz.threads import step_loop
x = torch.ones(50, 487, 128)  # 12.5 MB: a recording block's (B, S, H) float32, under the 32 MB mmap ceiling
def block():  # three such tensors alive at once, then freed, as in a block of the recorder's gate recomputation
    a = x * 2
    b = a.sigmoid()
    return float(b.tanh().sum())
with step_loop(1):
    for _ in range(3):
        block()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        block()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_a_step_loop_reuses_freed_blocks_instead_of_faulting_them_in_again():
    """Inside step_loop, freed tensor blocks are reused: page faults are a few per cent of the pages the loop
    allocates (glibc's default gives back and faults in again about half of them)."""
    from rnnviz.allocator import keep_freed_memory

    if not keep_freed_memory():
        pytest.skip("not glibc: mallopt is not there")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    faults = int(subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True,
                                env=env).stdout)
    pages = 20 * 3 * (50 * 487 * 128 * 4 // 4096)
    assert faults < 0.1 * pages, (faults, pages)
