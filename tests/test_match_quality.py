"""Precision and recall of select-to-find's matches (rnnviz.analysis.match_quality), on planted stores where both
are known by construction; their intervals against the block bootstrap's draws written out; `rnnviz similar
--feature`."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from rnnviz.analysis.features import compute_feature
from rnnviz.analysis.match_quality import COUNTS, QUALITY_COLUMNS, match_quality, pool_quality
from rnnviz.analysis.similar import find_similar
from rnnviz.analysis.statistics import block_weights
from rnnviz.model.charrnn import ModelConfig
from rnnviz.model.vocab import Vocab
from rnnviz.store.reader import open_store
from rnnviz.store.writer import write_store
from tests.helpers import NEG_UNIT, QUOTE_UNIT, cli, make_token_store, one_line_error, quoted_words

BLOCK = 'He said "hello there, my dear friend" and left.\nShe asked "why?" twice.\nNothing here at all!\n'
B = 130  # blocks of text: 12,090 characters, 12 bootstrap blocks
CELL = "1:c:1"
MISSED = 10  # the cell misses the short quote of every 10th block


def oracle(stat, n: int, block: int = 1000) -> np.ndarray:
    """The central 95% of ``stat(c)`` over the block bootstrap's draws (seed 0), ``c`` each draw's (blocks,)
    counts: what the ``_lo``, ``_hi`` columns must be."""
    return np.quantile([stat(w[::block]) for w in block_weights(n, block=block, seed=0)], [0.025, 0.975])


def test_one_selection_counts_every_match_and_leaves_the_selected_span_out():
    feature = np.zeros(30)
    feature[2:6] = feature[10:14] = feature[20:25] = 1
    starts, stops = np.array([1, 15, 21, 26]), np.array([6, 17, 23, 29])  # 4 of 5 in; none; 2 of 2; none
    q = match_quality(feature, starts, stops, np.array([False, True, False, False]), query=(10, 14))
    assert list(q.columns) == QUALITY_COLUMNS and list(q.index) == ["all", "strong"]
    assert q.loc["all", COUNTS].tolist() == [
        4, 2, 9, 6, 2, 2]
    assert q.loc["strong", ["matches", "hits", "covered"]].tolist() == [3, 2, 6]
    assert q.loc["all", ["precision", "recall", "span_recall"]].tolist() == [0.5, 6 / 9, 1.0]
    assert q.loc["strong", "precision"] == 2 / 3
    assert q[["precision_lo", "recall_hi"]].isna().all().all()  # 30 rows: fewer than 10 blocks, no interval
    none = match_quality(feature, [], [], [])
    assert none.loc["all", ["matches", "feature_rows", "feature_spans", "covered"]].tolist() == [0, 13, 3, 0]
    assert np.isnan(none.loc["all", "precision"]) and none.loc["all", "recall"] == 0.0


def test_intervals_resample_blocks_of_rows_each_match_in_the_block_of_its_first_row():
    n = 21_000  # the last block holds nothing
    feature = np.zeros(n)
    starts, stops = [], []
    for b in range(20):  # a feature span in every block; found by a match in the even blocks, missed in the odd
        feature[1000 * b + 100 : 1000 * b + 200] = 1
        start = 1000 * b + (100 if b % 2 == 0 else 950)  # an odd block's match reaches into the next block
        starts.append(start)
        stops.append(start + 100)
    q = match_quality(feature, np.array(starts), np.array(stops), np.zeros(20, bool))
    assert q.loc["all", ["precision", "recall", "span_recall"]].tolist() == [0.5, 0.5, 0.5]
    lo, hi = oracle(lambda c: c[:20:2].sum() / c[:20].sum(), n)
    for name in ("precision", "recall", "span_recall"):
        assert (q.loc["all", f"{name}_lo"], q.loc["all", f"{name}_hi"]) == (pytest.approx(lo), pytest.approx(hi))
    assert lo < 0.5 < hi


def test_pooled_selections_sum_the_counts_and_resample_selections():
    rng = np.random.default_rng(0)
    feature = np.zeros(40)
    feature[10:20] = 1
    qs = []
    for _ in range(12):
        s = np.sort(rng.choice(np.arange(0, 40, 4), 3, replace=False))
        qs.append(match_quality(feature, s, s + 3, np.zeros(3, bool)))
    hits = np.array([q.loc["all", "hits"] for q in qs], float)
    pooled = pool_quality(qs)
    assert pooled.loc["all", "matches"] == 36 and pooled.loc["all", "hits"] == hits.sum()
    assert pooled.loc["all", "precision"] == hits.sum() / 36
    lo, hi = oracle(lambda c: c @ hits / (3 * c.sum()), 12, block=1)
    assert (pooled.loc["all", "precision_lo"], pooled.loc["all", "precision_hi"]) == (pytest.approx(lo),
                                                                                      pytest.approx(hi))
    assert np.isnan(pool_quality(qs[:9]).loc["all", "precision_lo"])  # 9 selections: too few for an interval


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A 2 x 4 LSTM store of seeded noise in [-0.3, 0.3] over B blocks of BLOCK, and CELL: +1 over every quote
    (in_quote's rows) but the short one of every MISSED-th block, +1 over "Nothing" (7 characters: a strong
    match outside any quote) and over "at" (2 characters: a weak one), -1 elsewhere."""
    text = BLOCK * B
    rng = np.random.default_rng(0)
    arrays = {(layer, kind): rng.uniform(-0.3, 0.3, (len(text), 4)).astype(np.float32)
              for layer in (0, 1) for kind in "hc"}
    on = compute_feature("in_quote", text) > 0
    for b in range(0, B, MISSED):
        a = b * len(BLOCK) + BLOCK.index('"why')
        on[a : a + 5] = False
    for word in ("Nothing", " at "):
        for m in re.finditer(word, text):
            on[m.start() + (word[0] == " ") : m.end() - (word[0] == " ")] = True
    arrays[(1, "c")][:, 1] = np.where(on, 1.0, -1.0)
    vocab = Vocab.from_text(text)
    path = tmp_path_factory.mktemp("mq") / "st"
    write_store(path, text, arrays, ModelConfig(vocab_size=len(vocab), cell="lstm", layers=2, hidden=4), vocab)
    return open_store(path)


def selection(store) -> tuple[int, int]:
    """The long quote of block 3, both quote marks included (what a user selects)."""
    a = 3 * len(BLOCK) + BLOCK.index('"hello')
    return a, store.text.index('"', a + 1) + 1


def test_precision_and_recall_over_every_match_are_the_planted_ones(planted):
    a, b = selection(planted)
    cells, matches = find_similar(planted, a, b, feature="in_quote")
    assert cells["unit"].iloc[0] == CELL
    q = matches.attrs["quality"]
    assert matches.attrs["feature"] == "in_quote" and len(matches) == 20  # the top 20 shown; every match scored
    long_q, short_q = len('"hello there, my dear friend'), len('"why?')  # in_quote: the opening mark, not the closing
    missed = len(range(0, B, MISSED))
    rows = long_q * (B - 1) + short_q * B  # the selected quote left out
    assert q.loc["all"][COUNTS].tolist() == [4 * B - 1 - missed, 2 * B - 1 - missed, rows, rows - short_q * missed,
                                             2 * B - 1, 2 * B - 1 - missed]
    assert q.loc["strong", "matches"] == 3 * B - 1 - missed  # the "at"s are weak
    assert q.loc["all", "precision"] == (2 * B - 1 - missed) / (4 * B - 1 - missed)
    assert q.loc["strong", "precision"] == (2 * B - 1 - missed) / (3 * B - 1 - missed)
    assert q.loc["all", "recall"] == 1 - short_q * missed / rows
    assert q.loc["all", "span_recall"] == 1 - missed / (2 * B - 1)
    for name in ("precision", "recall", "span_recall"):  # 12 blocks of rows: intervals, around the figures
        assert (q[f"{name}_lo"] <= q[name]).all() and (q[name] <= q[f"{name}_hi"]).all()
    assert (q["precision_hi"] - q["precision_lo"] > 0).all()
    _, plain = find_similar(planted, a, b)
    assert "quality" not in plain.attrs and plain.equals(matches)


def test_cli_similar_feature_prints_every_match_scored(planted):
    a, b = selection(planted)
    q = find_similar(planted, a, b, feature="in_quote")[1].attrs["quality"]

    def pct(r, name):
        return f"{r[name]:.1%} [{r[name + '_lo']:.1%}, {r[name + '_hi']:.1%}]"

    r = cli("similar", planted.path, "--start", a, "--end", b, "--feature", "in_quote")
    assert r.exit_code == 0, r.output
    rows = q.loc["all", "feature_rows"]
    assert r.output.splitlines()[-3:] == [
        f"every match against in_quote ({rows:,} characters in {2 * B - 1} spans, the selected one left out; "
        "95% intervals):",
        *(f"  {c:<6s} {q.loc[c, 'matches']:>6,} matches: precision {pct(q.loc[c], 'precision')}, characters "
          f"covered {pct(q.loc[c], 'recall')}, spans found {pct(q.loc[c], 'span_recall')}" for c in ("all", "strong"))]
    out = json.loads(cli("similar", planted.path, "--start", a, "--end", b, "--feature", "in_quote",
                         "--format", "json").output)
    assert out["quality"]["strong"]["precision"] == pytest.approx(q.loc["strong", "precision"], abs=1e-6)
    assert out["quality"]["all"]["matches"] == 4 * B - 1 - len(range(0, B, MISSED))
    assert "quality" not in json.loads(cli("similar", planted.path, "--start", a, "--end", b, "--format",
                                           "json").output)
    one_line_error(cli("similar", planted.path, "--start", a, "--end", b, "--feature", "column"),
                   "matches are scored against a binary feature (in it or not); column is numeric")
    one_line_error(cli("similar", planted.path, "--start", a, "--end", b, "--feature", "nope"),
                   "unknown feature 'nope'")


def test_no_cell_no_match_recall_zero(planted):
    cells, matches = find_similar(planted, 5, 9, threshold=50, rule="strict", feature="in_quote")
    q = matches.attrs["quality"]
    assert cells.empty and q.loc["all", ["matches", "covered", "found"]].tolist() == [0, 0, 0]
    assert q.loc["all", "recall"] == 0.0 and np.isnan(q.loc["all", "precision"])
    args = ("similar", planted.path, "--start", 5, "--end", 9, "--threshold", 50, "--rule", "strict", "--feature",
            "in_quote")
    out = json.loads(cli(*args, "--format", "json").output)["quality"]["all"]
    assert (out["matches"], out["precision"], out["recall"]) == (0, None, 0.0)  # no match: no precision
    assert cli(*args).output.splitlines()[-2].startswith("  all         0 matches: precision -, characters covered "
                                                         "0.0% [0.0%, 0.0%], spans found 0.0% [0.0%, 0.0%]")


def test_on_a_token_store_rows_are_tokens(tmp_path):
    st = make_token_store(tmp_path / "tok")
    words, inq = quoted_words()
    starts = np.flatnonzero(np.diff(np.r_[0, inq]) == 1)
    stops = np.flatnonzero(np.diff(np.r_[inq, 0]) == -1) + 1
    a, b = int(starts[3]), int(stops[3])
    cells, matches = find_similar(st, a, b, feature="in_quote")
    assert cells["unit"].iloc[0] in (QUOTE_UNIT, NEG_UNIT)  # both planted over the quoted words
    q = matches.attrs["quality"]
    # in_quote at a token's last character: every word of a quote but the one that closes it
    closed = stops < len(words)
    rows = int((stops - starts - closed).sum()) - (b - a - 1)
    assert q.loc["all"][COUNTS].tolist() == [len(starts) - 1, len(starts) - 1, rows, rows, len(starts) - 1,
                                             len(starts) - 1]
    assert np.isnan(q.loc["all", "precision_lo"])  # 1,500 tokens: 2 blocks of 1,000 rows, no interval
