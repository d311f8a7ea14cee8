"""Plotly figures of the dashboard, built from plain arrays and DataFrames (no store access here)."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rnnviz.views.colours import COMPARE_PALETTES, FEATURE_RGB

FONT = dict(family="system-ui, sans-serif", size=12)
MARGIN = dict(l=50, r=10, t=30, b=30)
SAT_HOVER = "%{text}<br>left %{x:.3f} · right %{y:.3f}<extra></extra>"
COLOURS = ["#c0392b", "#2471a3", "#e67e22", "#7d3c98", "#17a589", "#555555"]
FEATURE_HEX = "#{:02x}{:02x}{:02x}".format(*FEATURE_RGB)
UNIT_LINE = "#222222"  # the unit's line in the trace: black, since the text's blue and red mean its values
COMPARE_LINE = COMPARE_PALETTES["diverging"][0]  # the compare unit's: the purple of its bar (both its scales)
OFF_GREY = "#888888"  # a feature's "off" group: neither the text's blue (low) nor its red (high)


def message_figure(text: str) -> go.Figure:
    """An empty figure that says why there is nothing to plot."""
    fig = go.Figure()
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font=FONT)
    fig.update_layout(xaxis_visible=False, yaxis_visible=False, height=160, margin=MARGIN, font=FONT)
    return fig


def loading_figure(height: int = 160) -> dict:
    """What a plot shows until its first figure arrives: a word, not a blank area (a plain dict, so the
    layout is cheap to build)."""
    return {"data": [], "layout": {
        "height": height, "margin": MARGIN, "font": FONT, "xaxis": {"visible": False}, "yaxis": {"visible": False},
        "annotations": [{"text": "loading…", "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper",
                         "showarrow": False, "font": {**FONT, "color": "#888"}}]}}


@functools.lru_cache(maxsize=4)
def _trace_layout(titles: tuple[str, ...]) -> dict:
    """The stacked-rows layout of :func:`trace_figure` (plotly's make_subplots, built once per shape)."""
    rows = len(titles)
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.06, subplot_titles=titles,
                        row_heights=[0.5] + [0.5 / (rows - 1)] * (rows - 1) if rows > 1 else None)
    # Row titles on the left, the legend on the right of the top margin: they never meet.
    fig.update_layout(height=150 + 90 * rows, margin=dict(MARGIN, t=44), font=FONT, hovermode="x unified",
                      legend=dict(orientation="h", x=1, xanchor="right", y=1.0, yanchor="bottom",
                                  bgcolor="rgba(255,255,255,0.8)"))
    fig.update_annotations(font_size=11, x=0, xanchor="left")
    return fig.to_plotly_json()["layout"]


def trace_figure(
    start: int,
    labels: list[str],
    series: dict[str, np.ndarray],
    loss: np.ndarray | None,
    feature: tuple[str, np.ndarray] | None = None,
) -> dict:
    """The window as curves over row position: the unit(s), the feature, the per-row loss.

    ``labels``: each row's character or token as shown (:func:`rnnviz.views.display.row_labels`);
    ``series``: {unit: (n,) values}, the unit first, in black, then the compare unit in its bar's purple
    (neither the text's blue nor its red); ``loss``: (n,) nats (NaN where unknown), None for a store without
    predictions (no loss row); ``feature``: (name, (n,)).
    Returned as a plain figure dict: this runs on every window change, and plotly's per-element
    validation of 2,000-point traces cost ~100 ms more than the whole rest of the window.
    """
    titles = ("activation",) + ((f"feature {feature[0]}",) if feature else ()) + (
        ("loss (nats)",) if loss is not None else ())
    # A shallow copy: the cached layout (its template is ~2,000 objects) is shared, never modified.
    layout = {**_trace_layout(titles), "showlegend": len(series) > 1}
    x = np.arange(start, start + len(labels))
    hover = "#%{x} %{customdata}: %{y:.4g}<extra>%{fullData.name}</extra>"
    common = dict(x=x, customdata=labels, hovertemplate=hover)
    data = [
        dict(type="scatter", y=np.asarray(v, np.float32), name=name, xaxis="x", yaxis="y",
             line=dict(width=1.2, color=UNIT_LINE if j == 0 else COMPARE_LINE), **common)
        for j, (name, v) in enumerate(series.items())
    ]
    row = 2
    if feature is not None:
        data.append(dict(type="scatter", y=np.asarray(feature[1], np.float32), name=feature[0], fill="tozeroy",
                         line=dict(width=1, color="#e66e00", shape="hv"), xaxis="x2", yaxis="y2", **common))
        row = 3
    if loss is None:
        return {"data": data, "layout": layout}
    # A filled step line, not bars: one SVG path instead of 2,000 rectangles to redraw per window.
    data.append(dict(type="scatter", y=np.asarray(loss, np.float32), name="loss", xaxis=f"x{row}", yaxis=f"y{row}",
                     fill="tozeroy", line=dict(width=0.8, color="#777", shape="hvh"), **common))
    return {"data": data, "layout": layout}


def _counted(values: np.ndarray) -> dict:
    """A histogram trace's data as distinct values (``x``) and how often each occurs (``y``, summed)."""
    x, n = np.unique(values, return_counts=True)
    return dict(x=x, y=n.astype(np.int32), histfunc="sum")


def histogram_figure(unit: str, values: np.ndarray, feature: tuple[str, np.ndarray] | None, note: str) -> go.Figure:
    """The distribution of ``unit``'s values, one overlaid histogram per feature value (or value range).

    A feature with at most 6 distinct values gets one group per value; a numeric one, quartile groups.
    ``note`` says which rows were used (e.g. a sample of the store). Each group is sent as its distinct
    values and their counts (``histfunc="sum"``): the same bars as the raw values (float16 values take a
    few thousand distinct values at most), a few kB instead of one number per character.
    """
    fig = go.Figure()
    v = np.asarray(values, np.float32)
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
    bins = dict(start=lo, end=hi + 1e-6, size=max(hi - lo, 1e-6) / 60)  # the same 60 bins for every group
    if feature is None:
        fig.add_trace(go.Histogram(**_counted(v), name=unit, xbins=bins, marker_color=COLOURS[5]))
        title = f"{unit}: values ({note})"
    else:
        name, f = feature
        f = np.nan_to_num(np.asarray(f, np.float32))
        levels = np.unique(f)
        if len(levels) <= 6:
            groups = [(f"{name} = {lv:g}", f == lv) for lv in levels]
        else:
            edges = np.unique(np.quantile(f, [0, 0.25, 0.5, 0.75, 1.0]))
            idx = np.clip(np.searchsorted(edges, f, side="right") - 1, 0, len(edges) - 2)
            groups = [(f"{name} in [{edges[g]:.3g}, {edges[g + 1]:.3g}]", idx == g) for g in range(len(edges) - 1)]
        # The feature's colour means "feature on" here as under the text: grey at its lowest group, its
        # orange at the highest, fading in between (never the text's blue or red, which mean the unit's value).
        r, g, b = FEATURE_RGB
        for j, (label, mask) in enumerate(groups):
            if mask.any():
                a = j / max(len(groups) - 1, 1)
                colour = OFF_GREY if j == 0 else FEATURE_HEX if j == len(groups) - 1 else \
                    f"#{round(136 + (r - 136) * a):02x}{round(136 + (g - 136) * a):02x}{round(136 + (b - 136) * a):02x}"
                fig.add_trace(go.Histogram(**_counted(v[mask]), name=f"{label} (n={int(mask.sum()):,})", xbins=bins,
                                           histnorm="probability density", opacity=0.6, marker_color=colour))
        title = f"{unit} by {name} ({note})"
    fig.update_layout(barmode="overlay", height=300, margin=MARGIN, font=FONT, title=dict(text=title, font_size=12),
                      legend=dict(orientation="h", y=-0.2), xaxis_title="value")
    return fig


def saturation_figure(df: pd.DataFrame, store_name: str) -> go.Figure:
    """The paper's gate-saturation scatter: per gate unit, fraction of time left-saturated (< 0.1) on x
    and right-saturated (> 0.9) on y; one panel per gate kind, colour = layer.

    ``df``: :func:`rnnviz.analysis.evidence.gate_saturation` (``unit, layer, kind, sat_lo, sat_hi``, one row
    per gate unit).
    """
    if df.empty:
        return message_figure(f"{store_name}: no gates recorded (record with --kinds including i,f,o or r,z)")
    kinds = list(dict.fromkeys(df["kind"]))
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=[f"{k} gate" for k in kinds], shared_yaxes=True)
    for col, kind in enumerate(kinds, start=1):
        part = df[df["kind"] == kind]
        for j, layer in enumerate(sorted(part["layer"].unique())):
            p = part[part["layer"] == layer]
            fig.add_trace(go.Scatter(x=p["sat_lo"], y=p["sat_hi"], mode="markers", name=f"layer {layer}",
                                     text=p["unit"], hovertemplate=SAT_HOVER,
                                     marker=dict(size=5, opacity=0.7, color=COLOURS[j % len(COLOURS)]),
                                     legendgroup=str(layer), showlegend=col == 1), row=1, col=col)
        fig.add_trace(go.Scatter(x=[0, 1], y=[1, 0], mode="lines", line=dict(color="#bbb", width=1, dash="dot"),
                                 hoverinfo="skip", showlegend=False), row=1, col=col)
        fig.update_xaxes(range=[-0.02, 1.02], title_text="fraction < 0.1", row=1, col=col)
    fig.update_yaxes(range=[-0.02, 1.02], title_text="fraction > 0.9", row=1, col=1)
    # The title gets its own band above the panels' titles; the legend goes under the x-axis titles.
    title = dict(text=f"{store_name}: gate saturation", font_size=12, x=0.01, xanchor="left", y=0.99, yanchor="top")
    fig.update_layout(height=380, margin=dict(MARGIN, t=60, b=90), font=FONT, title=title,
                      legend=dict(orientation="h", x=0, y=-0.32, yanchor="top"))
    fig.update_annotations(font_size=11)
    return fig


def gradflow_figure(curves: list[tuple[str, pd.DataFrame]]) -> go.Figure:
    """Gradient flow: mean |d loss_t / d h_(t-k)| against the lag k, one curve per store × layer
    (log scale: how fast each cell type forgets). ``curves``: (label, :func:`rnnviz.analysis.causal.gradient_flow`
    DataFrame with ``layer, lag, grad``)."""
    fig = go.Figure()
    j = 0
    for label, df in curves:
        for layer in sorted(df["layer"].unique()):
            p = df[df["layer"] == layer].sort_values("lag")
            fig.add_trace(go.Scatter(x=p["lag"], y=p["grad"], mode="lines", name=f"{label} · layer {layer}",
                                     line=dict(color=COLOURS[j % len(COLOURS)], width=1.5)))
            j += 1
    fig.update_layout(height=330, margin=MARGIN, font=FONT, yaxis_type="log", xaxis_title="lag k (characters)",
                      yaxis_title="mean |∂loss_t / ∂h_(t−k)|", title=dict(text="gradient flow", font_size=12))
    return fig
