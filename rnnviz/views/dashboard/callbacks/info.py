"""What the store is beside its states, under the unit picker: rows that are tokens, the layer table of a
user's module (which submodule each layer number was recorded from, and its type), the kinds of states
recorded elsewhere, and what the store lacks. Panels that need what it lacks are hidden: sampling, emergence
and gradient flow without an rnnviz model (:func:`..stores.has_model`); a store without a model's predictions
(:func:`..stores.has_predictions`) says so in one line (its loss trace and next-token guesses are left out
where they are drawn). Nothing shows for one of our char stores."""

from __future__ import annotations

from dash import Input, Output, html
from dash.exceptions import PreventUpdate

from rnnviz.store.manifest import EXTERNAL
from rnnviz.views.dashboard.state import MODEL_TABS, View
from rnnviz.views.dashboard.stores import StoreSet, has_model, has_predictions

HIDDEN = {"display": "none"}
NO_PREDICTIONS = ("this store has no predictions (its model gave no next-token logits): no loss, no next-token "
                  "guesses, no sampling, gradient flow or emergence")


def layer_table(source: dict) -> html.Table:
    """The layer table of a user's module: one row per recorded layer (layer, submodule, type, and any other
    field the recorder kept, such as hidden size or direction)."""
    entries = sorted(source["layers"], key=lambda e: e["layer"])
    cols = list(dict.fromkeys(["layer", "module", "type", *(k for e in entries for k in e)]))
    head = html.Thead(html.Tr([html.Th(c) for c in cols]))
    body = html.Tbody([html.Tr([html.Td(str(e.get(c, ""))) for c in cols]) for e in entries])
    return html.Table([html.Caption(f"layers of {source['class']}"), head, body], className="layers",
                      id="layer-table")


def store_info(store) -> list:
    """The lines shown for ``store`` (none for a char store recorded from our model with its predictions)."""
    out = []
    if store.is_tokens:
        out.append(html.Div(f"rows are tokens: {store.length:,} tokens over {len(store.text):,} characters; a "
                            "feature is read at each token's last character", className="note"))
    if store.cell == EXTERNAL:
        out.append(html.Div(f"states recorded elsewhere: kinds {', '.join(store.kinds)}", className="note"))
    if not has_predictions(store):
        out.append(html.Div(NO_PREDICTIONS, className="note", id="no-predictions"))
    if store.meta.source:
        out.append(layer_table(store.meta.source))
    return out


def register(app, stores: StoreSet, window: int) -> None:
    outputs = [Output(f"tab-{t}", "style") for t in MODEL_TABS]

    @app.callback(Output("store-info", "children"), *outputs, Output("gradflow-row", "style"),
                  Input("focus", "data"))
    def _info(focus):
        if not focus:
            raise PreventUpdate
        store = stores[View.clean(focus, stores, window).store]
        shown = {} if has_model(store) else HIDDEN
        return store_info(store), *[shown for _ in MODEL_TABS], shown
