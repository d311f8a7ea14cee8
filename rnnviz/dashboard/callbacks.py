"""Every callback of the dashboard, registered by job: the view and its controls (:mod:`.cb_view`), the text
window and its trace (:mod:`.cb_text`), select-to-find (:mod:`.cb_find`), the pattern view
(:mod:`.cb_pattern`) and the focus panels: hypotheses, plots, sampling (:mod:`.cb_panels`). What each
user action does to the view is in :mod:`.transitions`; every function there and in the ``cb_*`` modules
can be called directly in a test, without a browser or a server."""

from __future__ import annotations

from . import cb_find, cb_panels, cb_pattern, cb_text, cb_view
from .state import WINDOW
from .stores import StoreSet


def register(app, stores: StoreSet, window: int = WINDOW) -> None:
    """Attach every callback to ``app``."""
    for module in (cb_view, cb_text, cb_find, cb_pattern, cb_panels):
        module.register(app, stores, window)
