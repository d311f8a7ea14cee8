"""The pattern view as LSTMVis's match view (issue 26 §3): a click on a line adds or drops a cell of the fixed set,
the selection's next-best cells drawn as grey candidates, and each match a heatmap aligned with its text (a column
a character, the characters under the columns, a colour scale), as plain calls. Browser tests: test_overview_e2e.py."""

from __future__ import annotations

import numpy as np
import pytest
from dash import no_update
from dash.exceptions import PreventUpdate
from helpers import NEG_UNIT, QUOTE_UNIT, make_quote_store, quote_span

from rnnviz.analysis.similar import MAX_FOLLOW, SimilarConfig, similar_cells
from rnnviz.views.dashboard.callbacks import pattern as cb_pattern
from rnnviz.views.dashboard.state import View
from rnnviz.views.dashboard.stores import StoreSet
from rnnviz.views.match_heatmap import COLUMN_PX, LEFT, RIGHT, SIGMA, column_labels, match_figure


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> StoreSet:
    base = tmp_path_factory.mktemp("match")
    make_quote_store(base / "quotes")
    return StoreSet([base / "quotes"])


def click(curve: int) -> dict:
    return {"points": [{"curveNumber": curve, "pointNumber": 7, "x": 7, "y": 0.3}]}


def test_a_click_on_a_line_drops_its_cell_or_adds_a_candidate():
    drawn = {"cells": ["1:c:3", "1:h:5"], "candidates": ["0:c:1", "0:c:2"]}  # traces: candidates, then cells
    assert cb_pattern.toggled(click(2), drawn) == ("1:h:5", "")  # 1:c:3 dropped
    assert cb_pattern.toggled(click(3), drawn) == ("1:c:3", "")
    assert cb_pattern.toggled(click(1), drawn) == ("1:c:3, 1:h:5, 0:c:2", "")  # a grey line: added
    one = {"cells": ["1:c:3"], "candidates": ["0:c:1"]}
    assert cb_pattern.toggled(click(1), one) == (no_update, "1:c:3 is the last cell of the set: add another "
                                                             "before dropping it")
    full = {"cells": [f"0:h:{j}" for j in range(MAX_FOLLOW)], "candidates": ["0:c:1"]}
    assert cb_pattern.toggled(click(0), full) == (
        no_update, f"the set has {MAX_FOLLOW} cells, the most it follows: drop one before adding 0:c:1")
    for bad_click, bad_drawn in ((click(4), drawn), (click(-1), drawn), (None, drawn), ({"points": []}, drawn),
                                 (click(0), None), ({"points": [{"x": 3}]}, drawn),
                                 (click(0), {"cells": 5, "candidates": []}),
                                 (click(0), {"cells": [3], "candidates": []})):
        with pytest.raises(PreventUpdate):
            cb_pattern.toggled(bad_click, bad_drawn)


def test_candidates_are_the_selections_next_cells_drawn_grey_under_the_set(stores):
    s = stores[0]
    a, b = quote_span(s.text, 3)
    v = View.clean({"unit": QUOTE_UNIT, "sel": [a, b + 1], "tab": "pattern", "cells": [QUOTE_UNIT]}, stores)
    ranked = similar_cells(s, a, b + 1, SimilarConfig(threshold=cb_pattern.RANK_THETA, two_state=False))
    assert NEG_UNIT in list(ranked["unit"])
    units, signs = cb_pattern.candidates(stores, v, [QUOTE_UNIT])
    want = ranked[ranked["unit"] != QUOTE_UNIT].head(cb_pattern.CANDIDATES)
    assert units == list(want["unit"]) and signs == [int(x) for x in want["sign"]]
    assert cb_pattern.candidates(stores, v.replace(sel=None), [QUOTE_UNIT]) == ([], [])
    fig, onset, msg, drawn = cb_pattern.pattern_view(stores, v, 2000)
    assert drawn == {"cells": [QUOTE_UNIT], "candidates": units} and msg == ""
    data = fig["data"]
    assert [t["name"].split(" ")[0] for t in data] == units + [QUOTE_UNIT]  # the set's line drawn last, on top
    assert [t.get("showlegend", True) for t in data] == [False] * len(units) + [True]
    assert {t["line"]["color"] for t in data[:-1]} == {cb_pattern.CANDIDATE_COLOUR}
    assert fig["layout"]["hovermode"] == "closest"  # a click names one line
    # The candidates' values: σ from each cell's mean, sign-aware, as the set's.
    j = units.index(NEG_UNIT)
    x = s.window(0, 2000, [NEG_UNIT])[:, 0]
    st = s.stats.loc[NEG_UNIT]
    np.testing.assert_allclose(data[j]["y"], -(x - st["mean"]) / st["std"], rtol=1e-4, atol=1e-4)
    assert onset == f"on-set at θ = 0.5 σ: {QUOTE_UNIT} (1 of 1 cells)"


def test_match_heatmap_is_a_column_a_character_with_the_characters_under_it():
    z = np.array([[0.5, 3.2, -1, 0], [0, 1, 2, -4]], np.float32)
    fig = match_figure(z, 40, column_labels('a "\n'), ["1:c:3", "1:h:5"], "40–43", np.array([0, 1, 1, 1]), "in_quote")
    cells, feature = fig["data"]
    lay = fig["layout"]
    assert column_labels('a "\n\t') == ["a", " ", '"', "↵", "⇥"]  # a space stays blank
    assert lay["width"] == LEFT + RIGHT + 4 * COLUMN_PX  # 4 columns of COLUMN_PX pixels
    assert cells["x"] == [40, 41, 42, 43] and lay["xaxis"]["tickvals"] == [40, 41, 42, 43]
    assert lay["xaxis"]["ticktext"] == ["a", " ", '"', "↵"] and lay["xaxis"]["range"] == [39.5, 43.5]
    assert cells["z"] == [[0.5, 3.2, -1.0, 0.0], [0.0, 1.0, 2.0, -4.0]]
    assert (cells["zmin"], cells["zmid"], cells["zmax"]) == (-SIGMA, 0, SIGMA)
    assert cells["colorbar"]["ticktext"] == ["−3", "0", "+3"] and "showscale" not in cells  # the scale is shown
    # The characters hang under the feature's track, the track under the cells: no overlap.
    assert lay["xaxis"]["anchor"] == "y2" and feature["yaxis"] == "y2" and feature["y"] == ["in_quote"]
    assert lay["yaxis2"]["domain"][1] < lay["yaxis"]["domain"][0]
    plain = match_figure(z, 40, ["a", "b", "c", "d"], ["1:c:3", "1:h:5"], "t")
    assert len(plain["data"]) == 1 and plain["layout"]["xaxis"]["anchor"] == "y" and "yaxis2" not in plain["layout"]
    assert plain["layout"]["yaxis"]["domain"] == [0.0, 1.0]
