"""Where the page opens when its link names no unit: on the store's strongest cell, where it fires.

A new user who lands on unit 0:h:0 at character 0 sees noise. So a link without a unit opens on a cell worth
seeing, chosen from what is already known about the store and never computed at page load:

1. the catalog's explanations (:func:`rnnviz.analysis.explain_cache.stored_explain` with the catalog's settings,
   kept beside the store once anyone has opened its catalog): the cell (not an input detector) whose rule scores
   best on the held-out half, signed as its rule;
2. else the two-state split (:func:`rnnviz.analysis.two_state.stored_two_states`, written beside the store when
   it was recorded): the unit whose two states explain most of its variance (``eta``), among those whose rarer
   state holds at least :data:`MIN_SHARE` of the text, signed so that "firing" is its rarer state;
3. else the store's first unit, as before.

In 1 and 2 the units of the kinds that carry the cell's memory (an LSTM's h and c, :data:`STATE_KINDS`) come first
when any qualifies: a gate is often the best explained unit (a forget gate that tracks the position in a word),
but the states are what a researcher opens a store to see.

The text then opens where that unit is strongest (its highest value; its lowest for sign -1) over a bounded
sample of the store (:func:`.transitions.show_peak` with ``sample``: the whole store up to 200,000 rows), that
character outlined, and the URL says which unit and where.
"""

from __future__ import annotations

import numpy as np

from rnnviz.analysis.explain_cache import CATALOG, stored_explain
from rnnviz.analysis.two_state import stored_two_states
from rnnviz.model.cells import DEFAULT_KINDS
from rnnviz.views.dashboard.state import View
from rnnviz.views.dashboard.transitions import show_peak

MIN_SHARE = 0.01  # the rarer state of a two-state cell chosen to open on: at least 1% of the text (not a spike)
STATE_KINDS = ("h",)  # the kinds that carry memory, for a cell without DEFAULT_KINDS (a GRU, an RNN)


def state_first(kinds, ok: np.ndarray, cell: str) -> np.ndarray:
    """``ok`` (a mask over units) narrowed to the units of the cell's state kinds when any of those is ok."""
    states = ok & np.isin(np.asarray(kinds), DEFAULT_KINDS.get(cell, STATE_KINDS))
    return states if states.any() else ok


def strongest_cell(store) -> tuple[str, int] | None:
    """(unit, sign) of the cell to open ``store`` on, from its cached explanations, else its cached two states;
    None when neither is known."""
    df = stored_explain(store, **CATALOG)
    if df is not None:
        cells = df[state_first(df["kind"], (df["role"] == "cell").to_numpy(), store.cell)]
        if len(cells):
            best = cells.sort_values(["score", "unit"], ascending=[False, True], kind="stable").iloc[0]
            return str(best["unit"]), -1 if best["sign"] < 0 else 1
    states = stored_two_states(store)
    if states is not None:
        share = states["on_share"].to_numpy()
        kinds = [store.locate(u)[1] for u in states.index]
        ok = state_first(kinds, (np.minimum(share, 1 - share) >= MIN_SHARE) & (states["eta"].to_numpy() > 0),
                         store.cell)
        if ok.any():
            k = int(np.argmax(np.where(ok, states["eta"].to_numpy(), -1.0)))  # ties: the first in the store's order
            return str(states.index[k]), 1 if share[k] <= 0.5 else -1
    return None


def opening_view(stores, view: View, window: int, place: bool = True) -> View:
    """``view`` on its store's strongest cell (:func:`strongest_cell`), with ``place`` scrolled to where it fires;
    ``view`` itself when nothing is known about the store."""
    found = strongest_cell(stores[view.store])
    if found is None:
        return view
    unit, sign = found
    view = view.replace(unit=unit, cmp="" if view.cmp == unit else view.cmp)
    return show_peak(stores, view, unit, sign, window, sample=True) if place else view
