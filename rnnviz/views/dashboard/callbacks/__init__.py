"""Every callback of the dashboard, registered by job: the view and its controls (:mod:`.view`), the text
window and its trace (:mod:`.text`), select-to-find (:mod:`.find`), the pattern view (:mod:`.pattern`), the
focus panels: hypotheses, plots, sampling (:mod:`.panels`), and what the store is and lacks (:mod:`.info`);
what they share is in :mod:`.shared`. What each user action does to the view is in :mod:`..transitions`;
every function there and in these modules can be called directly in a test, without a browser or a server."""

from __future__ import annotations

from rnnviz.views.dashboard.callbacks import find, info, panels, pattern, text, view
from rnnviz.views.dashboard.state import WINDOW
from rnnviz.views.dashboard.stores import StoreSet


def register(app, stores: StoreSet, window: int = WINDOW) -> None:
    """Attach every callback to ``app``."""
    for module in (view, text, find, pattern, panels, info):
        module.register(app, stores, window)
