"""θ, the default on-threshold (σ from a cell's mean) of select-to-find and the pattern view.

Its own module so that the CLI can show it in ``--help`` without importing :mod:`rnnviz.similar` (and pandas,
about 0.2 s) at start-up; the library, the dashboard and the benches import it from :mod:`rnnviz.similar`.

Measured on the bundled War and Peace model (20 random quotes, seeds 0-2, ``bench/similar_quality.py``): its
fading quote cell is ranked first in 19/18/20 at 0.5 against 14/15/19 at 1, with 94/91/98% of the matches in a
quote against 86/85/98%; Linux comments, ranked by their two states, are the same at both.
"""

THETA = 0.5
