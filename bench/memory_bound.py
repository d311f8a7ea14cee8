"""Peak resident memory of `rnnviz explain` and `rnnviz find` on a store larger than their memory setting
(issue 31, bounded memory): before (the whole-store reads) and after (each --memory), side by side.

Writes a synthetic store under --dir (default: a temp dir in /tmp; removed afterwards): an LSTM with every kind
(h c i f g o), 2 x --hidden units each, over --chars characters of War and Peace (generated prose where the
corpus is absent), its values tanh of seeded normals with a quote cell planted at 1:c:0. Then runs each command
in a child process (the CLI's ``main`` on one thread) that reports its own peak RSS: ``VmHWM`` of
``/proc/self/status`` (not ``ru_maxrss``, which Linux carries over ``exec`` from the forked parent's memory):

- ``before``: with ``--baseline REV``, that git revision (e.g. ``main``; ``git archive`` into a temp dir, no
  --memory), else this checkout with ``--memory unlimited`` (every column kept in memory);
- ``after``: this checkout at each --memory setting.

Each line prints the peak RSS beside the store's size, the wall and CPU seconds, and the ratio
RSS / (limit + units), where ``units`` is the O(units) allowance: the same command's peak on a --short-chars
store of the same units with no limit, less the interpreter's own peak (a child that imports what the command
imports and does nothing). Under 1.00: the command stayed within its setting. ``before`` is divided by the
default setting's allowance (what it would have had to stay under).

    .venv/bin/python bench/memory_bound.py                                # 1M chars x 1,536 units (3.1 GB)
    .venv/bin/python bench/memory_bound.py --baseline main --memory 2GB,1GB
    .venv/bin/python bench/memory_bound.py --chars 200000 --hidden 32     # a quick look
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROOT, baseline_tree, corpus_text, synthetic_store

from rnnviz.analysis.features import compute_feature
from rnnviz.memory import describe, parse_memory

KINDS = ("h", "c", "i", "f", "g", "o")
FALLBACK = 'He said "hello there, my dear friend" and left.\nShe asked "why?" twice. Nothing here at all!\n'
PEAK = "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0], file=sys.stderr)"
RUN = f"""
import sys
from rnnviz.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    {PEAK}
"""  # the command as a user runs it; its peak resident memory (kB) on stderr's last line
FLOOR = f"import sys, torch, pandas, rnnviz.cli, rnnviz.analysis.explain, rnnviz.analysis.ranking\n{PEAK}"


def write(path: Path, text: str, hidden: int) -> Path:
    """The store: tanh noise (one seeded block, rolled per block, layer and kind) and a quote cell at 1:c:0."""
    quote = compute_feature("in_quote", text)
    rows = 65536
    base = np.tanh(np.random.default_rng(0).standard_normal((rows, hidden), dtype=np.float32))

    def columns(s: int, n: int) -> dict[tuple[int, str], np.ndarray]:
        out = {}
        for layer in range(2):
            for j, kind in enumerate(KINDS):
                a = np.roll(base, 7 * s // rows + 13 * layer + j, axis=0)[:n].copy()
                if (layer, kind) == (1, "c"):
                    a[:, 0] = np.tanh(2 * quote[s : s + n] - 1 + 0.3 * a[:, 0])
                out[(layer, kind)] = a.astype(np.float16)
        return out

    return synthetic_store(path, text, layers=2, hidden=hidden, kinds=KINDS, columns=columns, predictions=False,
                           rows=rows)


def child(args: list[str], pythonpath: Path) -> tuple[int, float, float]:
    """(peak RSS bytes, wall s, CPU s) of ``python -c args`` run in ``pythonpath`` (its rnnviz first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([sys.executable, "-c", *args], cwd=pythonpath, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args[1:4])} failed:\n{r.stderr[-2000:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return int(r.stderr.split()[-1]) * 1024, time.perf_counter() - t0, cpu


def command(name: str, store: Path, memory: str | None) -> list[str]:
    argv = [RUN, name, str(store), "--format", "csv"]
    argv += ["--control", "none"] if name == "explain" else ["--feature", "in_quote", "--top", "10"]
    return argv + ([] if memory is None else ["--memory", memory])


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chars", type=int, default=1_000_000)
    ap.add_argument("--hidden", type=int, default=128, help="units per layer and kind (2 layers x 6 kinds)")
    ap.add_argument("--short-chars", type=int, default=20_000, help="the store that measures the O(units) allowance")
    ap.add_argument("--memory", default="2GB,1GB", help="settings to run (comma-separated); the first is the default")
    ap.add_argument("--commands", default="explain,find")
    ap.add_argument("--baseline", metavar="REV", help="before = this git revision (e.g. main) instead of unlimited")
    ap.add_argument("--dir", default=None, help="where to write the temporary stores")
    a = ap.parse_args()
    settings = [m.strip() for m in a.memory.split(",") if m.strip()]
    limits = [parse_memory(m) for m in settings]
    tmp = Path(tempfile.mkdtemp(prefix="memory_bound_", dir=a.dir))
    try:
        t0 = time.perf_counter()
        store = write(tmp / "st", corpus_text("war_and_peace.txt", a.chars, FALLBACK), a.hidden)
        short = write(tmp / "short", corpus_text("war_and_peace.txt", a.short_chars, FALLBACK), a.hidden)
        units = 2 * len(KINDS) * a.hidden
        print(f"store: {a.chars:,} chars x {units:,} units, {size(store) / 1e9:.2f} GB, written in "
              f"{time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.1f}")
        if a.baseline:
            (tmp / "base").mkdir()
        before_root = baseline_tree(a.baseline, tmp / "base") if a.baseline else ROOT
        floor = child([FLOOR], ROOT)[0]
        print(f"interpreter alone (python, torch, pandas, rnnviz): {floor / 1e9:.2f} GB peak RSS")
        print(f"{'command':<8} {'run':<22} {'peak RSS GB':>11} {'store GB':>9} {'wall s':>7} {'CPU s':>7}"
              f" {'limit GB':>9} {'units GB':>9} {'RSS / (limit + units)':>22}")
        for name in a.commands.split(","):
            allowance = max(child(command(name, short, "unlimited"), ROOT)[0] - floor, 0)
            runs = [(f"before ({a.baseline})" if a.baseline else "before (unlimited)", before_root,
                     None if a.baseline else "unlimited", limits[0])]
            runs += [(f"after (--memory {m})", ROOT, m, lim) for m, lim in zip(settings, limits, strict=True)]
            for label, root, memory, limit in runs:
                rss, wall, cpu = child(command(name, store, memory), root)
                bound = (limit or 0) + allowance
                print(f"{name:<8} {label:<22} {rss / 1e9:>11.2f} {size(store) / 1e9:>9.2f} {wall:>7.0f} {cpu:>7.0f}"
                      f" {describe(limit).split()[0]:>9} {allowance / 1e9:>9.2f} {rss / bound:>22.2f}", flush=True)
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
