"""The Dash dashboard: explore the cells of recorded stores in a browser. See :func:`create_app`."""

from rnnviz.views.dashboard.app import create_app

__all__ = ["create_app"]
