"""What each command pays to start (issue 31, start-up): CPU-seconds spent importing before any work,
beside the whole command, on a store of --chars characters (100k: where `find` and `similar` were 85-95%
start-up).

For each command, two fresh interpreters:

- ``whole``: the command as a user runs it (``rnnviz CMD ...``), which also reports the modules it loaded;
- ``start-up``: an interpreter that imports those same modules and does nothing else: the command's
  import cost, whatever line of code pulls each module in.

Times are CPU-seconds of the child (user + system, ``getrusage(RUSAGE_CHILDREN)``), not wall time: on a
busy machine wall time measures the neighbours. Each figure is the least of --repeat runs. With
``--baseline REV`` the same commands run on that git revision too (``git archive`` into a temp dir; e.g.
``main`` before a change), and each line ends with the ratio ours / baseline.

    .venv/bin/python bench/startup.py                        # 100k chars x 512 units
    .venv/bin/python bench/startup.py --baseline main --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, baseline_tree, corpus_text, synthetic_store

HEAVY = ("torch", "pandas", "dash", "plotly", "h5py", "mambapy", "scipy", "sklearn")
FALLBACK = 'He said "hello there" and left. She asked "why?" twice.\nThey went home.\n'
# Runs the CLI on argv; prints the modules it loaded (in load order) as JSON on stderr's last line
WHOLE = """
import json, sys
before = set(sys.modules)
from rnnviz.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    print(json.dumps([m for m in sys.modules if m not in before]), file=sys.stderr)
"""
# Imports the modules named on argv, nothing else: what the command costs before its work
IMPORTS = """
import importlib, sys
for m in sys.argv[1:]:
    try:
        importlib.import_module(m)
    except Exception:  # a module only its parent can create (torch's C extensions' submodules): loaded with it
        pass
"""


def child_cpu(code: str, args: list[str], pythonpath: Path) -> tuple[float, str]:
    """CPU-seconds (user + system) of ``python -c code args`` and its stderr; exit status 0 or raises. It runs
    in ``pythonpath`` (``-c`` puts the working directory first on sys.path: the package there wins)."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                       cwd=pythonpath)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{r.stderr[-2000:]}")
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), r.stderr


def measure(args: list[str], pythonpath: Path, repeat: int) -> tuple[float, float, list[str]]:
    """(start-up CPU s, whole-command CPU s, the heavy packages it loaded), each time the least of ``repeat``."""
    whole, startup, mods = [], [], []
    for _ in range(repeat):
        t, err = child_cpu(WHOLE, args, pythonpath)
        whole.append(t)
        mods = json.loads(err.strip().splitlines()[-1])
        startup.append(child_cpu(IMPORTS, mods, pythonpath)[0])
    return min(startup), min(whole), [m for m in HEAVY if m in mods]


def commands(store: Path, text: str, out: Path) -> dict[str, list[str]]:
    a = text.find('"')
    b = text.find('"', a + 1) if a >= 0 else -1
    span = (a, b) if 0 <= a < b else (0, min(len(text), 40))
    return {
        "--help": ["--help"],
        "features": ["features"],
        "find": ["find", str(store), "--feature", "in_quote", "--top", "10"],
        "similar": ["similar", str(store), "--start", str(span[0]), "--end", str(span[1]), "--top", "10"],
        "explain --control none": ["explain", str(store), "--units", "1:c:0,1:c:1", "--control", "none"],
        "export": ["export", str(store), "--unit", "1:c:0", "--out", str(out / "x.html")],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chars", type=int, default=100_000)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=1, help="runs per figure; the least is shown")
    ap.add_argument("--baseline", metavar="REV", help="also run the commands on this git revision (e.g. main)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rnnviz-startup-"))
    try:
        text = corpus_text("war_and_peace.txt", args.chars, FALLBACK)  # prose with quotes: in_quote varies
        store = synthetic_store(tmp / "st", text, layers=args.layers, hidden=args.hidden)
        (tmp / "base").mkdir()
        base = baseline_tree(args.baseline, tmp / "base") if args.baseline else None
        units = args.layers * args.hidden * 2
        print(f"load average {os.getloadavg()[0]:.1f}; store {args.chars:,} chars x {units:,} units; "
              f"CPU-seconds, least of {args.repeat}")
        head = f"{'command':<24}{'start-up':>9}{'whole':>8}{'share':>7}  heavy imports "
        print(head + ("   | baseline start-up  whole  share   ours/baseline (whole)" if base else ""))
        for name, argv in commands(store, text, tmp).items():
            s, w, heavy = measure(argv, ROOT, args.repeat)
            line = f"{name:<24}{s:>9.2f}{w:>8.2f}{s / w:>7.0%}  {','.join(heavy) or '-':<14}"
            if base is not None:
                bs, bw, _ = measure(argv, base, args.repeat)
                line += f"   | {bs:>17.2f}{bw:>7.2f}{bs / bw:>7.0%}   {w / bw:.2f}x"
            print(line)
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
