"""The overview of many units (issue 26 §3): the cheap measures that order and filter the rows
(rnnviz.analysis.overview, against scipy and scikit-learn), the rows' colours (rnnviz.views.heat_rows, against the
text view's own scales) and the Overview tab's content as a plain call. Browser tests: test_overview_e2e.py."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from dash.exceptions import PreventUpdate
from helpers import OV_A, OV_QUOTE, OV_RAMP, make_overview_store, make_token_store
from scipy.stats import pearsonr
from sklearn.linear_model import LinearRegression

from rnnviz.analysis.overview import (
    CHAR_SHARE_MIN,
    explain_order,
    group_share,
    input_detectors,
    lag_correlation,
    measure_order,
    sample_blocks,
    unit_measures,
)
from rnnviz.analysis.two_state import two_states
from rnnviz.views.colours import ColourScale, unit_scale
from rnnviz.views.dashboard import catalog
from rnnviz.views.dashboard import overview as tab
from rnnviz.views.dashboard.state import View
from rnnviz.views.dashboard.stores import StoreSet
from rnnviz.views.heat_rows import overview_figure, overview_steps, unit_of

LENGTH = 6000
A_UNIT, QUOTE, RAMP = OV_A, OV_QUOTE, OV_RAMP


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> StoreSet:
    base = tmp_path_factory.mktemp("overview")
    make_overview_store(base / "ov", LENGTH)
    return StoreSet([base / "ov"])


# --- the measures ---


def test_lag_correlation_is_pearson_r_over_the_pairs_inside_each_block():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(70, 3)).cumsum(0)  # slow columns
    blocks = [(0, 30), (100, 105), (200, 235)]  # 30 + 5 + 35 rows; the middle one is shorter than the lag
    got = lag_correlation(x, blocks, lag=6)
    x0 = np.concatenate([x[0:24], x[35 + 0 : 35 + 29]])
    x1 = np.concatenate([x[6:30], x[35 + 6 : 35 + 35]])
    for j in range(3):
        assert got[j] == pytest.approx(pearsonr(x0[:, j], x1[:, j])[0], abs=1e-12)
    assert np.isnan(lag_correlation(x[:5], [(0, 5)], lag=6)).all()  # no pair: NaN, not 0
    assert np.isnan(lag_correlation(np.ones((30, 1)), [(0, 30)], lag=6))[0]  # a constant unit


def test_group_share_is_the_r2_of_the_group_means():
    rng = np.random.default_rng(2)
    keys = rng.integers(0, 7, 500)
    x = np.stack([rng.normal(size=500), keys * 0.3 + rng.normal(size=500), (keys == 3).astype(float)], 1)
    onehot = np.eye(7)[keys]
    want = [LinearRegression().fit(onehot, x[:, j]).score(onehot, x[:, j]) for j in range(3)]
    np.testing.assert_allclose(group_share(x, keys), want, atol=1e-12)
    assert group_share(x, keys)[2] == pytest.approx(1.0, abs=1e-12)  # a pure function of the key
    assert np.isnan(group_share(np.zeros((10, 1)), np.arange(10)))[0]


def test_unit_measures_find_the_planted_units(stores):
    store = stores[0]
    units = tab.group_units(store, "0:c")
    m = unit_measures(store, units)
    assert list(m.index) == units and list(m.columns) == ["eta", "slow", "char_share"]
    assert m.loc[A_UNIT, "char_share"] == pytest.approx(1.0, abs=1e-9)  # it is the character just read
    assert m["char_share"].drop(A_UNIT).max() < CHAR_SHARE_MIN  # the ramp, the quote cell and noise are not
    assert input_detectors(m).tolist() == [u == A_UNIT for u in units]
    assert m["eta"].to_numpy().tolist() == two_states(store)["eta"].loc[units].tolist()
    assert m["slow"].idxmax() == RAMP and m.loc[RAMP, "slow"] > 0.5
    assert abs(m.loc["0:c:0", "slow"]) < 0.1  # noise forgets at once
    blocks = sample_blocks(store.length)
    assert blocks == [(0, LENGTH)]  # a short store: all of it
    x = store.read([QUOTE], blocks=blocks)
    assert m.loc[QUOTE, "slow"] == pytest.approx(pearsonr(x[:-16, 0], x[16:, 0])[0], abs=1e-6)


def test_orders():
    roles = ["input detector", "cell", "unexplained", "cell", "cell"]
    scores = [0.99, 0.5, 0.2, 0.9, float("nan")]
    assert explain_order(roles, scores).tolist() == [3, 1, 4, 2, 0]
    m = pd.DataFrame({"eta": [0.5, np.nan, 0.9, 0.5], "slow": [0.1, 0.8, -0.2, np.nan]})
    assert measure_order(m, "two-state").tolist() == [2, 0, 3, 1]  # ties keep their order, NaN last
    assert measure_order(m, "slow").tolist() == [1, 0, 2, 3]
    assert measure_order(m, "index").tolist() == [0, 1, 2, 3]


# --- the rows' colours ---


def test_overview_steps_average_runs_of_characters():
    scales = [ColourScale("diverging", -1.0, 1.0), ColourScale("sequential", 0.0, 2.0)]
    v = np.array([[-1, 0], [1, 2], [0, 1], [np.nan, np.nan], [1, 0.5]], np.float32)  # (5, 2)
    steps, edges = overview_steps(v, scales, 100, max_columns=5)
    np.testing.assert_array_equal(steps, [[0, 32, 16, np.nan, 32], [0, 32, 16, np.nan, 8]])
    assert edges.tolist() == [100, 101, 102, 103, 104, 105]
    steps, edges = overview_steps(v, scales, 100, max_columns=2)  # 3 characters a column
    np.testing.assert_array_equal(steps, [[16, 32], [16, 8]])
    assert edges.tolist() == [100, 103, 105]
    steps, _ = overview_steps(v[3:4], scales, 0, max_columns=2)
    assert np.isnan(steps).all()


def test_overview_figure_rows_and_colours():
    steps = np.array([[0, 32], [16, np.nan]], np.float32)
    fig = overview_figure(steps, np.array([10, 11, 12]), ["0:c:1", "0:c:2"], ["#00f"] * 32 + ["#f00"], ["a", ""],
                          "t")
    trace, lay = fig["data"][0], fig["layout"]
    assert trace["z"] == [[0, 32], [16, None]] and all(type(v) is int for v in trace["z"][0])  # whole steps
    assert trace["x"] == [10, 11] and trace["y"] == ["0:c:1 · a", "0:c:2"]  # the label shown on hover
    assert lay["yaxis"]["tickvals"] == trace["y"] and lay["yaxis"]["ticktext"] == ["0:c:1", "0:c:2"]
    assert [unit_of(y) for y in trace["y"]] == ["0:c:1", "0:c:2"]
    assert trace["colorscale"][0] == [0.0, "#00f"] and trace["colorscale"][-1] == [1.0, "#f00"]
    assert lay["yaxis"]["showticklabels"] and lay["xaxis"]["title"]["text"] == "character"  # two rows: labelled
    wide = overview_figure(np.array([[7.25, np.nan]]), np.array([0, 4, 7]), ["0:c:1"], ["#fff"] * 33, ["a"], "t")
    assert wide["data"][0]["z"] == [[7.2, None]] and wide["layout"]["xaxis"]["title"]["text"] == "character (mean of 4)"


def test_a_click_on_a_row_opens_its_unit_over_the_stretch_shown(stores):
    v = View.clean({"unit": "0:c:5", "start": 0, "tab": "overview"}, stores)
    q = tab.pick(stores, v, {"points": [{"x": 300, "y": f"{RAMP} · two-state η 0.71", "z": 3}]}, 1500, 2000)
    assert q == "?store=ov&unit=0%3Ac%3A3&start=1500&tab=overview"
    assert tab.pick(stores, v, {"points": [{"y": RAMP}]}, 99999, 2000).endswith("start=4000&tab=overview")  # clipped
    for bad in (None, {"points": []}, {"points": [{"y": 3}]}, {"points": [{"y": "9:q:9 · x"}]}, [1]):
        with pytest.raises(PreventUpdate):
            tab.pick(stores, v, bad, 0, 2000)


# --- the tab, called as a function ---


def test_overview_tab_hides_input_detectors_and_orders_rows(stores):
    v = View.clean({"unit": "0:c:5", "start": 0}, stores)
    fig, note = tab.overview(stores, v, None, 0, 500, "explain", [tab.HIDE])
    rows = fig["layout"]["yaxis"]["ticktext"]
    assert A_UNIT not in rows and len(rows) == 7
    m = unit_measures(stores[0], tab.group_units(stores[0], "0:c"))
    assert rows == [u for u in m["eta"].sort_values(ascending=False, kind="stable").index if u != A_UNIT]
    assert note == ("7 of 8 units of 0:c, ordered by two-state η, highest first (the two-state split's share of the "
                    "unit's variance) (no catalog yet: Catalog → Explain every unit); 1 input detector hidden "
                    f"(character share ≥ {CHAR_SHARE_MIN:g}: the catalog is not computed)")
    fig, note = tab.overview(stores, v, "0:c", 0, 500, "slow", [])
    rows = fig["layout"]["yaxis"]["ticktext"]
    assert len(rows) == 8 and rows[0] == RAMP and note.startswith("8 of 8 units of 0:c, ordered by slowness")
    assert fig["layout"]["title"]["text"] == "0:c: characters 0–500"
    assert len(fig["data"][0]["x"]) == 500
    for order, hide in ((["explain"], 5), ({"a": 1}, "inputs"), (None, None)):  # what a crafted request may send
        fig, note = tab.overview(stores, v, "0:c", "x", 1e400, order, hide)
        assert note.startswith("8 of 8 units of 0:c, ordered by unit index")
        assert fig["layout"]["title"]["text"] == "0:c: characters 0–500"  # the default stretch
    fig, _ = tab.overview(stores, v, "0:c", 0, 500, "index", [])  # each row coloured as the text view colours it
    scale = unit_scale(stores[0], RAMP, "robust")
    assert fig["data"][0]["z"][3] == scale.bins(stores[0].window(0, 500, [RAMP])[:, 0]).tolist()
    fig, _ = tab.overview(stores, v, "1:h", 5900, 2000, "index", [])  # 2,000 wide: clipped to the end, averaged
    assert fig["layout"]["yaxis"]["ticktext"] == tab.group_units(stores[0], "1:h")
    assert fig["layout"]["title"]["text"] == "1:h: characters 4,000–6,000" and len(fig["data"][0]["x"]) == 500


def test_overview_follows_the_catalog_once_it_is_computed(stores, tmp_path):
    shutil.copytree(stores[0].path, tmp_path / "ov")  # the catalog is kept beside its store: the others see none
    fresh = StoreSet([tmp_path / "ov"])
    v = View.clean({"unit": "0:c:5"}, fresh)
    assert catalog.known_rows(fresh, 0) is None
    rows = catalog.catalog_rows(fresh, 0)  # what "Explain every unit" computes
    assert catalog.known_rows(fresh, 0) is rows
    assert catalog.known_rows(StoreSet([tmp_path / "ov"]), 0) is not None  # a new process reads it beside the store
    by = {r["unit"]: r for r in rows}
    assert by[A_UNIT]["_role"] == "input detector" and by[QUOTE]["_role"] == "cell"
    units = tab.group_units(fresh[0], "0:c")
    order = explain_order([by[u]["_role"] for u in units], [by[u]["score"] for u in units])
    want = [units[j] for j in order if by[units[j]]["_role"] != "input detector"]
    fig, note = tab.overview(fresh, v, None, 0, 500, "explain", [tab.HIDE])
    assert fig["layout"]["yaxis"]["ticktext"] == want and want[0] == QUOTE
    hidden = sum(by[u]["_role"] == "input detector" for u in units)
    assert note == (f"{len(want)} of 8 units of 0:c, ordered by the catalog's explanations (cells by held-out score, "
                    f"then unexplained units, input detectors last); {hidden} input detector"
                    f"{'s' if hidden > 1 else ''} hidden (the catalog's roles)")
    q = by[QUOTE]
    assert fig["data"][0]["y"][0] == f"{QUOTE} · {q['explanation']} (held-out score {q['score']:.2f})"


def test_overview_on_a_token_store(tmp_path):
    make_token_store(tmp_path / "tok")
    tok = StoreSet([tmp_path / "tok"])
    v = View.clean({"unit": "1:c:3"}, tok)
    fig, note = tab.overview(tok, v, "0:h", 100, 300, "slow", [tab.HIDE])
    rows = fig["layout"]["yaxis"]["ticktext"]
    assert sorted(rows) == sorted(tab.group_units(tok[0], "0:h")) and len(rows) == 6
    assert fig["layout"]["title"]["text"] == "0:h: tokens 100–400"
    assert fig["layout"]["xaxis"]["title"]["text"] == "token"
    assert note.startswith("6 of 6 units of 0:h, ordered by slowness")
    m = unit_measures(tok[0], tab.group_units(tok[0], "1:c"))
    assert m.loc["1:c:3", "eta"] > 0.9 and m["char_share"].notna().all()  # tokens: grouped by the token read
