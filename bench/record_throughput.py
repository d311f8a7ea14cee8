"""Recording throughput, side by side in one process: ours vs a naive per-step cell loop vs one
sequential fused pass.

    .venv/bin/python bench/record_throughput.py                  # 2x128 LSTM, about a minute on a 2-core CPU
    .venv/bin/python bench/record_throughput.py --device cuda --layers 3 --hidden 512

"ours" is ``rnnviz.record`` with every kind of every layer (h, c, i, f, g, o for an LSTM), top-5
predictions and log-probabilities, into a store on disk (and once more with the file writes skipped:
"into host memory"). Printed: chars/s of each and the ratios; our FLOP rate ÷ the measured matmul FLOP
rate, counting only the FLOPs the model needs (LSTM 2·4H·(D+H) per layer per character, D = the
layer's input size: V for layer 0); the store's write bandwidth ÷ the disk's measured sequential write
bandwidth (same directory). The model is random-init: speed does not depend on the weights.

Then each kind-set (h; h and c, or h and z; every kind) into host memory on one torch thread, as a fraction
of the one-thread matmul rate (the FLOP bound; target 50%). Recording gates costs more than the model's
FLOPs: h comes bit-exact from the fused kernel and the gates are recomputed from it in batched matmuls,
which roughly doubles the matmul work. And exact start states cost the fused kernel more than one pass
over the text: the recording's own, a states-only pass that corrects the streams' starts, and the burn-in
(``kernel passes``, about 2.25 with the defaults); ``ceiling`` is the fused kernel's own rate over the same
streams divided by them, the fastest any recording with those passes could be. The kind-sets run again
beside one competing busy process (``--settle 0`` skips it). The load average is printed: on a shared
machine every figure is a lower bound.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import DATA, competing_process, load_average
from torch import nn

from rnnviz.model.charrnn import KINDS, CharRNN, ModelConfig
from rnnviz.model.vocab import Vocab
from rnnviz.recording.recorder import record
from rnnviz.store.writer import StoreWriter
from rnnviz.threads import torch_threads

GATE_ROWS = {"lstm": 4, "gru": 3, "rnn": 1}
KIND_SETS = {"lstm": ("h", "h,c", "all"), "gru": ("h", "h,z", "all"), "rnn": ("h",)}


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def model_flops(cfg: ModelConfig) -> int:
    """Multiply-adds x 2 per character of the recurrent layers (the read-out is not counted)."""
    G, H, V = GATE_ROWS[cfg.cell], cfg.hidden, cfg.vocab_size
    return sum(2 * G * H * ((V if l == 0 else H) + H) for l in range(cfg.layers))


def matmul_rate(dev: torch.device, n: int, seconds: float = 1.0, clock=time.perf_counter) -> float:
    """float32 FLOP/s of an n x n matmul, as torch runs it on ``dev`` (no TF32); per second of ``clock``."""
    torch.backends.cuda.matmul.allow_tf32 = False
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    a @ b
    sync(dev)
    reps, t0 = 0, clock()
    while clock() - t0 < seconds:
        a @ b
        reps += 1
        if reps % 8 == 0:
            sync(dev)
    sync(dev)
    return 2 * n**3 * reps / (clock() - t0)


def disk_rate(directory: Path, mb: int) -> float:
    """Sequential write bytes/s into ``directory``: 8 MB writes, then fsync (like a store's files)."""
    block = os.urandom(8 << 20)
    path = directory / "disk_probe.bin"
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(max(1, mb // 8)):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
    dt = time.perf_counter() - t0
    path.unlink()
    return max(1, mb // 8) * len(block) / dt


def naive_cells(model: CharRNN, ids: torch.Tensor, dev: torch.device) -> float:
    """chars/s of a per-character nn.LSTMCell/GRUCell/RNNCell loop, batch 1, keeping h (and c) of every layer."""
    cfg = model.config
    cls = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}[cfg.cell]
    cells = []
    for l in range(cfg.layers):
        w_ih, w_hh, b_ih, b_hh = model.layer_weights(l)
        cell = cls(w_ih.shape[1], cfg.hidden).to(dev)
        with torch.no_grad():
            for p, w in zip((cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), (w_ih, w_hh, b_ih, b_hh),
                            strict=True):
                p.copy_(w)
        cells.append(cell)
    x = F.one_hot(ids.to(dev), cfg.vocab_size).float()
    state = [(torch.zeros(1, cfg.hidden, device=dev),) * (2 if cfg.cell == "lstm" else 1) for _ in cells]
    kept = []
    sync(dev)
    t0 = time.perf_counter()
    with torch.no_grad():
        for t in range(len(ids)):
            inp = x[t : t + 1]
            for l, cell in enumerate(cells):
                out = cell(inp, state[l] if cfg.cell == "lstm" else state[l][0])
                state[l] = out if cfg.cell == "lstm" else (out,)
                kept.extend(state[l])
                inp = state[l][0]
        torch.stack(kept).cpu()
    return len(ids) / (time.perf_counter() - t0)


def fused_sequential(model: CharRNN, ids: torch.Tensor, dev: torch.device) -> float:
    """chars/s of the fused multi-layer module over the text as one stream (top layer's h only)."""
    rnn = model.rnn.to(dev)
    state = None
    sync(dev)
    t0 = time.perf_counter()
    with torch.no_grad():
        for s in range(0, len(ids), 10_000):
            out, state = rnn(F.one_hot(ids[None, s : s + 10_000].to(dev), model.config.vocab_size).float(), state)
            out.cpu()
    rnn.cpu()
    return len(ids) / (time.perf_counter() - t0)


def ours(model, text, out: Path, dev, args, to_disk: bool, kinds: str = "all",
         clock=time.perf_counter) -> tuple[float, int, dict]:
    """chars/s of rnnviz.record (``kinds`` of every layer), bytes it wrote, and its recorder settings;
    per second of ``clock``."""
    shutil.rmtree(out, ignore_errors=True)
    real = StoreWriter._pwrite
    if not to_disk:
        StoreWriter._pwrite = lambda self, name, data, offset: None  # rows still converted to host bytes
    try:
        t0 = clock()
        store = record(model, text, out, kinds=kinds, device=dev, streams=args.streams, burn_in=args.burn_in,
                       topk=5, overwrite=True, threads=torch.get_num_threads())  # the count set here
        dt = clock() - t0
    finally:
        StoreWriter._pwrite = real
    size = sum(f.stat().st_size for f in out.iterdir())
    settings = store.manifest["recorder"]
    shutil.rmtree(out, ignore_errors=True)
    return len(text) / dt, size, settings


def kernel_rate(model: CharRNN, text: str, settings: dict, dev: torch.device) -> float:
    """chars/s of the fused multi-layer kernel alone (states only, nothing kept) over the recorder's layout:
    ``settings['streams']`` streams side by side, ``block_steps`` characters a block."""
    B, C, S = settings["streams"], settings["chunk"], settings["block_steps"]
    ids = torch.from_numpy(model.vocab.encode(text))
    x = torch.zeros(B * C, dtype=torch.long)
    x[: len(ids)] = ids
    x = x.view(B, C).to(dev)
    rnn, state = model.rnn.to(dev), None
    sync(dev)
    t0 = time.perf_counter()
    with torch.no_grad():
        for s0 in range(0, C, S):
            _, state = rnn(F.one_hot(x[:, s0 : s0 + S], model.config.vocab_size).float(), state)
    sync(dev)
    return len(text) / (time.perf_counter() - t0)


def kind_sets(model, text, out: Path, dev, args, flops: int) -> None:
    """Each kind-set into host memory on one torch thread: chars/s and the fraction of the FLOP bound, per
    second of wall time and per CPU-second (on a busy machine the CPU-second figure is the one to read).

    Then the ceiling the recorder's design leaves: exact starts cost the fused kernel a states-only pass
    and the burn-in besides the recording's own pass (``passes``: kernel passes over the text); the
    kernel alone over the same streams, divided by them, is the fastest any recording could be."""
    cpu = dev.type == "cpu"
    with torch_threads(1):
        mm = matmul_rate(dev, 4096 if not cpu else 1024)
        mm_cpu = matmul_rate(dev, 1024, clock=time.process_time) if cpu else mm
        print(f"one torch thread: matmul fp32 {mm / 1e9:.1f} GFLOP/s ({mm_cpu / 1e9:.1f} per CPU-second); load "
              f"average {load_average()}")
        kernel = None
        for kinds in KIND_SETS[model.config.cell]:
            rate, _, s = ours(model, text, out, dev, args, to_disk=False, kinds=kinds)
            per_cpu = ours(model, text, out, dev, args, False, kinds, time.process_time)[0] if cpu else rate
            kernel = kernel or kernel_rate(model, text, s, dev)
            passes = s["recordings"] + s["passes"] + s["streams"] * s["burn_in"] / len(text)
            print(f"kinds {kinds:<5s} -> host memory: {rate:10,.0f} chars/s   FLOP rate / matmul (1 thread): "
                  f"{rate * flops / mm:6.1%}   per CPU-second: {per_cpu * flops / mm_cpu:6.1%}   kernel passes "
                  f"{passes:.2f}: ceiling {kernel / passes * flops / mm:6.1%}")
        print(f"the fused kernel alone, one pass: {kernel:,.0f} chars/s = {kernel * flops / mm:.1%} of the bound")


def kind_sets_twice(model, text, out: Path, dev, args, flops: int) -> None:
    """:func:`kind_sets` as the machine is, then beside one competing busy process (not on CUDA)."""
    kind_sets(model, text, out, dev, args, flops)
    if args.settle > 0 and dev.type == "cpu":
        with competing_process(args.settle):
            print(f"\nwith one competing busy process (started {args.settle:.0f} s before):")
            kind_sets(model, text, out, dev, args, flops)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"])
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--chars", type=int, default=None, help="text length for ours (default 200k CPU, 1M CUDA)")
    p.add_argument("--naive-chars", type=int, default=2000)
    p.add_argument("--fused-chars", type=int, default=None, help="default 50k CPU, 100k CUDA")
    p.add_argument("--streams", type=int, default=None, help="parallel streams (default: the recorder's choice)")
    p.add_argument("--burn-in", type=int, default=1000)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--dir", default=None, help="where the store and the disk probe go (default: a temp dir)")
    p.add_argument("--disk-mb", type=int, default=None, help="disk probe size (default 256 CPU, 4096 CUDA)")
    p.add_argument("--kinds-only", action="store_true", help="only the kind-sets on one thread (a busy machine)")
    p.add_argument("--settle", type=float, default=20.0,
                   help="seconds the competing process runs before the kind-sets run again beside it (0: skip)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(auto if args.device == "auto" else args.device)
    cuda = dev.type == "cuda"
    chars = args.chars or (1_000_000 if cuda else 200_000)
    fused_chars = args.fused_chars or (100_000 if cuda else 50_000)
    disk_mb = args.disk_mb or (4096 if cuda else 256)

    src = DATA / "tiny_shakespeare.txt"
    base = src.read_text(encoding="utf-8") if src.exists() else "".join(map(chr, range(32, 127))) * 100
    text = (base * (chars // len(base) + 1))[:chars]
    vocab = Vocab.from_text(base)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=len(vocab), cell=args.cell, layers=args.layers, hidden=args.hidden)
    model = CharRNN(cfg, vocab).eval()
    ids = torch.from_numpy(vocab.encode(text))
    flops = model_flops(cfg)
    name = torch.cuda.get_device_name(dev) if cuda else f"CPU, {torch.get_num_threads()} torch thread(s)"
    print(f"device: {name}; torch {torch.__version__}; {os.cpu_count()} CPU cores, load average {load_average()}")
    print(f"model: {cfg.cell} {cfg.layers}x{cfg.hidden}, V={cfg.vocab_size}, {flops / 1e6:.3f} MFLOP/char (model only)")

    tmp = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="rnnviz-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        if args.kinds_only:
            return kind_sets_twice(model, text, tmp / "store", dev, args, flops)
        mm = matmul_rate(dev, 4096 if cuda else 1024)
        print(f"matmul fp32:          {mm / 1e9:10.1f} GFLOP/s")
        disk = disk_rate(tmp, disk_mb)
        print(f"disk sequential write:{disk / 1e6:10.1f} MB/s  ({tmp})")
        naive = naive_cells(model, ids[: args.naive_chars], dev)
        print(f"naive cell loop:      {naive:10,.0f} chars/s  (batch 1, h and c, {args.naive_chars:,} chars)")
        fused = fused_sequential(model, ids[:fused_chars], dev)
        print(f"fused, one stream:    {fused:10,.0f} chars/s  (top layer h, {fused_chars:,} chars)")
        mem, _, s = ours(model, text, tmp / "store", dev, args, to_disk=False)
        print(f"ours -> host memory:  {mem:10,.0f} chars/s  ({chars:,} chars, {s['streams']} streams x "
              f"{s['chunk']:,}, burn-in {s['burn_in']}, {s['block_steps']} steps/block; file writes skipped)")
        rate, size, s = ours(model, text, tmp / "store", dev, args, to_disk=True)
        print(f"ours -> store on disk:{rate:10,.0f} chars/s  ({size / 1e6:,.0f} MB, all of "
              f"{','.join(KINDS[cfg.cell])}; {s['passes']} correction pass(es); h from the gates vs the kernel's "
              f"max |diff| {s['gates_vs_kernel_max_abs_error']:.1e})")
        print()
        print(f"ours (disk) / naive cell loop:     {rate / naive:8.1f}x")
        print(f"ours (disk) / fused one stream:    {rate / fused:8.2f}x")
        print(f"FLOP rate (host memory) / matmul:  {mem * flops / mm:8.1%}   ({mem * flops / 1e9:.1f} GFLOP/s)")
        print(f"FLOP rate (disk) / matmul:         {rate * flops / mm:8.1%}   ({rate * flops / 1e9:.1f} GFLOP/s)")
        bw = size * rate / chars
        print(f"store write bandwidth / disk:      {bw / disk:8.1%}   ({bw / 1e6:,.0f} MB/s)")
        print()
        kind_sets_twice(model, text, tmp / "store", dev, args, flops)
    finally:
        if not args.dir:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
