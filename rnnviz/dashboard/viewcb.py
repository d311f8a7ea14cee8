"""What the ``cb_*`` views share (each view depends on the library and on this, never on another view):
the view's feature values, and the body of a callback that draws from the view alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from dash.exceptions import PreventUpdate

from ..errors import RnnvizError
from .state import View
from .stores import StoreSet


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
