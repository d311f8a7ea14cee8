"""Peak memory of ``import-lstmvis`` on a large LSTMVis triple: the states are copied a block at a time.

    .venv/bin/python bench/lstmvis_import_rss.py                       # 2M words x 2 datasets x 256
    .venv/bin/python bench/lstmvis_import_rss.py --tokens 200000 --width 64

Writes states.h5 (states1, output1: float32, seeded), words.h5 and words.dict into a temp folder (removed
afterwards, never committed), then imports them in a child process and prints its peak RSS (ru_maxrss) beside the
peak of a child that only imports rnnviz and h5py (the floor) and the bytes one dataset would take read
whole (what a reader that loads a dataset at once needs on top of that floor).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

CHILD = """
import resource, sys, time
import h5py, rnnviz.store.lstmvis as lv
if sys.argv[1] == "import":
    t = time.perf_counter()
    st = lv.import_lstmvis(*sys.argv[2:5], sys.argv[5])
    print(f"{time.perf_counter() - t:.1f}")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def write_triple(d: Path, tokens: int, width: int, vocab: int = 10_000) -> int:
    """LSTMVis's three files in ``d``, written a block at a time; returns the bytes of one dataset."""
    rng = np.random.default_rng(0)
    step = 1 << 16
    with h5py.File(d / "states.h5", "w") as f:
        for name in ("states1", "output1"):
            ds = f.create_dataset(name, shape=(tokens, width), dtype="<f4")
            for s in range(0, tokens, step):
                n = min(step, tokens - s)
                block = rng.standard_normal((n, width), dtype=np.float32)
                ds[s : s + n] = np.tanh(block) if name == "output1" else block * 3
    with h5py.File(d / "words.h5", "w") as f:
        f["word_ids"] = rng.integers(1, vocab + 1, tokens)
    (d / "words.dict").write_text("".join(f"w{i} {i}\n" for i in range(1, vocab + 1)), encoding="utf-8")
    return tokens * width * 4


def child(*args: str) -> list[str]:
    r = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True)
    return r.stdout.split()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=2_000_000)
    ap.add_argument("--width", type=int, default=256)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lstmvis_rss.") as tmp:
        d = Path(tmp)
        t = time.perf_counter()
        one = write_triple(d, a.tokens, a.width)
        print(f"wrote {a.tokens:,} words x 2 datasets x {a.width} float32 ({2 * one / 2**20:,.0f} MiB of states) "
              f"in {time.perf_counter() - t:.0f} s")
        floor = int(child("floor")[0])
        seconds, peak = child("import", str(d / "states.h5"), str(d / "words.h5"), str(d / "words.dict"),
                              str(d / "store"))
        print(f"import-lstmvis: peak RSS {int(peak) / 1024:,.0f} MiB in {float(seconds):.1f} s "
              f"(python + rnnviz + h5py alone: {floor / 1024:,.0f} MiB; one dataset read whole: "
              f"{one / 2**20:,.0f} MiB)")
        print(f"ratio (peak - floor) / one dataset read whole: {(int(peak) - floor) * 1024 / one:.2f}")


if __name__ == "__main__":
    main()
