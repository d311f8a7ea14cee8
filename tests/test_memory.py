"""Bounded memory (issue 31): the --memory setting, and explain and find giving the same results in blocks of a
tiny budget as in one block, read from the store's files without mapping them."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from test_explain import COMBO, PLANTED, mixed_text, zscore  # the planted store's recipe

import rnnviz.memory as M
from rnnviz.analysis.explain import BLOCK, RuleSpace, explain, split_halves
from rnnviz.analysis.ranking import rank_features
from rnnviz.analysis.rules import dense_rules, simulate
from rnnviz.analysis.statistics import BlockBootstrap, float16_codes
from rnnviz.cli import main
from rnnviz.errors import RnnvizError
from rnnviz.model.charrnn import ModelConfig
from rnnviz.model.vocab import Vocab
from rnnviz.store.reader import open_store
from rnnviz.store.scratch import Scratch
from rnnviz.store.writer import write_store

pytestmark = pytest.mark.usefixtures("one_thread")
BUDGET = 20_000  # bytes of blocks the tiny setting allows: every pass in its smallest blocks


@pytest.fixture
def tiny(monkeypatch) -> int:
    """The smallest setting, with all but BUDGET bytes of it set aside for the interpreter."""
    monkeypatch.setattr(M, "FLOOR", M.MIN_MEMORY - BUDGET)
    return M.MIN_MEMORY


def _store(path: Path, text: str, hidden: int, plant: dict[int, np.ndarray], seed: int = 1):
    """A 1-layer LSTM store (h, c) of seeded noise with ``plant`` {index: (T,) values} in both kinds."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for kind, noise in (("h", 0.7), ("c", 0.4)):
        a = rng.normal(0, 1, (len(text), hidden))
        for i, v in plant.items():
            a[:, i] = v + rng.normal(0, noise, len(text))
        arrays[(0, kind)] = a
    vocab = Vocab.from_text(text)
    return write_store(path, text, arrays, ModelConfig(vocab_size=len(vocab), cell="lstm", layers=1, hidden=hidden),
                       vocab)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """test_explain's planted rules, a pair among them, over ~25k characters (12 bootstrap blocks held out)."""
    text = mixed_text()
    plant = {i: zscore(simulate(rule, text)) for i, rule in enumerate(PLANTED)}
    plant[len(PLANTED)] = sum(zscore(simulate(r, text)) for r in COMBO)
    return _store(tmp_path_factory.mktemp("planted") / "st", text, len(PLANTED) + 4, plant)


@pytest.fixture(scope="module")
def long_store(tmp_path_factory):
    """~150k characters (more than one 65,536-row tile of find's pass), a quote cell and a word-position cell."""
    text = mixed_text(3600, seed=2)
    plant = {0: zscore(simulate("feature:in_quote", text)), 1: zscore(simulate("feature:word_pos", text))}
    return _store(tmp_path_factory.mktemp("long") / "st", text, 4, plant)


def test_explain_gives_the_same_results_in_tiny_blocks_as_in_one(planted, tiny):
    space = RuleSpace(planted.text, 5, BLOCK, None, tiny, planted.path)
    assert space.values.spilled  # the rules' values went to a file, read back a block at a time
    space.close()
    one = explain(planted, control=None, memory=None)
    small = explain(planted, control=None, memory=tiny)
    pd.testing.assert_frame_equal(one, small, check_exact=True)
    # what is compared: pairs, AUROCs of 0/1 rules, bootstrap intervals
    assert one["combo"].any() and one["auroc"].notna().any() and one["score_lo"].notna().any()


def test_the_rules_statistics_are_one_pass_over_the_whole_half(planted, tiny):
    """The means and spreads are exactly those of the whole half's rows (float64, summed in row order); the
    rules' covariance sums float32 tiles in float64, where one float32 product over the half was: it stays
    within float32 rounding of the float64 covariance."""
    space = RuleSpace(planted.text, 5, BLOCK, None, tiny, planted.path)
    _, D = dense_rules(planted.text)
    C = D.shape[1]
    for h, ranges in zip(space.h, split_halves(planted.length), strict=True):
        Dh = D[np.concatenate([np.arange(lo, hi) for lo, hi in ranges])]
        mean = Dh.mean(0, dtype=np.float64)
        Dc = Dh - mean.astype(np.float32)
        assert np.array_equal(h["mean"], mean)
        assert np.array_equal(h["sd"], np.sqrt(np.einsum("tc,tc->c", Dc, Dc, dtype=np.float64) / len(Dh)))
        want = np.cov(Dh.astype(np.float64), rowvar=False, bias=True)
        assert np.allclose(h["cov"][:C, :C], want, rtol=0, atol=1e-6 * np.abs(want).max())
    space.close()


def test_find_gives_the_same_results_in_tiny_blocks_as_in_one(long_store, tiny):
    assert long_store.length > 2 * 65536  # find's pass: three tiles, one a block under the tiny setting
    features = ["in_quote", "word_pos", "column"]  # 0/1 (AUROC, average precision) and numeric (Spearman)
    one = rank_features(long_store, features, top=3, memory=None)
    small = rank_features(long_store, features, top=3, memory=tiny)
    pd.testing.assert_frame_equal(one, small, check_exact=True)
    assert one["score_lo"].notna().all() and set(one["metric"]) == {"auroc", "pearson"}
    assert one.set_index("feature").loc["in_quote", "unit"].iloc[0] in ("0:h:0", "0:c:0")


def test_explain_and_find_read_the_store_without_mapping_it(tmp_path):
    if not Path("/proc/self/maps").exists():
        pytest.skip("no /proc/self/maps")
    text = mixed_text(300)
    st = open_store(_store(tmp_path / "st", text, 3, {0: zscore(simulate("feature:in_quote", text))}).path)
    explain(st, control=None)
    rank_features(st, ["in_quote"], top=2)
    assert str(st.path) not in Path("/proc/self/maps").read_text()  # no array of it mapped, so none resident


def test_blocks_yield_the_rows_asked_for(planted):
    whole = {k: np.asarray(planted.array(0, k)) for k in "hc"}
    got = [(s, e, b.copy()) for s, e, b in planted.blocks(0, "h", lo=5, hi=1234, rows=100)]
    assert [(s, e) for s, e, _ in got] == [(s, min(s + 100, 1234)) for s in range(5, 1234, 100)]
    assert np.array_equal(np.concatenate([b for *_, b in got]), whole["h"][5:1234])
    idx = np.array([3, 0, 3])
    cols = np.concatenate([b for *_, b in planted.blocks(0, "c", idx, rows=999)])
    assert np.array_equal(cols, whole["c"][:, idx])
    assert np.array_equal(planted.rows(0, "c", planted.length - 3, planted.length + 9), whole["c"][-3:])  # clipped
    with pytest.raises(RnnvizError, match="rows must be >= 1, got 0"):
        next(planted.blocks(0, "h", rows=0))


def test_scratch_columns_read_back_the_same_from_memory_and_from_its_file(tmp_path):
    rng = np.random.default_rng(0)
    cols = [rng.random(1000).astype(np.float32), rng.random(1000) > 0.5, rng.integers(0, 9, 1000).astype(np.int32),
            rng.random(1000).astype(np.float32)]
    with Scratch(1000, None) as mem, Scratch(1000, 5000, tmp_path) as disk:
        assert [mem.add(c) for c in cols] == [disk.add(c) for c in cols] == [0, 1, 2, 3]
        assert not mem.spilled and disk.spilled  # the third column passed the 5,000 bytes
        assert list(tmp_path.iterdir()) == []  # an unnamed file: nothing to leave behind
        for j, c in enumerate(cols):
            assert np.array_equal(disk.get(j, 17, 503), c[17:503]) and np.array_equal(mem.get(j), c)
        assert np.array_equal(disk.stack([3, 0], 100, 200), np.stack([cols[3][100:200], cols[0][100:200]]))


def test_block_bootstrap_in_tiny_pieces_equals_one_piece(tiny):
    n = 20000  # 200 blocks: M in groups of columns
    rng = np.random.default_rng(3)
    x = rng.normal(size=n)
    y = x + rng.normal(size=n)
    codes = np.unique(float16_codes(x.astype(np.float16)), return_inverse=True)[1]  # thousands of distinct values
    whole = BlockBootstrap(n, block=100, reps=50, seed=3)
    small = BlockBootstrap(n, block=100, reps=50, seed=3, memory=tiny)  # codes and M's columns in many pieces
    for lab in (y > 0.3, y > 3.5):  # the second: resamples without positives (NaN)
        assert np.array_equal(whole.auroc(codes, lab), small.auroc(codes, lab), equal_nan=True)
    assert np.array_equal(whole.pearson(x, y), small.pearson(x, y))


@pytest.mark.parametrize("value, want", [("2GB", 2 * 10**9), ("1.5G", 15 * 10**8), ("512MiB", 512 << 20),
                                         (" 4 gb ", 4 * 10**9), ("unlimited", None), ("None", None), (None, None),
                                         (3 * 10**9, 3 * 10**9)])
def test_memory_settings(value, want):
    assert M.parse_memory(value) == want


@pytest.mark.parametrize("value", ["", "abc", "2XB", "-1GB", "nan", "1e9", "2 G B", True, float("inf")])
def test_a_malformed_memory_setting_is_one_line(value):
    with pytest.raises(RnnvizError) as e:
        M.parse_memory(value)
    assert str(e.value) == f"memory must be a size such as 2GB, 512MB or 4GiB, or unlimited; got {value!r}"


def test_the_cli_refuses_a_setting_it_cannot_keep(planted):
    r = CliRunner().invoke(main, ["find", str(planted.path), "--memory", "100MB"])
    assert r.exit_code == 1
    assert r.output == ("Error: --memory must be at least 500MB (400MB of it are the interpreter's and its "
                        "libraries'), got '100MB'\n")
    r = CliRunner().invoke(main, ["explain", str(planted.path), "--memory", "2XB"])
    assert (r.exit_code, r.output) == (1, "Error: --memory must be a size such as 2GB, 512MB or 4GiB, or unlimited; "
                                          "got '2XB'\n")
    r = CliRunner().invoke(main, ["find", str(planted.path), "--feature", "in_quote", "--top", "1", "--memory",
                                  "1GB", "--format", "csv"])
    assert r.exit_code == 0 and r.output.splitlines()[1].startswith("in_quote,0:")
