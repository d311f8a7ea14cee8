"""One match of the pattern view as a heatmap aligned with its text (LSTMVis's match view).

One column per row of the text (a character, or a token) at a fixed width, its character under it, the cells as
rows (σ from each cell's store-wide mean, sign-aware: red where a cell is on, blue where it is low), the feature's
track under the cells and the characters under everything, so that no row hides them. The figure is as wide as its
text: the page puts it in a box that scrolls sideways (``heat-box`` in ``assets/rnnviz.css``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rnnviz.views.display import shown

SIGMA = 3.0  # the colour scale's ends: ±3 σ (beyond: the end colours)
HEAT_SCALE = [[0, "#3b5fc4"], [0.5, "#ffffff"], [1, "#c43b3b"]]  # blue low, red high: the text's meaning
FEATURE_SCALE = [[0, "#ffffff"], [1, "#e66e00"]]  # the feature's orange, as its bar under the text
COLUMN_PX = 11  # pixels per column: one character of the labels' 10-pixel monospace font, and a gap
ROW_PX = 16  # pixels per cell
LEFT, RIGHT = 70, 56  # margins: the cells' names; the colour bar


def column_labels(chars: str) -> list[str]:
    """What is written under each column: the character itself, a space as a blank column, a line end or a
    control character as its symbol (:func:`rnnviz.views.display.shown`)."""
    return [" " if c == " " else shown(c) for c in chars]


def match_figure(z: np.ndarray, lo: int, labels: Sequence[str], cells: Sequence[str], title: str,
                 feature: np.ndarray | None = None, feature_name: str = "") -> dict:
    """The heatmap of ``z`` (k cells, n rows from ``lo``; σ, sign-aware) as a Plotly figure (a plain dict) exactly
    ``COLUMN_PX`` pixels a column wide, with ``labels`` (n,) under the columns and, when given, ``feature`` (n,)
    as a track between the cells and the labels."""
    k, n = z.shape
    x = list(range(lo, lo + n))
    z = np.round(np.asarray(z, np.float64), 3)  # float64 first: a float32 3.2 is written 3.2, not 3.2000000477
    data = [dict(type="heatmap", z=z.tolist(), x=x, y=list(cells), colorscale=HEAT_SCALE, zmid=0, zmin=-SIGMA,
                 zmax=SIGMA, xaxis="x", yaxis="y",
                 colorbar=dict(thickness=8, len=1, y=1, yanchor="top", x=1, xpad=4, title=dict(text="σ", side="top"),
                               tickvals=[-SIGMA, 0, SIGMA], ticktext=[f"−{SIGMA:g}", "0", f"+{SIGMA:g}"],
                               tickfont=dict(size=9)),
                 hovertemplate="%{y} #%{x}: %{z:.2f} σ<extra></extra>")]
    track = 0
    if feature is not None:
        track = 18
        data.append(dict(type="heatmap", z=[np.asarray(feature, np.float64).round(4).tolist()], x=x,
                         y=[feature_name], colorscale=FEATURE_SCALE, showscale=False, xaxis="x", yaxis="y2",
                         hovertemplate=feature_name + " #%{x}: %{z:.3g}<extra></extra>"))
    top, bottom = 20, 24  # the title; the characters
    cells_px = ROW_PX * k
    height = top + cells_px + track + bottom
    plot = cells_px + track  # the plot area: cells over the feature's track
    gap = 2 if track else 0
    layout = dict(
        width=LEFT + RIGHT + COLUMN_PX * n, height=height, margin=dict(l=LEFT, r=RIGHT, t=top, b=bottom, pad=0),
        font=dict(size=10), title=dict(text=title, x=0, xanchor="left", y=1, yanchor="top", font=dict(size=10)),
        # The characters hang under the lowest plot (the feature's track when there is one): nothing covers them.
        xaxis=dict(tickvals=x, ticktext=list(labels), tickangle=0, anchor="y2" if track else "y", fixedrange=True,
                   tickfont=dict(size=10, family="ui-monospace, Menlo, Consolas, monospace"),
                   range=[lo - 0.5, lo + n - 0.5]),
        yaxis=dict(domain=[(track + gap) / plot, 1.0], autorange="reversed", fixedrange=True),
    )
    if track:
        layout["yaxis2"] = dict(domain=[0.0, track / plot], fixedrange=True)
    return {"data": data, "layout": layout}
