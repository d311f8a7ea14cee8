"""θ, the default on-threshold (σ from a cell's mean) of select-to-find and the pattern view.

Its own module so that the CLI can show it in ``--help`` without importing :mod:`rnnviz.analysis.similar` (and pandas,
about 0.2 s) at start-up; the library, the dashboard and the benches import it from :mod:`rnnviz.analysis.similar`.

Why 0.5 and not 1: README, "Select-to-find" (``bench/similar_quality.py`` measures it).
The one check of a θ given by a user (library, CLI, a link, the dashboard's inputs) is :func:`theta_problem`.
"""

from __future__ import annotations

import math

THETA = 0.5


def parse_theta(value, default: float | None = None) -> float | None:
    """``value`` as θ, a finite float >= 0 standard deviations, or ``default`` when it is not one (text,
    NaN, a negative number, 1e400)."""
    try:
        t = float(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return t if math.isfinite(t) and t >= 0 else default


def theta_problem(value) -> str:
    """"" when ``value`` is a valid θ, else the one-line message that says why not (the value shown
    shortened to 40 characters: it may come from a link)."""
    if parse_theta(value) is not None:
        return ""
    shown = str(value)
    return f"θ must be a finite number >= 0 (σ), got {shown if len(shown) <= 40 else shown[:40] + '…'!r}"
