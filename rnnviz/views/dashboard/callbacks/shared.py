"""What the ``cb_*`` views share (each view depends on the library and on this, never on another view):
the view's feature values, the body of a callback that draws from the view alone, and the ranked-units table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from dash import html
from dash.exceptions import PreventUpdate

from rnnviz.errors import RnnvizError
from rnnviz.views.dashboard.state import View
from rnnviz.views.dashboard.stores import StoreSet
from rnnviz.views.display import sign_symbol


def feature_or_none(stores: StoreSet, view: View) -> np.ndarray | None:
    """The view's feature values, shape (T,) over the store's characters (normally cached when the view took
    it; recomputed, time-limited, only if evicted since), or None when there is none or it now fails."""
    if not view.feature:
        return None
    try:
        return stores.feature(view.store, view.feature)
    except RnnvizError:
        return None


def on_view(draw: Callable[[StoreSet, View, int], Any], stores: StoreSet, window: int) -> Callable[..., Any]:
    """A Dash callback body whose last argument is the view's data: nothing before the page has a view (Dash
    fires it at load with None), else ``draw(stores, view, window)`` on the browser's dict made a valid
    :class:`View` (:meth:`View.clean`)."""

    def callback(*args):
        view = args[-1]
        if not view:
            raise PreventUpdate
        return draw(stores, View.clean(view, stores, window), window)

    return callback


def rank_rows(df: pd.DataFrame, tag: str, cols: list[str], helps: dict[str, str] | None = None) -> html.Table:
    """A ranked-units table; each row's id names its unit (and its sign), and a click on it picks that unit.
    ``helps``: column -> what it holds, the header's tooltip."""
    helps = helps or {}
    head = html.Thead(html.Tr([html.Th("#")] + [html.Th(c, title=helps.get(c)) for c in cols]))
    body = []
    for r, row in enumerate(df.itertuples(index=False), start=1):
        cells = [html.Td(str(r))]
        for c in cols:
            v = getattr(row, c)
            if c == "sign":
                v = sign_symbol(v)
            elif isinstance(v, (float, np.floating)):
                v = f"{v:.3f}"
            cells.append(html.Td(str(v)))
        sign = ("/-" if row.sign < 0 else "/+") if "sign" in df.columns else ""  # ASCII: Dash ids carry no "−"
        body.append(html.Tr(cells, id={"type": "unit-row", "index": f"{tag}/{row.unit}{sign}"}, n_clicks=0,
                            title=f"colour the text by {row.unit} and go to where it fires most"))
    return html.Table([head, html.Tbody(body)], className="rank")
