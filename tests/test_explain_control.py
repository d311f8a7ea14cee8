"""explain's controls: input detectors apart, the same architecture at initialisation, learned units, intervals."""

import re

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from test_explain import make_store, mixed_text, zscore

from rnnviz.analysis.explain import COLUMNS, control_frame, explain, explained_fractions, held_rows
from rnnviz.analysis.explain_control import (
    MARGIN,
    control_best,
    init_model,
    is_input_detector,
    learned,
    roles,
)
from rnnviz.analysis.rules import simulate
from rnnviz.analysis.statistics import block_weights, percentile_interval
from rnnviz.cli import main
from rnnviz.errors import RnnvizError
from rnnviz.model.charrnn import CharRNN
from rnnviz.model.vocab import Vocab
from rnnviz.recording.recorder import record
from rnnviz.store.writer import write_store

pytestmark = pytest.mark.usefixtures("one_thread")

# A store whose fractions are known: (rule, noise sd) per unit, then pure noise.
KNOWN = [("feature:in_quote", 0), ('since:";"', 0), ('prev:"at "', 0), ('prev:"x"', 0), ("class:digit", 0),
         ("feature:in_quote", 1.0), ("class:upper", 1.0)]  # noise sd 1 on a z-scored rule: r = 1/sqrt(2) = 0.71
N_NOISE = 3


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    text = mixed_text()
    rng = np.random.default_rng(7)
    cols = {i: zscore(simulate(rule, text)) + sd * rng.normal(0, 1, len(text)) for i, (rule, sd) in enumerate(KNOWN)}
    st = make_store(tmp_path_factory.mktemp("known") / "st", text, cols, hidden=len(KNOWN) + N_NOISE)
    return st, explain(st)


@pytest.mark.parametrize("rule, detector", [
    ('prev:"e"', True), ("class:digit", True), ('prev:"a" & class:digit', True), ('prev:"\\n"', True),
    ('prev:"ab"', False), ("feature:in_quote", False), ('prev:"a" & feature:in_quote', False),
    ('since:"a"', False), ("feature:in_quote@onset", False), ("unexplained", False), ("", False),
])
def test_input_detectors_are_rules_about_the_character_just_read_alone(rule, detector):
    assert is_input_detector(rule) is detector


def test_known_fractions_roles_and_no_control(known):
    st, df = known
    assert list(df.columns) == COLUMNS
    assert list(df["rule"][: len(KNOWN)]) == [r for r, _ in KNOWN]
    assert list(df["role"]) == ["cell"] * 3 + ["input detector"] * 2 + ["cell", "input detector"] + \
        ["unexplained"] * N_NOISE
    fr = explained_fractions(df).set_index("group").loc["all"]
    assert fr["units"] == 10
    assert (fr["explained_0.5"], fr["cells_0.5"], fr["inputs_0.5"]) == (0.7, 0.4, 0.3)
    assert (fr["explained_0.8"], fr["cells_0.8"], fr["inputs_0.8"]) == (0.5, 0.3, 0.2)
    assert df["learned"].isna().all() and "control" not in df.attrs


def test_intervals_are_the_block_bootstrap_of_the_held_out_correlation(known):
    """For the cells >= 0.5 only; recomputed with numpy's weighted covariance over the same resamples."""
    st, df = known
    assert list(df["score_lo"].notna()) == [True] * 3 + [False] * 2 + [True] + [False] * 4
    held = held_rows(st.length, df.attrs["block"])
    row = df.iloc[5]  # in_quote with noise: score about 0.71, not a degenerate interval
    x = st.unit(row["unit"]).astype(np.float64)[held]
    y = simulate(row["rule"], st.text)[held].astype(np.float64)
    rs = []
    for w in block_weights(len(held)):
        c = np.cov(x, y, aweights=w)
        rs.append(c[0, 1] / np.sqrt(c[0, 0] * c[1, 1]))
    lo, hi = percentile_interval(np.array(rs))
    assert (row["score_lo"], row["score_hi"]) == (pytest.approx(lo, abs=1e-9), pytest.approx(hi, abs=1e-9))
    assert lo < row["score"] < hi and hi - lo < 0.1
    assert list(df["score_lo"][:3]) == pytest.approx([1.0] * 3, abs=1e-3)  # exact rules: a point interval at 1
    assert list(df["score_hi"][:3]) == pytest.approx([1.0] * 3, abs=1e-3)


def test_learned_beats_the_best_cell_of_the_control_in_the_same_layer_and_kind():
    ctrl = pd.DataFrame({
        "layer": [0, 0, 0, 0], "kind": ["h", "h", "h", "c"], "score": [0.9, 0.6, 0.2, 0.4],
        "best_rule": ['prev:"e"', "feature:column", "class:letter", 'since:"a"'],
    })
    assert control_best(ctrl).to_dict() == {"0:c": 0.4, "0:h": 0.6}  # the input detector's 0.9 is not a cell
    df = pd.DataFrame({
        "layer": [0, 0, 0, 0, 0], "kind": ["h", "h", "h", "c", "c"], "score": [0.66, 0.64, 0.95, 0.46, 0.44],
        "rule": ["feature:in_quote", 'prev:"th"', "class:digit", "feature:column", "feature:column"],
        "explained": [True] * 5,
    })
    assert list(roles(df)) == ["cell", "cell", "input detector", "cell", "cell"]
    assert list(learned(df, ctrl)) == [True, False, False, True, False]
    assert list(learned(df, ctrl, margin=0.0)) == [True, True, False, True, True]
    with pytest.raises(RnnvizError, match="the control has no unit of 1:h"):
        learned(df.assign(layer=1), ctrl)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 1-layer 6-unit LSTM store (noise, one quote unit) and explain with its control at initialisation."""
    text = mixed_text(300, seed=2)
    st = make_store(tmp_path_factory.mktemp("tiny") / "st", text, {2: zscore(simulate("feature:in_quote", text))},
                    hidden=6, kinds=("h", "c"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        before = torch.random.get_rng_state()
        df = explain(st, units=["0:h:2", "0:h:4"], control="init", seed=3)
        assert torch.equal(torch.random.get_rng_state(), before)  # the global generator is left alone
    return st, df


def test_the_control_is_the_same_architecture_at_initialisation_on_the_same_text(tiny, tmp_path):
    st, df = tiny
    assert df.attrs["control_kind"] == "init" and df.attrs["seed"] == 3 and df.attrs["margin"] == MARGIN
    assert df.attrs["control_seeds"] == 1
    ctrl = control_frame(df)
    assert list(ctrl["unit"]) == [f"0:h:{i}" for i in range(6)]  # the whole layer:kind, not just the units asked
    torch.manual_seed(3)  # by hand: PyTorch's default initialisation after the seed, recorded the same way
    model = CharRNN(st.meta.model, st.vocab).eval()
    by_hand = record(model, st.text, tmp_path / "init", kinds=["h"], layers=[0], topk=0, device="cpu")
    assert np.array_equal(by_hand.array(0, "h"), record(init_model(st, 3), st.text, tmp_path / "again", kinds=["h"],
                                                          layers=[0], topk=0, device="cpu").array(0, "h"))
    want = explain(by_hand)
    assert list(ctrl["rule"]) == list(want["rule"]) and np.allclose(ctrl["score"], want["score"], atol=1e-12)
    best = control_best(ctrl)["0:h"]
    assert list(df["learned"]) == [df["score"][0] >= best + MARGIN, False]  # 0:h:4 is noise
    assert df["learned"][0]  # a quote cell: beyond any random LSTM of this shape
    fr = explained_fractions(df).set_index("group").loc["all"]
    assert fr["init_best"] == best and fr["learned"] == 0.5
    assert fr["init_explained_0.5"] == pytest.approx((ctrl["score"] >= 0.5).mean())
    assert list(ctrl["seed"]) == [3] * 6


def test_more_seeds_raise_the_bar_to_the_best_of_all_and_average_the_fractions(tiny):
    st, one = tiny
    df = explain(st, units=["0:h:2", "0:h:4"], control="init", seed=3, control_seeds=2, intervals=False)
    both = control_frame(df)
    assert list(both["seed"]) == [3] * 6 + [4] * 6 and df.attrs["control_seeds"] == 2
    first, second = both[both["seed"] == 3], both[both["seed"] == 4]
    assert list(first["score"]) == pytest.approx(list(control_frame(one)["score"]), abs=1e-6)  # seed 3 again
    assert not np.allclose(second["score"], first["score"])  # another seed, another control
    assert control_best(both)["0:h"] == max(control_best(first)["0:h"], control_best(second)["0:h"])
    fr = explained_fractions(df).set_index("group").loc["0:h"]
    for t in (0.5, 0.8):
        per_seed = [(c["score"] >= t).mean() for c in (first, second)]
        assert fr[f"init_explained_{t}"] == pytest.approx(np.mean(per_seed))
    with pytest.raises(RnnvizError, match="control_seeds must be a whole number >= 1, got 0"):
        explain(st, control="init", control_seeds=0)


def test_a_store_without_a_model_config_has_no_control(tmp_path):
    text = mixed_text(100)
    vocab = Vocab.from_text(text)
    rng = np.random.default_rng(0)
    st = write_store(tmp_path / "ext", text, {(0, "y"): rng.normal(0, 1, (len(text), 3))}, None, vocab,
                     cell="external")
    with pytest.raises(RnnvizError, match="no control at initialisation: a store of external states without a model"):
        explain(st, control="init")
    with pytest.raises(RnnvizError, match="control must be one of init or None, got 'shuffled'"):
        explain(st, control="shuffled")
    r = CliRunner().invoke(main, ["explain", str(st.path), "--control", "init"])
    assert r.exit_code == 1 and r.output == (
        "Error: --control init: a store of external states without a model config (from a user's module or from "
        "arrays): the same architecture at initialisation cannot be rebuilt\n")
    r = CliRunner().invoke(main, ["explain", str(st.path)])
    assert r.exit_code == 0 and "no control: a store of external states without a model config" in r.output


def test_cli_prints_the_fractions_exactly(known):
    st, _ = known
    r = CliRunner().invoke(main, ["explain", str(st.path), "--units", "0:h:0,0:h:3", "--control", "none"])
    assert r.exit_code == 0, r.output
    out = re.sub(r"rules tried, [\d.]+ s\.", "rules tried, T s.", r.output)
    n = st.length
    assert out == (
        " unit  score  score_lo  score_hi sign  auroc           role                 explanation             rule\n"
        "0:h:0  1.000     1.000     1.000    +  1.000           cell inside a double-quoted span feature:in_quote\n"
        '0:h:3  1.000                        +  1.000 input detector               just read "x"         prev:"x"\n'
        "\n"
        "units explained at score >= 0.5 / >= 0.8, per layer:kind:\n"
        "group  units         cells input detectors\n"
        "  0:h      2 50.0% / 50.0%   50.0% / 50.0%\n"
        "  all      2 50.0% / 50.0%   50.0% / 50.0%\n"
        "no control (--control none); an untrained model of the same shape explains about a quarter of its units "
        ">= 0.5 on prose, mostly as input detectors.\n"
        "input detector: a rule about the character just read alone; intervals (score_lo, score_hi): block "
        "bootstrap, 95%, for the 1 cells scoring >= 0.5.\n"
        f"2 units, rules chosen on {n - len(held_rows(n, 4096)):,} of {n:,} characters "
        "(alternate blocks of 4,096) and scored on the rest, "
        f"{explain(st, units=['0:h:0'], intervals=False).attrs['n_rules']:,} rules tried, T s.\n"
    )


def test_cli_prints_the_control_beside_the_model(tiny):
    st, df = tiny
    r = CliRunner().invoke(main, ["explain", str(st.path), "--units", "0:h:2,0:h:4", "--seed", "3"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    fr = explained_fractions(df).set_index("group")
    assert lines[0].split() == ["unit", "score", "score_lo", "score_hi", "sign", "auroc", "role", "learned",
                                "explanation", "rule"]
    assert lines[1].split()[0] == "0:h:2" and lines[1].split()[-7:] == [
        "cell", "yes", "inside", "a", "double-quoted", "span", "feature:in_quote"]
    assert lines[2].split()[0] == "0:h:4" and "yes" not in lines[2].split()
    assert lines[4] == "units explained at score >= 0.5 / >= 0.8, per layer:kind:"
    assert lines[5].split() == ["group", "units", "cells", "input", "detectors", "init", "cells", "init", "input",
                                "detectors", "init", "best", "cell", "learned"]
    row = fr.loc["0:h"]
    pct = lambda p: [f"{row[f'{p}_0.5']:.1%}", "/", f"{row[f'{p}_0.8']:.1%}"]  # noqa: E731
    assert lines[6].split() == ["0:h", "2", *pct("cells"), *pct("inputs"), *pct("init_cells"), *pct("init_inputs"),
                                f"{row['init_best']:.3f}", "50.0%"]
    assert re.fullmatch(r"init: the same architecture at initialisation \(seed 3\), recorded on the same text and "
                        r"explained the same way \([\d.]+ s\); learned: a cell scoring >= the init best cell of its "
                        r"layer:kind \+ 0\.05\.", lines[8])
    r = CliRunner().invoke(main, ["explain", str(st.path), "--units", "0:h:2", "--seed", "3", "--control-seeds", "2"])
    assert r.exit_code == 0, r.output
    assert re.search(r"^init: the same architecture at initialisation \(seeds 3-4, fractions averaged, the best cell "
                     r"of all\), recorded", r.output, re.M)
    r = CliRunner().invoke(main, ["explain", str(st.path), "--control-seeds", "0"])
    assert r.exit_code == 1 and r.output == "Error: control_seeds must be a whole number >= 1, got 0\n"
