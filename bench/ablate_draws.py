"""How fast `rnnviz ablate` runs its random-unit control: the draws side by side through the streams, against one
clamped pass per draw (what ablate did before the draws were batched).

Loads --ckpt (default: the bundled War and Peace model; a random LSTM of --hidden units when it is absent), cuts
the first --chars characters of War and Peace (generated text when the corpus is absent) into ablate's streams,
draws --draws random units of --layer's h (seeded, as ablate draws them for one unit), and times, in this one
process on one torch thread (wall and CPU time: the machine may be shared): ``one by one``, one clamped run of
the streams per draw; ``side by side``, the same draws as copies of the streams with a per-row clamp
(:data:`rnnviz.analysis.causal.DRAW_ROWS` rows at a time). Prints both, their ratio and the largest difference
between the draws' loss changes (float rounding only).

    .venv/bin/python bench/ablate_draws.py                        # 20,000 chars, 20 draws of layer 1
    .venv/bin/python bench/ablate_draws.py --chars 5000 --draws 50
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from _common import ROOT, corpus_text

import rnnviz
from rnnviz.analysis.causal import DRAW_ROWS, draw_units, unit_name
from rnnviz.analysis.clamped import Streams, clamp_for, row_clamp
from rnnviz.model.charrnn import CharRNN, ModelConfig
from rnnviz.model.vocab import Vocab
from rnnviz.threads import torch_threads

FALLBACK = 'He said, "It is so." Then she went out into the dark road.\n' * 50


def load(ckpt: Path, hidden: int, text: str) -> CharRNN:
    if (ckpt / "config.json").exists():
        return rnnviz.load_checkpoint(ckpt, device="cpu")
    torch.manual_seed(0)
    vocab = Vocab.from_text(text)
    return CharRNN(ModelConfig(vocab_size=len(vocab), cell="lstm", layers=2, hidden=hidden), vocab).eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", type=Path, default=ROOT / "sample_models" / "war-and-peace-lstm-2x256")
    p.add_argument("--hidden", type=int, default=64, help="units of the random LSTM used without --ckpt")
    p.add_argument("--chars", type=int, default=20000)
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--layer", type=int, default=1)
    a = p.parse_args()
    text = corpus_text("war_and_peace.txt", a.chars, FALLBACK)
    model = load(a.ckpt, a.hidden, text)
    ids = model.vocab.encode(model.vocab.prepare(text, "skip"))
    with torch.no_grad(), torch_threads(1):
        runs = Streams(model, ids, int(np.clip(len(ids) // 1000, 1, 64)), 200, a.layer, 1, None)
        clean = runs.clean()
        drawn = draw_units([(a.layer, "h", 0)], model.config, np.random.default_rng(0), a.draws)
        t0, c0 = time.perf_counter(), time.process_time()
        one = [(runs.run(clamp_for(d, runs.lo, 0.0, None, runs.dev))[0][0] - clean).mean() for d in drawn]
        t_one, c_one = time.perf_counter() - t0, time.process_time() - c0
        t0, c0, side, per = time.perf_counter(), time.process_time(), [], max(1, DRAW_ROWS // runs.B)
        for s in range(0, len(drawn), per):
            batch = drawn[s : s + per]
            clamp = row_clamp(batch, runs.B, model.config.hidden, runs.lo, 0.0, None, runs.dev)
            side += list((runs.run(clamp, copies=len(batch))[0] - clean).mean(axis=1))
        t_side, c_side = time.perf_counter() - t0, time.process_time() - c0
    print(f"{len(ids):,} chars in {runs.B} streams of {runs.S:,} steps; {len(drawn)} draws of one unit "
          f"({unit_name(drawn[0][0], True)}, ...) zeroed, layers {a.layer}.. stepped, on one thread")
    print(f"one by one   : {t_one:.2f} s ({t_one / len(drawn):.3f} s per draw; CPU {c_one:.2f} s)")
    print(f"side by side : {t_side:.2f} s ({t_side / len(drawn):.3f} s per draw; CPU {c_side:.2f} s)")
    print(f"ratio ours/one by one : {t_side / t_one:.3f} (CPU time: {c_side / c_one:.3f}; load average "
          f"{os.getloadavg()[0]:.1f})")
    print(f"max |difference| of the draws' loss change: {np.abs(np.array(one) - np.array(side)).max():.2e} nats/char")


if __name__ == "__main__":
    main()
