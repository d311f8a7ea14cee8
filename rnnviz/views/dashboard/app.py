"""The app factory: ``create_app(["stores/wp", "stores/c"])`` -> a ``dash.Dash`` ready to serve.

The stores are opened once, here; the browser can reach only these (by index or name). The app reads
the stores and, for sampling and gradient flow, their recorded checkpoints; it never records.
"""

from __future__ import annotations

import gc
import html
import ipaddress
import logging
from collections.abc import Sequence
from pathlib import Path

import dash

from rnnviz.views.dashboard import callbacks, catalog, emergence_tab, guard, layout, overview, unit_card
from rnnviz.views.dashboard.state import WINDOW
from rnnviz.views.dashboard.stores import REGEX_TIMEOUT, StoreSet

MAX_REQUEST_BYTES = guard.MAX_REQUEST_BYTES

def create_app(
    store_paths: Sequence[str | Path],
    *,
    window: int = WINDOW,
    regex_timeout: float = REGEX_TIMEOUT,
    title: str | None = None,
    hosts: Sequence[str] = (),
    freeze_gc: bool = False,
) -> dash.Dash:
    """A Dash app over the given stores.

    ``window``: characters per text window; ``regex_timeout``: seconds a user's regex may run;
    ``hosts``: names the Host header may carry besides 127.0.0.1, localhost and ::1 (the ``--host``
    bound; see :mod:`rnnviz.views.dashboard.guard`). ``freeze_gc``: for a server process, move every object alive
    once the app is built (the imports and the layout: ~250,000) out of the cyclic garbage collector's
    sight (``gc.freeze``): a full collection walked them all in the middle of a callback (150 ms on an
    idle machine, seconds on a busy one: the slowest window changes). Not for a process that builds many
    apps (tests): what those leave as garbage cycles is never collected.
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
        on_error=guard.report_error,  # an exception in a callback: a message in the page, not a 500
        suppress_callback_exceptions=True,  # the trace's graph is mounted by a callback (callbacks.text)
    )
    app.index_string = layout.index_string(html.escape(title))
    app.layout = layout.build(stores)
    callbacks.register(app, stores, window)
    emergence_tab.register(app, stores)
    catalog.register(app, stores, window)
    unit_card.register(app, stores)
    overview.register(app, stores, window)
    guard.install(app, hosts)  # Host check, callback-request shapes, security headers
    app.stores = stores  # for tests and tools: the StoreSet this app serves
    if freeze_gc:
        gc.collect()
        gc.freeze()
    return app


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable only from this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run_quietly(app, host: str, port: int, log_requests: bool = False) -> None:
    """``app.run`` without the banners of Flask, Dash and Werkzeug's development server (the CLI says where it
    serves, once) and, unless ``log_requests``, without a log line per request; errors are still logged."""
    import flask.cli

    flask.cli.show_server_banner = lambda *args, **kwargs: None  # this process serves and exits: no one else runs Flask
    logging.getLogger("dash.dash").setLevel(logging.WARNING)  # "Dash is running on ..."
    logging.getLogger("werkzeug").setLevel(logging.INFO if log_requests else logging.ERROR)
    app.run(host=host, port=port, debug=False)
