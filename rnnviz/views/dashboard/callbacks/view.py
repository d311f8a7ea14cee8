"""Wiring of the view: one callback owns the view, the URL and the picker controls (so the three can never
disagree) and hands each action to its pure function in :mod:`..transitions`.

Why one callback: a control that is both an input (the user changes it) and an output (a link sets it)
must be both in the same Dash callback. It stays thin: find the control that fired, apply its
transition, write the controls that changed. The unit box is always rewritten after an action on the
unit, so that it never keeps a unit that is not on screen.
"""

from __future__ import annotations

from dash import ALL, Input, Output, State, ctx, no_update
from dash.exceptions import PreventUpdate

from rnnviz.errors import RnnvizError
from rnnviz.model.units import parse_unit
from rnnviz.views.dashboard.state import View, to_query
from rnnviz.views.dashboard.stores import StoreSet
from rnnviz.views.dashboard.transitions import TRANSITIONS, Inputs, apply

# Control id -> the property whose change fires it.
NAV_INPUTS = {
    "url": "search", "store-pick": "value", "layer-pick": "value", "kind-pick": "value", "index-pick": "value",
    "unit-prev": "n_clicks", "unit-next": "n_clicks", "cmp-input": "value", "page-prev": "n_clicks",
    "page-next": "n_clicks", "jump-go": "n_clicks", "jump-input": "n_submit", "find-go": "n_clicks",
    "find-input": "n_submit", "feature-pick": "value", "regex-input": "n_submit", "rank-go": "n_clicks",
    "range-pick": "value", "tabs": "value", "sel-view": "data", "pat-cells": "value", "pat-thr": "value",
}
UNIT_CONTROLS = ("layer-pick", "kind-pick", "index-pick", "unit-prev", "unit-next", "unit-row")


def layer_options(store) -> list[dict]:
    """The layer picker's options; for a user's module each names, on hover, the submodule it was recorded
    from and its type (the manifest's layer table)."""
    where = {e["layer"]: f"{e.get('module', '?')} ({e.get('type', '?')})" for e in (store.meta.source or {}).get(
        "layers", [])}
    return [{"label": str(l), "value": l, **({"title": where[l]} if l in where else {})} for l in store.layers]


def controls(stores: StoreSet, view: View) -> dict:
    """What the picker controls show for ``view`` (and the URL query)."""
    store = stores[view.store]
    layer, kind, index = parse_unit(view.unit)
    feature = view.feature
    return {
        "query": to_query(view, stores),
        "store": view.store,
        "layers": layer_options(store),
        "layer": layer,
        "kinds": [{"label": k, "value": k} for k in store.kinds],
        "kind": kind,
        "index": index,
        "index_max": store.width(layer, kind) - 1,
        "cmp": view.cmp,
        "feature_pick": None if not feature or feature.startswith("re:") else feature,
        "regex": feature[3:] if feature.startswith("re:") else "",
        "range": view.range,
        "tab": view.tab,
        "cells": ", ".join(view.cells),
        "theta": view.theta,
    }


CONTROL_OUTPUTS = [
    ("query", "url", "search"), ("store", "store-pick", "value"), ("layers", "layer-pick", "options"),
    ("layer", "layer-pick", "value"), ("kinds", "kind-pick", "options"), ("kind", "kind-pick", "value"),
    ("index", "index-pick", "value"), ("cmp", "cmp-input", "value"),
    ("feature_pick", "feature-pick", "value"), ("regex", "regex-input", "value"), ("range", "range-pick", "value"),
    ("tab", "tabs", "value"), ("cells", "pat-cells", "value"), ("theta", "pat-thr", "value"),
]


def triggered() -> tuple[str | None, object]:
    """(id of the control that fired, its value); dict ids of table rows become "unit-row"/"match-row". Rows of
    a table that was (re)drawn appear with n_clicks 0: nobody clicked them, so they are passed over (select-to-
    find draws its match table in the same answer that hands its selection to the view)."""
    if ctx.triggered_id is None:
        return None, None
    values = {t["prop_id"]: t["value"] for t in ctx.triggered}
    for prop_id, tid in ctx.triggered_prop_ids.items():
        value = values.get(prop_id)
        if not isinstance(tid, dict):
            return tid, value
        if value:
            return tid["type"], tid["index"]
    raise PreventUpdate


def changed_controls(stores: StoreSet, old, new: View, trigger: str | None) -> dict:
    """The controls to write: all on a page load; else those that differ from ``old``'s, plus the unit box
    after any action on the unit (the browser may hold a refused value there)."""
    c = controls(stores, new)
    if old is None:
        return c
    before = controls(stores, View.clean(old, stores))
    out = {k: (no_update if before[k] == v else v) for k, v in c.items()}
    if trigger in UNIT_CONTROLS:
        out["index"] = c["index"]
    if trigger in ("pat-cells", "pat-thr"):  # a refused value is replaced by the one in use
        out["cells"], out["theta"] = c["cells"], c["theta"]
    return out


def register(app, stores: StoreSet, window: int) -> None:
    @app.callback(
        Output("view", "data"),
        [Output(cid, prop) for _, cid, prop in CONTROL_OUTPUTS],
        Output("status", "children"),
        [Input(k, p) for k, p in NAV_INPUTS.items()],
        Input({"type": "unit-row", "index": ALL}, "n_clicks"),
        Input({"type": "match-row", "index": ALL}, "n_clicks"),
        State("view", "data"), State("feature-pick", "value"), State("regex-input", "value"),
        State("jump-input", "value"), State("find-input", "value"),
    )
    def _navigate(*args):
        view, feature_pick, regex, jump, find = args[-5:]
        trigger, value = triggered()
        if trigger in (None, "url"):
            value = args[0]
        if trigger not in TRANSITIONS:
            raise PreventUpdate
        inputs = Inputs(feature_pick=feature_pick, regex=regex, jump=jump, find=find, window=window)
        try:
            new, msg = apply(stores, view, trigger, value, inputs)
        except RnnvizError as e:
            new, msg = View.clean(view, stores, window), str(e)
        c = changed_controls(stores, view if view else None, new, trigger)
        return (new.to_dict(), *[c[k] for k, _, _ in CONTROL_OUTPUTS], msg)

    # Only what the slower panels depend on; unchanged on paging, so they do not recompute. The hypotheses'
    # ranking has its own (store and feature): a click on one of its units leaves the table as it is.
    for target, keys in (("focus", ("store", "unit", "feature")), ("rank-focus", ("store", "feature"))):
        app.callback(Output(target, "data"), Input("view", "data"), State(target, "data"))(_narrowed(keys))


def _narrowed(keys: tuple[str, ...]):
    """A callback body: the view's ``keys`` (None before there is a view), no update while they are unchanged."""

    def narrowed(view, held):
        new = {k: view[k] for k in keys} if view else None
        if new == held:
            raise PreventUpdate
        return new

    return narrowed
