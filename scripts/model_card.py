"""Write the model card of a bundled model: training facts, losses, a sample, and the cells it contains.

    python scripts/model_card.py sample_models/shakespeare-lstm-2x128 ../shared/data/tiny_shakespeare.txt \
        --command "rnnviz train ..." --features in_quote column to_line_end word_pos

It evaluates the checkpoint on the 5% test split (one exact stream), records h and c over that split,
ranks every unit against each feature, ablates the best unit of each feature (with a random-unit
baseline), exports an HTML heatmap of the top units of each feature next to the card, explains every
unit (`rnnviz explain`: the fraction explained per layer and kind), and writes README.md. Everything in
the card is measured by this run; nothing is typed in by hand.

With ``--emergence RUN`` (the training run, kept with ``--snapshot-every N``) the card also says when each
cell appeared in training: ``rnnviz emergence`` over the first ``--emergence-chars`` test characters,
a table, the sentence "the in_quote cell appears at step ..." and the figure ``emergence.html`` beside it.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import rnnviz
from rnnviz.analysis.causal import ablate
from rnnviz.analysis.emergence import APPEAR_FRACTION, appearance_sentences, emergence, write_emergence_html
from rnnviz.analysis.explain import explain, explained_fractions
from rnnviz.analysis.features import compute_feature
from rnnviz.analysis.ranking import rank_features
from rnnviz.model.data import read_text, split
from rnnviz.model.ngram import ORDER, ngram_loss
from rnnviz.model.sampling import sample
from rnnviz.model.trainer import evaluate
from rnnviz.views.export import export_html, titles_from_cells

SELECTIVE = 0.2  # a unit counts as found when its score beats the character-only control by this much
PAPER = {"war_and_peace.txt": (1.077, 1.195), "linux_kernel.txt": (0.84, 0.889)}  # best LSTM, 20-gram (test)


def interval(score: float, lo: float, hi: float) -> str:
    """``score [lo, hi]`` (three decimals), or the score alone when it has no interval (NaN)."""
    return f"{score:.3f}" if lo != lo or hi != hi else f"{score:.3f} [{lo:.3f}, {hi:.3f}]"


def explained_section(store, cells: dict[str, str]) -> list[str]:
    """The card's "Units explained" lines: `rnnviz explain --control init` over ``store``, the fractions per
    layer and kind beside the same architecture at initialisation; ``cells``: {feature: unit} found."""
    df = explain(store, control="init")
    fr = explained_fractions(df)

    def pair(row, prefix: str, what: str) -> str:
        return f"{row[f'{prefix}{what}_0.5']:.1%} / {row[f'{prefix}{what}_0.8']:.1%}"

    lines = [
        "", "## Units explained (`rnnviz explain --control init`)",
        f"Every unit of the same recording explained by the best rule of the searched space, chosen on one half "
        f"of the characters ({df.attrs['fit_chars']:,}: alternate blocks of {df.attrs['block']:,}) and scored "
        f"(Pearson r) on the other {store.length - df.attrs['fit_chars']:,}. The control: the same architecture "
        f"at initialisation (seed {df.attrs['seed']}, PyTorch's default initialisation) recorded on the same "
        f"characters and explained the same way: an untrained network already follows the character it reads. "
        f"Fractions of units with score >= 0.5 / >= 0.8 (the paper's \"about 5% interpretable\", measured), "
        f"cells (a rule about more than the character just read) apart from input detectors (the character "
        f"just read alone). Learned: cells scoring at least {df.attrs['margin']:g} above the best cell of the "
        f"control's same layer and kind (its score in the last column).", "",
        "| layer:kind | units | cells (trained) | cells (at init) | input detectors (trained) | "
        "input detectors (at init) | learned | init's best cell |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in fr.to_dict("records"):
        lines.append(f"| {row['group']} | {row['units']:,} | {pair(row, '', 'cells')} | "
                     f"{pair(row, 'init_', 'cells')} | {pair(row, '', 'inputs')} | {pair(row, 'init_', 'inputs')} | "
                     f"{row['learned']:.1%} | {row['init_best']:.3f} |")
    lines += ["", "The cells found above, as explained (score: held-out r with its 95% block-bootstrap interval, "
              "blocks of 1,000 held-out characters, for scores >= 0.5 and learned cells):", "",
              "| feature | unit | explanation | rule | score [95%] | sign | auroc | learned |",
              "|---|---|---|---|---|---|---|---|"]
    by_unit = df.set_index("unit")
    for feature, unit in cells.items():
        r = by_unit.loc[unit]
        auroc = "" if r["auroc"] != r["auroc"] else f"{r['auroc']:.3f}"
        learned = "yes" if r["learned"] is not pd.NA and bool(r["learned"]) else "no"
        lines.append(f"| {feature} | {unit} | {r['explanation']} | `{r['best_rule']}` | "
                     f"{interval(r['score'], r['score_lo'], r['score_hi'])} | {'+' if r['sign'] > 0 else '−'} | "
                     f"{auroc} | {learned} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt")
    p.add_argument("corpus")
    p.add_argument("--command", required=True, help="the exact training command, for the card")
    p.add_argument("--features", nargs="+", required=True)
    p.add_argument("--unknown", default="error")
    p.add_argument("--prime", default="\n")
    p.add_argument("--ablate-chars", type=int, default=20000, help="test-split characters used for ablation")
    p.add_argument("--ablate-random", type=int, default=100, help="random-unit draws of each ablation's control")
    p.add_argument("--export-chars", type=int, default=3000)
    p.add_argument("--emergence", metavar="RUN", help="the training run with snapshots: add when each cell "
                   "appeared (or an earlier card of the same weights' run, README.md with emergence.html beside "
                   "it: keep its section)")
    p.add_argument("--emergence-chars", type=int, default=100_000, help="test-split characters recorded per snapshot")
    a = p.parse_args()

    ckpt = Path(a.ckpt)
    model = rnnviz.load_checkpoint(ckpt)
    meta, cfg = model.meta, model.config
    text = read_text(a.corpus)
    test = model.vocab.prepare(split(text, "test"), a.unknown)
    test_loss = evaluate(model, model.vocab.encode(test))
    val_loss = evaluate(model, model.vocab.encode(model.vocab.prepare(split(text, "val"), a.unknown)))
    weights = ckpt / "model.safetensors"
    m, d = meta.get("metrics", {}), meta.get("data", {})
    lines = [
        f"# {ckpt.name}",
        "",
        f"A {cfg.layers}-layer, {cfg.hidden}-unit {cfg.cell.upper()} character model of `{Path(a.corpus).name}`, "
        f"trained by `rnnviz train`. {model.num_params():,} parameters; weights stored as "
        f"{meta['dtype']} ({weights.stat().st_size / 2**20:.2f} MiB), loaded as float32.",
        "",
        "## Data",
        f"- Corpus: `../shared/data/{Path(a.corpus).name}`, {len(text):,} characters, "
        f"vocabulary of {len(model.vocab)}.",
        "- Split: the paper's 90% / 5% / 5% (train / validation / test) in file order.",
        f"- Newlines: {d.get('newlines', 'kept as in the file')}.",
        "",
        "## Training",
        "```",
        a.command,
        "```",
        f"- Device: {meta.get('device')}, mixed precision: {meta.get('amp')}; torch {meta.get('torch')}.",
        f"- {m.get('step')} steps ({m.get('epoch', 0):.1f} epochs) in {m.get('train_seconds', 0):.0f} s of training.",
        "",
        "| loss (nats/char) | value | bits/char |",
        "|---|---|---|",
    ]
    for name, v in (("train (running mean, last log interval)", m.get("train_loss")),
                    ("validation (one exact stream)", val_loss), ("**test** (one exact stream)", test_loss)):
        lines.append(f"| {name} | {v:.4f} | {v / math.log(2):.4f} |")
    lines += baseline_lines(text, Path(a.corpus).name, test_loss)
    s = sample(model, 400, prime=a.prime, temperature=0.8, seed=1)
    lines += ["", "## A sample at temperature 0.8 (seed 1)", "```", (a.prime + s).strip("\n"), "```", ""]

    with tempfile.TemporaryDirectory() as tmp:
        kinds = "h,c" if cfg.cell == "lstm" else "h"
        store = rnnviz.record(model, test, Path(tmp) / f"{ckpt.name}-test-split", kinds=kinds, source=str(a.corpus))
        df = rank_features(store, a.features, top=3)
        lines += [
            "## Cells found on the test split",
            f"Recorded with `rnnviz record` ({', '.join(store.kinds)} of every layer, {store.length:,} characters) "
            f"and ranked with `rnnviz find`; each feature's best unit ablated (`rnnviz ablate --mode zero`) over "
            f"the first {min(a.ablate_chars, len(test)):,} test characters against {a.ablate_random} draws of a "
            f"random unit of the same layer and kind (distinct units; an LSTM unit zeroed is one intervention "
            f"whether its c or its h is named, hence `L:c+h:i`). Δloss: nats/char, with its 95% block-bootstrap "
            f"interval over positions (blocks of 1,000 characters). On the feature's characters: p = (random draws "
            f"that hurt as much + 1) / (draws + 1), one-sided, and effect size = (Δ − the draws' mean Δ) / their sd. "
            f"Selectivity = score minus the score of a character-only control (a unit that only reacts "
            f"to which character it reads scores high on both); a unit counts as found at selectivity >= {SELECTIVE}. "
            f"Score: with its 95% block-bootstrap interval over the test characters (blocks of 1,000, 200 "
            f"resamples; `rnnviz find`'s score_lo, score_hi).",
            "",
            "| feature | unit | metric | score [95%] | sign | selectivity | ablated | Δloss all "
            "| Δloss on feature chars | random units Δ (mean ± sd) | effect size | p | heatmap |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        missing = []
        for feature, rows in df.groupby("feature", sort=False):
            best = rows.iloc[0]
            if best["selectivity"] < SELECTIVE:
                missing.append(f"`{feature}` (best {best['unit']}, selectivity {best['selectivity']:.3f})")
                continue
            r = ablate(model, test[: a.ablate_chars], [best["unit"]], mode="zero", feature=feature,
                       random=a.ablate_random).summary()
            html = f"cells_{feature}.html"
            # show a window where the feature varies: it starts shortly before the feature first changes
            y = compute_feature(feature, store.text)
            first = int(np.argmax(y != y[0])) if (y != y[0]).any() else 0
            start = max(0, min(first - 200, store.length - a.export_chars))
            export_html(store, list(rows["unit"]), ckpt / html, start=start, length=a.export_chars,
                        titles=titles_from_cells(rows))
            for i, row in enumerate(rows.itertuples()):
                abl = ablation_cells(r) if i == 0 else " | | | | | "
                lines.append(f"| {feature if i == 0 else ''} | {row.unit} | {row.metric} | "
                             f"{interval(row.score, row.score_lo, row.score_hi)} | "
                             f"{'+' if row.sign > 0 else '−'} | {row.selectivity:.3f} | {abl} | "
                             f"{f'[{html}]({html})' if i == 0 else ''} |")
        skipped = df.attrs.get("skipped", {})
        not_found = missing + [f"`{k}` ({v})" for k, v in skipped.items()]
        lines += ["", "Not found: " + ("; ".join(not_found) or "none") + "."]
        found = {f: rows.iloc[0]["unit"] for f, rows in df.groupby("feature", sort=False)
                 if rows.iloc[0]["selectivity"] >= SELECTIVE}
        t0 = time.perf_counter()
        lines += explained_section(store, found)
        print(f"explain: {len(store.units):,} units x {store.length:,} characters in {time.perf_counter() - t0:.1f} s")
    if a.emergence and Path(a.emergence).is_file():
        lines += kept_emergence(Path(a.emergence), ckpt)
    elif a.emergence:
        lines += emergence_section(Path(a.emergence), ckpt, test[: a.emergence_chars], a.features)
    lines += ["", f"Card written by `scripts/model_card.py` with torch {torch.__version__}.", ""]
    (ckpt / "README.md").write_text("\n".join(lines), encoding="utf-8")


def ablation_cells(r: dict) -> str:
    """The ablation columns of a feature's first row, from :meth:`Ablation.summary` ``r``: the intervention,
    Δloss on all and on the feature's characters with intervals, the random draws' Δ, effect size and p."""
    def delta(col: str) -> str:
        ci = f" [{r[col + '_lo']:+.4f}, {r[col + '_hi']:+.4f}]" if r[col + "_lo"] is not None else ""
        return f"{r[col]:+.4f}{ci}" if r[col] is not None else "n/a"

    if r["random_delta_feature_mean"] is None:
        rnd, z, p = "n/a", "n/a", "n/a"
    else:
        rnd = f"{r['random_delta_feature_mean']:+.4f} ± {r['random_delta_feature_std']:.4f} (n = {r['random_draws']})"
        z = f"{r['effect_size_feature']:+.2f}" if r["effect_size_feature"] is not None else "n/a"
        p = f"{r['p_feature']:.3g}"
    return (f"{', '.join(r['units'])} | {delta('delta')} | {delta('delta_feature')} ({r['feature_chars']} chars) | "
            f"{rnd} | {z} | {p}")


def baseline_lines(text: str, corpus: str, test_loss: float) -> list[str]:
    """The paper's 20-gram baseline on the same test split (a row of the loss table), and how far below it
    the model is beside the paper's best LSTM's margin on its own split."""
    ngram, _ = ngram_loss(text, "test", ORDER)
    lines = [f"| {ORDER}-gram baseline, same test split (`rnnviz ngram`: modified Kneser-Ney) | {ngram:.4f} | "
             f"{ngram / math.log(2):.4f} |", "",
             f"The model's test loss is {100 * (1 - test_loss / ngram):.1f}% below the {ORDER}-gram's on the same "
             "split."]
    if corpus in PAPER:
        lstm, paper_ngram = PAPER[corpus]
        lines[-1] += (f" The paper's best LSTM (3 layers, 512 units, GPU) is {100 * (1 - lstm / paper_ngram):.1f}% "
                      f"below its 20-gram on its split ({lstm} vs {paper_ngram}): the margin, not the loss, "
                      f"carries over between splits of different difficulty.")
    return lines


def kept_emergence(card: Path, ckpt: Path) -> list[str]:
    """The emergence section of an earlier card of this model's line (``card``, a README.md with its
    emergence.html beside it) when the run's snapshots are no longer at hand; copies the figure."""
    old = card.read_text(encoding="utf-8")
    head = "## When the cells emerged"
    if head not in old:
        raise SystemExit(f"{card}: no '{head}' section to keep")
    section = old[old.index(head) : old.index("\nCard written by") if "\nCard written by" in old else None]
    (ckpt / "emergence.html").write_bytes((card.parent / "emergence.html").read_bytes())
    note = ("(Kept from the card of the run this model's weights come from: its snapshots are not kept with "
            "the model, and a fine-tune from trained weights has no cells left to emerge.)")
    lines = ["", *section.rstrip("\n").split("\n")]
    return lines if note in lines else [*lines, "", note]


def emergence_section(run: Path, ckpt: Path, text: str, features: list[str]) -> list[str]:
    """The card's lines on when each cell appeared; writes ``ckpt/emergence.html``."""
    varying = [f for f in features if np.ptp(compute_feature(f, text)) > 0]  # constant ones rank nothing
    t0 = time.perf_counter()
    df = emergence(run, text, varying)
    secs = time.perf_counter() - t0
    print(f"emergence: {df['step'].nunique()} snapshots x {len(text):,} characters in {secs:.1f} s")
    write_emergence_html(df, ckpt / "emergence.html")
    lines = [
        "", "## When the cells emerged",
        f"`rnnviz emergence` over the {df['step'].nunique()} weight snapshots of the run (`--snapshot-every`), "
        f"recording the first {len(text):,} test characters at each. The final unit is the last snapshot's best "
        f"on these characters (it can differ from the table above, ranked on the whole test split). A cell "
        f"*appears* at the first snapshot from which the final unit's score stays >= {APPEAR_FRACTION:.0%} of its "
        f"final distance from chance (AUROC 0.5, |r| 0). Figure: [emergence.html](emergence.html).",
        "",
        "| feature | final unit | final score | appears at step | val loss then | same unit best from step |",
        "|---|---|---|---|---|---|",
    ]
    for feature, part in df.groupby("feature", sort=False):
        last, at = part.iloc[-1], df.attrs["appears_at"][feature]
        then = part[part["step"] == at].iloc[0]
        same = part["same_as_final"].to_numpy()
        since = int(part["step"].to_numpy()[int(np.argmax(np.logical_and.accumulate(same[::-1])[::-1]))])
        lines.append(f"| {feature} | {last['final_unit']} | {last['final_score']:.3f} | {at} | "
                     f"{then['val_loss']:.4f} | {since} |")
    lines += [""] + [s[0].upper() + s[1:] + "." for s in appearance_sentences(df)]
    return lines


if __name__ == "__main__":
    main()
