"""Select-to-find in the page: a mouse selection (or a typed range) -> :func:`rnnviz.find_similar` -> the
cells that mark it and the places where they switch on again, weak matches flagged, never padded.

Ranges are rows (characters, or tokens in a token store): a mouse selection over characters becomes the
rows whose text it touches (:meth:`rnnviz.store.reader.Store.rows_of_chars`) before it reaches the analysis."""

from __future__ import annotations

from dash import Input, Output, State, ctx, html, no_update
from dash.exceptions import PreventUpdate

from rnnviz.analysis.similar import MIN_ON, THETA, find_similar, followed
from rnnviz.errors import RnnvizError
from rnnviz.views.dashboard.callbacks.shared import rank_rows
from rnnviz.views.dashboard.state import View, to_int
from rnnviz.views.dashboard.stores import StoreSet
from rnnviz.views.display import readable_line, row_word

CELLS_SHOWN = 5  # rows of the cell table: the matches must stay above the fold at 1280×800
SNIPPET = 60  # characters of a match shown (plus CONTEXT of context each side)
CONTEXT = 15
# Each table's columns -> what they hold: the headers' tooltips and the line under each table.
CELL_HELP = {
    "unit": "LAYER:KIND:INDEX; click to colour the text by it",
    "sign": "+: on means high; −: on means low",
    "rule": "what decided 'on': two-state (the split between the unit's two states) or θ (σ from its mean)",
    "score": "how well it marks the selection: on inside, off around, and how far it swings",
    "on_inside": "share of the selection's characters where it is on",
    "contrast": "mean inside minus mean around the selection (σ for θ, gaps between states for two-state)",
    "lstmvis": "✓: also passes LSTMVis's strict rule (on at every character inside, off at every one around)",
}
MATCH_HELP = {
    "#": "our rank",
    "range": "its rows, from–to",
    "score": "share of the cells on over it × how close its length is to the selection's (weak: a blip, or few "
             "cells on)",
    "LSTMVis #": "its rank by LSTMVis's order: all cells on throughout first, then the closest length",
    "text": "the match in bold, with the text around it (↵: a line end)",
}


def help_line(helps: dict[str, str]) -> html.Div:
    """One line that says what each column of a table holds."""
    return html.Div(" · ".join(f"{c}: {h}" for c, h in helps.items()), className="note colhelp")


def _snippet(store, start: int, stop: int) -> list:
    """The text of rows ``start:stop`` in bold, with CONTEXT characters each side, as a person reads it."""
    s, e = store.chars_of_rows(start, stop)
    text = store.text
    inner = text[s : min(e, s + SNIPPET)] + ("…" if e - s > SNIPPET else "")
    return [readable_line(text[max(0, s - CONTEXT) : s]), html.B(readable_line(inner)),
            readable_line(text[e : e + CONTEXT])]


def selected_rows(store, start: int, window: int, a: int, b: int) -> tuple[int, int]:
    """The rows that the characters [a, b) of the window drawn from row ``start`` touch (the page reports a
    mouse selection as offsets into the characters it drew)."""
    first = store.chars_of_rows(start, min(store.length, start + window))[0]
    return store.rows_of_chars(first + a, first + b)


def match_table(store, matches) -> html.Table:
    """The matches, best first by our score; LSTMVis's rank beside it; weak rows greyed and labelled."""
    rows = []
    for m in matches.itertuples(index=False):
        s, e = int(m.start), int(m.stop)
        score = f"{m.score:.2f}" + (" weak" if m.weak else "")
        rows.append(html.Tr([html.Td(str(m.rank)), html.Td(f"{s:,}–{e:,}"), html.Td(score),
                             html.Td(str(m.lstmvis_rank)), html.Td(_snippet(store, s, e), className="snip")],
                            id={"type": "match-row", "index": f"{s}-{e}"}, n_clicks=0, title="go there",
                            className="weak" if m.weak else ""))
    head = html.Thead(html.Tr([html.Th(x, title=h) for x, h in MATCH_HELP.items()]))
    return html.Table([head, html.Tbody(rows)], className="rank")


def select_range(stores: StoreSet, view: View, a, b, threshold=THETA) -> tuple[object, object, str]:
    """Select-to-find for [a, b): (cell table, match table, message)."""
    store = stores[view.store]
    try:
        a, b = to_int(a), to_int(b)
    except (TypeError, ValueError):
        return None, None, f"select some text, or type a range: from and to are {row_word(store, 1)} positions"
    theta = THETA if threshold is None else threshold  # an empty θ box means the default
    try:
        cells, matches = find_similar(store, a, b, threshold=theta)
    except RnnvizError as e:
        return None, None, str(e)
    theta = float(theta)  # checked by find_similar
    if cells.empty:
        return None, None, (f"no cell is on inside {a:,}–{b:,} (θ = {theta:g} σ, {MIN_ON:.0%} of it) and off at its "
                            "edges: lower θ, or select a tighter range")
    n_strict = int(cells["strict"].sum())
    shown = cells.head(CELLS_SHOWN).assign(lstmvis=cells["strict"].map({True: "✓", False: ""}))
    tables = html.Div([
        html.Div(f"Cells on inside {a:,}–{b:,} (past θ = {theta:g} σ, or past the split between their two states "
                 f"for two-state cells, at {MIN_ON:.0%} of it, 2 {row_word(store)} of slack at each edge) and off at "
                 f"its edges: {len(cells)} ({n_strict} also by LSTMVis's strict rule)", className="note"),
        rank_rows(shown, "sel", list(CELL_HELP), CELL_HELP),
        help_line(CELL_HELP),
    ])
    follow = list(followed(cells)["unit"])
    stores.warm_columns(view.store, follow)  # the next search of their arrays: T·2 bytes a unit
    strong = int((~matches["weak"]).sum())
    who = f"{follow[0]} switches" if len(follow) == 1 else f"{', '.join(follow)} switch together"
    head = html.Div(f"Where {who} on again (whole store): {strong} strong, {len(matches) - strong} weak",
                    className="note")
    return tables, html.Div([head, match_table(store, matches), help_line(MATCH_HELP)]), ""


def register(app, stores: StoreSet, window: int) -> None:
    @app.callback(
        Output("sel-a", "value"), Output("sel-b", "value"), Output("sel-tables", "children"),
        Output("match-table", "children"), Output("sel-msg", "children"),
        Output("tabs", "value", allow_duplicate=True), Output("sel-view", "data"),
        Input("selection", "data"), Input("sel-go", "n_clicks"),
        State("sel-a", "value"), State("sel-b", "value"), State("sel-thr", "value"), State("view", "data"),
        prevent_initial_call=True,
    )
    def _select(selection, _, a, b, threshold, view):
        view = View.clean(view, stores, window)
        if ctx.triggered_id == "selection":
            try:  # offsets into the characters of the drawn window, from the page's script
                a, b = selected_rows(stores[view.store], view.start, window, to_int(selection["a"]),
                                     to_int(selection["b"]))
            except (TypeError, ValueError, KeyError):
                raise PreventUpdate from None
        tables, matches, msg = select_range(stores, view, a, b, threshold)
        if msg:  # the message is shown even if another tab was open
            return a, b, tables, matches, msg, "sel", no_update
        # The view takes the selection (the pattern view follows it) and opens this tab: both in the URL.
        return a, b, tables, matches, msg, no_update, {"a": a, "b": b, "theta": threshold, "tab": "sel"}
