"""Units × text as a heatmap: each unit's row coloured as the text view colours the text by that unit.

Each row uses the unit's own robust range (``unit_scale(store, unit, "robust")``: its 1st–99th percentile, white
at 0 for a diverging kind; the text view's default), so a row reads as the text coloured by that unit and
a unit with a few huge values (a line-length counter) is not washed out. The heatmap's z is the colour step
(0 .. N_BINS - 1) and its colour scale the palette's steps, so the colours are the text view's exactly. A window
wider than ``max_columns`` is averaged over runs of characters (:func:`overview_steps`): a slow or two-state
unit keeps its shape, a unit that follows each character turns to its mean.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from rnnviz.views.colours import N_BINS, ColourScale

MAX_COLUMNS = 500  # heatmap columns: a wider window is averaged over runs of characters
ROW_PIXELS = (2, 14)  # a row's height in pixels: the fewest and the most
LABELLED_ROWS = 40  # up to this many rows, each is labelled with its unit (more: on hover)


def overview_steps(values: np.ndarray, scales: Sequence[ColourScale], start: int,
                   max_columns: int = MAX_COLUMNS) -> tuple[np.ndarray, np.ndarray]:
    """The heatmap of ``values`` (n, U: rows ``start`` .. ``start + n`` of U units): (steps (U, C) float32,
    edges (C + 1,) int64). Column c covers rows ``edges[c]:edges[c + 1]``, ``ceil(n / max_columns)`` rows each
    (the last may be shorter); its value is the mean colour step (0 .. N_BINS - 1) of each unit's scale over
    them, NaN where every value is NaN."""
    n, U = values.shape
    steps = np.empty((U, n), np.float32)
    for j, s in enumerate(scales):
        steps[j] = s.bins(values[:, j])
    steps[steps < 0] = np.nan  # a NaN value's step is -1
    per = max(1, -(-n // max_columns))
    edges = np.append(np.arange(0, n, per), n).astype(np.int64) + start
    if per == 1:
        return steps, edges
    padded = np.pad(steps, ((0, 0), (0, (-n) % per)), constant_values=np.nan).reshape(U, -1, per)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice": an all-NaN run stays NaN
        return np.nanmean(padded, 2).astype(np.float32), edges


def overview_figure(steps: np.ndarray, edges: np.ndarray, units: Sequence[str], palette: Sequence[str],
                    labels: Sequence[str], title: str, row: str = "character") -> dict:
    """The heatmap as a Plotly figure (a plain dict): rows ``units`` top to bottom, columns at ``edges[:-1]``,
    colours the ``palette``'s steps; ``labels`` (one per unit) are shown on hover after the unit (each row's
    category is "UNIT · LABEL", its tick the unit alone, shown when there are at most :data:`LABELLED_ROWS` rows);
    ``row``: what a column's rows are ("character", "token"). A click on a cell gives its row's category as ``y``
    (:func:`unit_of`). The values are sent as whole steps when a column is one row (a few bytes each)."""
    U, C = steps.shape
    px = int(np.clip(600 // max(U, 1), *ROW_PIXELS))
    per = int(edges[1] - edges[0]) if C else 1
    gap = np.isnan(steps)
    if per == 1:  # a column of one row: a whole step already
        z = np.where(gap, 0, steps).astype(np.int64).astype(object)
    else:
        z = np.round(steps.astype(np.float64), 1).astype(object)
    z[gap] = None  # JSON null: a gap
    z = z.tolist()
    where = "#%{x}" if per == 1 else f"#%{{x}}–(+{per})"
    step_max = N_BINS - 1
    half = step_max // 2
    rows = [f"{u} · {lab}" if lab else u for u, lab in zip(units, labels, strict=True)]
    trace = dict(type="heatmap", z=z, x=edges[:-1].tolist(), y=rows, zmin=0, zmax=step_max,
                 colorscale=[[b / step_max, c] for b, c in enumerate(palette)],
                 hovertemplate=f"%{{y}}<br>{where}: step %{{z}} of {step_max}<extra></extra>",
                 colorbar=dict(thickness=10, len=min(1.0, 240 / (U * px + 1)), y=1, yanchor="top",
                               tickvals=[0, half, step_max], ticktext=["1st pct", "0 / mid", "99th pct"],
                               tickfont=dict(size=10)))
    ticks = U <= LABELLED_ROWS
    layout = dict(height=U * px + 70, margin=dict(l=70 if ticks else 10, r=10, t=28, b=36),
                  font=dict(family="system-ui, sans-serif", size=11),
                  title=dict(text=title, x=0, xanchor="left", font=dict(size=11)),
                  xaxis=dict(title=dict(text=row if per == 1 else f"{row} (mean of {per})"),
                             range=[float(edges[0]) - per / 2, float(edges[-1]) - per / 2]),
                  yaxis=dict(autorange="reversed", showticklabels=ticks, type="category", fixedrange=True,
                             tickvals=rows, ticktext=list(units)),
                  clickmode="event")
    return {"data": [trace], "layout": layout}


def unit_of(row: str) -> str:
    """The unit of a heatmap row's category ("UNIT · LABEL" or "UNIT")."""
    return row.split(" · ", 1)[0]
