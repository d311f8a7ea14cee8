"""The catalog tab: every unit of the store with its explanation and score (:func:`rnnviz.explain`).

A sortable, filterable table (layer, kind, score, rule, ...). Clicking a row opens that unit in the
text view at its highest activation (through the URL, like any link) and draws, under the table, the
unit and its rule's simulated values over that window as two tracks, with the unit's top-activating
contexts and a few from each decile to check the explanation by eye.

Hooked into the page with one line in ``layout.py`` (the tab) and one in ``app.py`` (``register``).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from dash import Input, Output, State, dash_table, dcc, html, no_update
from dash.exceptions import PreventUpdate

from rnnviz.analysis.explain import BLOCK, explain, top_contexts
from rnnviz.analysis.explain_control import catalog_count
from rnnviz.analysis.rules import simulate
from rnnviz.errors import RnnvizError
from rnnviz.views.dashboard.state import WINDOW, View, to_query
from rnnviz.views.dashboard.stores import StoreSet

COLUMNS = ["unit", "layer", "kind", "index", "score", "sign", "auroc", "explanation", "rule"]
LEAD = 200  # rows shown before the clicked unit's highest activation


def panel() -> html.Div:
    return html.Div([
        html.P("Every unit with the rule that explains it best: chosen on one half of the text (alternate "
               f"blocks of {BLOCK:,} characters), scored (Pearson r; AUROC for 0/1 rules) on the other. Filter a "
               "column by typing in its header cell (e.g. >=0.5 under score, c under kind); click a row to open "
               "the unit.",
               className="note"),
        html.Div([html.Button("Explain every unit", id="catalog-go"),
                  html.Span(" (a few seconds per 1,000 units x 100k characters)", className="note")],
                 className="row"),
        html.Div(id="catalog-msg", className="msg"),
        dcc.Loading(dash_table.DataTable(
            id="catalog-table", columns=[{"name": c, "id": c} for c in COLUMNS], data=[],
            sort_action="native", filter_action="native", page_size=15,
            style_cell={"font": "12px ui-monospace,Menlo,Consolas,monospace", "textAlign": "left",
                        "maxWidth": "260px", "overflow": "hidden", "textOverflow": "ellipsis"},
            style_table={"overflowX": "auto"},
        ), type="dot"),
        dcc.Graph(id="catalog-track", config={"displaylogo": False}, style={"height": "260px"}),
        html.Div(id="catalog-contexts"),
    ])


def catalog_rows(stores: StoreSet, i: int) -> list[dict]:
    """Store ``i``'s catalog as DataTable rows (cached: it is computed once per store)."""

    def make() -> list[dict]:
        df = explain(stores[i], intervals=False)  # the table shows no interval: none computed
        df = df.assign(score=df["score"].round(3), auroc=df["auroc"].round(3), id=df["unit"])
        rows = df[COLUMNS + ["id"]].to_dict("records")
        for r, coef, role in zip(rows, df["coef"], df["role"], strict=True):
            r["auroc"] = None if r["auroc"] != r["auroc"] else r["auroc"]  # NaN -> empty cell
            r["_coef"], r["_role"] = coef, role
        return rows

    return stores.cached(("catalog", i), make)


def track_figure(store, unit: str, rule: str, coef, start: int, stop: int) -> go.Figure:
    """The unit and its rule's simulated values over ``[start, stop)``: two tracks, one above the other."""
    x = list(range(start, stop))  # lists, not typed arrays: the figure's JSON reads the same everywhere
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=store.window(start, stop, [unit])[:, 0].tolist(), name=unit, line={"width": 1}))
    if rule and rule != "unexplained":
        sim = store.at_rows(simulate(rule, store.text, coef))[start:stop].tolist()  # a token: its last character
        fig.add_trace(go.Scatter(x=x, y=sim, name="rule", yaxis="y2", line={"width": 1, "color": "#d62728"}))
    fig.update_layout(
        margin={"l": 40, "r": 10, "t": 24, "b": 24}, height=260, showlegend=True,
        title={"text": f"{unit}: {rule}", "font": {"size": 12}},
        yaxis={"domain": [0.55, 1.0], "title": "unit"}, yaxis2={"domain": [0.0, 0.45], "title": "rule"},
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def contexts_table(store, unit: str) -> html.Table:
    df = top_contexts(store, unit, top=5, per_decile=1, context=25)
    rows = [html.Tr([html.Td(r.group), html.Td(f"{r.value:+.2f}"),
                     html.Td([r.before, html.B(r.char), r.after], className="snip")])
            for r in df.itertuples(index=False)]
    head = html.Thead(html.Tr([html.Th("where"), html.Th("value"), html.Th("context (character read in bold)")]))
    return html.Table([head, html.Tbody(rows)], className="rank")


def register(app, stores: StoreSet, window: int = WINDOW) -> None:
    @app.callback(
        Output("catalog-table", "data"), Output("catalog-msg", "children"),
        Input("catalog-go", "n_clicks"), State("view", "data"), prevent_initial_call=True,
    )
    def _explain(_, view):
        i = View.clean(view, stores, window).store
        try:
            rows = catalog_rows(stores, i)
        except RnnvizError as e:
            return [], str(e)
        return [{k: v for k, v in r.items() if k not in ("_coef", "_role")} for r in rows], (
            f"{stores.names[i]}: {catalog_count([r['_role'] for r in rows])}")

    @app.callback(
        Output("url", "search", allow_duplicate=True), Output("catalog-track", "figure"),
        Output("catalog-contexts", "children"),
        Input("catalog-table", "active_cell"), State("view", "data"), prevent_initial_call=True,
    )
    def _open(cell, view):
        if not isinstance(cell, dict) or not isinstance(cell.get("row_id"), str):
            raise PreventUpdate
        view = View.clean(view, stores, window)
        i, unit = view.store, cell["row_id"]
        store = stores[i]
        if unit not in store.units:
            raise PreventUpdate
        try:
            row = next(r for r in catalog_rows(stores, i) if r["unit"] == unit)
        except (RnnvizError, StopIteration):
            return no_update, no_update, no_update
        peak = int(np.nanargmax(store.unit(unit).astype(np.float32) * (row["sign"] or 1)))
        start = max(0, peak - LEAD)
        stop = min(store.length, start + window)
        query = to_query(view.replace(unit=unit, start=start, cmp=""), stores)
        rule = row["rule"]
        return query, track_figure(store, unit, rule, row["_coef"], start, stop), contexts_table(store, unit)
