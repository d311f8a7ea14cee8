"""The Emergence tab: when each cell appeared in training, for the run the current store was recorded from.

A store remembers its checkpoint (``RUN/best`` or ``RUN/last``); when that run kept weight snapshots
(``rnnviz train --snapshot-every N``), :func:`compute` runs :func:`rnnviz.analysis.emergence.emergence` over the
first characters of the store's text and shows the same figure and numbers as ``rnnviz emergence``. Whether
it can is said as soon as the store is shown (:func:`run_note`), before anyone presses "Compute".
Recording every snapshot takes a while (seconds per snapshot), so it runs only on the button, and the
result is cached. Hooked into the page by one tab in :func:`..layout.build` and one call in
:func:`..app.create_app`.
"""

from __future__ import annotations

from pathlib import Path

from dash import Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from rnnviz.analysis.features import FEATURES
from rnnviz.errors import RnnvizError
from rnnviz.model.snapshots import list_snapshots
from rnnviz.views.dashboard import figures
from rnnviz.views.dashboard.state import View, to_int
from rnnviz.views.dashboard.stores import StoreSet

DEFAULT_CHARS, MAX_CHARS = 20_000, 100_000  # characters of the store's text recorded per snapshot
MAX_FEATURES = 4


def panel() -> html.Div:
    options = [{"label": f"{f.name} ({f.domain}, {f.type})", "value": f.name, "title": f.summary}
               for f in FEATURES.values()]
    return html.Div([
        html.P("When did each cell appear in training? For the run this store was recorded from (trained with "
               "--snapshot-every N): every weight snapshot records the first characters of the text, and the best "
               "unit per feature is compared with the final model's.", className="note"),
        html.Div([
            dcc.Dropdown(id="emg-features", options=options, multi=True, placeholder="features",
                         className="pick-wide"),
            html.Label("characters"),
            dcc.Input(id="emg-chars", type="number", value=DEFAULT_CHARS, min=1000, max=MAX_CHARS, step=1000,
                      debounce=True, style={"width": "90px"}),
            html.Button("Compute", id="emg-go"),
        ], className="row"),
        html.Div(id="emg-run", className="note"),
        html.Div(id="emg-msg", className="msg"),
        dcc.Loading([dcc.Graph(id="emg-graph", config={"displaylogo": False}), html.Div(id="emg-table")],
                    type="dot"),
    ])


def run_of(stores: StoreSet, i: int) -> Path | None:
    """The run directory of store ``i``'s checkpoint when it holds snapshots, else None."""
    ckpt = stores[i].checkpoint_path
    if ckpt is None or not (ckpt.parent / "snapshots").is_dir():
        return None
    return ckpt.parent


def run_note(stores: StoreSet, i: int) -> tuple[str, bool]:
    """(what store ``i``'s run offers, whether "Compute" can run): said before the button is pressed."""
    ckpt = stores[i].checkpoint_path
    if ckpt is None:
        return (f"{stores.names[i]}: its checkpoint is not reachable (moved or deleted): emergence needs the run "
                "it was trained in", False)
    run = run_of(stores, i)
    try:
        n = len(stores.cached(("snapshots", str(run)), lambda: list_snapshots(run))) if run else 0
    except RnnvizError as e:
        return str(e), False
    if not n:
        return (f"{ckpt.parent.name} kept no weight snapshots: train with --snapshot-every N to see when each "
                "cell appeared", False)
    return f"{run.name}: {n} weight snapshots, each recorded on \"Compute\"", True


def _table(df) -> html.Table:
    """One row per feature: the final unit (a click colours the text by it), when it appeared, its score."""
    cols = ("feature", "final unit", "score", "appears at step", "val loss then", "same unit best at")
    head = html.Thead(html.Tr([html.Th(c) for c in cols]))
    body = []
    for name, part in df.groupby("feature", sort=False):
        last, at = part.iloc[-1], df.attrs["appears_at"][name]
        then = part[part["step"] == at].iloc[0]
        same = ", ".join(str(s) for s in part.loc[part["same_as_final"], "step"])
        cells = [name, last["final_unit"], f"{last['final_score']:.3f}", str(at), f"{then['val_loss']:.4f}", same]
        unit = last["final_unit"]
        body.append(html.Tr([html.Td(c) for c in cells], id={"type": "unit-row", "index": f"emerge/{unit}"},
                            n_clicks=0, title=f"colour the text by {unit}"))
    return html.Table([head, html.Tbody(body)], className="rank")


def compute(stores: StoreSet, view: View | dict, features, chars) -> tuple[object, object, str]:
    """(figure, table, message) for the view's store; a problem is a message and an empty figure."""
    from rnnviz.analysis.emergence import emergence, emergence_figure

    i = View.clean(view, stores).store  # any JSON from the browser
    names = [f for f in (features or []) if isinstance(f, str) and f in FEATURES][:MAX_FEATURES]
    if not names:
        return figures.message_figure("pick one or more features"), None, "pick one or more features"
    try:
        n = max(1000, min(to_int(chars), MAX_CHARS))
    except (TypeError, ValueError):
        n = DEFAULT_CHARS
    run = run_of(stores, i)
    if run is None:
        why = (f"{stores.names[i]}: its checkpoint is not reachable, or its run kept no snapshots (train with "
               "--snapshot-every N)")
        return figures.message_figure("no snapshots for this store's run"), None, why
    text = stores[i].text[:n]
    try:
        df = stores.cached(("emergence", str(run), tuple(names), n),
                           lambda: emergence(run, text, names, unknown="skip"))
    except RnnvizError as e:
        return figures.message_figure("nothing to show"), None, str(e)
    note = html.Div(f"{run.name}: {df['step'].nunique()} snapshots x {df.attrs['length']:,} characters",
                    className="note")
    return emergence_figure(df), html.Div([note, _table(df)]), ""


def register(app, stores: StoreSet) -> None:
    @app.callback(Output("emg-run", "children"), Output("emg-go", "disabled"), Input("focus", "data"))
    def _run(focus):
        if not focus:
            raise PreventUpdate
        note, can = run_note(stores, View.clean(focus, stores).store)
        return note, not can

    @app.callback(
        Output("emg-graph", "figure"), Output("emg-table", "children"), Output("emg-msg", "children"),
        Input("emg-go", "n_clicks"), State("emg-features", "value"), State("emg-chars", "value"),
        State("view", "data"), prevent_initial_call=True,
    )
    def _emergence(clicks, features, chars, view):
        if not clicks:
            raise PreventUpdate
        return compute(stores, view, features, chars)
