"""The text window and its trace: the coloured characters, the legend and the curves under them.

The text is drawn from the view's :data:`..state.TEXT_FIELDS` only, and again only when one of them changed
(the ``text-view`` store keeps those it was drawn from): a tab switch, a selection or θ leaves the drawn text,
its scroll and the hover panel alone.
The server sends the window as data; the browser draws it (``rnnviz.draw`` in ``assets/rnnviz.js``),
clears the hover panel, outlines the highlighted run once and reports that the window is drawn, which
then asks for the trace (a Plotly redraw blocks the browser for ~100 ms: the text does not wait for it).
The trace's graph itself is mounted after the first window is drawn (``mountTrace``), so that loading
Plotly does not delay the first coloured text either; its figure then follows (Dash calls the trace
callback for the newly mounted graph).
"""

from __future__ import annotations

from dash import ClientsideFunction, Input, Output, State
from dash.exceptions import PreventUpdate

from rnnviz.views.colours import ColourScale, unit_scale
from rnnviz.views.dashboard import figures, textview
from rnnviz.views.dashboard.callbacks.shared import feature_or_none, on_view
from rnnviz.views.dashboard.state import TEXT_FIELDS, View
from rnnviz.views.dashboard.stores import StoreSet
from rnnviz.views.display import char_loss, row_labels, row_word


def scale(stores: StoreSet, i: int, unit: str, mode: str) -> ColourScale:
    """``unit``'s colour scale over the colour range ``mode`` (cached: p99 reads a sample of the store)."""
    return stores.cached(("scale", i, unit, mode), lambda: unit_scale(stores[i], unit, mode))


def render_window(stores: StoreSet, view: View, window: int):
    """The text view for ``view``: (window data for the browser to draw, label, legend)."""
    store = stores[view.store]
    feature = feature_or_none(stores, view)
    units = [view.unit] + ([view.cmp] if view.cmp else [])
    scales = [scale(stores, view.store, u, view.range) for u in units]
    shown = view if feature is not None else view.replace(feature="")
    data = textview.render(store, shown, window, feature, scales)
    label = f"{row_word(store)} {data['start']:,}–{data['stop']:,} of {store.length:,}"
    legend = textview.legend(store, view.unit, scales[0], view.range)
    if view.cmp:  # its own line, under the unit's
        legend.children.append(textview.compare_legend(view.cmp, scales[1], view.range))
    return data, label, legend


def trace(stores: StoreSet, view: View, window: int) -> dict:
    """The window's curves over its rows: the unit (and compare unit), the feature and the loss (where the
    store has log-probabilities)."""
    store = stores[view.store]
    start, stop = view.start, min(store.length, view.start + window)
    units = [view.unit] + ([view.cmp] if view.cmp else [])
    vals = store.window(start, stop, units)  # (n, U): the window's rows only
    feature = feature_or_none(stores, view)
    return figures.trace_figure(
        start,
        row_labels(store, start, stop),
        {u: vals[:, j] for j, u in enumerate(units)},
        char_loss(store, start, stop) if store.meta.has_logprob else None,
        (view.feature, feature[start:stop]) if feature is not None else None,
    )


def text_fields(view: View) -> dict:
    """The view's fields the text is drawn from, as the browser holds them (JSON: lists, not tuples)."""
    d = view.to_dict()
    return {k: list(d[k]) if isinstance(d[k], tuple) else d[k] for k in TEXT_FIELDS}


def register(app, stores: StoreSet, window: int) -> None:
    @app.callback(
        Output("window-data", "data"), Output("window-label", "children"), Output("legend", "children"),
        Output("text-view", "data"), Input("view", "data"), State("text-view", "data"),
    )
    def _window(view, drawn_from):
        # Redrawn only when a field it is drawn from changed: a tab switch leaves the text, its scroll and the
        # hover panel alone.
        if not view:
            raise PreventUpdate
        v = View.clean(view, stores, window)
        fields = text_fields(v)
        if fields == drawn_from:
            raise PreventUpdate
        return (*render_window(stores, v, window), fields)

    app.callback(Output("trace", "figure"), Input("drawn", "data"), State("view", "data"))(
        on_view(trace, stores, window))

    app.clientside_callback(ClientsideFunction("rnnviz", "draw"), Output("text", "data-drawn"),
                            Output("drawn", "data"), Input("window-data", "data"))
    app.clientside_callback(ClientsideFunction("rnnviz", "mountTrace"), Output("trace-box", "children"),
                            Input("drawn", "data"), State("trace-wait", "data"))
    app.clientside_callback(ClientsideFunction("rnnviz", "listen"), Output("js-init", "data"), Input("text", "id"))
