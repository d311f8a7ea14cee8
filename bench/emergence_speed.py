"""Emergence speed: ``rnnviz.emergence`` over 50 snapshots x 100k characters (issue 14's target: < 5 minutes
on the project's 2-core CPU), beside a baseline measured on a few snapshots in the same process.

    .venv/bin/python bench/emergence_speed.py                      # 2x256 LSTM, 50 snapshots, 100k chars
    .venv/bin/python bench/emergence_speed.py --snapshots 5 --chars 20000   # a quick look
    .venv/bin/python bench/emergence_speed.py --kinds h                     # h only: no gate recompute

The run is made up: a 2x256 LSTM's ``last/`` checkpoint and N float16 snapshots of random weights
(speed does not depend on the weights). The text is War and Peace (random words when the corpus is absent);
features in_quote and column. "ours" is ``emergence()`` as ``rnnviz emergence`` runs it (fast recorder path,
burn-in 250, h and c of both layers, into a temporary store; ranking). The baseline is what a user would do
with the existing commands for each snapshot: ``rnnviz record`` with its defaults (burn-in 1000, top-5
predictions) and ``rnnviz find`` for the features; it is timed on ``--baseline-snapshots`` snapshots and
given per snapshot. Printed: total seconds, seconds per snapshot, characters recorded per second, ratio;
and the floor: the FLOPs the model needs (LSTM 2·4H·(D+H) per layer per character, D = the layer's input
size: V for layer 0, as in record_throughput.py) over every snapshot, at the float32 matmul rate measured
before and after (on a shared machine that rate is what this process was given).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import DATA

from rnnviz.analysis.emergence import emergence
from rnnviz.analysis.ranking import rank_features
from rnnviz.model.charrnn import CharRNN, ModelConfig
from rnnviz.model.checkpoint import save_checkpoint
from rnnviz.model.snapshots import list_snapshots, load_snapshot_weights, save_snapshot
from rnnviz.model.vocab import Vocab
from rnnviz.recording.recorder import record

CORPUS = DATA / "war_and_peace.txt"
FEATURES = ["in_quote", "column"]


def make_text(chars: int) -> str:
    if CORPUS.exists():
        return CORPUS.read_text(encoding="utf-8")[100_000 : 100_000 + chars]
    rng = np.random.default_rng(0)
    words = ["the ", "war ", '"Yes," ', "said ", "Pierre", ".\n", "and ", "peace "]
    return "".join(rng.choice(words, chars // 4))[:chars]


def make_run(run: Path, text: str, n: int, layers: int, hidden: int) -> None:
    vocab = Vocab.from_text(text)
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(len(vocab), "lstm", layers, hidden), vocab).eval()
    save_checkpoint(model, run / "last")
    for k in range(1, n + 1):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.02 * torch.randn_like(p))  # a drifting random walk, like weights in training
        save_snapshot(model, run, 100 * k, 10.0 * k, 3.0 - k / n)


def baseline(run: Path, text: str, n: int) -> float:
    """Seconds per snapshot: `rnnviz record` defaults into a store, then `rnnviz find` for the features."""
    from rnnviz.model.checkpoint import load_checkpoint

    model = load_checkpoint(run / "last")
    t0 = time.perf_counter()
    for snap in list_snapshots(run)[:n]:
        load_snapshot_weights(model, snap)
        with tempfile.TemporaryDirectory() as tmp:
            store = record(model, text, Path(tmp) / "s")
            rank_features(store, FEATURES, top=10)
            del store
    return (time.perf_counter() - t0) / n


def matmul_gflops(n: int = 1024, reps: int = 5) -> float:
    """The machine's float32 matmul rate right now (GFLOP/s): how much CPU this process is getting."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--snapshots", type=int, default=50)
    p.add_argument("--chars", type=int, default=100_000)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--baseline-snapshots", type=int, default=2, help="snapshots the baseline is timed on (0: none)")
    p.add_argument("--kinds", default=None, help="kinds recorded and ranked (default h,c; h alone skips the gates)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    text = make_text(a.chars)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        make_run(run, text, a.snapshots, a.layers, a.hidden)
        print(f"{a.snapshots} snapshots of a {a.layers}x{a.hidden} LSTM x {len(text):,} chars, features "
              f"{', '.join(FEATURES)}; kinds {a.kinds or 'h,c'}; {torch.get_num_threads()} torch thread(s); matmul now "
              f"{(rate0 := matmul_gflops()):.1f} GFLOP/s", flush=True)
        t0 = time.perf_counter()
        done = [t0]

        def progress(k: int, n: int) -> None:
            now = time.perf_counter()
            print(f"  snapshot {k}/{n}: {now - done[0]:.1f} s", flush=True)
            done[0] = now

        df = emergence(run, text, FEATURES, kinds=a.kinds, progress=progress)
        total = time.perf_counter() - t0
        per = total / a.snapshots
        print(f"ours: {total:.1f} s in all ({total / 60:.2f} min; target < 5 min for 50 x 100k), "
              f"{per:.2f} s per snapshot, {a.snapshots * len(text) / total / 1e3:.1f}k chars/s recorded and ranked "
              f"({len(df)} rows)", flush=True)
        rate = (rate0 + matmul_gflops()) / 2
        V = len(set(text))  # make_run builds the vocabulary from the text
        flops = a.snapshots * len(text) * sum(2 * 4 * a.hidden * ((V if l == 0 else a.hidden) + a.hidden)
                                              for l in range(a.layers))
        print(f"floor: {flops / 1e12:.2f} TFLOP at {rate:.1f} GFLOP/s (matmul, mean of before and after) = "
              f"{flops / rate / 1e9:.0f} s; ours / floor = {total / (flops / rate / 1e9):.2f}", flush=True)
        if a.baseline_snapshots:
            base = baseline(run, text, min(a.baseline_snapshots, a.snapshots))
            print(f"baseline (record defaults + find, per snapshot): {base:.2f} s; ours / baseline = "
                  f"{per / base:.2f} (time per snapshot)")


if __name__ == "__main__":
    main()
