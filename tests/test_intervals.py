"""The interval helpers of rnnviz.analysis.statistics against scipy / scikit-learn oracles."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from rnnviz.analysis.statistics import (
    BOOT_REPS,
    BlockBootstrap,
    _z,
    block_counts,
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


def _per_row(stat, n, block, seed=0):
    """(reps,) ``stat(w)`` over the per-row weights of :func:`block_weights`: the oracle of the block sums."""
    return np.array([stat(w) for w in block_weights(n, block=block, reps=50, seed=seed)])


def test_block_counts_are_the_draws_of_block_weights():
    c = block_counts(1050, block=100, reps=5, seed=3)
    assert c.shape == (5, 11) and (c.sum(1) == 11).all()
    for counts, w in zip(c, block_weights(1050, block=100, reps=5, seed=3), strict=True):
        assert np.array_equal(np.repeat(counts, 100)[:1050], w)
    boot = BlockBootstrap(1050, block=100, reps=5, seed=3)
    v = np.random.default_rng(0).normal(size=(1050, 2))
    assert np.allclose(boot.sums(v), [w @ v for w in block_weights(1050, block=100, reps=5, seed=3)],
                       rtol=0, atol=1e-10)


@pytest.mark.parametrize("offset,sign", [(0.0, 1), (1e3, -1)])
def test_block_bootstrap_pearson_equals_the_per_row_weights(offset, sign):
    n, block = 1234, 100  # 13 blocks, the last of 34 rows
    x, y = _data(n, seed=2)
    x, y = np.round(x, 1) + offset, sign * np.round(y, 1) - offset  # ties, large means, both signs
    boot = BlockBootstrap(n, block=block, reps=50, seed=5)
    want = _per_row(lambda w: weighted_pearson(x, y, w), n, block, seed=5)
    assert np.all(np.isfinite(want)) and np.abs(want).min() > 0.3
    assert np.allclose(boot.pearson(x, y), want, rtol=0, atol=1e-12)


def test_block_bootstrap_pearson_is_nan_where_a_resample_is_constant_and_everywhere_for_nan():
    n, block = 1200, 100
    x, y = _data(n, seed=3)
    z = np.where(np.arange(n) < block, x, 0.0)  # non-zero in block 0 only: constant where it is not drawn
    boot = BlockBootstrap(n, block=block, reps=50, seed=1)
    want = _per_row(lambda w: weighted_pearson(z, y, w), n, block, seed=1)
    got = boot.pearson(z, y)
    assert 0 < np.isnan(want).sum() < 50 and np.array_equal(np.isnan(got), np.isnan(want))
    assert np.allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=0, atol=1e-12)
    assert np.isnan(boot.pearson(y, z)).sum() == np.isnan(want).sum()
    for bad in (np.nan, np.inf):  # one bad row anywhere: every resample NaN, as 0 * NaN is NaN per row
        xb = x.copy()
        xb[-1] = bad
        with np.errstate(invalid="ignore"):
            assert np.isnan(_per_row(lambda w, xb=xb: weighted_pearson(xb, y, w), n, block)).all()
        assert np.isnan(boot.pearson(xb, y)).all() and np.isnan(boot.pearson(y, xb)).all()


@pytest.mark.parametrize("threshold", [0.5, -3.0])
def test_block_bootstrap_auroc_equals_the_per_row_weights(threshold):
    n, block = 1234, 100
    x, y = _data(n, seed=4)
    codes = np.unique(float16_codes(np.round(x, 1).astype(np.float16)), return_inverse=True)[1]  # ties
    lab = y > threshold  # -3: nearly all positive, some resamples have no negatives (NaN)
    boot = BlockBootstrap(n, block=block, reps=50, seed=7)
    want = _per_row(lambda w: weighted_auroc(codes, lab, w), n, block, seed=7)
    got = boot.auroc(codes, lab)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=0, atol=1e-12)
    assert np.allclose(boot.auroc(codes, lab, boot.histograms(codes)), got, rtol=0, atol=0, equal_nan=True)
    assert np.allclose(boot.auroc(codes, ~lab), 1 - got, rtol=0, atol=1e-12, equal_nan=True)
    soft = lab * np.linspace(0.2, 1.0, n)  # labels as weights: each positive row counts as that much of one
    want = _per_row(lambda w: weighted_auroc(codes, soft, w), n, block, seed=7)
    assert np.allclose(boot.auroc(codes, soft), want, rtol=0, atol=1e-12, equal_nan=True)


def test_block_bootstrap_auroc_without_positives_in_a_resample_is_nan():
    n, block = 1200, 100
    x, _ = _data(n, seed=5)
    codes = float16_codes(x.astype(np.float16)).astype(np.intp)
    lab = (np.arange(n) >= 1100) & (x > 0)  # positives in the last block only
    boot = BlockBootstrap(n, block=block, reps=50, seed=2)
    want = _per_row(lambda w: weighted_auroc(codes, lab, w), n, block, seed=2)
    got = boot.auroc(codes, lab)
    assert 0 < np.isnan(want).sum() < 50 and np.array_equal(np.isnan(got), np.isnan(want))
    assert np.allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=0, atol=1e-12)


def test_block_bootstrap_interval_needs_enough_blocks():
    x, y = _data(20000)
    boot = BlockBootstrap(x.size, block=500, reps=100)
    want = bootstrap_interval(lambda w: weighted_pearson(x, y, w), x.size, block=500, reps=100)
    assert boot.interval(boot.pearson(x, y)) == pytest.approx(want, rel=0, abs=1e-12)
    few = BlockBootstrap(900, block=100)  # 9 blocks
    assert np.isnan(few.pearson(x[:900], y[:900])).all() and np.isnan(few.sums(np.ones((900, 2)))).all()
    assert np.isnan(few.interval(np.zeros(few.reps))).all()
    assert not np.isnan(BlockBootstrap(901, block=100).interval(np.zeros(BOOT_REPS))).any()


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
