"""Data-parallel throughput: chars/s of `rnnviz train` and `rnnviz record` in 1 and N processes (torchrun).

The global work is fixed (strong scaling): the same global batch of streams is shared among the
processes. Prints chars/s per process count and the scaling efficiency, chars/s(N) / (N x chars/s(1)).
On CPU each process gets one thread (OMP_NUM_THREADS=1, torchrun's default); on a machine with N GPUs
pass --device cuda and each process drives one GPU.

    python bench/distributed_throughput.py                          # CPU, 1 and 2 processes
    python bench/distributed_throughput.py --device cuda --nproc 1 2 4 8 --hidden 512 --batch 256
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "data" / "tiny_shakespeare.txt"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def torchrun(nproc: int, args: list) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "rnnviz", *map(str, args)]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])


def train_rate(nproc: int, text: Path, tmp: Path, a) -> float:
    """Median chars/s over the logged intervals after the first (start-up) one."""
    run = tmp / f"train{nproc}"
    torchrun(nproc, ["train", text, "--out", run, "--layers", a.layers, "--hidden", a.hidden, "--batch", a.batch,
                     "--seq-len", a.seq_len, "--max-steps", a.steps, "--eval-every", 10**9, "--log-every", 10,
                     "--device", a.device])
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return statistics.median(r["chars_per_s"] for r in rows[1:-1])  # the last one includes the validation


def record_rate(nproc: int, text: Path, tmp: Path, a) -> float:
    store = tmp / f"store{nproc}"
    torchrun(nproc, ["record", ROOT / "sample_models" / "shakespeare-lstm-2x128", text, "--out", store,
                     "--length", a.record_chars, "--streams", a.streams, "--kinds", "all", "--unknown", "skip",
                     "--device", a.device])
    return json.loads((store / "manifest.json").read_text())["recorder"]["chars_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    p.add_argument("--device", default="cpu")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=64, help="global batch (streams), shared among the processes")
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--record-chars", type=int, default=200_000)
    p.add_argument("--streams", type=int, default=64, help="recording streams, shared among the processes")
    a = p.parse_args()
    print(f"device {a.device}, LSTM {a.layers}x{a.hidden}, global batch {a.batch} x seq {a.seq_len}, "
          f"{a.steps} steps; recording {a.record_chars:,} chars of tiny Shakespeare in {a.streams} streams")
    with tempfile.TemporaryDirectory() as tmp:
        text = CORPUS
        if not CORPUS.exists():
            text = Path(tmp) / "text.txt"
            text.write_text("the quick brown fox jumps over the lazy dog.\n" * 40000)
        for name, rate in (("train", train_rate), ("record", record_rate)):
            base = None
            for n in a.nproc:
                r = rate(n, text, Path(tmp), a)
                base = base or r  # the first count given (1 by default) is the reference
                eff = r / (n / a.nproc[0] * base)
                print(f"{name:6s} {n} process(es): {r / 1e3:8.1f}k chars/s   scaling efficiency {eff:.2f}")


if __name__ == "__main__":
    main()
