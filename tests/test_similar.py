"""Select-to-find as a library function and a command: rnnviz.find_similar and `rnnviz similar`."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from click.testing import CliRunner

import rnnviz
from rnnviz.analysis.features import compute_feature
from rnnviz.analysis.similar import (
    CELL_COLUMNS,
    MATCH_COLUMNS,
    SimilarConfig,
    find_similar,
    followed,
    similar_cells,
    zparams,
)
from rnnviz.cli import main as cli
from rnnviz.errors import RnnvizError
from rnnviz.model.charrnn import ModelConfig
from rnnviz.model.vocab import Vocab
from rnnviz.store.reader import open_store
from rnnviz.store.writer import write_store

LATE, FLICKER = "1:c:3", "0:h:6"  # the quote cell: on one character late; a blip cell (see make_store)
COMMON = "0:c:2"  # a two-state cell on for more than half of the text (see make_store)
BLIPS = (100, 700, 1300)  # where FLICKER is on for 2 characters


def quote_text(length: int = 3000) -> str:
    block = 'He said "hello there, my dear friend" and left.\nShe asked "why?" twice.\nNothing here at all!\n'
    return (block * (length // len(block) + 1))[:length]


def make_store(path, length: int = 3000):
    """A 2-layer store (h, c; H = 8) of seeded noise in [-0.3, 0.3] plus two planted cells:

    - LATE (1:c:3) is +1 from one character *after* each opening quote to one character after the closing
      quote, -1 elsewhere, and drops to -1 for one character in the middle of each long quote: what a real
      quote cell does, which LSTMVis's every-character rule misses;
    - FLICKER (0:h:6) is +1 for 2 characters at each of BLIPS, -1 elsewhere;
    - COMMON (0:c:2) is +1 over the first line of each 93-character block (48 characters, line end included),
      -1 elsewhere: on for 52% of the text, so its on-state is only 0.95 σ above its mean (θ = 1 never sees it).
    """
    rng = np.random.default_rng(0)
    text = quote_text(length)
    vocab = Vocab.from_text(text)
    T, H = len(text), 8
    arrays = {(layer, kind): rng.uniform(-0.3, 0.3, (T, H)).astype(np.float32) for layer in (0, 1) for kind in "hc"}
    inq = compute_feature("in_quote", text)
    late = np.concatenate([[0], inq[:-1]])  # on one character later, off one character later
    for a, b in long_quotes(text):
        late[(a + b) // 2] = 0  # a one-character dip inside every long quote
    arrays[(1, "c")][:, 3] = 2 * late - 1
    blip = -np.ones(T, np.float32)
    for p in BLIPS:
        blip[p : p + 2] = 1
    arrays[(0, "h")][:, 6] = blip
    arrays[(0, "c")][:, 2] = np.where(np.arange(T) % 93 < 48, 1.0, -1.0)
    cfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=2, hidden=H)
    write_store(path, text, arrays, cfg, vocab)
    return open_store(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("similar") / "st")


def quotes(text: str, longer: int = 0) -> list[tuple[int, int]]:
    """[a, b) of every whole quote longer than ``longer``, both quotes included (what a user selects)."""
    q = [m.start() for m in re.finditer('"', text)]
    return [(q[i], q[i + 1] + 1) for i in range(0, len(q) - 1, 2) if q[i + 1] + 1 - q[i] > longer]


def long_quotes(text: str) -> list[tuple[int, int]]:
    return quotes(text, 20)


def test_tolerant_rule_finds_the_late_flickering_quote_cell_that_lstmvis_misses(store):
    a, b = long_quotes(store.text)[2]
    strict, _ = find_similar(store, a, b, rule="strict")
    assert LATE not in set(strict["unit"])  # off at the opening quote and at the dip: LSTMVis drops it
    cells, matches = find_similar(store, a, b)
    assert list(cells.columns) == CELL_COLUMNS and list(matches.columns) == MATCH_COLUMNS
    first = cells.iloc[0]
    assert (first["unit"], first["sign"], bool(first["strict"])) == (LATE, 1, False)
    # Inside = the selection less 2 characters at each end, one of them the dip.
    assert b - a == 29 and first["on_inside"] == pytest.approx(24 / 25)
    assert first["on_around"] == 0.0


def test_matches_are_the_other_long_quotes_ranked_both_ways(store):
    longs = long_quotes(store.text)
    a, b = longs[2]
    _, matches = find_similar(store, a, b, top=1000)
    # The cell's runs: one character after each opening quote to one after the closing one, split at no
    # dip (a one-character gap <= slack is closed). Short quotes ("why?") are matches too, of lower score.
    long_runs = {(s + 1, e) for s, e in longs if (s, e) != (a, b)}
    got = set(zip(matches["start"], matches["stop"], strict=True))
    assert long_runs <= got
    assert not ({(s + 1, e) for s, e in [(a, b)]} & got)  # the selection itself is left out
    short = {(s + 1, e) for s, e in quotes(store.text) if e - s <= 20}
    q = [m.start() for m in re.finditer('"', store.text)]
    unclosed = {(q[-1] + 1, store.length)} if len(q) % 2 else set()  # the text ends inside a quote
    assert got == long_runs | short | unclosed
    row = matches.set_index(["start", "stop"])
    s0, e0 = sorted(long_runs)[0]
    assert row.loc[(s0, e0), "score"] == pytest.approx((e0 - s0) / (b - a) * row.loc[(s0, e0), "on"])
    assert not matches["weak"].any()
    assert matches["rank"].tolist() == list(range(1, len(matches) + 1))  # ours: the returned order
    assert matches["score"].is_monotonic_decreasing
    # LSTMVis's order: every cell on throughout first (the dipped long quotes are not), then closest length.
    lv = matches.sort_values("lstmvis_rank")
    assert lv["all_on"].tolist() == sorted(lv["all_on"].tolist(), reverse=True)
    assert sorted(matches["lstmvis_rank"]) == list(range(1, len(matches) + 1))


def test_weak_matches_are_flagged_not_padded(store):
    a = BLIPS[0]
    cells, matches = find_similar(store, a, a + 2, slack=0)
    assert cells.iloc[0]["unit"] == "0:h:6"
    assert set(zip(matches["start"], matches["stop"], strict=True)) == {(p, p + 2) for p in BLIPS[1:]}
    assert matches["weak"].all()  # 2 characters: a blip, never a strong match
    assert len(matches) == 2  # no padding up to top


def test_rnnviz_exports_find_similar_and_cells_alone(store):
    a, b = long_quotes(store.text)[0]
    assert rnnviz.find_similar is find_similar
    only = similar_cells(store, a, b, units=[LATE, FLICKER])
    assert list(only["unit"]) == [LATE]


def test_a_cell_on_for_half_the_text_is_found_by_its_two_states(store):
    a, b = 93 * 3, 93 * 3 + 48  # a user selects one whole first line
    mean, std = zparams(store, [COMMON])
    p = (32 * 48 + 24) / 3000  # on-share: 32 whole blocks and the first 24 characters of the 33rd
    z_on = (1 - (2 * p - 1)) / (2 * math.sqrt(p * (1 - p)))
    assert (1 - mean[0]) / std[0] == pytest.approx(z_on, rel=1e-5) and z_on < 0.961  # under θ = 1 σ when on
    assert COMMON not in set(similar_cells(store, a, b, SimilarConfig(rule="strict", threshold=1.0))["unit"])
    cells, matches = find_similar(store, a, b)
    first = cells.iloc[0]
    assert (first["unit"], first["sign"], first["rule"]) == (COMMON, 1, "two-state")
    assert first["level"] == pytest.approx(-1 + 2 / 256)  # the split: the first cut above the off value
    assert (first["on_inside"], first["on_around"]) == (1.0, 0.0)
    # eta 1, contrast a full state's gap, off for 1 - p of the text (the sample is the whole store here)
    assert first["score"] == pytest.approx((1 - 2 / math.pi) * (1 - p))
    assert list(followed(cells)["unit"]) == [COMMON]  # the other cells are far weaker: followed alone
    want = {(s, s + 48) for s in range(0, store.length, 93) if s != a}
    got = set(zip(matches["start"], matches["stop"], strict=True))
    assert got == set(sorted(want, key=lambda r: r[0])[:20]) and not matches["weak"].any()
    _, plain = find_similar(store, a, b, follow=1, threshold=0.5)  # the same one cell, followed by its split
    assert set(zip(plain["start"], plain["stop"], strict=True)) == got


def test_of_two_cells_that_switch_at_the_selection_the_rarer_one_ranks_first(tmp_path):
    """Both are two-valued and switch exactly at [510, 530); COMMON2 is also on over [540, 590) of every
    100 characters (70% of the text), RARE only there (20%): a cell on nearly everywhere says little about
    the selection. Before the off share entered the score they tied, and the name put COMMON2 first."""
    rng = np.random.default_rng(1)
    text = ("abcdefghij" * 10) * 20
    T, H = len(text), 4
    arrays = {(0, k): rng.normal(0, 0.1, (T, H)).astype(np.float32) for k in "hc"}  # Gaussian: not two-state
    i = np.arange(T) % 100
    rare, common = (i >= 10) & (i < 30), ((i >= 10) & (i < 30)) | ((i >= 40) & (i < 90))
    arrays[(0, "c")][:, 0] = np.where(common, 1.0, -1.0)
    arrays[(0, "c")][:, 1] = np.where(rare, 1.0, -1.0)
    vocab = Vocab.from_text(text)
    write_store(tmp_path / "st", text, arrays, ModelConfig(vocab_size=len(vocab), cell="lstm", layers=1, hidden=H),
                vocab)
    cells = similar_cells(open_store(tmp_path / "st"), 510, 530)
    two = cells[cells["rule"] == "two-state"].set_index("unit")
    assert list(two.index[:2]) == ["0:c:1", "0:c:0"]
    assert two.loc["0:c:1", "score"] == pytest.approx((1 - 2 / math.pi) * 0.8)
    assert two.loc["0:c:0", "score"] == pytest.approx((1 - 2 / math.pi) * 0.3)


def test_theta_rule_alone_when_strict_and_the_two_state_cells_first_when_tolerant(store):
    a, b = long_quotes(store.text)[2]
    strict = similar_cells(store, a, b, SimilarConfig(rule="strict"))
    assert set(strict["rule"]) <= {"θ"}
    cells = similar_cells(store, a, b)
    rules = cells["rule"].tolist()
    assert rules == sorted(rules, key=lambda r: r != "two-state")  # every two-state row before the θ rows
    assert not cells.duplicated(["unit", "sign"]).any()
    late = cells.set_index(["unit", "sign"]).loc[(LATE, 1)]
    assert late["rule"] == "two-state" and late["level"] == pytest.approx(-1 + 2 / 256)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(start=5, end=5), "the selection 5..5 is empty"),
        (dict(start=-1, end=5), "select a range inside the text"),
        (dict(start=10, end=4000), "select a range inside the text"),
        (dict(threshold=math.nan), "θ must be a finite number >= 0"),
        (dict(threshold=-1.0), "θ must be a finite number >= 0"),
        (dict(threshold="1e400"), "θ must be a finite number >= 0"),
        (dict(follow=0), "follow 1 to 8 cells"),
        (dict(follow=100), "follow 1 to 8 cells"),
        (dict(rule="fuzzy"), "unknown rule 'fuzzy'"),
        (dict(slack=-1), "slack is a whole number"),
    ],
)
def test_bad_input_is_one_line(store, kw, message):
    args = {"start": 10, "end": 40, **kw}
    with pytest.raises(RnnvizError, match=re.escape(message)):
        find_similar(store, args.pop("start"), args.pop("end"), **args)


def test_too_long_selection(tmp_path):
    st = make_store(tmp_path / "long", length=6000)
    with pytest.raises(RnnvizError, match="the selection is 5,001 characters; select at most 5,000"):
        find_similar(st, 0, 5001)


def test_cli_similar_json_and_table(store):
    a, b = long_quotes(store.text)[2]
    r = CliRunner().invoke(cli, ["similar", str(store.path), "--start", str(a), "--end", str(b), "--format", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    cells, matches = find_similar(store, a, b)
    assert [c["unit"] for c in out["cells"]] == list(cells["unit"])
    assert [(m["start"], m["stop"]) for m in out["matches"]] == list(zip(matches["start"], matches["stop"],
                                                                         strict=True))
    r = CliRunner().invoke(cli, ["similar", str(store.path), "--start", str(a), "--end", str(b)])
    assert r.exit_code == 0 and LATE in r.output and "strong" in r.output
    r = CliRunner().invoke(cli, ["similar", str(store.path), "--start", "5", "--end", "5"])
    assert r.exit_code == 1 and r.output.strip().splitlines()[-1] == "Error: the selection 5..5 is empty: select at " \
        "least one character"


def test_one_theta_check_for_library_cli_and_dashboard():
    from rnnviz.analysis.on_threshold import THETA, parse_theta, theta_problem
    from rnnviz.analysis.similar import check_threshold

    assert [parse_theta(v) for v in ("0.25", 0, 3, "x", None, -0.1, "nan", "1e400", float("inf"))] == \
        [0.25, 0.0, 3.0, None, None, None, None, None, None]
    assert theta_problem("1.5") == ""
    assert theta_problem("x" * 100) == f"θ must be a finite number >= 0 (σ), got {'x' * 40 + '…'!r}"
    assert theta_problem(None) == "θ must be a finite number >= 0 (σ), got 'None'"
    with pytest.raises(RnnvizError, match=r"^θ must be a finite number >= 0 \(σ\), got '-2'$"):
        check_threshold(-2)
    assert parse_theta("-2", THETA) == THETA and parse_theta("0.75", THETA) == 0.75
