"""scripts/if_cells.py's own statistics: the stratified AUROC against scikit-learn, the control-statement spans
against hand-written C."""

import importlib.util
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from rnnviz.analysis.statistics import float16_codes

_spec = importlib.util.spec_from_file_location("if_cells", Path(__file__).parent.parent / "scripts" / "if_cells.py")
if_cells = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(if_cells)


def test_stratified_auroc_pools_within_stratum_pairs():
    rng = np.random.default_rng(0)
    T = 600
    strata = rng.integers(-1, 3, T)  # -1: left out
    y = (rng.random(T) < 0.3 + 0.1 * strata).astype(np.float64)
    x = (rng.normal(size=T) + y + 3 * strata).astype(np.float16)  # strata shift x: a pooled AUROC would be inflated
    want_num = want_den = 0.0
    for s in (0, 1, 2):
        m = strata == s
        p, n = y[m].sum(), (1 - y[m]).sum()
        want_num += roc_auc_score(y[m], x[m].astype(np.float64)) * p * n
        want_den += p * n
    got = if_cells._stratified_auroc(float16_codes(x), y, strata, np.ones(T))
    assert np.isclose(got, want_num / want_den, rtol=0, atol=1e-12)
    assert not np.isclose(got, roc_auc_score(y[strata >= 0], x[strata >= 0].astype(np.float64)), atol=0.02)


def test_control_conditions_cover_the_brackets_of_if_while_for_switch():
    text = 'for (i = 0; f(i); i++) while (a) if (b) switch (c) {} g(d); /* if (e) */ "while (x)";'
    got = "".join(ch if v else "." for ch, v in zip(text, if_cells._control_conditions(text), strict=True))
    assert got == "....(i = 0; f(i); i++........(a.....(b.........(c...................................."
