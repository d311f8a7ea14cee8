"""Ranking on synthetic stores with planted cells, evidence, gate saturation, ablation, gradient flow, CLI."""

import json
import shutil
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score

from rnnviz.analysis.causal import ablate, gradient_flow
from rnnviz.analysis.evidence import evidence, gate_saturation
from rnnviz.analysis.features import compute_feature
from rnnviz.analysis.ranking import COLUMNS, control_permutation, find_cells, rank_features
from rnnviz.analysis.statistics import block_weights
from rnnviz.cli import main
from rnnviz.errors import RnnvizError
from rnnviz.model.charrnn import ModelConfig, clamp_spec
from rnnviz.model.vocab import Vocab
from rnnviz.store.reader import open_store
from rnnviz.store.writer import write_store
from tests.helpers import NEG_UNIT, QUOTE_UNIT, make_quote_store

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny step loops: one torch thread (see conftest)

NARRATION = "the a man went down road house light dark and of to in was he she it".split()
SPEECH = "zip zap quiz wok yoyo kiwi buzz jinx fizz vox".split()  # letters narration never uses


def prose(paragraphs: int = 120, seed: int = 0) -> str:
    """Hard-wrapped paragraphs; quoted speech uses its own words, so characters hint at quotes."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(paragraphs):
        parts = []
        for _ in range(rng.integers(2, 5)):
            if rng.random() < 0.5:
                words = " ".join(rng.choice(SPEECH + ["the", "a"], rng.integers(3, 9))).capitalize()
                parts.append(f'"{words}{rng.choice(["!", "?", ","])}" he said.')
            else:
                parts.append(" ".join(rng.choice(NARRATION, rng.integers(4, 12))).capitalize() + ".")
        out.append(textwrap.fill(" ".join(parts), 50))
    return "\n\n".join(out) + "\n"


QUOTE, DISTRACTOR, LINE = "0:h:3", "0:h:7", "0:c:5"


@pytest.fixture(scope="module")
def prose_store(tmp_path_factory):
    """Planted: 0:h:3 tracks in_quote (noisily); 0:h:7 tracks only E[in_quote | current character]
    (a better raw AUROC, no selectivity); 0:c:5 = tanh of the column (monotone, saturating)."""
    text = prose()
    T, H = len(text), 24
    rng = np.random.default_rng(0)
    q = compute_feature("in_quote", text)
    col = compute_feature("column", text)
    c = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    by_char = np.bincount(c, weights=q) / np.maximum(np.bincount(c), 1)
    h = np.tanh(rng.normal(0, 0.6, (T, H)))
    h[:, 3] = np.tanh(1.5 * q - 0.75 + rng.normal(0, 1.15, T))
    h[:, 7] = np.tanh(2 * by_char[c] - 1 + rng.normal(0, 0.05, T))
    cc = rng.normal(0, 1, (T, H))
    cc[:, 5] = np.tanh((col - 25) / 12) + rng.normal(0, 0.15, T)
    vocab = Vocab.from_text(text)
    cfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=1, hidden=H)
    return write_store(tmp_path_factory.mktemp("prose") / "st", text, {(0, "h"): h, (0, "c"): cc}, cfg, vocab)


def c_code(functions: int = 60, seed: int = 1) -> str:
    rng = np.random.default_rng(seed)
    out = []
    for f in range(functions):
        body = ["\tint x = 0;", f'\tprintf("f{f} {{%d}}\\n", x); /* if (no) */']
        for _ in range(rng.integers(1, 4)):
            if rng.random() < 0.5:
                body += ["\tif (x > 1 && (y < 2)) {", "\t\tx++;", "\t\ty = call(x);", "\t}"]
            else:
                body += ["\tif (!x)", "\t\treturn -1;  // if x"]
            body += ["\tx = x * 2;"]
        out.append(f"static int f{f}(int y)\n{{\n" + "\n".join(body) + "\n\treturn x;\n}\n")
    return "\n".join(out)


@pytest.fixture(scope="module")
def code_store(tmp_path_factory):
    text = c_code()
    T, H = len(text), 8
    rng = np.random.default_rng(1)
    h = np.tanh(rng.normal(0, 0.5, (T, H)))
    h[:, 2] = compute_feature("in_if", text) + rng.normal(0, 0.3, T)
    h[:, 4] = compute_feature("brace_depth", text) / 2 + rng.normal(0, 0.3, T)
    vocab = Vocab.from_text(text)
    cfg = ModelConfig(vocab_size=len(vocab), cell="gru", layers=1, hidden=H)
    return write_store(tmp_path_factory.mktemp("code") / "st", text, {(0, "h"): h}, cfg, vocab)


# --- exact statistics from independent implementations (scipy, scikit-learn: test-only dependencies) ---


def auroc(x, pos):
    return roc_auc_score(pos, x)  # ties count 1/2


def average_precision(x, pos):
    return average_precision_score(pos, x)  # step-wise, tied scores as one threshold


def cohens_d(x, pos):
    a, b = x[pos], x[~pos]
    sd = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    return (a.mean() - b.mean()) / sd


def test_planted_quote_cell_beats_a_character_tracker_with_a_better_raw_score(prose_store):
    df = find_cells(prose_store, "in_quote", top=48)
    assert list(df.columns) == COLUMNS and len(df) == 48
    assert (df["feature"] == "in_quote").all() and (df["metric"] == "auroc").all()
    assert df["rank"].tolist() == list(range(1, 49))
    assert df["selectivity"].is_monotonic_decreasing
    best, dist = df.iloc[0], df.set_index("unit").loc[DISTRACTOR]
    assert best["unit"] == QUOTE and best["sign"] == 1 and best["selective"]
    assert dist["score"] > best["score"] + 0.01  # the character tracker wins on raw AUROC ...
    assert dist["selectivity"] < 0.01 and not dist["selective"]  # ... but its control explains it all
    assert best["selectivity"] > 0.15 and dist["rank"] > 10


def test_binary_statistics_are_exact(prose_store):
    df = find_cells(prose_store, "in_quote", top=48).set_index("unit")
    text = prose_store.text
    pos = compute_feature("in_quote", text) > 0
    ctrl = pos[control_permutation(text, 0)]
    for unit in (QUOTE, DISTRACTOR, "0:c:0"):
        x = prose_store.unit(unit).astype(np.float64)
        row = df.loc[unit]
        assert row["auroc"] == pytest.approx(auroc(x, pos), abs=1e-9)
        assert row["score"] == pytest.approx(max(row["auroc"], 1 - row["auroc"]), abs=1e-12)
        assert row["ap"] == pytest.approx(average_precision(row["sign"] * x, pos), abs=1e-9)
        assert row["effect_size"] == pytest.approx(cohens_d(x, pos), abs=1e-6)
        c = auroc(x, ctrl)
        assert row["control_score"] == pytest.approx(max(c, 1 - c), abs=1e-9)
        assert row["pearson"] == pytest.approx(pearsonr(x, pos).statistic, abs=1e-5)


def test_numeric_feature_ranks_the_line_position_cell(prose_store):
    df = find_cells(prose_store, "column", top=3)
    row = df.iloc[0]
    assert row["unit"] == LINE and row["metric"] == "pearson" and row["sign"] == 1
    x = prose_store.unit(LINE).astype(np.float64)
    y = compute_feature("column", prose_store.text).astype(np.float64)
    assert row["score"] == pytest.approx(abs(pearsonr(x, y).statistic), abs=1e-5)
    assert row["spearman"] == pytest.approx(spearmanr(x, y).statistic, abs=1e-9)  # ties: mean ranks
    hi = y > np.median(y)
    assert row["effect_size"] == pytest.approx(cohens_d(x, hi), abs=1e-6)
    assert np.isnan(row["ap"]) and np.isnan(row["auroc"])
    # The same cell counts down to the line end: negative sign.
    row = find_cells(prose_store, "to_line_end", top=1).iloc[0]
    assert row["unit"] == LINE and row["sign"] == -1


def bootstrap_oracle(stat, T: int) -> np.ndarray:
    """The central 95% of ``stat(rows)`` over the block bootstrap's draws (seed 0), each draw's rows written out
    (a row repeated as often as its block was drawn): what ``score_lo``, ``score_hi`` must be."""
    return np.quantile([stat(np.repeat(np.arange(T), w.astype(int))) for w in block_weights(T, seed=0)],
                       [0.025, 0.975])


def test_find_gives_each_reported_score_its_block_bootstrap_interval(prose_store):
    T, text = prose_store.length, prose_store.text
    q = compute_feature("in_quote", text) > 0
    x = prose_store.unit(QUOTE).astype(np.float64)
    row = find_cells(prose_store, "in_quote", top=1).iloc[0]
    assert row["unit"] == QUOTE and row["sign"] == 1 and T // 1000 >= 10  # enough blocks for an interval
    lo, hi = bootstrap_oracle(lambda r: auroc(x[r], q[r]), T)
    assert (row["score_lo"], row["score_hi"]) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))
    assert row["score_lo"] < row["score"] < row["score_hi"]
    bare = find_cells(prose_store, "in_quote", top=1, intervals=False)  # callers that show none skip the cost
    assert bare[["score_lo", "score_hi"]].isna().all().all() and bare.iloc[0]["score"] == row["score"]
    # the same unit against the feature's complement: sign -1, the interval of 1 - AUROC, the same numbers
    flip = find_cells(prose_store, lambda t: 1 - compute_feature("in_quote", t), top=1).iloc[0]
    assert (flip["unit"], flip["sign"]) == (QUOTE, -1)
    assert (flip["score_lo"], flip["score_hi"]) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))
    # a numeric feature: sign * r on the resampled rows
    col = compute_feature("column", text).astype(np.float64)
    row = find_cells(prose_store, "column", top=1).iloc[0]
    xc = prose_store.unit(row["unit"]).astype(np.float64)
    lo, hi = bootstrap_oracle(lambda r: row["sign"] * pearsonr(xc[r], col[r])[0], T)
    assert (row["score_lo"], row["score_hi"]) == (pytest.approx(lo, abs=1e-9), pytest.approx(hi, abs=1e-9))


def test_a_store_too_short_for_an_interval_says_so(tmp_path):
    st = make_quote_store(tmp_path / "st", length=3000)  # 3 blocks of 1,000 rows: fewer than MIN_BLOCKS
    df = find_cells(st, "in_quote", top=2)
    assert set(df["unit"]) == {QUOTE_UNIT, NEG_UNIT} and df["score_lo"].isna().all() and df["score_hi"].isna().all()
    rows = json.loads(run("find", st.path, "--feature", "in_quote", "--top", "1", "--format", "json").output)
    assert (rows[0]["score_lo"], rows[0]["score_hi"]) == (None, None)
    header = run("find", st.path, "--feature", "in_quote", "--top", "1").output.splitlines()[2].split()
    assert header == ["rank", "unit", "score", "sign", "control_score", "selectivity", "effect_size", "ap"]


def test_rank_features_skips_constant_features_and_reports(prose_store):
    df = rank_features(prose_store, top=2)
    # The prose has no brackets, indentation or comments.
    assert set(df.attrs["skipped"]) == {
        "in_if", "in_if_cond", "in_if_body", "if_end_line", "brace_depth", "in_comment", "in_parens", "paren_depth",
        "indent",
    }
    assert df.groupby("feature").size().eq(2).all() and len(df.attrs["types"]) == 6
    assert df.attrs["length"] == prose_store.length and df.attrs["n_units"] == 48
    assert df[df["feature"] == "in_quote"]["unit"].iloc[0] == QUOTE


def test_stats_fallback_and_unit_subset(prose_store, tmp_path):
    copy = tmp_path / "nostats"
    shutil.copytree(prose_store.path, copy)
    (copy / "stats.json").unlink()
    a = find_cells(prose_store, "column", top=4)
    b = find_cells(open_store(copy), "column", top=4)
    assert a["unit"].tolist() == b["unit"].tolist()
    np.testing.assert_allclose(a["pearson"], b["pearson"], atol=1e-5)
    (copy / "stats.json").write_text('{"unit": []}', encoding="utf-8")  # damaged, not absent: said, not skipped
    with pytest.raises(RnnvizError, match=r"stats.json: missing or malformed"):
        find_cells(open_store(copy), "column", top=4)
    sub = find_cells(prose_store, "in_quote", top=5, units=[DISTRACTOR, "0:c:1", QUOTE])
    assert sub["unit"].tolist() == [QUOTE, "0:c:1", DISTRACTOR]


def test_code_store_finds_if_and_brace_cells_and_a_regex(code_store):
    assert find_cells(code_store, "in_if", top=1)["unit"].iloc[0] == "0:h:2"
    assert find_cells(code_store, "brace_depth", top=1)["unit"].iloc[0] == "0:h:4"
    df = find_cells(code_store, r"re:if \(", top=2)
    assert df["feature"].iloc[0] == r"re:if \(" and df["metric"].iloc[0] == "auroc"
    df = find_cells(code_store, lambda t: compute_feature("in_if", t) * 2.0, top=1)
    assert df["metric"].iloc[0] == "pearson" and df["unit"].iloc[0] == "0:h:2"


@pytest.mark.parametrize(
    "feature,units,message",
    [
        ("nope", None, "unknown feature 'nope'"),
        ("in_if", None, r"nothing to rank: in_if is constant \(0.0\) on this text"),
        ("in_quote", ["9:h:0"], "unit '9:h:0' is not in this store"),
    ],
)
def test_find_errors(prose_store, feature, units, message):
    with pytest.raises(RnnvizError, match=message):
        find_cells(prose_store, feature, units=units)


def test_evidence(prose_store):
    ev = evidence(prose_store, QUOTE, "in_quote", k=4, context=10)
    x = prose_store.unit(QUOTE).astype(np.float32)
    tops = [s["pos"] for s in ev["top"]]
    assert tops[0] == int(np.argmax(x)) and len(tops) == 4
    assert all(abs(a - b) >= 10 for i, a in enumerate(tops) for b in tops[i + 1 :])
    assert ev["bottom"][0]["pos"] == int(np.argmin(x)) and ev["bottom"][0]["value"] == float(x.min())
    s = ev["top"][0]
    p = s["pos"]
    assert s["before"] + s["char"] + s["after"] == prose_store.text[p - 10 : p + 11]
    groups = ev["histogram"]["groups"]
    assert set(groups) == {"in_quote = 0", "in_quote = 1"}
    assert sum(map(sum, groups.values())) == prose_store.length
    assert ev["stats"]["mean"] == pytest.approx(float(x.mean()), abs=1e-4)
    json.dumps(ev)  # JSON-able


def test_gate_saturation(tmp_path):
    rng = np.random.default_rng(0)
    text = "abcab" * 200
    vocab = Vocab.from_text(text)
    cfg = ModelConfig(vocab_size=3, cell="lstm", layers=2, hidden=4)
    arrays = {(l, k): rng.random((len(text), 4)) for l in range(2) for k in ("h", "c", "i", "f", "g", "o")}
    st = write_store(tmp_path / "st", text, arrays, cfg, vocab)
    df = gate_saturation(st)
    assert len(df) == 2 * 3 * 4 and set(df["kind"]) == {"i", "f", "o"}
    row = df[(df["layer"] == 1) & (df["kind"] == "f") & (df["index"] == 2)].iloc[0]
    x = arrays[(1, "f")][:, 2].astype(np.float16)
    assert row["unit"] == "1:f:2"
    assert row["sat_lo"] == pytest.approx((x < 0.1).mean()) and row["sat_hi"] == pytest.approx((x > 0.9).mean())
    (st.path / "stats.json").unlink()  # computed from the arrays instead
    pd.testing.assert_frame_equal(gate_saturation(open_store(st.path)), df, atol=1e-6)
    no_gates = write_store(tmp_path / "st2", text, {(0, "h"): arrays[(0, "h")]}, cfg, vocab)
    assert gate_saturation(no_gates).empty


# --- ablation ---

QTEXT = 'First Citizen:\n"Speak, speak," they said (all).\nBefore we proceed, "hear me."\n' * 3


def manual_losses(model, text, clamp=None):
    """Per-character cross-entropy from one sequential CharRNN.step pass (the hand computation)."""
    ids = torch.as_tensor(model.vocab.encode(text))
    spec = clamp_spec(clamp, model.config) if clamp else None
    state, out = model.init_state(1), []
    with torch.no_grad():
        for t in range(len(ids) - 1):
            logits, state = model.step(ids[t : t + 1], state, clamp=spec)
            out.append(F.cross_entropy(logits, ids[t + 1 : t + 2]).item())
    return np.array(out)


@pytest.mark.parametrize(
    "cell,unit,value", [("lstm", "1:c:3", 3.0), ("lstm", "0:f:2", 1.0), ("gru", "1:z:5", 1.0), ("rnn", "0:h:0", 3.0)]
)
def test_zero_clamp_equals_the_hand_computation(make_model, cell, unit, value):
    model = make_model(cell, layers=2, hidden=16, text=QTEXT, seed=3)
    r = ablate(model, QTEXT, [unit], mode="zero", streams=1, random=0)
    clean, clamped = manual_losses(model, QTEXT), manual_losses(model, QTEXT, {unit: 0.0})
    assert r.chars == len(QTEXT) - 1 and r.values == {unit: 0.0}
    assert r.clean_loss == pytest.approx(clean.mean(), abs=1e-5)
    assert r.ablated_loss == pytest.approx(clamped.mean(), abs=1e-5)
    assert r.delta == pytest.approx(clamped.mean() - clean.mean(), abs=1e-6)
    assert np.abs(clamped - clean).max() > 1e-5  # the clamp acts (small units of a random model: small effect)
    big = ablate(model, QTEXT, [unit], mode=f"value={value}", streams=1, random=0)
    assert big.ablated_loss == pytest.approx(manual_losses(model, QTEXT, {unit: value}).mean(), abs=1e-5)
    assert abs(big.delta) > 1e-4  # clamping the unit changes the loss


def test_feature_targets_mean_mode_and_streams(make_model):
    model = make_model("lstm", layers=2, hidden=16, text=QTEXT, seed=4)
    r = ablate(model, QTEXT, ["1:h:1", "1:c:2"], mode="value=2.5", feature="in_quote", streams=1, random=0)
    closing = [t for t in range(len(QTEXT) - 1) if QTEXT[t + 1] == '"' and QTEXT[: t + 1].count('"') % 2 == 1]
    assert r.feature == "in_quote" and r.feature_chars == len(closing) == 6
    clean = manual_losses(model, QTEXT)
    clamped = manual_losses(model, QTEXT, {"1:h:1": 2.5, "1:c:2": 2.5})
    assert r.delta_feature == pytest.approx((clamped - clean)[closing].mean(), abs=1e-5)
    # mean: each unit's mean over the text, from the unclamped run.
    m = ablate(model, QTEXT, ["1:c:2"], mode="mean", streams=1, random=0)
    ids = torch.as_tensor(model.vocab.encode(QTEXT))
    state, cs = model.init_state(1), []
    with torch.no_grad():
        for t in range(len(ids) - 1):
            _, state, rec = model.step(ids[t : t + 1], state, internals=True)
            cs.append(rec[(1, "c")][0, 2].item())
    assert m.values["1:c:2"] == pytest.approx(np.mean(cs), abs=1e-5)
    # Parallel streams whose burn-in reaches the start are exact.
    s = ablate(model, QTEXT, ["1:h:1", "1:c:2"], mode="value=2.5", streams=4, burn_in=10**6, random=0)
    assert s.streams == 4 and s.ablated_loss == pytest.approx(r.ablated_loss, abs=1e-5)


def test_long_text_crosses_time_blocks(make_model):
    text = QTEXT * 10  # > 1024 steps in one stream: lower layers and clean run go block by block
    model = make_model("gru", layers=2, hidden=8, text=text, seed=2)
    r = ablate(model, text, ["1:h:3"], mode="value=1", streams=1, random=0)
    assert r.clean_loss == pytest.approx(manual_losses(model, text).mean(), abs=1e-5)
    assert r.ablated_loss == pytest.approx(manual_losses(model, text, {"1:h:3": 1.0}).mean(), abs=1e-5)


def test_random_baseline_is_seeded(make_model):
    model = make_model("lstm", layers=2, hidden=16, text=QTEXT, seed=4)
    a = ablate(model, QTEXT, ["1:c:2", "1:c:3"], random=3, seed=7, streams=4, burn_in=20)
    b = ablate(model, QTEXT, ["1:c:2", "1:c:3"], random=3, seed=7, streams=4, burn_in=20)
    c = ablate(model, QTEXT, ["1:c:2", "1:c:3"], random=3, seed=8, streams=4, burn_in=20)
    pd.testing.assert_frame_equal(a.random, b.random)
    assert a.random["units"].tolist() != c.random["units"].tolist()
    for units in a.random["units"]:
        drawn = units.split(",")
        assert len(set(drawn)) == 2 and all(u.startswith("1:c:") and u not in ("1:c:2", "1:c:3") for u in drawn)
    s = a.summary()
    assert s["random_draws"] == 3 and s["random_delta_mean"] == pytest.approx(a.random["delta"].mean())
    json.dumps(s)


@pytest.mark.parametrize("mode,units,message", [
    ("half", ["1:c:2"], "mode must be zero, mean or value=V"),
    ("value=inf", ["1:c:2"], "mode must be zero, mean or value=V"),
    ("zero", ["1:r:2"], "a lstm has no kind 'r'"),
    ("zero", [], "name at least one unit"),
])
def test_ablate_errors(make_model, mode, units, message):
    with pytest.raises(RnnvizError, match=message):
        ablate(make_model(), QTEXT, units, mode=mode)


# --- gradient flow ---


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_gradient_flow_matches_backprop_through_a_hand_loop(make_model, cell):
    model = make_model(cell, layers=2, hidden=8, text=QTEXT, seed=5)
    lag = 12
    text = QTEXT[: lag + 2]  # exactly one position has a full history: t = lag
    df = gradient_flow(model, text, max_lag=lag, positions=5, burn_in=0)
    assert list(df.columns) == ["layer", "kind", "lag", "grad", "grad_median", "positions"]
    assert len(df) == 2 * lag and (df["positions"] == 1).all()
    ids = torch.as_tensor(model.vocab.encode(text))
    state, hs = model.init_state(1), []
    for t in range(lag + 1):
        logits, state, rec = model.step(ids[t : t + 1], state, internals=True)
        for l in range(2):
            rec[(l, "h")].retain_grad()
        hs.append([rec[(l, "h")] for l in range(2)])
    F.cross_entropy(logits, ids[lag + 1 : lag + 2]).backward()
    for l in range(2):
        for k in (1, 5, lag):
            want = hs[lag - k][l].grad.norm().item()
            got = df[(df["layer"] == l) & (df["lag"] == k)]["grad"].item()
            assert got == pytest.approx(want, rel=1e-5, abs=1e-12)


def test_vanilla_rnn_gradient_vanishes_where_the_lstm_cell_keeps_it(make_model):
    text = QTEXT * 3
    rnn = make_model("rnn", layers=1, hidden=16, text=text, seed=6)
    with torch.no_grad():
        rnn.rnn.weight_hh_l0.mul_(0.2)
    g = gradient_flow(rnn, text, max_lag=30, positions=8, burn_in=20).set_index("lag")["grad"]
    assert g[30] < 1e-6 * g[1]
    lstm = make_model("lstm", layers=1, hidden=16, text=text, seed=6)
    with torch.no_grad():
        lstm.rnn.bias_ih_l0[16:32] = 10.0  # forget gate open: the cell state carries on
    g = gradient_flow(lstm, text, max_lag=30, positions=8, burn_in=20, kinds=("c",)).set_index("lag")["grad"]
    assert g[30] > 0.3 * g[1]


def test_gradient_flow_errors(make_model):
    with pytest.raises(RnnvizError, match="needs 202"):
        gradient_flow(make_model(), QTEXT[:100], max_lag=200)
    with pytest.raises(RnnvizError, match="not"):
        gradient_flow(make_model("gru"), QTEXT, max_lag=5, kinds=("c",))


# --- CLI ---


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_cli_features():
    r = run("features")
    lines = r.output.strip().splitlines()
    assert r.exit_code == 0 and len(lines) == 16
    assert lines[0].split()[:3] == ["in_quote", "binary", "prose"] and "paragraph break" in lines[0]
    r = run("features", "to_line_end")
    assert r.exit_code == 0 and r.output.startswith("to_line_end (numeric, prose)")
    assert json.loads(run("features", "--json").output)[6]["name"] == "in_if"


def test_cli_find_json_csv_table(prose_store):
    r = run("find", prose_store.path, "--feature", "in_quote", "--top", "3", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert len(rows) == 3 and rows[0]["unit"] == QUOTE and list(rows[0]) == COLUMNS
    assert isinstance(rows[0]["score"], float) and rows[0]["sign"] == 1 and rows[0]["selective"] is True
    assert rows[0]["spearman"] is None
    r = run("find", prose_store.path, "--feature", "column", "--regex", '"[A-Z]', "--top", "2", "--format", "csv")
    from io import StringIO

    df = pd.read_csv(StringIO(r.output))
    assert list(df.columns) == COLUMNS and df["feature"].tolist() == ["column", "column", 're:"[A-Z]', 're:"[A-Z]']
    r = run("find", prose_store.path, "--feature", "in_quote", "--top", "2", "--snippets", "2")
    assert r.exit_code == 0 and "in_quote (binary; score = auroc folded)" in r.output
    top = find_cells(prose_store, "in_quote", top=2).iloc[0]
    lines = r.output.splitlines()
    assert lines[2].split() == ["rank", "unit", "score", "score_lo", "score_hi", "sign", "control_score",
                                "selectivity", "effect_size", "ap"]
    assert lines[3].split() == ["1", QUOTE] + [f"{top[c]:.3f}" for c in ("score", "score_lo", "score_hi")] + [
        "+"] + [f"{top[c]:.3f}" for c in ("control_score", "selectivity", "effect_size", "ap")]
    assert QUOTE in r.output and "Ranked 48 units x 1 feature(s)" in r.output and "[" in r.output


def test_cli_find_errors(prose_store):
    r = run("find", prose_store.path, "--feature", "in_if")
    assert r.exit_code == 1 and r.output.startswith("Error: nothing to rank: in_if is constant")
    r = run("find", prose_store.path, "--regex", "(")
    assert r.exit_code == 1 and "Error: bad regular expression '('" in r.output


def test_cli_ablate_and_gradflow(tiny_ckpt, tmp_path):
    from tests.conftest import TEXT

    p = tmp_path / "t.txt"
    p.write_text(TEXT * 5, encoding="utf-8")
    r = run("ablate", tiny_ckpt, p, "--unit", "1:c:3", "--feature", "in_quote", "--random", "2", "--split", "all",
            "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["units"] == ["1:c:3"] and s["feature"] == "in_quote" and len(s["random"]) == 2
    assert s["chars"] == len(TEXT) * 5 - 1 and s["feature_chars"] == 5
    r = run("ablate", tiny_ckpt, p, "--unit", "1:c:3,0:h:1", "--mode", "value=1", "--random", "2")
    assert r.exit_code == 0 and "Clamped 1:c:3=1, 0:h:1=1 (value=1)" in r.output and "random units (all)" in r.output
    r = run("gradflow", tiny_ckpt, p, "--max-lag", "20", "--positions", "3")
    assert r.exit_code == 0 and "L0 h" in r.output and "L1 h" in r.output
    assert [line.split()[0] for line in r.output.splitlines()[3:]] == ["1", "2", "5", "10", "20"]
    rows = json.loads(run("gradflow", tiny_ckpt, p, "--max-lag", "5", "--format", "json").output)
    assert len(rows) == 10 and set(rows[0]) == {"layer", "kind", "lag", "grad", "grad_median", "positions"}
