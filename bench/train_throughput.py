"""Training throughput: our trainer vs a bare ``nn.LSTM`` train step, side by side in one process.

Both train the same model (one-hot input, L x H LSTM, linear read-out) with the same batch, sequence
length, optimizer (AdamW), clipping, precision and device. Prints chars/s for each and the ratio
ours / bare (goal >= 0.9).

    python bench/train_throughput.py                                   # CPU, 2 x 128
    python bench/train_throughput.py --device cuda --layers 3 --hidden 512 --batch 128 --seq-len 128
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rnnviz.devices import resolve_device
from rnnviz.model.trainer import TrainConfig, pick_amp, train

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "data" / "tiny_shakespeare.txt"


def bare(vocab: int, a, device, amp, steps: int) -> float:
    """chars/s of the plainest possible loop over random ids (no data pipeline, no logging)."""
    torch.manual_seed(0)
    rnn = nn.LSTM(vocab, a.hidden, a.layers, batch_first=True).to(device)
    head = nn.Linear(a.hidden, vocab).to(device)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.0)
    ids = torch.randint(0, vocab, (a.batch, a.seq_len + 1), device=device)
    state, times = None, []
    for i in range(steps + a.warmup):
        t0 = time.perf_counter()
        x = F.one_hot(ids[:, :-1], vocab).float()
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            out, state = rnn(x, state)
            loss = F.cross_entropy(head(out).flatten(0, 1).float(), ids[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        state = tuple(s.detach() for s in state)
        if i % a.log_every == a.log_every - 1:
            loss.item()  # the same one sync per log interval as our trainer
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    return a.batch * a.seq_len / statistics.median(times)


def ours(a, steps: int) -> float:
    """chars/s reported by :func:`rnnviz.model.trainer.train` per log interval (median over intervals)."""
    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        text = CORPUS if CORPUS.exists() else Path(tmp) / "text.txt"
        if not CORPUS.exists():
            text.write_text("the quick brown fox jumps over the lazy dog.\n" * 40000)
        cfg = TrainConfig(layers=a.layers, hidden=a.hidden, batch=a.batch, seq_len=a.seq_len, lr=2e-3,
                          max_steps=steps + a.warmup, eval_every=10**9, log_every=a.log_every, sample_chars=0,
                          device=a.device, amp=a.amp)
        train(text, Path(tmp) / "run", cfg, callback=lambda ev: rates.append(ev["chars_per_s"])
              if ev["type"] == "step" and ev["step"] > a.warmup else None)
    return statistics.median(rates[:-1] or rates)  # the last interval is cut short by the final validation


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="auto")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2, help="alternate bare/ours this many times (noise)")
    a = p.parse_args()
    device = resolve_device(a.device)
    amp = pick_amp(a.amp, device)
    vocab = 65
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device {name}, torch {torch.__version__}, LSTM {a.layers}x{a.hidden}, batch {a.batch} x seq "
          f"{a.seq_len}, amp {amp or 'off'}, {a.steps} timed steps")
    b_rates, o_rates = [], []
    for _ in range(a.rounds):  # interleave so that machine noise hits both alike
        b_rates.append(bare(vocab, a, device, amp, a.steps))
        o_rates.append(ours(a, a.steps))
    b, o = max(b_rates), max(o_rates)
    print(f"bare nn.LSTM step : {b / 1e3:9.1f}k chars/s  ({a.batch * a.seq_len / b * 1e3:.2f} ms/step)")
    print(f"rnnviz trainer    : {o / 1e3:9.1f}k chars/s  ({a.batch * a.seq_len / o * 1e3:.2f} ms/step)")
    print(f"ratio ours/bare   : {o / b:.3f}")


if __name__ == "__main__":
    main()
