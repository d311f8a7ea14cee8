"""LSTMVis's pattern view: the selected cells as parallel lines over the window, a θ line the user drags,
the on-set of cells (editable), and each match of the on-set as a small heatmap with the feature under it.

The cell set comes from the view (``cells``, in the URL) or, when empty, from the ranking of the view's
selection (:func:`rnnviz.analysis.similar.similar_cells`, the best :data:`DEFAULT_CELLS`). As in LSTMVis the
set, and each cell's sign, do not depend on the view's θ (they are ranked at :data:`RANK_THETA`): dragging θ
only filters which of them are on. Cells may come from any
layer at once. Values are drawn in σ from each cell's store-wide mean, sign-flipped for a cell that codes
by going down, so that one θ line applies to all of them.
"""

from __future__ import annotations

import numpy as np
from dash import Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from rnnviz.analysis.on_threshold import THETA
from rnnviz.analysis.similar import MIN_ON, SimilarConfig, find_matches, similar_cells, zscore
from rnnviz.errors import RnnvizError
from rnnviz.views.dashboard.callbacks.shared import feature_or_none, on_view
from rnnviz.views.dashboard.state import View
from rnnviz.views.dashboard.stores import StoreSet
from rnnviz.views.display import row_labels, sign_symbol

DEFAULT_CELLS = 5  # cells taken from the ranking when the user has not chosen any
HEATMAPS = 6  # matches drawn as heatmaps
HEAT_CONTEXT = 10  # rows drawn each side of a match
HEAT_SCALE = [[0, "#3b5fc4"], [0.5, "#ffffff"], [1, "#c43b3b"]]  # blue low, red high: the text's meaning
RANK_THETA = THETA  # the one θ the cell set and the signs are ranked at, whatever θ the user drags to
LINE_COLOURS = ["#c0392b", "#2471a3", "#e67e22", "#7d3c98", "#17a589", "#555555", "#b7950b", "#1e8449"]


def cell_set(stores: StoreSet, view: View) -> tuple[list[str], list[int], str]:
    """(cells, signs, message): the view's cells with the sign they code by in its selection, or the
    selection's best cells when the view names none."""
    store = stores[view.store]
    if view.cells:
        if view.sel is None:
            return list(view.cells), [1] * len(view.cells), ""
        ranked = similar_cells(store, *view.sel, SimilarConfig(threshold=RANK_THETA, min_on=0.5, two_state=False),
                               list(view.cells))
        signs = dict(zip(ranked["unit"], ranked["sign"], strict=True))
        return list(view.cells), [int(signs.get(c, 1)) for c in view.cells], ""
    if view.sel is None:
        return [], [], "select some text (or give cells): the pattern view shows the cells of a selection"
    # LSTMVis's view: one θ for every cell (the line the user drags), so no two-state splits here.
    ranked = similar_cells(store, *view.sel, SimilarConfig(threshold=RANK_THETA, two_state=False)).head(DEFAULT_CELLS)
    if ranked.empty:
        return [], [], f"no cell marks the selection at θ = {RANK_THETA:g} σ: give cells"
    return list(ranked["unit"]), [int(s) for s in ranked["sign"]], ""


def on_set(store, view: View, cells: list[str], signs: list[int]) -> list[str]:
    """The cells on at >= MIN_ON of the selection's characters at the view's θ (all cells without one)."""
    if view.sel is None:
        return list(cells)
    a, b = view.sel
    z = zscore(store, cells, store.window(a, b, cells)) * np.asarray(signs, np.float32)  # (n, k)
    frac = (z > view.theta).mean(0)
    return [c for c, f in zip(cells, frac, strict=True) if f >= MIN_ON]


def pattern_figure(stores: StoreSet, view: View, window: int, cells: list[str], signs: list[int],
                   passing: int | None = None) -> dict:
    """Parallel lines (σ, sign-aware) of ``cells`` over the view's window, the selection shaded and θ as a
    dashed line that the user can drag (an editable shape), at any θ; ``passing``: how many cells are on at θ
    (said in the title)."""
    store = stores[view.store]
    start, stop = view.start, min(store.length, view.start + window)
    z = zscore(store, cells, store.window(start, stop, cells)) * np.asarray(signs, np.float32)  # (n, k)
    x = np.arange(start, stop)
    on = "" if passing is None else f": {passing} of {len(cells)} cells on"
    data = [dict(type="scatter", x=x, y=z[:, j], mode="lines", name=f"{c} ({sign_symbol(signs[j])})",
                 line=dict(width=1.2, color=LINE_COLOURS[j % len(LINE_COLOURS)]),
                 hovertemplate="#%{x}: %{y:.2f} σ<extra>%{fullData.name}</extra>")
            for j, c in enumerate(cells)]
    shapes = [dict(type="line", xref="paper", x0=0, x1=1, yref="y", y0=view.theta, y1=view.theta, editable=True,
                   line=dict(color="#000", width=2, dash="dash"), name="theta")]
    if view.sel:
        shapes.append(dict(type="rect", xref="x", yref="paper", x0=view.sel[0] - 0.5, x1=view.sel[1] - 0.5, y0=0, y1=1,
                           fillcolor="rgba(230,110,0,0.12)", line=dict(width=0), editable=False, layer="below"))
    # The title above the plot, the legend under it: at 1280 pixels they would meet in one band.
    layout = dict(height=300, margin=dict(l=50, r=10, t=36, b=70), font=dict(family="system-ui, sans-serif", size=12),
                  shapes=shapes, hovermode="x unified", dragmode="select", selectdirection="h",
                  yaxis=dict(title=dict(text="σ (sign-aware)")),  # a plain dict: Plotly.js reads no bare string
                  xaxis=dict(range=[start, stop]),
                  legend=dict(orientation="h", x=0, xanchor="left", y=-0.12, yanchor="top"),
                  title=dict(text=f"θ = {view.theta:g} σ{on} (drag the dashed line)", x=0, xanchor="left",
                             font=dict(size=12)))
    return {"data": data, "layout": layout}


def theta_from_relayout(relayout) -> float | None:
    """The dragged θ line's new height from a graph's relayoutData (never below 0: θ is a number of σ >= 0),
    or None if it did not move."""
    if not isinstance(relayout, dict):
        return None
    for key in ("shapes[0].y0", "shapes[0].y1"):
        if key in relayout:
            try:
                theta = round(float(relayout[key]), 2)
            except (TypeError, ValueError):
                return None
            return max(0.0, theta) if np.isfinite(theta) else None
    return None


def brushed_range(selected, length: int) -> tuple[int, int] | None:
    """[a, b) of the characters inside a box brushed on the lines (a graph's selectedData), or None."""
    try:
        x0, x1 = sorted(float(x) for x in selected["range"]["x"])
    except (TypeError, KeyError, ValueError):
        return None
    if not (np.isfinite(x0) and np.isfinite(x1)):
        return None
    a, b = max(0, int(np.ceil(x0))), min(length, int(np.floor(x1)) + 1)
    return (a, b) if a < b else None


def heatmap(store, cells: list[str], signs: list[int], a: int, b: int, feature: np.ndarray | None, name: str):
    """One match [a, b) (with context) as a heatmap of the cells (σ) over its characters, and the
    feature's track under it."""
    lo, hi = max(0, a - HEAT_CONTEXT), min(store.length, b + HEAT_CONTEXT)
    z = (zscore(store, cells, store.window(lo, hi, cells)) * np.asarray(signs, np.float32)).T  # (k, n)
    chars = row_labels(store, lo, hi) if store.is_tokens else [c if c.isprintable() else "·" for c in store.text[lo:hi]]
    rows = [dict(type="heatmap", z=z.tolist(), x=list(range(lo, hi)), y=cells, colorscale=HEAT_SCALE,
                 zmid=0, zmin=-3, zmax=3, showscale=False, xaxis="x", yaxis="y",
                 hovertemplate="%{y} #%{x}: %{z:.2f} σ<extra></extra>")]
    domain = [0.0, 1.0]
    if feature is not None:
        rows.append(dict(type="heatmap", z=[feature[lo:hi].tolist()], x=list(range(lo, hi)), y=[name],
                         colorscale=[[0, "#ffffff"], [1, "#e66e00"]], showscale=False, xaxis="x", yaxis="y2",
                         hovertemplate=name + " #%{x}: %{z:.3g}<extra></extra>"))
        domain = [0.22, 1.0]
    layout = dict(width=max(240, 9 * (hi - lo) + 90), height=46 + 16 * len(cells) + (22 if feature is not None else 0),
                  margin=dict(l=70, r=4, t=20, b=22), font=dict(size=10),
                  title=dict(text=f"{a:,}–{b:,}", x=0, xanchor="left", font=dict(size=10)),
                  xaxis=dict(tickvals=list(range(lo, hi)), ticktext=chars, tickangle=0, tickfont=dict(size=9)),
                  yaxis=dict(domain=domain, autorange="reversed"), yaxis2=dict(domain=[0, 0.16]))
    return dcc.Graph(figure={"data": rows, "layout": layout}, config={"displayModeBar": False}, className="heat")


def pattern_matches(stores: StoreSet, view: View, cells: list[str], signs: list[int]) -> tuple[object, str]:
    """The on-set's matches over the whole store, the first HEATMAPS drawn as heatmaps."""
    store = stores[view.store]
    onset = on_set(store, view, cells, signs)
    if not onset:
        return None, "no cell is on over the selection at this θ: lower θ or change the cell set"
    sign = [signs[cells.index(c)] for c in onset]
    try:
        matches = find_matches(store, onset, sign, SimilarConfig(threshold=view.theta, top=HEATMAPS),
                               query=view.sel)
    except RnnvizError as e:
        return None, str(e)
    stores.warm_columns(view.store, onset)  # the next search: T·2 bytes a unit
    feature = feature_or_none(stores, view)
    strong = matches[~matches["weak"]]
    maps = [heatmap(store, onset, sign, int(m.start), int(m.stop), feature, view.feature)
            for m in strong.itertuples(index=False)]
    note = html.Div(f"{len(strong)} strong match(es) of {', '.join(onset)} (best {HEATMAPS}); "
                    f"{len(matches) - len(strong)} weak not drawn", className="note")
    return html.Div([note, *maps]), ""


def pattern_view(stores: StoreSet, v: View, window: int) -> tuple[dict, str, str]:
    """The pattern tab: (the lines figure, the on-set line, a message); nothing while the tab is hidden."""
    if v.tab != "pattern":
        raise PreventUpdate  # drawn when shown
    try:
        cells, signs, msg = cell_set(stores, v)
    except RnnvizError as e:
        cells, msg = [], str(e)
    if not cells:
        from rnnviz.views.dashboard.figures import message_figure

        return message_figure(msg), "", msg
    onset = on_set(stores[v.store], v, cells, signs)
    return (pattern_figure(stores, v, window, cells, signs, len(onset)),
            f"on-set at θ = {v.theta:g} σ: {', '.join(onset) or 'none'} ({len(onset)} of {len(cells)} cells)", "")


def register(app, stores: StoreSet, window: int) -> None:
    app.callback(
        Output("pattern", "figure"), Output("pat-onset", "children"), Output("pat-msg", "children"),
        Input("view", "data"),
    )(on_view(pattern_view, stores, window))

    @app.callback(Output("pat-thr", "value", allow_duplicate=True), Input("pattern", "relayoutData"),
                  prevent_initial_call=True)
    def _drag(relayout):
        theta = theta_from_relayout(relayout)
        if theta is None:
            raise PreventUpdate
        return theta

    @app.callback(Output("sel-view", "data", allow_duplicate=True), Input("pattern", "selectedData"),
                  State("view", "data"), State("pat-thr", "value"), prevent_initial_call=True)
    def _brush(selected, view, theta):
        # Brushing a range on the lines selects it, as a mouse selection in the text does.
        v = View.clean(view, stores, window)
        span = brushed_range(selected, stores[v.store].length)
        if span is None:
            raise PreventUpdate
        return {"a": span[0], "b": span[1], "theta": theta}

    @app.callback(Output("pat-matches", "children"), Output("pat-msg", "children", allow_duplicate=True),
                  Input("pat-go", "n_clicks"), State("view", "data"), prevent_initial_call=True)
    def _search(_, view):
        v = View.clean(view, stores, window)
        try:
            cells, signs, msg = cell_set(stores, v)
        except RnnvizError as e:
            return None, str(e)
        if not cells:
            return None, msg
        return pattern_matches(stores, v, cells, signs)
