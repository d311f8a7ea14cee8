"""Torch threads: torch's default (one per core) vs rnnviz's choice (:func:`rnnviz.threads.choose_threads`),
side by side in one process, as the machine is and again with a competing busy process started by this
benchmark.

    .venv/bin/python bench/thread_policy.py               # 2x128 LSTM: record, eval and train steps
    .venv/bin/python bench/thread_policy.py --hidden 256 --chars 50000

Each workload runs with 1 thread and with torch's default; the policy's line is the count it picks at that
moment (from the step GEMM's size and the load average, which trails a new process by a minute: the
competitor is started ``--settle`` seconds before its phase). Printed per workload and phase: wall seconds
of each, CPU seconds, and the ratio default ÷ policy (> 1: the policy is faster). The load average is
printed with each phase: on a shared machine, "as it is" is itself busy.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from _common import competing_process, corpus_text, load_average

from rnnviz.model.charrnn import CharRNN, ModelConfig
from rnnviz.model.trainer import evaluate
from rnnviz.model.vocab import Vocab
from rnnviz.recording.recorder import record, stream_layout
from rnnviz.threads import choose_threads, step_gemm_flops, torch_threads

DEFAULT = torch.get_num_threads()  # torch's own choice at start-up: one per core


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of fn()."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def workloads(model: CharRNN, text: str, args, tmp: str) -> dict:
    """name -> (run(threads), rows of its step GEMM)."""
    ids = model.vocab.encode(text)
    B = stream_layout(len(text), args.burn_in, None, False, "cpu")[0]
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.from_numpy(ids[: args.batch * 101].reshape(args.batch, 101).astype("int64"))

    def rec(n):
        record(model, text, tmp, kinds="h,c", burn_in=args.burn_in, overwrite=True, threads=n)

    def train_steps(n):
        with torch_threads(n):
            for _ in range(args.steps):  # what the trainer's step does: forward, backward, update
                logits, _ = model(x[:, :-1])
                loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
                opt.zero_grad()
                loss.backward()
                opt.step()

    return {
        f"record h,c ({B} streams)": (rec, B),
        "eval (1 stream)": (lambda n: evaluate(model, ids, streams=1, threads=n), 1),
        f"eval ({args.eval_streams} streams)": (lambda n: evaluate(model, ids, args.eval_streams, threads=n),
                                                 args.eval_streams),
        f"train steps (batch {args.batch})": (train_steps, args.batch),
    }


def phase(title: str, model, text, args, tmp: str) -> None:
    print(f"\n{title}: load average {load_average()}; {os.cpu_count()} CPU cores")
    for name, (run, rows) in workloads(model, text, args, tmp).items():
        pick = choose_threads(step_gemm_flops(model.config.cell, model.config.hidden, rows))
        run(1)  # warm-up (allocations, one-time kernel setup)
        seconds = {n: timed(lambda n=n, run=run: run(n)) for n in sorted({1, DEFAULT, pick})}
        (w1, c1), (wd, cd), (wp, _) = seconds[1], seconds[DEFAULT], seconds[pick]
        print(f"  {name:<26s} 1 thread {w1:6.2f} s ({c1:5.2f} CPU-s)  default {DEFAULT} threads {wd:6.2f} s "
              f"({cd:5.2f} CPU-s)  policy picks {pick}: default / policy {wd / wp:5.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--chars", type=int, default=20000, help="text recorded and evaluated")
    p.add_argument("--burn-in", type=int, default=1000)
    p.add_argument("--eval-streams", type=int, default=64)
    p.add_argument("--batch", type=int, default=64, help="training batch (streams)")
    p.add_argument("--steps", type=int, default=5, help="training steps of 100 characters")
    p.add_argument("--settle", type=float, default=20.0, help="seconds the competitor runs before its phase")
    p.add_argument("--dir", default="/tmp/rnnviz-thread-policy", help="where the recorded store goes")
    args = p.parse_args()
    text = corpus_text("tiny_shakespeare.txt", max(args.chars, args.batch * 101), "abcdefgh ij\n" * 100)
    vocab = Vocab.from_text(text)
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=len(vocab), cell="lstm", layers=args.layers, hidden=args.hidden), vocab)
    print(f"model: lstm {args.layers}x{args.hidden}; {len(text):,} chars; torch {torch.__version__}")
    phase("as the machine is", model, text, args, args.dir)
    with competing_process(args.settle):
        phase("with one competing busy process", model, text, args, args.dir)


if __name__ == "__main__":
    main()
