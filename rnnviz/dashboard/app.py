"""The app factory: ``create_app(["stores/wp", "stores/c"])`` -> a ``dash.Dash`` ready to serve.

The stores are opened once, here; the browser can reach only these (by index or name). The app reads
the stores and, for sampling and gradient flow, their recorded checkpoints; it never records.
"""

from __future__ import annotations

import html
import ipaddress
from collections.abc import Sequence
from pathlib import Path

import dash
import flask
from dash.exceptions import DependencyException

from . import callbacks, layout
from .state import WINDOW
from .stores import REGEX_TIMEOUT, StoreSet

MAX_REQUEST_BYTES = 1 << 20  # a callback request is a few kB; a larger body is refused (413) unread

def create_app(
    store_paths: Sequence[str | Path],
    *,
    window: int = WINDOW,
    regex_timeout: float = REGEX_TIMEOUT,
    title: str | None = None,
) -> dash.Dash:
    """A Dash app over the given stores.

    ``window``: characters per text window; ``regex_timeout``: seconds a user's regex may run.
    Serve with ``app.run(host="127.0.0.1", port=8050)`` or give ``app.server`` to a WSGI server.
    Raises :class:`~rnnviz.errors.RnnvizError` if a store cannot be opened.
    """
    stores = StoreSet(store_paths, regex_timeout=regex_timeout)
    title = title or f"rnnviz · {', '.join(stores.names)}"
    app = dash.Dash(
        __name__,
        title=title,
        update_title=None,  # keep the tab's title steady while callbacks run
        assets_folder=str(Path(__file__).with_name("assets")),  # rnnviz.js, rnnviz.css: package data
        serve_locally=True,  # the JavaScript comes from the installed package: works offline
    )
    app.index_string = layout.index_string(html.escape(title))
    app.layout = layout.build(stores)
    callbacks.register(app, stores, window)
    _refuse_malformed_requests(app)
    app.stores = stores  # for tests and tools: the StoreSet this app serves
    return app


def _refuse_malformed_requests(app: dash.Dash) -> None:
    """Answer requests that no page of ours sends with a 4xx, before Dash turns them into a 500 and a
    logged traceback: an oversized body (413), a callback body that is not Dash's JSON or names no
    callback of this app (400), a file path outside the installed component packages (404)."""
    server = app.server
    server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES

    @server.before_request
    def _check_callback_body():
        req = flask.request
        if req.method == "POST" and req.path.endswith("/_dash-update-component"):
            body = req.get_json(silent=True)
            if not (isinstance(body, dict) and isinstance(body.get("inputs"), list)
                    and isinstance(body.get("output"), str) and body["output"] in app.callback_map):
                return "malformed callback request", 400
        return None

    server.register_error_handler(DependencyException, lambda e: ("no such file", 404))


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable only from this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
