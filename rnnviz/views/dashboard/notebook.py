"""``rnnviz.serve``: the dashboard from Python, blocking in a script or inline in a Jupyter cell.

Jupyter support is Dash's own (``app.run(jupyter_mode=...)``): the server runs in a thread of the kernel
and the page shows in an iframe under the cell ("inline"), in a new browser tab ("tab"), as a link
("external") or in a JupyterLab panel ("jupyterlab"). It listens on 127.0.0.1 only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rnnviz.errors import RnnvizError
from rnnviz.views.dashboard.app import create_app
from rnnviz.views.dashboard.state import WINDOW

JUPYTER_MODES = ("inline", "tab", "external", "jupyterlab")


def _paths(stores) -> list:
    """Store paths from a path, a Store, or a list of either."""
    items = stores if isinstance(stores, Sequence) and not isinstance(stores, (str, bytes)) else [stores]
    return [s.path if hasattr(s, "path") and not isinstance(s, (str, Path)) else s for s in items]


def serve(stores, *, port: int = 8050, jupyter_mode: str | None = None, height: int = 800, window: int = WINDOW):
    """Serve the dashboard over ``stores`` (paths or opened stores) on http://127.0.0.1:``port``/.

    ``jupyter_mode``: None blocks until Ctrl-C (a script); "inline" shows the dashboard in the notebook
    cell (``height`` pixels tall), "tab", "external" or "jupyterlab" as Dash does. Returns the ``dash.Dash``
    app (in a notebook the server keeps running in the background).

    >>> rnnviz.serve("stores/wp", jupyter_mode="inline")
    """
    if jupyter_mode is not None and jupyter_mode not in JUPYTER_MODES:
        raise RnnvizError(f"unknown jupyter_mode {jupyter_mode!r}; choose one of {', '.join(JUPYTER_MODES)}")
    if not (isinstance(port, int) and 1 <= port <= 65535):
        raise RnnvizError(f"port must be a whole number from 1 to 65535, got {port!r}")
    if jupyter_mode is not None:  # outside a kernel Dash ignores the mode and blocks: say so instead
        try:
            import IPython  # noqa: F401
        except ImportError:
            raise RnnvizError(f"jupyter_mode={jupyter_mode!r} needs a notebook (IPython is not installed); "
                              "use jupyter_mode='external' or None") from None
    app = create_app(_paths(stores), window=window)
    if jupyter_mode is None:
        app.run(host="127.0.0.1", port=port, debug=False)
    else:
        app.run(host="127.0.0.1", port=port, debug=False, jupyter_mode=jupyter_mode, jupyter_height=height)
    return app
