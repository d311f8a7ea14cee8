"""rnnviz.analysis.statistics: rank statistics from float16 codes equal the textbook ones computed on the values."""

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from rnnviz.analysis.statistics import auroc, average_precision, cohens_d, float16_codes


def test_codes_sort_like_the_values_and_zeros_share_a_code():
    x = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    x = x[~np.isnan(x)]  # every float16 but the NaNs, infinities included
    c = float16_codes(x)
    order = np.argsort(x.astype(np.float64), kind="stable")
    assert (np.diff(c[order].astype(np.int64)) >= 0).all()  # codes never go down as values go up
    # equal codes exactly where values are equal: only -0 and +0
    assert len(np.unique(c)) == len(np.unique(x.astype(np.float64))) == len(x) - 1
    assert float16_codes(np.array([-0.0, 0.0], np.float16)).tolist() == [0x8000, 0x8000]


def test_counting_statistics_equal_sklearn_and_the_pooled_cohens_d():
    rng = np.random.default_rng(3)
    y = rng.random(5000) < 0.3
    x = (rng.normal(size=5000) + 0.8 * y).astype(np.float16)  # float16: many ties
    c = float16_codes(x).astype(np.intp)
    allc = np.bincount(c, minlength=65536).astype(np.float64)
    pos = np.bincount(c, weights=y, minlength=65536)
    v = x.astype(np.float64)
    assert np.isclose(auroc(pos, allc), roc_auc_score(y, v), rtol=1e-12)  # ties count 1/2 in both
    # AP with tied scores as one threshold is sklearn's definition
    assert np.isclose(average_precision(pos, allc, 1), average_precision_score(y, v), rtol=1e-12)
    assert np.isclose(average_precision(allc - pos, allc, -1), average_precision_score(~y, -v), rtol=1e-12)
    a, b = v[y], v[~y]
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    assert np.isclose(cohens_d(pos, allc), (a.mean() - b.mean()) / pooled, rtol=1e-9)


def test_a_feature_with_no_positives_has_no_auroc():
    allc = np.bincount(float16_codes(np.ones(10, np.float16)).astype(np.intp), minlength=65536).astype(float)
    assert np.isnan(auroc(np.zeros(65536), allc)) and np.isnan(average_precision(np.zeros(65536), allc, 1))
