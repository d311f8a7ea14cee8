"""The Overview tab: every unit of one layer and kind as a row of colours over a stretch of the text.

Rows are ordered by the catalog's explanations when they are known (computed, or kept beside the store), else by
a cheap measure (:mod:`rnnviz.analysis.overview`: two-state η, slowness) and the note says which; input detectors
are hidden by a checkbox (the catalog's roles, else a unit mostly explained by the character just read). Colours are the
text view's robust range per unit (:mod:`rnnviz.views.heat_rows`), so two-state and slow cells stand out as
bands and steps. The stretch follows the text view's window and scrolls on its own ("from", ◀ ▶); a click on a
row colours the text by that unit (through the URL, like any link), over the stretch shown.

Hooked into the page with one line in ``layout.py`` (the tab), one in ``app.py`` (``register``) and the tab's
name in ``state.TABS``.
"""

from __future__ import annotations

from dash import Input, Output, State, ctx, dcc, html
from dash.exceptions import PreventUpdate

from rnnviz.analysis.overview import (
    CHAR_SHARE_MIN,
    ORDERS,
    explain_order,
    input_detectors,
    measure_order,
    unit_measures,
)
from rnnviz.errors import RnnvizError
from rnnviz.model.units import parse_unit
from rnnviz.views.colours import PALETTES, unit_scales
from rnnviz.views.dashboard import catalog
from rnnviz.views.dashboard.figures import loading_figure, message_figure
from rnnviz.views.dashboard.state import WINDOW, View, clip_start, to_int, to_query
from rnnviz.views.dashboard.stores import StoreSet
from rnnviz.views.display import row_word
from rnnviz.views.heat_rows import MAX_COLUMNS, overview_figure, overview_steps, unit_of

WIDTH = 500  # characters shown by default: one heatmap column each
MAX_WIDTH = 2000  # characters at most (averaged into MAX_COLUMNS columns)
MAX_ROWS = 512  # units drawn at most (the first in the order)
HIDE = "inputs"  # the checkbox's value: input detectors hidden


def panel() -> html.Div:
    num = {"type": "number", "debounce": True}
    return html.Div([
        html.P("Every unit of a layer and kind as a row, coloured as the text would be by it (its own 1st–99th "
               "percentile; white = 0, or the middle for a unit of one sign): two-state cells show as bands, slow "
               "cells as ramps. Click a row to colour the text by that unit.", className="note"),
        html.Div([
            html.Label("units"), dcc.Dropdown(id="ov-group", clearable=True, placeholder="the unit's",
                                              className="pick-mid", searchable=False),
            html.Label("order"), dcc.Dropdown(id="ov-order", options=[{"label": k, "value": k, "title": v}
                                                                      for k, v in ORDERS.items()],
                                              value="explain", clearable=False, searchable=False,
                                              className="pick-mid"),
        ], className="row"),
        html.Div([
            html.Label("from"), dcc.Input(id="ov-start", min=0, value=0, style={"width": "90px"}, **num),
            html.Button("◀", id="ov-prev", title="the stretch before"),
            html.Button("▶", id="ov-next", title="the stretch after"),
            html.Label("width"), dcc.Input(id="ov-width", min=10, max=MAX_WIDTH, value=WIDTH,
                                           style={"width": "70px"}, **num),
            dcc.Checklist(id="ov-hide", value=[HIDE], inputStyle={"marginRight": "4px"},
                          options=[{"label": "hide input detectors", "value": HIDE}]),
        ], className="row"),
        html.Div(id="ov-msg", className="note"),
        dcc.Store(id="ov-followed"),
        # The first draw of a store computes every unit's two states and the group's colour ranges (~10 s for
        # 1,024 units x 100k characters on a busy 2-core machine): a spinner says it is working.
        dcc.Loading(dcc.Graph(id="ov-heat", figure=loading_figure(300), config={"displaylogo": False}), type="dot"),
    ])


def groups(store) -> list[str]:
    """The store's arrays as "LAYER:KIND" (the overview's choices)."""
    return [f"{layer}:{kind}" for layer in store.layers for kind in store.kinds if store.width(layer, kind)]


def group_units(store, group: str) -> list[str]:
    layer, kind = group.split(":")
    return [f"{layer}:{kind}:{j}" for j in range(store.width(int(layer), kind))]


def _labels(rows: list[dict] | None, units: list[str], measures) -> list[str]:
    """What a row says on hover: its explanation (from the catalog) or its measures."""
    if rows is not None:
        by = {r["unit"]: r for r in rows}
        return [f"{by[u]['explanation']} (held-out score {by[u]['score']:.2f})" if u in by else "" for u in units]
    return [f"two-state η {m.eta:.2f} · slow {m.slow:.2f} · character share {m.char_share:.2f}"
            for m in measures.loc[units].itertuples()]


def overview(stores: StoreSet, view: View, group: str | None, start, width, order: str, hide) -> tuple[dict, str]:
    """(the heatmap figure, the note): ``group``'s units (the view unit's layer and kind when None) over
    ``width`` characters from ``start``, in ``order`` (:data:`ORDERS`; "explain" needs the catalog, else
    two-state η), input detectors left out when ``hide`` holds :data:`HIDE`."""
    i, store = view.store, stores[view.store]
    layer, kind, _ = parse_unit(view.unit)
    group = group if group in groups(store) else f"{layer}:{kind}"
    try:
        width = min(max(to_int(width), 10), MAX_WIDTH)
    except (TypeError, ValueError):
        width = WIDTH
    start = clip_start(start, store.length, width)
    stop = min(store.length, start + width)
    units = group_units(store, group)
    measures = stores.cached(("ov-measures", i, group), lambda: unit_measures(store, units))
    rows = catalog.known_rows(stores, i)
    order = order if isinstance(order, str) and order in ORDERS else "index"  # any JSON may come from the browser
    said = ORDERS[order]
    if order == "explain" and rows is None:
        order, said = "two-state", ORDERS["two-state"] + " (no catalog yet: Catalog → Explain every unit)"
    if rows is not None:
        role = {r["unit"]: r["_role"] for r in rows}
        roles = [role.get(u, "unexplained") for u in units]
        detector = [r == "input detector" for r in roles]
        how = "the catalog's roles"
    else:
        detector = input_detectors(measures).loc[units].tolist()
        how = f"character share ≥ {CHAR_SHARE_MIN:g}: the catalog is not computed"
    if order == "explain":
        score = {r["unit"]: r["score"] for r in rows}
        ranked = explain_order(roles, [score.get(u, float("nan")) for u in units])
    else:
        ranked = measure_order(measures, order)
    hidden = isinstance(hide, list) and HIDE in hide
    keep = [units[j] for j in ranked if not (hidden and detector[j])][:MAX_ROWS]
    if not keep:
        return message_figure(f"every unit of {group} is an input detector: untick the filter"), ""
    # The text view's scale of each unit (its percentiles over the store's sample, the sample read once for
    # the group: a unit alone costs a read of its array's rows)
    scales = stores.cached(("ov-scales", i, group), lambda: unit_scales(store, units, "robust"))
    by = dict(zip(units, scales, strict=True))
    steps, edges = overview_steps(store.window(start, stop, keep), [by[u] for u in keep], start, MAX_COLUMNS)
    fig = overview_figure(steps, edges, keep, PALETTES[scales[0].name], _labels(rows, keep, measures),
                          f"{group}: {row_word(store)} {start:,}–{stop:,}", row_word(store, 1))
    n_hidden = sum(detector) if hidden else 0
    note = (f"{len(keep)} of {len(units)} units of {group}, ordered by {said}"
            + (f"; {n_hidden} input detector{'s' if n_hidden != 1 else ''} hidden ({how})" if n_hidden else ""))
    return fig, note


def follow(stores: StoreSet, view: View, followed) -> tuple[int, dict, list[dict]]:
    """The stretch follows the text view's window (its start), and the choices the view's store: (start, what
    was followed, the layer-and-kind options); PreventUpdate while neither changed."""
    now = {"store": view.store, "start": view.start}
    if now == followed:
        raise PreventUpdate
    return view.start, now, [{"label": g, "value": g} for g in groups(stores[view.store])]


def scroll(stores: StoreSet, view: View, start, width, forward: bool) -> int:
    """The stretch's new start, a width on or back (inside the text)."""
    try:
        start, width = to_int(start or 0), min(max(to_int(width), 10), MAX_WIDTH)
    except (TypeError, ValueError):
        raise PreventUpdate from None
    return clip_start(start + (width if forward else -width), stores[view.store].length, width)


def pick(stores: StoreSet, view: View, click, start, window: int) -> str:
    """A click on a row: the URL of the view with the text coloured by that unit, over the stretch shown."""
    try:
        unit = unit_of(click["points"][0]["y"])
    except (TypeError, KeyError, IndexError, AttributeError):
        raise PreventUpdate from None
    if unit not in stores[view.store].units:
        raise PreventUpdate
    new = view.replace(unit=unit, cmp="" if view.cmp == unit else view.cmp, hl=None,
                       start=clip_start(start, stores[view.store].length, window))
    return to_query(new, stores)


def register(app, stores: StoreSet, window: int = WINDOW) -> None:
    clean = lambda view: View.clean(view, stores, window)  # noqa: E731

    @app.callback(
        Output("ov-start", "value"), Output("ov-followed", "data"), Output("ov-group", "options"),
        Input("view", "data"), State("ov-followed", "data"),
    )
    def _follow(view, followed):
        if not view:
            raise PreventUpdate
        return follow(stores, clean(view), followed)

    @app.callback(Output("ov-start", "value", allow_duplicate=True), Input("ov-prev", "n_clicks"),
                  Input("ov-next", "n_clicks"), State("ov-start", "value"), State("ov-width", "value"),
                  State("view", "data"), prevent_initial_call=True)
    def _scroll(prev, nxt, start, width, view):
        return scroll(stores, clean(view), start, width, ctx.triggered_id == "ov-next")

    @app.callback(
        Output("ov-heat", "figure"), Output("ov-msg", "children"),
        Input("tabs", "value"), Input("ov-group", "value"), Input("ov-start", "value"), Input("ov-width", "value"),
        Input("ov-order", "value"), Input("ov-hide", "value"), Input("focus", "data"), State("view", "data"),
    )
    def _draw(tab, group, start, width, order, hide, _focus, view):
        # The focus (store, unit, feature): "the unit's" layer and kind follow the unit picked in the top bar.
        if tab != "overview" or not view:
            raise PreventUpdate  # drawn when shown
        try:
            return overview(stores, clean(view), group, start, width, order, hide)
        except RnnvizError as e:
            return message_figure(str(e)), str(e)

    @app.callback(Output("url", "search", allow_duplicate=True), Input("ov-heat", "clickData"),
                  State("view", "data"), State("ov-start", "value"), prevent_initial_call=True)
    def _pick(click, view, start):
        return pick(stores, clean(view), click, start, window)
