"""How fast `rnnviz explain` explains every unit, and how its time grows with units and characters.

Builds a synthetic store of 1,536 units (2 layers x h c i f g o x 128, a 2x128 LSTM recording with
every kind) over the first characters of War and Peace (or generated prose when the corpus is absent),
with a few planted cells, then times, side by side in this one process:

- ``read``: one plain pass over the store's row blocks (``store.iter_blocks``) doing nothing else:
  the floor any streaming search pays;
- ``rules``: building the rule space of the text (its values, n-gram ids, covariances), paid once;
- ``explain``: ``explain(store)`` (every rule of the space, both halves, AUROCs), at each --chars
  (all units) and each --units count (the first N units, whole arrays; at the largest --chars);
- ``naive``: the textbook way: per unit and rule, the rule's values as an array and ``np.corrcoef``
  on each half; timed on 3 units x 300 rules and scaled to all units and rules (n-grams included).

    .venv/bin/python bench/explain_speed.py                            # 200k chars x 1,536 units
    .venv/bin/python bench/explain_speed.py --chars 50000,100000,200000 --units 384,768,1536

Each store is written under --dir (default: a temp dir in /tmp) and deleted afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rnnviz.analysis.explain import BLOCK, MIN_LENGTH, RuleSpace, explain  # noqa: E402
from rnnviz.analysis.rules import simulate  # noqa: E402
from rnnviz.model.charrnn import ModelConfig  # noqa: E402
from rnnviz.model.vocab import Vocab  # noqa: E402
from rnnviz.store.reader import open_store  # noqa: E402
from rnnviz.store.writer import StoreWriter  # noqa: E402

CORPUS = ROOT.parent / "shared" / "data" / "war_and_peace.txt"
KINDS = ["h", "c", "i", "f", "g", "o"]
PLANT = {(0, "c", 7): "feature:in_quote", (1, "c", 11): "feature:column", (1, "h", 3): 'prev:"th"'}


def make_text(chars: int) -> str:
    if CORPUS.exists():
        text = CORPUS.read_bytes().decode("utf-8")
        return (text * (chars // len(text) + 1))[:chars]
    rng = np.random.default_rng(0)
    words = ["the", "said", '"Yes,"', "he", "and", "Prince", "Andrew.", "\n", "of", "to"]
    return " ".join(rng.choice(words, chars // 4))[:chars]


def write(path: Path, text: str, layers: int = 2, hidden: int = 128) -> None:
    T = len(text)
    vocab = Vocab.from_text(text)
    cfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=layers, hidden=hidden)
    planted = {k: simulate(r, text) for k, r in PLANT.items()}
    rng = np.random.default_rng(0)
    rows = 65536
    base = np.tanh(rng.standard_normal((rows, hidden), dtype=np.float32)).astype(np.float16)
    with StoreWriter(path, text, layers=list(range(layers)), kinds=KINDS, model_config=cfg, vocab=vocab) as w:
        for s in range(0, T, rows):
            n = min(rows, T - s)
            block = {}
            for l in range(layers):
                for j, kind in enumerate(KINDS):
                    a = np.roll(base, 7 * s // rows + 13 * l + j, axis=0)[:n].copy()
                    for (pl, pk, pi), f in planted.items():
                        if (pl, pk) == (l, kind):
                            v = f[s : s + n]
                            a[:, pi] = np.tanh(v / (f.max() or 1) + 0.3 * a[:, pi])
                    block[(l, kind)] = a
            w.write(s, block)
            w.observe(block)


def read_pass(store) -> float:
    t0 = time.perf_counter()
    for _ in store.iter_blocks(65536):
        pass
    return time.perf_counter() - t0


def naive(store, units: list[str], rules: int = 300) -> tuple[float, int]:
    """Seconds per unit for the textbook search: each rule's values as an array, np.corrcoef on each half.
    Timed on ``rules`` rules (dense ones and n-grams, evenly picked) and scaled to the whole space."""
    text, mid = store.text, store.length // 2
    space = RuleSpace(text, 5, BLOCK)
    every = [("d", j) for j in range(len(space.dense))]
    every += [(n, g) for n, grams in enumerate(space.grams) for g in range(len(grams))]
    picked = every[:: max(1, len(every) // rules)]
    D, ids = space.dense_block(0, len(text)), space.ids_block(0, len(text))  # (C, T), (4, T)
    t0 = time.perf_counter()
    for u in units:
        x = store.unit(u).astype(np.float64)
        for n, j in picked:
            y = D[j] if n == "d" else (ids[n] == j).astype(np.float32)  # built per rule, as a loop would
            for lo, hi in ((0, mid), (mid, len(x))):
                with np.errstate(invalid="ignore", divide="ignore"):
                    np.corrcoef(x[lo:hi], y[lo:hi])
    per_rule_unit = (time.perf_counter() - t0) / len(units) / len(picked)
    return per_rule_unit * len(every), len(every)


def _timed(fn, *a) -> float:
    t0 = time.perf_counter()
    fn(*a)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chars", default="50000,100000,200000", help="Text lengths (comma-separated).")
    ap.add_argument("--units", default="384,768,1536", help="Unit counts timed at the largest --chars.")
    ap.add_argument("--dir", default=None, help="Where to write the temporary stores.")
    ap.add_argument("--repeat", type=int, default=2, help="Runs per figure; the fastest is shown (busy machines).")
    args = ap.parse_args()
    sizes = sorted(int(c) for c in args.chars.split(","))
    counts = sorted(int(u) for u in args.units.split(","))
    if sizes[0] < MIN_LENGTH:
        ap.error(f"--chars must be >= {MIN_LENGTH}")
    tmp = Path(tempfile.mkdtemp(prefix="explain_speed_", dir=args.dir))
    try:
        print(f"{'chars':>9s} {'units':>6s} {'read s':>8s} {'rules s':>8s} {'explain s':>10s} {'us/unit/kchar':>14s}"
              "   (fastest of --repeat runs)")
        for chars in sizes:
            path = tmp / f"st{chars}"
            write(path, make_text(chars))
            st = open_store(path)
            todo = counts if chars == sizes[-1] else [len(st.units)]
            for n in todo:
                units = st.units[:n]  # whole arrays first, as a recording of fewer kinds would be
                t_read = min(read_pass(st) for _ in range(args.repeat))
                t_space = min(_timed(RuleSpace, st.text, 5, BLOCK) for _ in range(args.repeat))
                secs = min(explain(st, units=units).attrs["seconds"] for _ in range(args.repeat))
                per = 1e6 * secs / len(units) / (chars / 1e3)
                print(f"{chars:9,d} {len(units):6,d} {t_read:8.2f} {t_space:8.2f} {secs:10.2f} {per:14.1f}", flush=True)
            if chars == sizes[-1]:
                per_unit, n_rules = naive(st, st.units[:3])
                full = explain(st)
                ours = full.attrs["seconds"]
                print(f"\nnaive (np.corrcoef per unit and rule, {n_rules:,} rules): {per_unit:.2f} s/unit -> "
                      f"{per_unit * len(st.units):,.0f} s for {len(st.units):,} units; explain {ours:.1f} s; "
                      f"ratio ours/naive = {ours / (per_unit * len(st.units)):.4f}")
                got = full.set_index("unit")
                for (l, k, i), rule in PLANT.items():
                    print(f"  planted {l}:{k}:{i} {rule}: found {got.loc[f'{l}:{k}:{i}', 'rule']} "
                          f"score {got.loc[f'{l}:{k}:{i}', 'score']:.3f}")
            shutil.rmtree(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
