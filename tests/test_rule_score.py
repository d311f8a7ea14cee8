"""Scoring a person's rule against one unit (rnnviz.analysis.rule_score) and the unit card's contexts
(top_contexts' random rows): scipy and scikit-learn as oracles, explain's own score and interval for its rule."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import quote_text
from scipy.stats import pearsonr
from sklearn.linear_model import LinearRegression
from sklearn.metrics import roc_auc_score

from rnnviz.analysis.explain import explain, top_contexts
from rnnviz.analysis.features import compute_feature
from rnnviz.analysis.rule_score import predicted, rule_values, score_rule
from rnnviz.analysis.statistics import block_weights, percentile_interval, weighted_pearson
from rnnviz.errors import RnnvizError
from rnnviz.model.charrnn import ModelConfig
from rnnviz.model.vocab import Vocab
from rnnviz.store.writer import write_store

pytestmark = pytest.mark.usefixtures("one_thread")

LENGTH = 24_000  # 12,000 held rows: 12 bootstrap blocks, enough for an interval
BLOCK = 500  # the halves' blocks (explain's block=): 24 of each
QUOTE, NEG, COMBO, NOISE = "0:h:0", "0:h:1", "0:h:2", "0:h:3"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Noisy planted units: QUOTE follows in_quote, NEG against it, COMBO = 2·in_quote + 1·(just read "a")."""
    rng = np.random.default_rng(0)
    text = quote_text(LENGTH)
    inq = compute_feature("in_quote", text).astype(np.float64)
    is_a = (np.frombuffer(text.encode(), np.uint8) == ord("a")).astype(np.float64)
    a = rng.normal(0, 1, (LENGTH, 4))
    a[:, 0] = inq + rng.normal(0, 0.3, LENGTH)
    a[:, 1] = -inq + rng.normal(0, 0.3, LENGTH)
    a[:, 2] = 2 * inq + is_a + rng.normal(0, 0.5, LENGTH)
    vocab = Vocab.from_text(text)
    cfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=1, hidden=4)
    return write_store(tmp_path_factory.mktemp("rs") / "st", text, {(0, "h"): a}, cfg, vocab)


def halves(T: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """The oracle split: alternate blocks, even ones fit, odd ones held."""
    b = np.arange(T) // block
    return np.flatnonzero(b % 2 == 0), np.flatnonzero(b % 2 == 1)


def values(store, unit):
    return store.unit(unit).astype(np.float64)


def test_a_regex_scores_as_scipy_pearson_on_the_held_half_with_the_block_bootstrap_interval(store):
    fit, held = halves(LENGTH, BLOCK)
    x = values(store, QUOTE)
    v = np.zeros(LENGTH)
    for m in re.finditer(r'"[^"]*"', store.text):  # the regex's matches, by hand
        v[m.start() : m.end()] = 1
    s = score_rule(store, QUOTE, 're:"[^"]*"', block=BLOCK)
    assert s.sign == 1
    assert s.score == pytest.approx(pearsonr(x[held], v[held])[0], abs=1e-12)
    assert s.fit_score == pytest.approx(pearsonr(x[fit], v[fit])[0], abs=1e-12)
    boot = [weighted_pearson(x[held], v[held], w) for w in block_weights(len(held))]
    assert (s.score_lo, s.score_hi) == pytest.approx(percentile_interval(np.array(boot)), abs=1e-12)
    assert s.score_lo < s.score < s.score_hi and s.held == len(held)
    assert s.auroc == pytest.approx(roc_auc_score(v[held], x[held]), abs=1e-12)
    assert s.explanation == 'inside a match of the regex "[^"]*"'


def test_the_sign_is_chosen_on_the_fitting_half(store):
    fit, held = halves(LENGTH, BLOCK)
    x, v = values(store, NEG), compute_feature("in_quote", store.text).astype(np.float64)
    s = score_rule(store, NEG, "feature:in_quote", block=BLOCK)
    assert s.sign == -1 and s.score == pytest.approx(-pearsonr(x[held], v[held])[0], abs=1e-12) and s.score > 0.5
    assert s.auroc == pytest.approx(1 - roc_auc_score(v[held], x[held]), abs=1e-12)
    forced = score_rule(store, NEG, "feature:in_quote", sign=1, block=BLOCK)
    assert forced.score == pytest.approx(-s.score, abs=1e-12)
    assert (forced.score_lo, forced.score_hi) == pytest.approx((-s.score_hi, -s.score_lo), abs=1e-12)
    a, c = np.polyfit(v[fit], x[fit], 1)  # the rule in the unit's units
    assert s.line == pytest.approx([a, c], abs=1e-9)
    assert predicted(v, s.line) == pytest.approx(a * v + c, abs=1e-9)


def test_explains_own_rule_gets_explains_own_score_and_interval(store):
    df = explain(store, block=BLOCK).set_index("unit")
    for unit in (QUOTE, NEG, COMBO):
        row = df.loc[unit]
        assert row["role"] == "cell" and np.isfinite(row["score_lo"])
        s = score_rule(store, unit, row["rule"], sign=int(row["sign"]), coef=row["coef"], block=BLOCK)
        assert s.score == pytest.approx(row["score"], abs=1e-5)  # explain sums in float32
        assert (s.score_lo, s.score_hi) == pytest.approx((row["score_lo"], row["score_hi"]), abs=1e-9)


def test_a_combination_gets_its_weights_by_least_squares_on_the_fitting_half(store):
    fit, held = halves(LENGTH, BLOCK)
    x = values(store, COMBO)
    parts, _, _ = rule_values(store, 'feature:in_quote & prev:"a"')
    ols = LinearRegression().fit(parts[fit], x[fit])
    s = score_rule(store, COMBO, 'feature:in_quote & prev:"a"', block=BLOCK)
    assert s.line == pytest.approx([*ols.coef_, ols.intercept_], abs=1e-9)
    assert s.line == pytest.approx([2, 1, 0], abs=0.05)  # what was planted
    assert s.score == pytest.approx(pearsonr(x[held], ols.predict(parts[held]))[0], abs=1e-9)
    assert s.sign == 1 and np.isnan(s.auroc)


@pytest.mark.parametrize("rule, message", [
    ("", "type a rule"),
    ("feature:nope", "bad rule id 'feature:nope'"),
    ('prev:"abcde"', "bad rule id"),
    ("in quotes", "bad rule id"),
    ("re:(", "regular expression"),
    ("re:zzzq", "constant on the fitting half"),
])
def test_a_bad_rule_is_one_line_error(store, rule, message):
    with pytest.raises(RnnvizError, match=message.replace("(", r"\(")):
        score_rule(store, QUOTE, rule, block=BLOCK)


def test_a_bad_unit_or_sign_is_one_line_error(store):
    with pytest.raises(RnnvizError, match="not in this store"):
        score_rule(store, "0:h:9", "feature:in_quote")
    with pytest.raises(RnnvizError, match="sign must be 1 or -1"):
        score_rule(store, QUOTE, "feature:in_quote", sign=2)


def test_top_contexts_random_rows_leave_the_deciles_as_they_were(store):
    plain = top_contexts(store, QUOTE, top=3, per_decile=2, context=8, seed=5)
    more = top_contexts(store, QUOTE, top=3, per_decile=2, context=8, seed=5, random=4)
    assert list(more["group"]) == ["top"] * 3 + ["random"] * 4 + [g for g in plain["group"] if g != "top"]
    rnd = more[more["group"] == "random"]
    assert rnd["pos"].is_monotonic_increasing and rnd["pos"].nunique() == 4
    x = store.unit(QUOTE).astype(np.float32)
    assert list(rnd["value"]) == [float(x[p]) for p in rnd["pos"]]
    assert more[more["group"] != "random"].reset_index(drop=True).equals(plain)
    assert more.equals(top_contexts(store, QUOTE, top=3, per_decile=2, context=8, seed=5, random=4))
    assert not more.equals(top_contexts(store, QUOTE, top=3, per_decile=2, context=8, seed=6, random=4))
    with pytest.raises(RnnvizError, match="must be >= 0"):
        top_contexts(store, QUOTE, random=-1)
