"""Each unit's two states (rnnviz.analysis.two_state): Otsu's split, its share of the variance, and the sample
it reads."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnnviz.analysis.two_state import BINS, otsu, two_states


def test_two_values_split_between_them_and_explain_everything():
    v = np.array([[0.0], [0.0], [0.0], [1.0]], np.float32)  # (4, 1): off three times, on once
    row = otsu(v).iloc[0]
    assert 0 < row["split"] <= 1 / BINS * 1.0001 + 1e-9  # the first cut above the low value
    assert (row["low"], row["high"], row["on_share"]) == pytest.approx((0.0, 1.0, 0.25))
    assert row["eta"] == pytest.approx(1.0)


def test_eta_of_textbook_distributions():
    rng = np.random.default_rng(0)
    n = 200_000
    v = np.stack([rng.normal(size=n), rng.uniform(size=n), np.full(n, 0.5)], 1).astype(np.float32)  # (n, 3)
    got = otsu(v)
    assert got["eta"].iloc[0] == pytest.approx(2 / math.pi, abs=0.005)  # Gaussian: split at the mean
    assert got["split"].iloc[0] == pytest.approx(0.0, abs=0.05)
    assert got["eta"].iloc[1] == pytest.approx(0.75, abs=0.005)  # uniform: means 1/4, 3/4
    assert (got["low"].iloc[1], got["high"].iloc[1]) == pytest.approx((0.25, 0.75), abs=0.005)
    assert got["eta"].iloc[2] == 0.0 and got["split"].iloc[2] == 0.5  # a constant unit has no second state


def test_two_states_indexed_by_unit_and_kept_per_store(tmp_path):
    from test_similar import COMMON, make_store

    st = make_store(tmp_path / "st")
    got = two_states(st)
    assert list(got.index) == list(st.units) and list(got.columns) == ["split", "low", "high", "eta", "on_share"]
    assert two_states(st) is got  # computed once per open store
    row = got.loc[COMMON]  # the ±1 cell on for the first line of every 93-character block
    assert (row["low"], row["high"], row["eta"]) == pytest.approx((-1.0, 1.0, 1.0))
    assert row["on_share"] == (32 * 48 + 24) / 3000  # the whole store (shorter than the sample): exact
