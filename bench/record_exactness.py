"""Recording exactness and its cost, side by side in one process: the corrected fast path (the default),
the uncorrected burn-in guess it replaced (``max_passes=0``), and one sequential stream (``exact=True``).

    .venv/bin/python bench/record_exactness.py          # both bundled models, whole test splits, every kind
    .venv/bin/python bench/record_exactness.py --model sample_models/shakespeare-lstm-2x128 \\
        --corpus tiny_shakespeare.txt --length 20000 --kinds h,c

For each model: chars/s of each recording (the same text, into a store on disk; the fastest of
``--repeat`` interleaved runs), the ratios of their times, and how far each fast recording is from the
exact one, every unit of every kind: the largest |fast - exact| beyond float16 rounding of both, and
the units where that exceeds what the recorder states (0.01 for h and the gates; 0.01 + 2e-3·|c| for
c). Also the largest start error each recording reported about itself (its estimate of the same thing
at the streams' first steps, from their boundaries).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import DATA, ROOT

from rnnviz.model.checkpoint import load_checkpoint
from rnnviz.model.data import split
from rnnviz.recording.recorder import TOLERANCE, record

MODELS = (("war-and-peace-lstm-2x256", "war_and_peace.txt"), ("linux-lstm-2x256", "linux_kernel.txt"))
F16_REL = 2.0**-11  # float16 rounding, relative (half an ulp)
VALUE_ABS = 0.01  # what the recorder states for h and the gates, beyond float16 rounding


def compare(fast, exact, rows: int = 1 << 16) -> tuple[float, int, str]:
    """(largest |fast - exact| beyond float16 rounding of both, units over the stated tolerance, worst unit),
    read ``rows`` at a time."""
    worst, over, name = 0.0, 0, ""
    for l in exact.layers:
        for k in exact.kinds:
            a, b = fast.array(l, k), exact.array(l, k)
            excess = np.full(a.shape[1], -np.inf)
            beyond = np.zeros(a.shape[1])
            rel = TOLERANCE.rel if k == "c" else 0.0
            for s in range(0, len(a), rows):
                x, y = a[s : s + rows].astype(np.float64), b[s : s + rows].astype(np.float64)
                d = np.abs(x - y) - 2 * F16_REL * np.abs(y)
                beyond = np.maximum(beyond, d.max(0))
                excess = np.maximum(excess, (d - VALUE_ABS - rel * np.abs(y)).max(0))
            over += int((excess > 0).sum())
            i = int(beyond.argmax())
            if beyond[i] > worst:
                worst, name = float(beyond[i]), f"{l}:{k}:{i}"
    return worst, over, name


def timed(model, text: str, out: Path, **opts):
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    store = record(model, text, out, **opts)
    return store, time.perf_counter() - t0


def bench(model_dir: Path, text: str, tmp: Path, kinds: str, repeat: int, **opts) -> None:
    model = load_checkpoint(model_dir)
    text = model.vocab.prepare(text, "skip")
    cfg = model.config
    print(f"== {model_dir.name}: {cfg.cell} {cfg.layers}x{cfg.hidden}, {len(text):,} chars, kinds {kinds}")
    runs = {"old": dict(max_passes=0, **opts), "fast": opts, "exact": dict(exact=True)}
    best: dict[str, tuple] = {}
    for r in range(repeat):  # interleaved, the fastest of each: a busy machine slows one run, not one kind
        for name, o in runs.items():
            store, t = timed(model, text, tmp / f"{name}{r}", kinds=kinds, **o)
            best[name] = min(best.get(name, (store, t)), (store, t), key=lambda st: st[1])
    (old, t_old), (fast, t_fast), (exact, t_exact) = best["old"], best["fast"], best["exact"]
    r = fast.manifest["recorder"]
    for label, store, t in (("uncorrected", old, t_old), ("corrected", fast, t_fast)):
        worst, over, name = compare(store, exact)
        rep = store.manifest["recorder"]["start_error"] or {"largest": 0.0, "largest_unit": "none (one stream)"}
        print(f"{label + ':':13s}{len(text) / t:10,.0f} chars/s  vs exact: max |diff| {worst:9.3g} beyond float16 "
              f"(at {name or '-'}), {over:,} of {len(exact.units):,} units over tolerance; reported start error "
              f"{rep['largest']:.3g} at {rep['largest_unit']}")
    print(f"{'exact:':13s}{len(text) / t_exact:10,.0f} chars/s  (one stream)")
    print(f"corrected: {r['streams']} streams x {r['chunk']:,}, burn-in {r['burn_in']}, {r['passes']} pass(es), "
          f"{r['recordings']} recording(s)")
    print(f"time ratio corrected / uncorrected: {t_fast / t_old:6.2f}x")
    print(f"time ratio corrected / exact:       {t_fast / t_exact:6.2f}x")
    for p in tmp.iterdir():
        shutil.rmtree(p, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, action="append", help="checkpoint directory (repeatable)")
    p.add_argument("--corpus", action="append", help="its corpus in ../shared/data (one per --model)")
    p.add_argument("--split", default="test", help="the part of the corpus to record (train, val, test)")
    p.add_argument("--length", type=int, default=None, help="only the first N characters of the split")
    p.add_argument("--kinds", default="all")
    p.add_argument("--streams", type=int, default=None, help="parallel streams (default: the recorder's choice)")
    p.add_argument("--burn-in", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=2, help="runs of each; the fastest is reported")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = list(zip(args.model, args.corpus, strict=True)) if args.model else [
        (ROOT / "sample_models" / m, c) for m, c in MODELS]
    print(f"device: CPU, {torch.get_num_threads()} torch thread(s); torch {torch.__version__}")
    tmp = Path(tempfile.mkdtemp(prefix="rnnviz-bench-"))
    try:
        for model_dir, corpus in pairs:
            text = split((DATA / corpus).read_text(encoding="utf-8"), args.split)[: args.length]
            bench(Path(model_dir), text, tmp, args.kinds, args.repeat, streams=args.streams, burn_in=args.burn_in)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
