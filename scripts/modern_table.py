"""The comparison of README "Modern recurrent models": for each trained run, its test loss and the best unit
for each of the paper's cells on the test split, with intervals and controls.

    .venv/bin/python scripts/modern_table.py RUN_DIR... --out runs/modern_table   # one JSON per run, then the table
    .venv/bin/python scripts/modern_table.py --table runs/modern_table            # the table from the JSONs

For each run (its ``best`` checkpoint; the corpus is read from its config.json):
- test loss, nats/char, over the whole test split (``evaluate`` with 8 parallel streams: the few characters
  after each cut are read with less context) and the characters the run trained on; beside it, once per corpus,
  the paper's 20-gram baseline on the same split (``rnnviz.model.ngram``, modified Kneser-Ney; no units);
- a recording of the first ``--chars`` test characters, every kind (Mamba's whole state left out);
- per feature, the best unit (``find_cells``) with its block-bootstrap 95% interval: quote AUROC and line
  position |r| (column) on prose; ``in_if`` AUROC, comment AUROC, brace depth |r| and line position on C;
- the explained fraction of the h (and c) units at >= 0.5 / >= 0.8 beside the same architecture at
  initialisation on the same text, and the learned fraction (``explain(control="init")``);
- the ablation of the best quote (prose) or comment (C) unit against random units of the same layer and kind
  (exact permutation p-value), on the first ``--ablate-chars`` characters.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

import rnnviz
from rnnviz.analysis.causal import ablate
from rnnviz.analysis.explain import explain
from rnnviz.analysis.explain_control import explained_fractions
from rnnviz.analysis.ranking import find_cells
from rnnviz.errors import RnnvizError
from rnnviz.model.checkpoint import load_checkpoint
from rnnviz.model.data import read_text, split
from rnnviz.model.ngram import ORDER, ngram_loss
from rnnviz.model.trainer import evaluate
from rnnviz.threads import torch_threads

FEATURES = {"prose": ["in_quote", "column"], "code": ["in_if", "in_comment", "brace_depth", "column"]}
ABLATE = {"prose": "in_quote", "code": "in_comment"}


def _finite(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x


def measure(run: Path, out: Path, chars: int, ablate_chars: int, random: int, control: bool) -> dict:
    ck = run / "best"
    model = load_checkpoint(ck)
    cfg = model.meta  # the checkpoint's config.json: its corpus and training settings
    text_path = cfg["data"]["path"]
    genre = "code" if "linux" in Path(text_path).name else "prose"
    text = read_text(text_path)
    test = split(text, "test")
    row: dict = {"run": run.name, "cell": model.config.cell, "layers": model.config.layers,
                 "hidden": model.config.hidden, "params": model.num_params(), "genre": genre}
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]
    row["steps"], row["train_seconds"] = log[-1]["step"], log[-1]["time"]
    row["chars_seen"] = row["steps"] * cfg["train"]["batch"] * cfg["train"]["seq_len"]
    t0 = time.time()
    row["ngram_test_loss"] = _ngram(text, out, Path(text_path).stem)
    row["test_loss"] = evaluate(model, model.vocab.encode(model.vocab.prepare(test, "skip")), streams=8)
    store = rnnviz.record(model, test[:chars], out / f"{run.name}.store", kinds="all", overwrite=True)
    for f in FEATURES[genre]:
        try:
            best = find_cells(store, f, top=1).iloc[0]
        except RnnvizError:  # the feature never changes on this text
            row[f] = None
            continue
        row[f] = {k: _finite(best[k]) if not isinstance(best[k], str) else best[k]
                  for k in ("unit", "metric", "score", "score_lo", "score_hi", "sign")}
        row[f]["sign"] = int(row[f]["sign"])
    if control:
        keep = [u for u in store.units if u.split(":")[1] in ("h", "c")]
        ex = explain(store, units=keep, control="init")
        fr = explained_fractions(ex)
        row["explained"] = {k: _finite(v) for k, v in fr[fr["group"] == "all"].iloc[0].items() if k != "group"}
    if row[ABLATE[genre]] is None:
        row["ablation"] = None
        return _save(row, out, run, t0)
    unit = _clampable_best(model, store, ABLATE[genre], row[ABLATE[genre]]["unit"])
    ab = ablate(model, test[:ablate_chars], unit, feature=ABLATE[genre], random=random)
    row["ablation"] = {k: _finite(v) if isinstance(v, float) else v for k, v in ab.summary().items()
                       if not isinstance(v, dict)}
    return _save(row, out, run, t0)


def _clampable_best(model, store, feature: str, best: str) -> str:
    """The best unit for ``feature`` that ablation can clamp: Mamba's ``sn`` and ``s`` are read-outs of its state,
    so when one of them ranks first, the best unit of another kind stands in (the table names it)."""
    fixed = getattr(model.rnn, "unclampable", ())
    if best.split(":")[1] not in fixed:
        return best
    ranked = find_cells(store, feature, top=len(store.units))
    return next(u for u in ranked["unit"] if u.split(":")[1] not in fixed)


def _ngram(text: str, out: Path, corpus: str) -> float:
    """The 20-gram's test loss on this corpus, counted once and kept in ``out`` (a minute and < 1 GB each)."""
    path = out / f"ngram-{corpus}.json"
    if not path.exists():
        nats, chars = ngram_loss(text, "test", ORDER)
        path.write_text(json.dumps({"order": ORDER, "test_loss": nats, "chars": chars}))
    return json.loads(path.read_text())["test_loss"]


def _save(row: dict, out: Path, run: Path, t0: float) -> dict:
    row["measure_seconds"] = round(time.time() - t0, 1)
    (out / f"{run.name}.json").write_text(json.dumps(row, indent=2, default=_jsonable))
    return row


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return _finite(float(v))
    if isinstance(v, np.bool_):
        return bool(v)
    return str(v)


def _cell(d: dict | None) -> str:
    if not d or d.get("score") is None:
        return "—"
    lo, hi = d.get("score_lo"), d.get("score_hi")
    band = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
    return f"{d['score']:.3f}{band} `{d['unit']}`"


def _stand_in(ablation: dict, best: dict | None) -> str:
    """The ablated unit when it is not the feature's best (that one could not be clamped)."""
    units = ablation.get("units") or []
    if not best or not units:
        return ""
    (l, k, i), (bl, bk, bi) = units[0].split(":"), best["unit"].split(":")
    same = (l, i) == (bl, bi) and k in (bk, "c+h")  # an LSTM unit's c and h are ablated as one: L:c+h:I
    return "" if same else f" `{units[0]}` (best clampable)"


def table(out: Path) -> str:
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if not p.name.startswith("ngram-")]
    lines = []
    for genre, feats in FEATURES.items():
        sel = [r for r in rows if r["genre"] == genre]
        if not sel:
            continue
        head = ["model", "params", "chars trained", "test loss"] + feats + \
            ["cells ≥0.5 / ≥0.8 (at init)", "learned", f"ablate best {ABLATE[genre]} unit: Δ on feature (p)"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in sel:
            e, a = r.get("explained") or {}, r["ablation"] or {}
            frac = (f"{e['cells_0.5']:.1%} / {e['cells_0.8']:.1%} ({e['init_cells_0.5']:.1%} / "
                    f"{e['init_cells_0.8']:.1%})") if e else "—"
            p = a.get("p_feature", a.get("p"))
            abl = "—" if not a else f"{a['delta_feature']:+.3f} vs {a.get('random_delta_feature_mean') or 0:+.3f}" + \
                (f" (p {p:.3f})" if p is not None else "") + _stand_in(a, r.get(ABLATE[genre]))
            lines.append("| " + " | ".join([
                f"{r['cell']} {r['layers']}×{r['hidden']}", f"{r['params']:,}", f"{r['chars_seen'] / 1e6:.1f} M",
                f"{r['test_loss']:.3f}", *[_cell(r.get(f)) for f in feats], frac,
                f"{e['learned']:.1%}" if e else "—", abl]) + " |")
        ngram = next((r["ngram_test_loss"] for r in sel if r.get("ngram_test_loss") is not None), None)
        if ngram is not None:  # the corpus's difficulty: the paper's baseline on the same split, no units
            lines.append("| " + " | ".join([f"{ORDER}-gram (Kneser-Ney)", "—", "—", f"{ngram:.3f}"]
                                           + ["—"] * (len(head) - 4)) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--out", type=Path, default=Path("runs/modern_table"))
    ap.add_argument("--table", type=Path)
    ap.add_argument("--chars", type=int, default=100_000)
    ap.add_argument("--ablate-chars", type=int, default=20_000)
    ap.add_argument("--random", type=int, default=20)
    ap.add_argument("--no-control", action="store_true")
    a = ap.parse_args()
    if a.table:
        print(table(a.table))
        return
    a.out.mkdir(parents=True, exist_ok=True)
    with torch_threads(1):
        for run in a.runs:
            r = measure(run, a.out, a.chars, a.ablate_chars, a.random, not a.no_control)
            print(f"{run.name}: done in {r['measure_seconds']} s", flush=True)
    print(table(a.out))


if __name__ == "__main__":
    main()
