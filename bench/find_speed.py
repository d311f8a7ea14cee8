"""How fast `rnnviz find` ranks every unit of a big store against every built-in feature.

Builds a synthetic store the size of a 3×512 LSTM recording (h and c: 3,072 units) over 1M characters
of C (the Linux corpus when present, so that every feature, prose and code, is non-constant), with a
few planted cells, then times, side by side in this one process:

- ``read``: one plain pass over the store's row blocks (``store.iter_blocks``) doing nothing else:
  the floor any streaming ranking pays;
- ``rank``: ``rank_features(store, top=5, intervals=False)`` over all built-in features;
- ``intervals``: the same with the block-bootstrap intervals of the reported units (what `rnnviz find` does),
  minus ``rank``;
- ``naive``: the textbook way (per unit and feature: exact ranks by sorting (pandas), AUROC from
  the rank sum, Pearson and Spearman), timed on 24 units and scaled to all of them.

    .venv/bin/python bench/find_speed.py                       # 1M chars x 3,072 units (6.3 GB in /tmp)
    .venv/bin/python bench/find_speed.py --chars 200000 --hidden 128

The store is written under --dir (default: a temp dir in /tmp) and deleted afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import DATA, synthetic_store

from rnnviz.analysis.features import FEATURES, compute_feature
from rnnviz.analysis.ranking import rank_features

CORPUS = DATA / "linux_kernel.txt"


def make_text(chars: int) -> str:
    if CORPUS.exists():
        text = CORPUS.read_bytes().decode("utf-8")
        return (text * (chars // len(text) + 1))[:chars]
    rng = np.random.default_rng(0)
    words = ["if (x) {", "}", 'printf("a, b");', "/* note */", "int y = (a + b);", "\n", "\t", "return 0;"]
    return "".join(rng.choice(words, chars // 4))[:chars]


def write(path: Path, text: str, layers: int, hidden: int) -> None:
    """A store of tanh noise (rolled per block, layer and kind) with four features planted in four cells."""
    plant = {"in_quote": (0, "c", 7), "column": (1, "c", 11), "in_if": (2, "h", 3), "brace_depth": (2, "c", 5)}
    planted = {k: compute_feature(k, text) for k in plant}
    rows = 65536
    base = np.tanh(np.random.default_rng(0).standard_normal((rows, hidden), dtype=np.float32)).astype(np.float16)

    def columns(s: int, n: int) -> dict[tuple[int, str], np.ndarray]:
        block = {}
        for l in range(layers):
            for kind in ("h", "c"):
                a = np.roll(base, 7 * s // rows + 13 * l + (kind == "c"), axis=0)[:n].copy()
                for name, (pl, pk, pi) in plant.items():
                    if (pl, pk) == (l, kind):
                        f = planted[name][s : s + n]
                        a[:, pi] = np.tanh(f / (f.max() or 1) + 0.3 * a[:, pi])
                block[(l, kind)] = a
        return block

    synthetic_store(path, text, layers, hidden, columns=columns, predictions=False, rows=rows)


def naive(store, units: list[str], specs: list[str]) -> float:
    """Seconds for exact per-unit statistics by sorting: ranks, AUROC, Pearson, Spearman."""
    text = store.text
    feats = {s: compute_feature(s, text).astype(np.float64) for s in specs}
    ranks = {s: pd.Series(v).rank().to_numpy() for s, v in feats.items()}
    t0 = time.perf_counter()
    for u in units:
        x = store.unit(u).astype(np.float64)
        rx = pd.Series(x).rank().to_numpy()  # sort-based mean ranks
        for s, y in feats.items():
            if FEATURES[s].type == "binary":
                pos = y > 0
                P, N = pos.sum(), (~pos).sum()
                _ = (rx[pos].sum() - P * (P + 1) / 2) / (P * N)
            else:
                _ = np.corrcoef(x, y)[0, 1], np.corrcoef(rx, ranks[s])[0, 1]
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chars", type=int, default=1_000_000)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--dir", default=None, help="where to write the temporary store (default: /tmp)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rnnviz-find-bench-", dir=args.dir))
    try:
        text = make_text(args.chars)
        t0 = time.perf_counter()
        write(tmp / "store", text, args.layers, args.hidden)
        from rnnviz.store.reader import open_store

        store = open_store(tmp / "store")
        size = sum(f.stat().st_size for f in (tmp / "store").iterdir())
        print(f"store: {store.length:,} chars x {len(store.units):,} units, {size / 1e9:.2f} GB, "
              f"written in {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        for _ in store.iter_blocks(rows=max(1024, (64 << 20) // (4 * len(store.units)))):
            pass
        t_read = time.perf_counter() - t0

        t0 = time.perf_counter()
        df = rank_features(store, top=5, intervals=False)
        t_rank = time.perf_counter() - t0
        t0 = time.perf_counter()
        rank_features(store, top=5)
        t_iv = time.perf_counter() - t0 - t_rank

        sample = store.units[:: max(1, len(store.units) // 24)][:24]
        specs = [s for s in FEATURES if s not in df.attrs["skipped"]]
        t_naive = naive(store, sample, specs) * len(store.units) / len(sample)

        n_feat = len(specs)
        print(f"features ranked: {n_feat} ({', '.join(specs)}); skipped: {df.attrs['skipped'] or 'none'}")
        print(f"read pass (iter_blocks only):        {t_read:7.1f} s")
        print(f"rank_features, all units x features: {t_rank:7.1f} s   "
              f"= {t_rank / t_read:.2f} x the read pass, "
              f"{store.length * len(store.units) * n_feat / t_rank / 1e9:.2f} G unit-feature-chars/s")
        print(f"block-bootstrap intervals of the reported units: {t_iv:7.1f} s   ({len(df)} units x features, "
              f"+{t_iv / t_rank:.0%} over the ranking)")
        print(f"naive per-unit sort (extrapolated):  {t_naive:7.1f} s   ratio ours / naive = {t_rank / t_naive:.3f}")
        best = df.sort_values("rank").groupby("feature").head(1)
        print("top unit per feature (planted: in_quote 0:c:7, column 1:c:11, in_if 2:h:3, brace_depth 2:c:5):")
        for row in best.itertuples():
            print(f"  {row.feature:15s} {row.unit:9s} {row.metric} {row.score:.3f} sel {row.selectivity:+.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
