"""When a cell emerges: the best unit for each feature at every weight snapshot of a training run.

A run trained with ``--snapshot-every N`` keeps float16 weights at N-step intervals (:mod:`rnnviz.model.snapshots`).
For each snapshot, in step order, :func:`emergence` loads the weights into the run's model (the config
and vocabulary of ``RUN/last``), records the text with the recorder's fast path (:func:`rnnviz.record`,
into a temporary store that is deleted at once, in a private working folder in ``$TMPDIR`` that is
removed on any exit, and by the next emergence after a ``kill -9``: :func:`rnnviz.fsutil.scratch_dir`)
and ranks every unit against each feature with :func:`rnnviz.analysis.ranking.rank_features` (score =
AUROC folded for binary features, |Pearson r| for numeric ones; units ranked by selectivity = score -
control score).

The *final* model is the run's last snapshot (every checkpoint is a snapshot, so the run's last
validation step is one). Its best unit per feature is "the cell"; at every snapshot we report that
unit's score beside the best unit of the moment.

**When the cell appears** (``appears_at``): the first snapshot from which the final unit's score stays,
at every later snapshot, at or above ``chance + 0.9 · (final score - chance)``: 90% of its final
distance from chance (chance = 0.5 for AUROC, 0 for |r|). The rule never picks a step where the unit
merely spiked and faded again; the last snapshot always qualifies, so read it beside the final score.
"""

from __future__ import annotations

import html
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rnnviz.errors import RnnvizError
from rnnviz.fsutil import scratch_dir
from rnnviz.model.snapshots import Snapshot, list_snapshots, load_snapshot_weights, read_snapshot_weights

if TYPE_CHECKING:  # pandas is imported when used: `import rnnviz` imports this module
    import pandas as pd

SCRATCH_PREFIX = "rnnviz-emergence-"  # the working folder in $TMPDIR (rnnviz.fsutil.scratch_dir)
APPEAR_FRACTION = 0.9  # of the final unit's final distance from chance; see the module doc
CHANCE = {"auroc": 0.5, "pearson": 0.0}
COLUMNS = [
    "feature", "step", "seconds", "val_loss", "metric", "best_unit", "score", "selectivity", "same_as_final",
    "final_unit", "final_score", "final_selectivity",
]


def _check_features(features: Sequence[str], text: str) -> list[str]:
    """The feature names, deduplicated; an unknown or constant feature is an error before any work."""
    from rnnviz.analysis.features import FEATURES, resolve

    names = list(dict.fromkeys(features))
    if not names:
        raise RnnvizError("no features: name at least one (e.g. in_quote)")
    for name in names:
        if not (isinstance(name, str) and (name in FEATURES or name.startswith("re:"))):
            raise RnnvizError(f"unknown feature {name!r}; choose one of {', '.join(FEATURES)} (or re:PATTERN)")
        _, y = resolve(name, text)
        if len(y) < 2 or y.min() == y.max():
            raise RnnvizError(f"feature {name} is constant on this text: nothing to rank (choose another text)")
    return names


def _score_snapshot(model, snap: Snapshot, text: str, features: list[str], final_units: dict | None,
                    record_opts: dict, work: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Record ``text`` with the snapshot's weights (into ``work``, emptied again after); the best unit per
    feature and, when ``final_units`` is given ({feature: unit}), those units' scores."""
    from rnnviz.analysis.ranking import rank_features
    from rnnviz.recording.recorder import record

    load_snapshot_weights(model, snap)
    path = work / "store"
    try:
        store = record(model, text, path, topk=0, **record_opts)
        best = rank_features(store, features, top=1, intervals=False)  # (no interval shown)
        final = None
        if final_units is not None:
            units = sorted(set(final_units.values()))
            final = rank_features(store, features, top=len(units), units=units, intervals=False)
            final = final[[final_units[f] == u for f, u in zip(final["feature"], final["unit"], strict=True)]]
        del store  # close the memmaps before the directory goes
    finally:
        shutil.rmtree(path, ignore_errors=True)
    return best, final


def _snapshot_rows(snap: Snapshot, best: pd.DataFrame, final: pd.DataFrame) -> list[dict]:
    """One row per feature for a snapshot: its best unit beside the final unit (``COLUMNS``)."""
    return [{"feature": b.feature, "step": snap.step, "seconds": snap.seconds, "val_loss": snap.val_loss,
             "metric": b.metric, "best_unit": b.unit, "score": b.score, "selectivity": b.selectivity,
             "same_as_final": b.unit == f.unit, "final_unit": f.unit, "final_score": f.score,
             "final_selectivity": f.selectivity}
            for b, f in zip(best.itertuples(), final.itertuples(), strict=True)]


def _score_snapshots(model, snaps: list[Snapshot], text: str, names: list[str], opts: dict, work: Path,
                     progress: Callable[[int, int], None] | None) -> list[dict]:
    """The rows of every snapshot (``COLUMNS``), recorded in ``work``, in step order."""
    # The final snapshot first: its best units are the cells whose history the others give.
    best_last, _ = _score_snapshot(model, snaps[-1], text, names, None, opts, work)
    final_units = dict(zip(best_last["feature"], best_last["unit"], strict=True))
    if progress is not None:
        progress(1, len(snaps))
    rows = []
    for i, snap in enumerate(snaps):
        if i == len(snaps) - 1:
            best = final = best_last  # the final model's best units are its own final units
        else:
            best, final = _score_snapshot(model, snap, text, names, final_units, opts, work)
            if progress is not None:
                progress(i + 2, len(snaps))
        rows += _snapshot_rows(snap, best, final)
    return rows


def emergence(
    run: str | Path,
    text: str,
    features: Sequence[str],
    kinds: str | None = None,
    burn_in: int = 250,
    device: str | None = None,
    unknown: str = "error",
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Per feature and snapshot of ``run``: the best unit, its score and selectivity, whether it is the
    final model's best unit, and the final unit's score, beside the validation loss (nats/char).

    ``text``: the characters to record (every snapshot reads the same ones). ``features``: built-in
    names or ``"re:PATTERN"``. ``kinds``: what to record and rank (default h, and c for an LSTM).
    ``burn_in``: characters each parallel stream of the recorder reads first (see :mod:`rnnviz.recording.recorder`).
    ``progress(done, total)`` is called after each snapshot.
    Returns one row per (feature, snapshot) with the columns of :data:`COLUMNS`, in step order;
    ``df.attrs["appears_at"]`` maps each feature to the step its cell appears (module doc) and
    ``df.attrs["final_step"]`` is the last snapshot's step.
    """
    import pandas as pd

    from rnnviz.model.checkpoint import load_checkpoint
    from rnnviz.model.units import parse_kinds

    run = Path(run)
    snaps = list_snapshots(run)  # a run without snapshots fails here, before anything is loaded
    if not (run / "last" / "config.json").is_file():
        raise RnnvizError(f"{run}: no last/ checkpoint, whose model the snapshots are weights of "
                          "(the run stopped before its first validation)")
    model = load_checkpoint(run / "last")
    for snap in snaps:  # every snapshot's weights checked before any is recorded: one line, and no work wasted
        read_snapshot_weights(model, snap)
    parse_kinds(kinds, model.config.cell)
    text = model.vocab.prepare(text, unknown)
    if not text:
        raise RnnvizError("nothing to record: the text is empty")
    names = _check_features(features, text)
    opts = {"kinds": kinds, "burn_in": burn_in, "device": device}

    with scratch_dir(SCRATCH_PREFIX) as work:
        rows = _score_snapshots(model, snaps, text, names, opts, work, progress)
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["same_as_final"] = df["same_as_final"].astype(bool)
    df.attrs.update(appears_at=appears_at(df), final_step=snaps[-1].step, run=str(run), length=len(text),
                    rule=f"first snapshot from which the final unit stays >= {APPEAR_FRACTION:.0%} of its final "
                         "distance from chance")
    return df


def appears_at(df: pd.DataFrame, fraction: float = APPEAR_FRACTION) -> dict[str, int]:
    """{feature: the step from which the final unit's score stays >= chance + fraction·(final - chance)}."""
    out = {}
    for name, part in df.groupby("feature", sort=False):
        part = part.sort_values("step")
        scores = part["final_score"].to_numpy(dtype=np.float64)
        chance = CHANCE[part["metric"].iloc[0]]
        bar = chance + fraction * (scores[-1] - chance)
        ok = scores >= bar - 1e-12
        # the first index from which every later snapshot is at or above the bar
        tail_ok = np.logical_and.accumulate(ok[::-1])[::-1]
        out[name] = int(part["step"].to_numpy()[int(np.argmax(tail_ok))])
    return out


def emergence_figure(df: pd.DataFrame):
    """A plotly figure: score against step, for each feature the best unit of the moment (solid) and the
    final unit (dashed, its appearance marked), and the validation loss on a second y axis."""
    import plotly.graph_objects as go

    fig = go.Figure()
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]
    appears = df.attrs.get("appears_at") or appears_at(df)
    for k, (feature, part) in enumerate(df.groupby("feature", sort=False)):
        colour = colours[k % len(colours)]
        metric = "AUROC" if part["metric"].iloc[0] == "auroc" else "|r|"
        final_unit = part["final_unit"].iloc[0]
        # plotly reads names as its own HTML subset and hover templates as %{...}: a user's re:PATTERN is text
        name = html.escape(feature).replace("%", "&#37;")
        fig.add_scatter(x=part["step"], y=part["score"], mode="lines+markers", name=f"{name}: best unit",
                        line={"color": colour}, customdata=np.stack([part["best_unit"], part["selectivity"]], -1),
                        hovertemplate=f"{name}<br>step %{{x}}<br>best %{{customdata[0]}}: {metric} %{{y:.3f}}"
                                      "<br>selectivity %{customdata[1]:.3f}<extra></extra>")
        fig.add_scatter(x=part["step"], y=part["final_score"], mode="lines", name=f"{name}: final {final_unit}",
                        line={"color": colour, "dash": "dash"},
                        hovertemplate=f"{name}<br>step %{{x}}<br>{final_unit}: {metric} %{{y:.3f}}<extra></extra>")
        if feature in appears:
            at = part[part["step"] == appears[feature]]
            fig.add_scatter(x=at["step"], y=at["final_score"], mode="markers", showlegend=False,
                            marker={"color": colour, "size": 12, "symbol": "star"},
                            hovertemplate=f"{name}: {final_unit} appears at step %{{x}}<extra></extra>")
    loss = df.drop_duplicates("step").sort_values("step")
    fig.add_scatter(x=loss["step"], y=loss["val_loss"], mode="lines", name="validation loss", yaxis="y2",
                    line={"color": "#777", "width": 2}, hovertemplate="step %{x}<br>val loss %{y:.4f}<extra></extra>")
    fig.update_layout(
        title="When each cell emerges" + (f" · {html.escape(Path(run).name)}" if (run := df.attrs.get("run")) else ""),
        xaxis={"title": "training step"}, yaxis={"title": "score (AUROC folded, or |r|)"},
        yaxis2={"title": "validation loss (nats/char)", "overlaying": "y", "side": "right", "showgrid": False},
        legend={"orientation": "h", "y": -0.2}, template="plotly_white", height=480,
    )
    return fig


def write_emergence_html(df: pd.DataFrame, path: str | Path) -> Path:
    """The figure as one self-contained HTML file (plotly.js inlined: opens offline), written atomically."""
    from rnnviz.fsutil import atomic_file

    path = Path(path)
    page = emergence_figure(df).to_html(include_plotlyjs=True, full_html=True)
    with atomic_file(path, "w") as f:
        f.write(page)
    return path


def appearance_sentences(df: pd.DataFrame) -> list[str]:
    """One sentence per feature, e.g. "the in_quote cell (1:c:17, AUROC 0.95) appears at step 1200 of 3000"."""
    out = []
    for name, step in df.attrs["appears_at"].items():
        last = df[df["feature"] == name].sort_values("step").iloc[-1]
        metric = "AUROC" if last["metric"] == "auroc" else "|r|"
        out.append(f"the {name} cell ({last['final_unit']}, {metric} {last['final_score']:.3f}) appears at step "
                   f"{step} of {df.attrs['final_step']}")
    return out
