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
from dash import Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from rnnviz.analysis.on_threshold import THETA
from rnnviz.analysis.similar import MAX_FOLLOW, MIN_ON, SimilarConfig, find_matches, similar_cells, zscore
from rnnviz.errors import RnnvizError
from rnnviz.views.dashboard.callbacks.shared import feature_or_none, on_view
from rnnviz.views.dashboard.state import View
from rnnviz.views.dashboard.stores import StoreSet
from rnnviz.views.display import row_labels, sign_symbol
from rnnviz.views.match_heatmap import SIGMA, column_labels, match_figure

DEFAULT_CELLS = 5  # cells taken from the ranking when the user has not chosen any
HEATMAPS = 6  # matches drawn as heatmaps
HEAT_CONTEXT = 10  # rows drawn each side of a match
CANDIDATES = 6  # the selection's next-best cells drawn as grey lines (a click adds one to the set)
RANK_THETA = THETA  # the one θ the cell set and the signs are ranked at, whatever θ the user drags to
LINE_COLOURS = ["#c0392b", "#2471a3", "#e67e22", "#7d3c98", "#17a589", "#555555", "#b7950b", "#1e8449"]
CANDIDATE_COLOUR = "#9a9a9a"  # a grey line: a cell of the selection not in the set


def ranking(stores: StoreSet, view: View):
    """The cells that mark the view's selection, best first, each with its sign (:func:`similar_cells` at
    :data:`RANK_THETA`, θ alone: LSTMVis's view has one θ line for every cell); cached per selection."""
    cfg = SimilarConfig(threshold=RANK_THETA, two_state=False)
    return stores.cached(("pattern-rank", view.store, view.sel),
                         lambda: similar_cells(stores[view.store], *view.sel, cfg))


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
    ranked = ranking(stores, view).head(DEFAULT_CELLS)
    if ranked.empty:
        return [], [], f"no cell marks the selection at θ = {RANK_THETA:g} σ: give cells"
    return list(ranked["unit"]), [int(s) for s in ranked["sign"]], ""


def candidates(stores: StoreSet, view: View, cells: list[str]) -> tuple[list[str], list[int]]:
    """The selection's next-best cells outside the set (at most :data:`CANDIDATES`) and their signs: drawn as
    grey lines that a click adds to the set."""
    if view.sel is None:
        return [], []
    ranked = ranking(stores, view)
    ranked = ranked[~ranked["unit"].isin(cells)].head(CANDIDATES)
    return list(ranked["unit"]), [int(s) for s in ranked["sign"]]


def toggled(click, drawn) -> tuple[str, str]:
    """A click on a line of the pattern plot (a graph's clickData; ``drawn``: the cells and candidates drawn, in
    trace order): (the new cell set as typed in the cells box, a message). A cell of the set is dropped, a grey
    candidate added; the set keeps 1 to MAX_FOLLOW cells."""
    try:
        curve = int(click["points"][0]["curveNumber"])
        cells, extra = list(drawn["cells"]), list(drawn["candidates"])
    except (TypeError, KeyError, IndexError, ValueError):
        raise PreventUpdate from None
    units = extra + cells  # the traces' order (pattern_figure)
    if not 0 <= curve < len(units) or not all(isinstance(u, str) for u in units):
        raise PreventUpdate
    unit = units[curve]
    if unit in cells:
        if len(cells) == 1:
            return no_update, f"{unit} is the last cell of the set: add another before dropping it"
        cells.remove(unit)
    elif len(cells) >= MAX_FOLLOW:
        return no_update, f"the set has {MAX_FOLLOW} cells, the most it follows: drop one before adding {unit}"
    else:
        cells.append(unit)
    return ", ".join(cells), ""


def on_set(store, view: View, cells: list[str], signs: list[int]) -> list[str]:
    """The cells on at >= MIN_ON of the selection's characters at the view's θ (all cells without one)."""
    if view.sel is None:
        return list(cells)
    a, b = view.sel
    z = zscore(store, cells, store.window(a, b, cells)) * np.asarray(signs, np.float32)  # (n, k)
    frac = (z > view.theta).mean(0)
    return [c for c, f in zip(cells, frac, strict=True) if f >= MIN_ON]


def pattern_figure(stores: StoreSet, view: View, window: int, cells: list[str], signs: list[int],
                   passing: int | None = None, extra: tuple[list[str], list[int]] = ([], [])) -> dict:
    """Parallel lines (σ, sign-aware) of ``cells`` over the view's window, then the ``extra`` cells (candidates:
    units and signs) as thin grey lines, the selection shaded and θ as a dashed line that the user can drag (an
    editable shape), at any θ; ``passing``: how many cells are on at θ (said in the title). The traces are in
    the order extra, then cells (a click's curveNumber indexes them: :func:`toggled`)."""
    store = stores[view.store]
    start, stop = view.start, min(store.length, view.start + window)
    units, all_signs = list(cells) + list(extra[0]), list(signs) + list(extra[1])
    z = zscore(store, units, store.window(start, stop, units)) * np.asarray(all_signs, np.float32)  # (n, k)
    x = np.arange(start, stop)
    on = "" if passing is None else f": {passing} of {len(cells)} cells on"
    data = [dict(type="scatter", x=x, y=z[:, j], mode="lines", name=f"{c} ({sign_symbol(signs[j])})",
                 line=dict(width=1.2, color=LINE_COLOURS[j % len(LINE_COLOURS)]),
                 hovertemplate="#%{x}: %{y:.2f} σ<extra>%{fullData.name}: click to drop</extra>")
            for j, c in enumerate(cells)]
    data += [dict(type="scatter", x=x, y=z[:, len(cells) + j], mode="lines", name=f"{c} ({sign_symbol(s)})",
                  line=dict(width=0.8, color=CANDIDATE_COLOUR), opacity=0.6, showlegend=False,
                  hovertemplate="#%{x}: %{y:.2f} σ<extra>%{fullData.name}: click to add</extra>")
             for j, (c, s) in enumerate(zip(*extra, strict=True))]
    data = data[len(cells):] + data[: len(cells)]  # the grey lines first: the set's are drawn over them
    shapes = [dict(type="line", xref="paper", x0=0, x1=1, yref="y", y0=view.theta, y1=view.theta, editable=True,
                   line=dict(color="#000", width=2, dash="dash"), name="theta")]
    if view.sel:
        shapes.append(dict(type="rect", xref="x", yref="paper", x0=view.sel[0] - 0.5, x1=view.sel[1] - 0.5, y0=0, y1=1,
                           fillcolor="rgba(230,110,0,0.12)", line=dict(width=0), editable=False, layer="below"))
    # The title above the plot, the legend under it: at 1280 pixels they would meet in one band. Hover on the
    # closest line only: a click then names one cell (x unified named every cell at that character).
    layout = dict(height=300, margin=dict(l=50, r=10, t=36, b=70), font=dict(family="system-ui, sans-serif", size=12),
                  shapes=shapes, hovermode="closest", dragmode="select", selectdirection="h",
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
    """One match [a, b) (with HEAT_CONTEXT rows each side) as a heatmap of the cells (σ) aligned with its text
    (:func:`rnnviz.views.match_heatmap.match_figure`), in a box that scrolls sideways when it is wider than the
    panel."""
    lo, hi = max(0, a - HEAT_CONTEXT), min(store.length, b + HEAT_CONTEXT)
    z = (zscore(store, cells, store.window(lo, hi, cells)) * np.asarray(signs, np.float32)).T  # (k, n)
    labels = row_labels(store, lo, hi) if store.is_tokens else column_labels(store.text[lo:hi])
    fig = match_figure(z, lo, labels, cells, f"{a:,}–{b:,}", None if feature is None else feature[lo:hi], name)
    graph = dcc.Graph(figure=fig, config={"displayModeBar": False}, className="heat",
                      style={"width": f"{fig['layout']['width']}px", "height": f"{fig['layout']['height']}px"})
    return html.Div(graph, className="heat-box")


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
                    f"{len(matches) - len(strong)} weak not drawn. Colour: σ from each cell's store-wide mean, "
                    f"sign-aware (red: on, white: its mean, blue: low; ±{SIGMA:g} σ and beyond: the end colours); "
                    "the characters under the columns", className="note")
    return html.Div([note, *maps]), ""


def pattern_view(stores: StoreSet, v: View, window: int) -> tuple[dict, str, str, dict | None]:
    """The pattern tab: (the lines figure, the on-set line, a message, the cells and candidates drawn as
    ``{"cells", "candidates"}``: what a click on a line names); nothing while the tab is hidden."""
    if v.tab != "pattern":
        raise PreventUpdate  # drawn when shown
    try:
        cells, signs, msg = cell_set(stores, v)
    except RnnvizError as e:
        cells, msg = [], str(e)
    if not cells:
        from rnnviz.views.dashboard.figures import message_figure

        return message_figure(msg), "", msg, None
    onset = on_set(stores[v.store], v, cells, signs)
    extra = candidates(stores, v, cells)
    return (pattern_figure(stores, v, window, cells, signs, len(onset), extra),
            f"on-set at θ = {v.theta:g} σ: {', '.join(onset) or 'none'} ({len(onset)} of {len(cells)} cells)", "",
            {"cells": cells, "candidates": extra[0]})


def register(app, stores: StoreSet, window: int) -> None:
    app.callback(
        Output("pattern", "figure"), Output("pat-onset", "children"), Output("pat-msg", "children"),
        Output("pat-drawn", "data"), Input("view", "data"),
    )(on_view(pattern_view, stores, window))

    # A click on a line adds its cell to the set or drops it: through the cells box, as if typed.
    app.callback(Output("pat-cells", "value", allow_duplicate=True),
                 Output("pat-msg", "children", allow_duplicate=True),
                 Input("pattern", "clickData"), State("pat-drawn", "data"), prevent_initial_call=True)(toggled)

    # n_submit is bumped with the dragged θ: dcc.Input's Enter handler keeps the props of the last render in which
    # n_submit changed, so without it a θ typed after a drag that equals the θ typed before was never sent.
    @app.callback(Output("pat-thr", "value", allow_duplicate=True), Output("pat-thr", "n_submit"),
                  Input("pattern", "relayoutData"), State("pat-thr", "n_submit"), prevent_initial_call=True)
    def _drag(relayout, submits):
        theta = theta_from_relayout(relayout)
        if theta is None:
            raise PreventUpdate
        return theta, (submits if isinstance(submits, int) else 0) + 1

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
