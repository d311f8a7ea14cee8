"""The dashboard as a deployable app.

    python apps/dashboard.py STORE [STORE ...] [--host 127.0.0.1] [--port 8050]
    RNNVIZ_STORES=stores/wp:stores/c gunicorn 'apps.dashboard:server'
    RNNVIZ_HOSTS=viz.example.org RNNVIZ_STORES=... gunicorn ...   # answer that Host name too

``server`` (the Flask app behind Dash) is built on first access from ``RNNVIZ_STORES``, a
colon-separated list of store directories: the only stores the browser can reach.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from rnnviz.errors import RnnvizError  # noqa: E402
from rnnviz.views.dashboard.app import create_app  # noqa: E402

ENV = "RNNVIZ_STORES"


def stores_from_env() -> list[str]:
    """The store directories named by ``RNNVIZ_STORES`` (colon-separated); raises if unset or empty."""
    paths = [p for p in os.environ.get(ENV, "").split(":") if p.strip()]
    if not paths:
        raise RnnvizError(f"set {ENV} to the store directories to serve, e.g. {ENV}=stores/wp:stores/c")
    return paths


def __getattr__(name: str):
    # Built lazily so that importing this module (or running it as a script) needs no environment.
    if name == "server":
        global server
        # RNNVIZ_HOSTS: the names (comma-separated) the Host header may carry besides the loopback ones,
        # e.g. the name a proxy in front of gunicorn is reached by; any other gets 421 (DNS rebinding).
        hosts = [h.strip() for h in os.environ.get("RNNVIZ_HOSTS", "").split(",") if h.strip()]
        server = create_app(stores_from_env(), hosts=hosts, freeze_gc=True).server
        return server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> int:
    """``python apps/dashboard.py STORE [STORE ...] [--host H] [--port P]``: ``rnnviz serve`` itself (the
    same checks, warnings and Ctrl-C handling); returns its exit status."""
    from rnnviz.cli import main as rnnviz

    try:
        rnnviz(["serve", *(sys.argv[1:] if argv is None else argv)], prog_name="apps/dashboard.py")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
