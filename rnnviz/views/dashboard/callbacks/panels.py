"""The panels that read the view's focus (store, unit, feature) rather than its window: the units ranked
for a hypothesis, the histogram and gate-saturation plots, gradient flow, and sampling with a unit
clamped. Plain functions of (stores, view, inputs), wired by :func:`register`."""

from __future__ import annotations

import numpy as np
import pandas as pd
from dash import Input, Output, State, html

from rnnviz.analysis.causal import gradient_flow
from rnnviz.analysis.evidence import gate_saturation
from rnnviz.analysis.ranking import find_cells
from rnnviz.errors import RnnvizError
from rnnviz.model.sampling import sample
from rnnviz.store.reader import spaced_blocks
from rnnviz.views.dashboard import figures
from rnnviz.views.dashboard.callbacks.shared import rank_rows
from rnnviz.views.dashboard.state import View, to_int
from rnnviz.views.dashboard.stores import StoreSet, has_model
from rnnviz.views.display import row_word

GRADFLOW_CHARS, GRADFLOW_LAG = 600, 100
MAX_SAMPLE, MAX_PRIME = 2000, 500
# The ranking's columns -> what they hold (the headers' tooltips; rnnviz.analysis.ranking says how each is computed).
RANK_HELP = {
    "unit": "LAYER:KIND:INDEX; click to colour the text by it and go to where it fires most",
    "metric": "auroc for a 0/1 feature, pearson for a numeric one",
    "score": "max(AUROC, 1 − AUROC), or |r|",
    "sign": "+: the unit is higher where the feature is on (or high); −: lower",
    "selectivity": "score minus its score on the character-only control: what the feature adds beyond the characters",
    "effect_size": "Cohen's d, feature on minus off",
}


# --- hypotheses ---


def _feature_spec(stores: StoreSet, i: int, feature: str):
    """What discovery is given: a built-in name as is; a regex as a callable returning the cached
    time-limited result over the text's characters (so the user's pattern never runs unguarded)."""
    if not feature.startswith("re:"):
        return feature
    values = stores.char_feature(i, feature)

    def regex_feature(text: str) -> np.ndarray:
        return values

    regex_feature.__name__ = feature
    return regex_feature


def rank_units(stores: StoreSet, view: dict, top: int = 15) -> tuple[object, str]:
    """The units that best match the view's feature: (table, message)."""
    feature = view.feature
    if not feature:
        return None, ""
    i = view.store

    def make() -> pd.DataFrame:
        return find_cells(stores[i], _feature_spec(stores, i, feature), top=top, intervals=False)  # (none shown)

    try:
        df = stores.cached(("rank", i, feature, top), make)
    except RnnvizError as e:
        return None, str(e)
    note = f"{feature}: top {len(df)} units, ranked by selectivity (score minus the character-only control)"
    return html.Div([html.Div(note, className="note"), rank_rows(df, "rank", list(RANK_HELP), RANK_HELP)]), ""


# --- plots ---


def histogram(stores: StoreSet, view: dict):
    """The unit's distribution, split by the view's feature value (cached per unit and feature)."""
    return stores.cached(("hist", view.store, view.unit, view.feature), lambda: _histogram(stores, view))


def _histogram(stores: StoreSet, view: dict):
    store, unit = stores[view.store], view.unit
    blocks = spaced_blocks(store.length)
    values = store.read([unit], blocks=blocks)[:, 0]
    feature = None
    if view.feature:
        f = stores.feature(view.store, view.feature)
        feature = (view.feature, np.concatenate([f[a:b] for a, b in blocks]))
    n = sum(b - a for a, b in blocks)
    note = f"all {row_word(store)}" if n == store.length else f"{n:,} {row_word(store, n)} in {len(blocks)} blocks"
    return figures.histogram_figure(unit, values, feature, note)


def saturation(stores: StoreSet, i: int):
    """The gate-saturation scatter of store ``i`` (from the per-unit statistics written by the recorder)."""
    df = stores.cached(("sat", i), lambda: gate_saturation(stores[i]))
    return figures.saturation_figure(df, stores.names[i])


def _model(stores: StoreSet, i: int) -> tuple[object, str]:
    """Store ``i``'s model, or (None, why not): none (not recorded from an rnnviz model), moved or changed
    since recording, or no longer loading."""
    if not has_model(stores[i]):
        return None, f"{stores.names[i]}: not recorded from an rnnviz model, so there is nothing to sample from"
    try:
        model = stores.model(i)
    except RnnvizError as e:  # e.g. its config.json edited since: the weights no longer fit
        return None, f"{stores.names[i]}: the recorded checkpoint does not load: {e}"
    if model is None:
        return None, (f"{stores.names[i]}: the recorded checkpoint is not reachable (moved, or its weights "
                      "changed), so there is nothing to sample from")
    return model, ""


def gradflow(stores: StoreSet, chars: int = GRADFLOW_CHARS, max_lag: int = GRADFLOW_LAG) -> tuple[object, str]:
    """Gradient flow of every loaded store's model over the first ``chars`` characters of its text (the
    stores recorded from an rnnviz model: :func:`~..stores.has_model`)."""
    ours = [i for i in range(len(stores)) if has_model(stores[i])]
    if not ours:
        return figures.message_figure("no store here was recorded from an rnnviz model: gradient flow needs the "
                                      "model"), ""
    loaded = {i: _model(stores, i) for i in ours}
    missing = [stores.names[i] for i, (m, _) in loaded.items() if m is None]
    broken = [why for m, why in loaded.values() if m is None and "does not load" in why]
    msg = f"checkpoint not reachable for: {', '.join(missing)}" if missing else ""
    msg = "; ".join([msg, *broken]) if broken else msg
    if len(missing) == len(ours):
        return figures.message_figure("no store's checkpoint is reachable: gradient flow needs the model"), msg
    curves = []
    for i, (model, _) in loaded.items():
        if model is None:
            continue
        store = stores[i]
        text = model.vocab.prepare(store.text[:chars], "skip")
        df = stores.cached(("gradflow", i, chars, max_lag), lambda m=model, t=text: gradient_flow(m, t, max_lag))
        curves.append((f"{stores.names[i]} ({store.cell})", df))
    return figures.gradflow_figure(curves), msg


# --- sampling ---


def sample_pair(stores: StoreSet, view: dict, prime, length, temperature, seed, value) -> tuple[object, str]:
    """Two samples with the same seed: unclamped, and with the view's unit clamped to ``value``."""
    model, why = _model(stores, view.store)
    if model is None:
        return None, why
    try:
        length = min(max(to_int(length), 1), MAX_SAMPLE)
        temperature = float(temperature)
        seed = to_int(seed or 0)
        value = float(value)
    except (TypeError, ValueError):
        return None, "length, temperature, seed and clamp value must be numbers"
    if seed < 0 or not np.isfinite(value):
        return None, "the seed must be >= 0 and the clamp value a finite number"
    prime = prime or ""
    if len(prime) > MAX_PRIME:
        return None, f"the priming text is {len(prime)} characters; the limit is {MAX_PRIME}"
    unit = view.unit
    try:
        plain = sample(model, length, prime=prime, temperature=temperature, seed=seed)
        clamped = sample(model, length, prime=prime, temperature=temperature, seed=seed, clamp={unit: value})
    except RnnvizError as e:
        return None, str(e)
    return [
        html.Div([html.B("unclamped"), html.Pre(prime + plain)]),
        html.Div([html.B(f"{unit} clamped to {value:g}"), html.Pre(prime + clamped)]),
    ], ""


def register(app, stores: StoreSet, window: int) -> None:
    from dash.exceptions import PreventUpdate

    @app.callback(Output("rank-table", "children"), Output("rank-msg", "children"), Input("rank-focus", "data"))
    def _rank(focus):
        if not focus:
            raise PreventUpdate
        return rank_units(stores, View.clean(focus, stores, window))

    # The plots are drawn when their tab is shown (not on every page load, where they would compete
    # with the text view for the server and the browser); a request that names no tab draws them.
    @app.callback(Output("hist", "figure"), Input("focus", "data"), Input("tabs", "value"))
    def _hist(focus, tab):
        if not focus or tab not in (None, "plots"):
            raise PreventUpdate
        return histogram(stores, View.clean(focus, stores, window))

    @app.callback(Output("sat", "figure"), Input("store-pick", "value"), Input("tabs", "value"))
    def _sat(i, tab):
        if i is None or tab not in (None, "plots"):
            raise PreventUpdate
        return saturation(stores, int(i))

    @app.callback(Output("gradflow", "figure"), Output("status", "children", allow_duplicate=True),
                  Input("gradflow-go", "n_clicks"), prevent_initial_call=True)
    def _gradflow(_):
        return gradflow(stores)

    @app.callback(
        Output("smp-out", "children"), Output("smp-msg", "children"),
        Input("smp-go", "n_clicks"),
        State("smp-prime", "value"), State("smp-length", "value"), State("smp-temp", "value"),
        State("smp-seed", "value"), State("smp-value", "value"), State("view", "data"),
        prevent_initial_call=True,
    )
    def _sample(_, prime, length, temperature, seed, value, view):
        return sample_pair(stores, View.clean(view, stores, window), prime, length, temperature, seed, value)
