"""The catalog tab: every unit of the store with its explanation and score (:func:`rnnviz.explain`).

A sortable, filterable grid (dash-ag-grid: layer, kind, score, rule, ...; each header says what its column is
on hover). Units that only detect the character just read (the ``role`` of :func:`rnnviz.explain`)
are hidden unless asked for. Clicking a row opens that unit in the text view at its strongest activation
(through the URL, like any link) and draws, under the grid, the unit and its rule's simulated values over
that window as two tracks, with the unit's top-activating contexts and a few from each decile to check the
explanation by eye. Once computed, a store's catalog is shown whenever the tab is opened: it is kept beside the
store (:mod:`rnnviz.analysis.explain_cache`), so a new server process reads it instead of computing it again. The
first time, explain runs in the background (:mod:`.jobs`) and the tab shows its progress.

Hooked into the page with one line in ``layout.py`` (the tab) and one in ``app.py`` (``register``).
"""

from __future__ import annotations

import dash_ag_grid as dag
import plotly.graph_objects as go
from dash import Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from rnnviz.analysis.explain import BLOCK, top_contexts
from rnnviz.analysis.explain_cache import CATALOG, cached_explain, stored_explain
from rnnviz.analysis.explain_control import catalog_count
from rnnviz.analysis.rules import simulate
from rnnviz.errors import RnnvizError
from rnnviz.views.dashboard.jobs import DONE, RUNNING, Jobs
from rnnviz.views.dashboard.state import WINDOW, View, to_query
from rnnviz.views.dashboard.stores import StoreSet
from rnnviz.views.dashboard.transitions import show_peak
from rnnviz.views.display import readable_line, sign_symbol

# Column -> what it holds (each header's tooltip).
COLUMN_HELP = {
    "unit": "LAYER:KIND:INDEX; click a row to open the unit where it fires most",
    "score": "the rule's Pearson r with the unit on the held-out half of the text (signed: > 0 agrees)",
    "sign": "+: the unit goes up where the rule is high; −: it goes down",
    "auroc": "0/1 rules: AUROC of the unit's values, rule on against off, held-out half (0.5 = chance)",
    "explanation": "the rule in words",
    "rule": "the rule's id (rnnviz explain's rule language)",
    "layer": "layer, 0 nearest the input",
    "kind": "the state recorded: h hidden, c cell, y output; i f g o (LSTM) or r z n (GRU) gates",
    "index": "the unit's number in its layer and kind",
}
COLUMNS = list(COLUMN_HELP)
# Pixels per column (the explanation takes what is left); the best score first.
WIDTHS = {"unit": 84, "score": 96, "sign": 76, "auroc": 88, "rule": 150, "layer": 80, "kind": 76, "index": 80}
HIDE_TRIVIAL = "trivial"  # the filter's value: units that only detect the character just read are hidden
POLL_MS = 400  # how often the tab asks how far a running explain is
HIDDEN = {"display": "none", "width": "100%"}  # the progress bar's style while no explain runs


def panel() -> html.Div:
    size = lambda c: {"width": WIDTHS[c]} if c in WIDTHS else {"flex": 1, "minWidth": 160}  # noqa: E731
    columns = [{"field": c, "headerTooltip": h, **size(c), **({"sort": "desc"} if c == "score" else {})}
               for c, h in COLUMN_HELP.items()]
    return html.Div([
        html.P("Every unit with the rule that explains it best: chosen on one half of the text (alternate "
               f"blocks of {BLOCK:,} characters), scored (Pearson r; AUROC for 0/1 rules) on the other. Click a "
               "header to sort, type under it to filter (e.g. c under kind); hover a header: what the column is. "
               "Click a row to open the unit where it fires most.",
               className="note"),
        html.Div([html.Button("Explain every unit", id="catalog-go"),
                  html.Span(" (a few seconds per 1,000 units x 100k characters)", className="note")],
                 className="row"),
        dcc.Checklist(id="catalog-hide", value=[HIDE_TRIVIAL], inputStyle={"marginRight": "4px"},
                      options=[{"label": "hide input detectors (units that only say which character was just "
                                "read)", "value": HIDE_TRIVIAL}]),
        html.Div(id="catalog-msg", className="note"),
        html.Progress(id="catalog-progress", max=1000, value=0, style=HIDDEN),
        dcc.Interval(id="catalog-poll", interval=POLL_MS, disabled=True),
        dcc.Loading(dag.AgGrid(
            id="catalog-table", columnDefs=columns, rowData=[], getRowId="params.data.unit",
            # A filter box under each header (as the table it replaces had), the header left to its name.
            defaultColDef={"sortable": True, "filter": True, "floatingFilter": True, "suppressHeaderMenuButton": True,
                           "suppressHeaderFilterButton": True, "suppressFloatingFilterButton": True,
                           "resizable": True, "minWidth": 60},
            dashGridOptions={"pagination": True, "paginationPageSize": 15, "tooltipShowDelay": 200,
                             "paginationPageSizeSelector": False, "domLayout": "autoHeight", "rowHeight": 26,
                             "headerHeight": 30, "suppressColumnVirtualisation": True},
            style={"width": "100%"},
        ), type="dot"),
        dcc.Graph(id="catalog-track", config={"displaylogo": False}, style={"height": "260px"}),
        html.Div(id="catalog-contexts"),
    ])


def grid_rows(df) -> list[dict]:
    """An explain table as grid rows, with ``_coef`` (a combination's weights) and ``_sign`` (1 or -1) for the
    server and ``_role`` (:func:`~rnnviz.analysis.explain_control.roles`) for the filter."""
    df = df.assign(score=df["score"].round(3), auroc=df["auroc"].round(3))
    rows = df[COLUMNS].to_dict("records")
    for r, coef, role in zip(rows, df["coef"], df["role"], strict=True):
        r["auroc"] = None if r["auroc"] != r["auroc"] else r["auroc"]  # NaN -> empty cell
        r["_coef"], r["_role"], r["_sign"], r["sign"] = coef, role, r["sign"], sign_symbol(r["sign"])
    return rows


def catalog_rows(stores: StoreSet, i: int, progress=None) -> list[dict]:
    """Store ``i``'s catalog as grid rows (:func:`grid_rows`): kept for the server process, read from beside the
    store, else computed (``progress(done, total)`` as it goes; the grid shows no interval: none computed)."""
    return stores.cached(("catalog", i), lambda: grid_rows(cached_explain(stores[i], progress, **CATALOG)))


def known_rows(stores: StoreSet, i: int) -> list[dict] | None:
    """Store ``i``'s catalog when it is known without computing (this process's, or the cache beside the
    store), else None."""
    if stores.holds(("catalog", i)):
        return catalog_rows(stores, i)
    df = stored_explain(stores[i], **CATALOG)
    return None if df is None else stores.cached(("catalog", i), lambda: grid_rows(df))


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
                     html.Td([readable_line(r.before), html.B(readable_line(r.char)), readable_line(r.after)],
                             className="snip")])
            for r in df.itertuples(index=False)]
    head = html.Thead(html.Tr([html.Th("where"), html.Th("value"), html.Th("context (character read in bold)")]))
    return html.Table([head, html.Tbody(rows)], className="rank")


def shown_rows(rows: list[dict], hide: list | None) -> list[dict]:
    """The rows the grid gets: without the server's fields, and without input detectors when ``hide`` says so."""
    hidden = HIDE_TRIVIAL in (hide or [])
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows
            if not (hidden and r["_role"] == "input detector")]


def catalog_message(name: str, rows: list[dict], shown: int) -> str:
    """The line over the grid: :func:`~rnnviz.analysis.explain_control.catalog_count`, and how many rows the
    filter hides."""
    hidden = len(rows) - shown
    tail = f"; {hidden:,} input detector{'s' if hidden > 1 else ''} hidden below" if hidden else ""
    return f"{name}: {catalog_count([r['_role'] for r in rows])}{tail}"


def fraction(job: dict) -> float:
    """The share of a job done, 0..1 (0 before explain has counted its work: rows x units)."""
    return min(1.0, job["done"] / job["total"]) if job["total"] else 0.0


def progress_message(name: str, units: int, job: dict) -> str:
    """The line over the progress bar while explain runs."""
    return f"{name}: explaining {units:,} units, {fraction(job):.0%} done (once: it is kept beside the store)"


def catalog_state(stores: StoreSet, jobs: Jobs, i: int, clicked: bool, hide) -> tuple:
    """What the tab shows of store ``i``'s catalog: (grid rows, message, its class, progress value, progress
    style, whether polling stops). The rows once known (computed, or beside the store); a click starts explain in
    the background when they are not; while it runs, its progress; before anyone asked, nothing new."""
    rows, job = known_rows(stores, i), jobs.of(i)
    if rows is None and clicked:  # computed in the background; the poll shows how far it is
        job = jobs.status(jobs.start(i, lambda progress: catalog_rows(stores, i, progress)))
    if rows is None and job is not None and job["state"] == DONE:
        rows = catalog_rows(stores, i)  # finished since
    if rows is not None:
        shown = shown_rows(rows, hide)
        return shown, catalog_message(stores.names[i], rows, len(shown)), "note", 1000, HIDDEN, True
    if job is None:  # nothing asked for this store yet: the button says what to do (a poll for another stops)
        return (no_update,) * 5 + (True,)
    if job["state"] != RUNNING:
        return [], job["error"], "msg", 0, HIDDEN, True
    msg = progress_message(stores.names[i], len(stores[i].units), job)
    return no_update, msg, "note", round(fraction(job) * 1000), {**HIDDEN, "display": "block"}, False


def register(app, stores: StoreSet, window: int = WINDOW) -> None:
    jobs = Jobs(workers=2)  # at most two stores explained at once (each explain runs on two threads)

    @app.callback(
        Output("catalog-table", "rowData"), Output("catalog-msg", "children"), Output("catalog-msg", "className"),
        Output("catalog-progress", "value"), Output("catalog-progress", "style"), Output("catalog-poll", "disabled"),
        Input("catalog-go", "n_clicks"), Input("tabs", "value"), Input("catalog-hide", "value"),
        Input("catalog-poll", "n_intervals"), State("view", "data"), prevent_initial_call=True,
    )
    def _explain(_, tab, hide, _poll, view):
        clicked = ctx.triggered_id == "catalog-go"
        if not clicked and tab != "catalog" and ctx.triggered_id != "catalog-poll":
            raise PreventUpdate
        return catalog_state(stores, jobs, View.clean(view, stores, window).store, clicked, hide)

    @app.callback(
        Output("url", "search", allow_duplicate=True), Output("catalog-track", "figure"),
        Output("catalog-contexts", "children"),
        Input("catalog-table", "cellClicked"), State("view", "data"), prevent_initial_call=True,
    )
    def _open(cell, view):
        if not isinstance(cell, dict) or not isinstance(cell.get("rowId"), str):
            raise PreventUpdate
        view = View.clean(view, stores, window)
        i, unit = view.store, cell["rowId"]
        store = stores[i]
        if unit not in store.units:
            raise PreventUpdate
        try:
            row = next(r for r in catalog_rows(stores, i) if r["unit"] == unit)
        except (RnnvizError, StopIteration):
            return no_update, no_update, no_update
        new = show_peak(stores, view.replace(unit=unit, cmp=""), unit, row["_sign"] or 1, window)
        stop = min(store.length, new.start + window)
        track = track_figure(store, unit, row["rule"], row["_coef"], new.start, stop)
        return to_query(new, stores), track, contexts_table(store, unit)
