"""Modern recurrent cells against the LSTM of about the same parameter count, side by side in one process.

For each cell (the sizes of the comparison in README "Modern recurrent models": LSTM 2x256, minGRU 3x160,
Mamba 4x176, sLSTM 2x288, about 0.88-0.90 M parameters with a vocabulary of 84):

- training chars/s: forward, backward and an AdamW step on (batch, seq_len) random ids with the state carried,
  the trainer's inner loop; ratio to the LSTM (> 1 = faster than the LSTM);
- recording chars/s: ``rnnviz.record`` of every kind over ``--chars`` characters against the same model's plain
  forward over them (no internals), the recorder's overhead as a ratio (ours / forward, 1 = free).

Runs interleaved, best of ``--repeat``, on ``--threads`` torch threads (one by default: a busy machine).

    .venv/bin/python bench/modern_speed.py                  # CPU
    .venv/bin/python bench/modern_speed.py --device cuda --threads 0
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import rnnviz
from rnnviz.model.charrnn import CharRNN, ModelConfig
from rnnviz.model.vocab import Vocab
from rnnviz.threads import torch_threads

SIZES = {"lstm": (2, 256), "mingru": (3, 160), "mamba": (4, 176), "slstm": (2, 288)}
TEXT = "The quick brown fox, \"jumps\" over (the) lazy dog;\n  if (x) { y = z; } /* comment */\n"


def _model(cell: str, vocab: Vocab, device: str) -> CharRNN:
    torch.manual_seed(0)
    layers, hidden = SIZES[cell]
    return CharRNN(ModelConfig(len(vocab), cell, layers, hidden), vocab).to(device)


def train_speed(model: CharRNN, batch: int, seq_len: int, steps: int) -> float:
    """chars/s of the trainer's inner loop (the first step is a warm-up, not timed)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq_len + 1), device=model.device)
    state, t0 = None, 0.0
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        logits, state = model(ids[:, :-1], state)
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch * seq_len / (time.perf_counter() - t0)


@torch.no_grad()
def forward_speed(model: CharRNN, text: str) -> float:
    """chars/s of the plain forward over ``text`` as one stream, 512 characters a call (the recorder's chunk)."""
    ids = torch.from_numpy(model.vocab.encode(text)).long().to(model.device)[None]
    t0, state = time.perf_counter(), None
    for a in range(0, ids.shape[1], 512):
        _, state = model(ids[:, a : a + 512], state)
    return len(text) / (time.perf_counter() - t0)


def record_speed(model: CharRNN, text: str, tmp: Path) -> float:
    t0 = time.perf_counter()
    rnnviz.record(model, text, tmp / "s", kinds="all", overwrite=True, exact=model.config.cell == "lstm")
    return len(text) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--chars", type=int, default=4000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cells", default=",".join(SIZES))
    a = ap.parse_args()
    text = (TEXT * (a.chars // len(TEXT) + 1))[: a.chars]
    vocab = Vocab.from_text(text)
    cells = a.cells.split(",")
    best = {c: [0.0, 0.0, 0.0] for c in cells}
    with torch_threads(a.threads or torch.get_num_threads()), tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.repeat):
            for c in cells:
                m = _model(c, vocab, a.device)
                speeds = (train_speed(m.train(), a.batch, a.seq_len, a.steps), forward_speed(m.eval(), text),
                          record_speed(m.eval(), text, Path(tmp)))
                best[c] = [max(x, y) for x, y in zip(best[c], speeds, strict=True)]
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"# {a.device}, {a.threads or 'default'} thread(s), batch {a.batch} x seq {a.seq_len}, {a.chars:,} chars "
          f"recorded, best of {a.repeat}; load average {load}")
    ref = best.get("lstm", [float("nan")])[0]
    print(f"{'cell':8} {'params':>9} {'train ch/s':>11} {'÷ LSTM':>7} {'forward ch/s':>13} {'record ch/s':>12} "
          f"{'forward ÷ record':>17}")
    for c in cells:
        n = _model(c, vocab, "cpu").num_params()
        tr, fw, rec = best[c]
        print(f"{c:8} {n:>9,} {tr:>11,.0f} {tr / ref:>7.3f} {fw:>13,.0f} {rec:>12,.0f} {fw / rec:>17.2f}")


if __name__ == "__main__":
    main()
