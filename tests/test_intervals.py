"""The interval helpers of rnnviz.analysis.statistics against scipy / scikit-learn oracles."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from rnnviz.analysis.statistics import (
    _z,
    block_weights,
    bootstrap_interval,
    float16_codes,
    percentile_interval,
    permutation_p,
    weighted_auroc,
    weighted_pearson,
    wilson_interval,
)


def _data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, x + rng.normal(size=n)


def test_block_weights_draw_whole_blocks_and_repeat_with_the_seed():
    ws = list(block_weights(1050, block=100, reps=5, seed=3))
    assert len(ws) == 5 and all(w.shape == (1050,) for w in ws)
    for w in ws:  # constant inside each block of 100 rows
        assert all(np.unique(w[a : a + 100]).size == 1 for a in range(0, 1050, 100))
        assert np.array_equal(w, np.round(w)) and w.min() >= 0
    again = list(block_weights(1050, block=100, reps=5, seed=3))
    assert all(np.array_equal(a, b) for a, b in zip(ws, again, strict=True))
    assert not np.array_equal(ws[0], next(block_weights(1050, block=100, reps=1, seed=4)))


def test_weighted_statistics_equal_the_oracles_on_repeated_rows():
    x, y = _data()
    w = next(block_weights(x.size, block=50, reps=1, seed=1))
    rep = np.repeat(np.arange(x.size), w.astype(int))
    x16 = x.astype(np.float16)
    lab = y > 0.5
    assert weighted_auroc(float16_codes(x16), lab, w) == pytest.approx(
        roc_auc_score(lab[rep], x16[rep].astype(np.float64)), abs=1e-12)
    assert weighted_pearson(x, y, w) == pytest.approx(np.corrcoef(x[rep], y[rep])[0, 1], abs=1e-12)
    assert np.isnan(weighted_pearson(np.ones(10), y[:10], np.ones(10)))


def test_bootstrap_interval_holds_the_estimate_and_needs_enough_blocks():
    x, y = _data(20000)
    r = weighted_pearson(x, y, np.ones(x.size))
    lo, hi = bootstrap_interval(lambda w: weighted_pearson(x, y, w), x.size, block=500, reps=100)
    assert lo < r < hi and hi - lo < 0.05
    assert np.isnan(bootstrap_interval(lambda w: 0.0, x.size, block=x.size // 5)).all()
    assert np.isnan(bootstrap_interval(lambda w: 0.0, 900, block=100)[0])  # 10 blocks are needed, 900 rows make 9
    assert not np.isnan(bootstrap_interval(lambda w: 0.0, 901, block=100)[0])


def test_percentile_interval_ignores_nan_and_matches_numpy():
    s = np.r_[np.arange(101.0), np.nan]
    assert percentile_interval(s) == (pytest.approx(2.5), pytest.approx(97.5))
    assert np.isnan(percentile_interval(np.array([np.nan]))[0])


@pytest.mark.parametrize("k,n", [(0, 20), (7, 20), (20, 20), (543, 1000)])
def test_wilson_interval_matches_scipy(k, n):
    lo, hi = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == (pytest.approx(lo, abs=1e-9), pytest.approx(hi, abs=1e-9))
    assert _z(0.9) == pytest.approx(stats.norm.ppf(0.95), abs=1e-12)


def test_permutation_p_is_exact_and_never_zero():
    null = np.arange(99.0)
    assert permutation_p(1000.0, null) == 1 / 100
    assert permutation_p(98.0, null) == 2 / 100
    assert permutation_p(-1.0, null) == 1.0
