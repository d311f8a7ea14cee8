"""Ablation's control: the random draws (batched through the streams), the exact permutation p-value, the effect
size, the interval of the loss change, the rule that an LSTM unit zeroed is one intervention (L:c+h:i), and the
CLI's report of them."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.stats import zmap

import rnnviz
from rnnviz.analysis.causal import ablate
from rnnviz.analysis.statistics import bootstrap_interval
from rnnviz.cli import main
from rnnviz.errors import RnnvizError
from rnnviz.model.checkpoint import save_checkpoint
from tests.test_discover import QTEXT, manual_losses

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny step loops: one torch thread (see conftest)

UNIT, H = 3, 16  # the planted unit of layer 1, and the layer's width


def planted(make_model, text: str = QTEXT):
    """A 2 x 16 LSTM whose layer-1 unit 3 holds h = o·tanh(i·g) = tanh(1) at every step (gates saturated by their
    biases, no inputs) and reads out the text's log character frequencies: without it the model loses its
    unigram prior, far more than without any other (random, small-weighted) unit. It feeds no other unit."""
    model = make_model("lstm", layers=2, hidden=H, text=text, seed=3)
    w_ih, w_hh, b_ih, b_hh = model.layer_weights(1)  # rows in gate order i, f, g, o
    counts = np.bincount(model.vocab.encode(text), minlength=model.config.vocab_size) + 1.0
    logp = np.log(counts / counts.sum())
    with torch.no_grad():
        for gate, bias in enumerate((10.0, -10.0, 10.0, 10.0)):  # i = 1, f = 0, g = 1, o = 1
            row = gate * H + UNIT
            w_ih[row], w_hh[row], b_ih[row], b_hh[row] = 0.0, 0.0, bias, 0.0
        w_hh[:, UNIT] = 0.0
        model.head.weight[:, UNIT] = torch.as_tensor((logp - logp.mean()) / np.tanh(1.0), dtype=torch.float32)
    return model


def test_the_planted_unit_beats_every_other_unit_exactly(make_model):
    """One unit, more draws asked than there are other units: every other unit once, and the p-value of a unit that
    hurts more than all of them is exactly 1 / (1 + 15)."""
    model = planted(make_model)
    r = ablate(model, QTEXT, [f"1:h:{UNIT}"], random=100, streams=1)
    s = r.summary()
    assert sorted(r.random["units"]) == sorted(f"1:c+h:{j}" for j in range(H) if j != UNIT)
    assert s["random_draws"] == H - 1 and s["random_delta_at_least"] == 0
    assert s["p"] == 1 / H
    assert r.delta > 5 * r.random["delta"].max() > 0  # the prior is worth far more than any other unit
    assert s["effect_size"] == pytest.approx(zmap(r.delta, r.random["delta"], ddof=1), rel=1e-12)
    # Each batched draw is the ablation of its unit alone.
    for _, row in r.random.iloc[[0, 7, 14]].iterrows():
        assert ablate(model, QTEXT, row["units"], random=0, streams=1).delta == pytest.approx(row["delta"], abs=1e-6)


def test_p_and_effect_size_count_the_draws_of_a_unit_set(make_model):
    """Several units: independent draws; p = (1 + draws hurting as much) / (1 + draws), on the feature's characters
    too; the batched draws equal each set ablated alone, also in mean mode with streams that meet."""
    model = make_model("lstm", layers=2, hidden=H, text=QTEXT, seed=4)
    r = ablate(model, QTEXT, ["1:c:2", "0:h:5"], mode="mean", feature="in_quote", random=12, seed=3, streams=4,
               burn_in=20)
    s = r.summary()
    for col, suffix in (("delta", ""), ("delta_feature", "_feature")):
        draws = r.random[col].to_numpy()
        mine = getattr(r, col)
        assert s[f"p{suffix}"] == (1 + np.sum(draws >= mine)) / 13
        assert s[f"effect_size{suffix}"] == pytest.approx(zmap(mine, draws, ddof=1), rel=1e-12)
    assert s["random_draws"] == 12 and r.random["units"].nunique() > 1
    for _, row in r.random.iloc[[0, 11]].iterrows():
        alone = ablate(model, QTEXT, row["units"].split(","), mode="mean", feature="in_quote", random=0, streams=4,
                       burn_in=20)
        assert alone.delta == pytest.approx(row["delta"], abs=1e-6)
        assert alone.delta_feature == pytest.approx(row["delta_feature"], abs=1e-6)


def test_a_modern_stack_runs_its_draws_one_at_a_time(make_model):
    """A modern stack's parallel form takes an index clamp only: its draws go one pass each, and are the same."""
    model = make_model("mingru", layers=2, hidden=8, text=QTEXT, seed=1)
    r = ablate(model, QTEXT, ["1:h:1"], random=3, streams=2, burn_in=10)
    assert r.random["units"].nunique() == 3 and r.summary()["p"] == (1 + (r.random["delta"] >= r.delta).sum()) / 4
    for _, row in r.random.iterrows():
        assert ablate(model, QTEXT, row["units"], random=0, streams=2, burn_in=10).delta == \
            pytest.approx(row["delta"], abs=1e-6)


def test_a_per_row_clamp_is_each_rows_index_clamp(make_model):
    model = make_model("gru", layers=2, hidden=8, seed=1)
    x, state = torch.tensor([1, 2]), model.init_state(2)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[0, 3], mask[1, [1, 5]] = True, True
    values = torch.full((2, 8), 0.7)
    got = model.step(x, state, clamp={(1, "z"): (mask, values)})[0]
    for row, idx in ((0, [3]), (1, [1, 5])):
        clamp = {(1, "z"): (torch.tensor(idx), torch.full((len(idx),), 0.7))}
        want = model.step(x[row : row + 1], state[:, row : row + 1], clamp=clamp)[0]
        torch.testing.assert_close(got[row : row + 1], want, rtol=0, atol=1e-6)


# --- c and h of one LSTM unit ---


def test_zeroing_c_or_h_is_one_intervention_and_other_values_are_two(make_model):
    """c = 0 gives h = o·tanh(0) = 0 exactly, and the unit's c reaches nothing but through h: the same losses, bit
    for bit. Clamped to 0.5 they differ (h = o·tanh(0.5) still moves with the output gate)."""
    model = make_model("lstm", layers=2, hidden=H, text=QTEXT, seed=5)
    by_c, by_h = manual_losses(model, QTEXT, {"1:c:4": 0.0}), manual_losses(model, QTEXT, {"1:h:4": 0.0})
    assert np.array_equal(by_c, by_h)
    assert not np.array_equal(manual_losses(model, QTEXT, {"1:c:4": 0.5}), manual_losses(model, QTEXT, {"1:h:4": 0.5}))
    named = [ablate(model, QTEXT, units, random=3, streams=1) for units in
             (["1:c:4"], ["1:h:4"], ["1:c+h:4"], ["1:h:4", "1:c:4"], ["1:c:4"])]
    for r in named:
        assert (r.units, r.values, r.delta) == (["1:c+h:4"], {"1:c+h:4": 0.0}, named[0].delta)
        assert r.random["units"].tolist() == named[0].random["units"].tolist()
        assert all(u.startswith("1:c+h:") for u in r.random["units"])
    assert named[0].delta == pytest.approx((by_c - manual_losses(model, QTEXT)).mean(), abs=1e-6)
    half = [ablate(model, QTEXT, [u], mode=m, random=0, streams=1) for u in ("1:c:4", "1:h:4")
            for m in ("value=0.5", "mean")]
    assert [r.units for r in half] == [["1:c:4"], ["1:c:4"], ["1:h:4"], ["1:h:4"]]
    assert half[0].delta != half[2].delta


def test_other_cells_keep_their_kinds(make_model):
    gru = make_model("gru", layers=2, hidden=8, seed=2)
    assert ablate(gru, QTEXT, ["1:h:3", "1:z:3"], random=0, streams=1).units == ["1:h:3", "1:z:3"]
    with pytest.raises(RnnvizError, match=r"a gru has no kind 'c\+h'"):
        ablate(gru, QTEXT, ["1:c+h:3"], random=0)
    lstm = make_model("lstm", layers=2, hidden=8, seed=2)
    assert ablate(lstm, QTEXT, ["1:h:3", "1:o:3"], mode="value=0", random=0, streams=1).units == ["1:c+h:3", "1:o:3"]
    with pytest.raises(RnnvizError, match=r"unit '1:c\+h:3': c\+h names an LSTM unit zeroed"):
        ablate(lstm, QTEXT, ["1:c+h:3"], mode="value=1", random=0)


# --- the interval ---


def test_no_interval_under_ten_blocks(make_model):
    r = ablate(make_model("lstm", text=QTEXT), QTEXT, ["1:c:1"], feature="in_quote", random=0, streams=1)
    s = r.summary()
    assert [s[k] for k in ("delta_lo", "delta_hi", "delta_feature_lo", "delta_feature_hi")] == [None] * 4


@pytest.mark.slow
def test_the_interval_is_the_block_bootstrap_of_the_per_position_change(make_model):
    text = (QTEXT * 45)[:10_001]  # 10,000 predictions: ten blocks of 1,000
    model = make_model("lstm", layers=2, hidden=8, text=text, seed=6)
    r = ablate(model, text, ["1:h:2"], mode="value=1", feature="in_quote", random=0, streams=1, seed=4)
    d = manual_losses(model, text, {"1:h:2": 1.0}) - manual_losses(model, text)
    m = np.array([text[t + 1] == '"' and text[: t + 1].count('"') % 2 == 1 for t in range(len(text) - 1)])
    want = bootstrap_interval(lambda w: (w @ d) / w.sum(), len(d), seed=4)
    want_f = bootstrap_interval(lambda w: (w @ (d * m)) / (w @ m), len(d), seed=4)
    assert (r.delta_lo, r.delta_hi) == pytest.approx(want, abs=1e-6)
    assert (r.delta_feature_lo, r.delta_feature_hi) == pytest.approx(want_f, abs=1e-6)
    assert r.delta_lo < r.delta < r.delta_hi and r.delta_feature_lo < r.delta_feature < r.delta_feature_hi


# --- the CLI ---


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_cli_prints_exactly_this(tmp_path, make_model):
    ckpt, p = tmp_path / "ck", tmp_path / "t.txt"
    save_checkpoint(planted(make_model), ckpt)
    p.write_text(QTEXT, encoding="utf-8")
    args = ["ablate", ckpt, p, "--unit", "1:c:3", "--feature", "in_quote", "--split", "all", "--streams", "1"]
    r = ablate(rnnviz.load_checkpoint(ckpt), QTEXT, ["1:c:3"], feature="in_quote", streams=1)
    s = r.summary()
    out = run(*args)
    assert out.exit_code == 0, out.output
    assert out.output == (
        f"Clamped 1:c+h:3=0 (zero) over {len(QTEXT) - 1:,} predictions (1 stream(s), burn-in {r.burn_in}).\n"
        "  c+h: an LSTM unit zeroed is one intervention, named by its c or its h (c = 0 makes h = 0)\n"
        f"  all characters:   {r.clean_loss:.4f} -> {r.ablated_loss:.4f} nats/char  delta {r.delta:+.4f}"
        " (no interval under 10,000 characters)\n"
        f"  in_quote (6 predicted chars): {r.clean_loss_feature:.4f} -> {r.ablated_loss_feature:.4f}  "
        f"delta {r.delta_feature:+.4f} (no interval under 10,000 characters)\n"
        f"  random units (all): delta {s['random_delta_mean']:+.4f} +- {s['random_delta_std']:.4f} over 15 draws "
        f"(every other unit of its layer and kind); 0 hurt as much: p = 0.0625, "
        f"effect size {s['effect_size']:+.2f} sd\n"
        f"  random units (in_quote): delta {s['random_delta_feature_mean']:+.4f} +- "
        f"{s['random_delta_feature_std']:.4f} over 15 draws (every other unit of its layer and kind); "
        f"{s['random_delta_feature_at_least']} hurt as much: p = {s['p_feature']:.3g}, "
        f"effect size {s['effect_size_feature']:+.2f} sd\n")
    as_json = json.loads(run(*args, "--format", "json").output)
    assert {k: as_json[k] for k in ("units", "p", "p_feature", "effect_size", "random_draws", "delta_lo")} == \
        {"units": ["1:c+h:3"], "p": 0.0625, "p_feature": s["p_feature"], "effect_size": pytest.approx(s["effect_size"]),
         "random_draws": 15, "delta_lo": None}
    assert len(as_json["random"]) == 15
    csv = run(*args, "--random", "4", "--format", "csv").output.splitlines()
    assert {"p", "effect_size", "p_feature", "effect_size_feature", "random_draws"} <= set(csv[0].split(","))
    bad = run("ablate", ckpt, p, "--unit", "1:c+h:3", "--mode", "value=1")
    assert (bad.exit_code, bad.output) == (1, "Error: unit '1:c+h:3': c+h names an LSTM unit zeroed (its c and h are "
                                              "then one intervention); clamped to another value, name its h or its c\n")
