"""explain: planted-rule recovery, exact rule parameters, honest scores, contexts, bad input, CLI."""

import json
import time

import numpy as np
import pytest
from click.testing import CliRunner

from rnnviz.analysis.explain import COLUMNS, MIN_LENGTH, explain, explained_fractions, split_halves, top_contexts
from rnnviz.analysis.rules import FADES, dense_rules, explain_id, ngram_ids, parse, run_age, simulate, split_combo
from rnnviz.cli import main
from rnnviz.errors import RnnvizError
from rnnviz.model.charrnn import ModelConfig
from rnnviz.model.vocab import Vocab
from rnnviz.store.writer import write_store

WORDS = "the cat sat on a mat and then went home with them quietly".split()
PLANTED = [  # one unit per rule, in this order, in each of h and c
    "feature:in_quote", 'since:";"', 'prev:"at "', 'prev:"x"', 'depth:"[","]"', "class:digit",
    "feature:in_quote@lag4", 'since:"t"', "feature:word_pos", "class:upper", "feature:in_quote@fade32",
]
COMBO = ("feature:in_quote", 'depth:"[","]"')  # planted together in unit len(PLANTED)
N_NOISE = 6


def mixed_text(n_lines: int = 600, seed: int = 0) -> str:
    """Lines of words with quotes (short, and long ones of 8-30 words for fading units), [nested [brackets]],
    numbers, capitals, x's and semicolons."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n_lines):
        w = list(rng.choice(WORDS, rng.integers(3, 9)))
        r = rng.random()
        if r < 0.25:
            k = rng.integers(0, len(w))
            w[k] = '"' + w[k] + " " + rng.choice(WORDS) + '"'
        elif r < 0.35:
            w.insert(rng.integers(0, len(w)), '"' + " ".join(rng.choice(WORDS, rng.integers(8, 31))) + '"')
        elif r < 0.5:
            inner = " ".join(rng.choice(WORDS, 2)) + ("[x]" if rng.random() < 0.5 else "")
            w.insert(rng.integers(0, len(w)), f"[{inner}]")
        if rng.random() < 0.3:
            w.append(str(rng.integers(0, 1000)))
        if rng.random() < 0.3:
            w[0] = w[0].capitalize()
        lines.append(" ".join(w) + ("; " + rng.choice(WORDS) if rng.random() < 0.5 else "") + ".")
    return "\n".join(lines) + "\n"


def halves(T: int) -> list[np.ndarray]:
    """The fitting and held positions, as explain() splits them (pinned by the test of split_halves)."""
    return [np.concatenate([np.arange(lo, hi) for lo, hi in h]) for h in split_halves(T)]


def zscore(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / v.std()


def make_store(path, text: str, columns: dict[int, np.ndarray], hidden: int, seed: int = 0, kinds=("h",)):
    """A 1-layer store whose units are noise except ``columns`` {index: (T,) values} (same in each kind)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for kind in kinds:
        a = rng.normal(0, 1, (len(text), hidden))
        for i, v in columns.items():
            a[:, i] = v
        arrays[(0, kind)] = a
    vocab = Vocab.from_text(text)
    cfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=1, hidden=hidden)
    return write_store(path, text, arrays, cfg, vocab)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    text = mixed_text()
    T, H = len(text), len(PLANTED) + 1 + N_NOISE
    rng = np.random.default_rng(1)
    arrays = {}
    for kind, noise in (("h", 0.7), ("c", 0.4)):
        a = rng.normal(0, 1, (T, H))
        for i, rule in enumerate(PLANTED):
            a[:, i] = zscore(simulate(rule, text)) + rng.normal(0, noise, T)
        a[:, len(PLANTED)] = sum(zscore(simulate(r, text)) for r in COMBO) + rng.normal(0, noise / 2, T)
        arrays[(0, kind)] = a
    vocab = Vocab.from_text(text)
    cfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=1, hidden=H)
    st = write_store(tmp_path_factory.mktemp("planted") / "st", text, arrays, cfg, vocab)
    return st, explain(st)


def test_planted_rules_are_recovered_and_noise_is_unexplained(planted):
    st, df = planted
    assert list(df.columns) == COLUMNS and list(df["unit"]) == st.units
    got = df.set_index("unit")
    want = {f"0:{k}:{i}": rule for k in "hc" for i, rule in enumerate(PLANTED)}
    want.update({f"0:{k}:{len(PLANTED)}": " & ".join(COMBO) for k in "hc"})
    hits = sum(set(split_combo(got.loc[u, "rule"])) == set(split_combo(rule)) for u, rule in want.items())
    assert hits / len(want) >= 0.95, got.loc[list(want), ["rule", "score"]]
    for k in "hc":
        combo = got.loc[f"0:{k}:{len(PLANTED)}"]
        assert combo["combo"] and combo["score"] > combo["single_score"] + 0.2  # one alone is not enough
        first, second = split_combo(combo["rule"])  # the first is the better rule alone
        assert combo["explanation"] == f"{explain_id(first)}, and {explain_id(second)} (two rules together)"
        noise = got.loc[[f"0:{k}:{i}" for i in range(len(PLANTED) + 1, st.hidden)]]
        assert (noise["explanation"] == "unexplained").all() and (noise["rule"] == "unexplained").all()
        assert (noise["score"].abs() < 0.05).all() and not noise["explained"].any()
    assert got.loc["0:c:0", "explanation"] == "inside a double-quoted span"
    assert got.loc["0:c:1", "explanation"] == 'characters since the last ";"'
    assert got.loc["0:c:2", "explanation"] == 'after "at "'
    assert got.loc["0:c:10", "explanation"] == "inside a double-quoted span, fading over about 32 characters"
    assert not df[["score", "fit_score", "single_score"]].isna().any().any()


def test_scores_are_the_held_out_correlation_of_the_simulated_rule(planted):
    """score = sign * Pearson r on the held half, recomputed from simulate(); auroc from ranks."""
    st, df = planted
    text, held = st.text, halves(st.length)[1]
    for row in df[df["explained"]].itertuples():
        y = simulate(row.rule, text, row.coef)[held].astype(np.float64)
        x = st.unit(row.unit)[held].astype(np.float64)
        assert row.sign * np.corrcoef(x, y)[0, 1] == pytest.approx(row.score, abs=1e-5), row.rule
        if not row.combo and set(np.unique(y)) <= {0.0, 1.0}:
            _, inv = np.unique(row.sign * x, return_inverse=True)
            ranks = np.unique(inv, return_counts=True)[1].cumsum()  # mean ranks with ties, by hand
            mean_rank = (ranks - (np.unique(inv, return_counts=True)[1] - 1) / 2.0)[inv]
            P, N = (y > 0).sum(), (y == 0).sum()
            auc = (mean_rank[y > 0].sum() - P * (P + 1) / 2) / (P * N)
            assert row.auroc == pytest.approx(auc, abs=1e-9)
        else:
            assert np.isnan(row.auroc)


def test_a_saturated_units_score_is_its_held_out_correlation_not_float32_cancellation(tmp_path):
    """A gate that sits at 0.95 and moves by 0.004 on one character: summed raw in float32 its moments cancel
    (E[x^2] - mu^2) and the score came out 0.99988 for an exact rule, and above 1 for an exact pair."""
    import rnnviz

    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("abcde fghij\n"), size=200_000))
    codes = np.frombuffer(text.encode(), dtype=np.uint8)
    x = np.zeros((len(text), 2), np.float32)
    x[:, 0] = 0.95 + 0.004 * (codes == ord("e"))
    x[:, 1] = 0.95 + 0.004 * (codes == ord("e")) + 0.002 * (codes == ord(" "))
    st = rnnviz.store_from_arrays(text, {"0:h": x}, out=tmp_path / "s")
    df = explain(st, intervals=False).set_index("unit")
    held = halves(st.length)[1]
    for unit in ("0:h:0", "0:h:1"):
        row = df.loc[unit]
        y = simulate(row.rule, text, row.coef)[held].astype(np.float64)
        true = row.sign * np.corrcoef(st.unit(unit)[held].astype(np.float64), y)[0, 1]
        assert row.score == pytest.approx(true, abs=1e-5) and row.score <= 1.0, (unit, row.rule)
    assert (df.loc["0:h:0", "rule"], df.loc["0:h:1", "combo"]) == ('prev:"e"', True)


def test_combination_coefficients_fit_the_unit_in_its_own_units(planted):
    st, df = planted
    unit = f"0:c:{len(PLANTED)}"
    row = df.set_index("unit").loc[unit]
    sim = simulate(row["rule"], st.text, row["coef"])
    x = st.unit(unit).astype(np.float64)
    fit = halves(st.length)[0]
    assert abs(sim[fit].mean() - x[fit].mean()) < 1e-3  # least squares: means agree
    assert np.std(x - sim) < 0.4  # the planted noise is 0.2


def test_fractions_per_layer_and_kind(planted):
    _, df = planted
    fr = explained_fractions(df).set_index("group")
    assert list(fr.index) == ["0:h", "0:c", "all"] and list(fr["units"]) == [18, 18, 36]
    for g in ("0:h", "0:c"):
        part = df[df["unit"].str.startswith(g + ":")]
        detector = part["best_rule"].isin(['prev:"x"', "class:digit", "class:upper"])  # PLANTED's input detectors
        for t in (0.5, 0.8):
            assert fr.loc[g, f"explained_{t}"] == pytest.approx((part["score"] >= t).mean())
            assert fr.loc[g, f"inputs_{t}"] == pytest.approx(((part["score"] >= t) & detector).mean())
            assert fr.loc[g, f"cells_{t}"] == pytest.approx(((part["score"] >= t) & ~detector).mean())
    assert "learned" not in fr and "init_best" not in fr  # no control asked for
    assert df["learned"].isna().all()


def hand_text(seed: int = 3, n: int = 400) -> str:
    rng = np.random.default_rng(seed)
    tokens = ["ab", "ba", "a, b", " [b [a]]", '"ab"', "7", "\n", "Q", " "]
    out = ""
    while len(out) < n:
        out += rng.choice(tokens)
    return out


@pytest.mark.parametrize("rule, sign", [
    ('since:","', 1), ('prev:"ab"', 1), ('prev:"a]"', -1), ('depth:"[","]"', 1), ("feature:in_quote@lag2", 1),
    ("class:digit", -1), ("feature:in_quote@onset", 1), ('since:"]]"', 1),
])
def test_exact_rule_and_sign_on_a_hand_made_text(tmp_path, rule, sign):
    text = hand_text(n=1500)
    st = make_store(tmp_path / "st", text, {2: sign * simulate(rule, text)}, hidden=4)
    row = explain(st, units=["0:h:2"]).iloc[0]
    assert (row["rule"], row["sign"]) == (rule, sign)
    assert row["score"] == pytest.approx(1.0, abs=1e-3)


def test_rule_values_on_tiny_texts():
    t = 'x "ab" [a[b]]]\n"'
    assert simulate('since:"a"', t).tolist() == [1, 2, 3, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6, 7]
    assert simulate('prev:"ab"', t).tolist() == [0] * 4 + [1] + [0] * 11
    assert simulate('depth:"[","]"', t).tolist() == [0] * 7 + [1, 1, 2, 2, 1, 0, 0, 0, 0]  # extra ] ignored
    assert simulate("feature:in_quote", t).tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert simulate("feature:in_quote@lag1", t).tolist()[:7] == [0, 0, 0, 1, 1, 1, 0]
    assert simulate("feature:in_quote@onset", t).nonzero()[0].tolist() == [2, 15]
    assert simulate("feature:in_quote@offset", t).nonzero()[0].tolist() == [5]
    assert simulate("class:newline", t).nonzero()[0].tolist() == [14]
    assert run_age(simulate("feature:in_quote", t)).tolist() == [-1, -1, 0, 1, 2] + [-1] * 10 + [0]
    e = np.exp(-1 / 2)
    assert simulate("feature:in_quote@fade2", t).tolist() == pytest.approx([0, 0, 1, e, e * e] + [0] * 10 + [1])
    assert simulate("feature:in_quote@fade2", t).dtype == np.float32
    assert explain_id("feature:in_quote@fade64") == "inside a double-quoted span, fading over about 64 characters"
    assert parse("feature:in_quote@fade64") == ("feature", ["in_quote"], "fade64")
    assert simulate("class:upper", "aBcD").tolist() == [0, 1, 0, 1]
    ids, grams = ngram_ids("abcabcabd", 3, 9, 2)
    assert grams == ["bca", "cab", "abc"] and ids.tolist() == [3, 3, 2, 0, 1, 2, 0, 1, 3]  # 3: too early or rare
    assert explain_id('since:"\\n"') == "characters since the last line end"
    assert explain_id('prev:"e"') == 'just read "e"' and explain_id('prev:"#in"') == 'after "#in"'
    assert explain_id("feature:column@lag2") == ("position on the line (characters since the line began), "
                                                 "2 characters ago")
    assert parse('depth:"{","}"') == ("depth", ["{", "}"], "")
    assert split_combo('prev:" & " & class:digit') == ['prev:" & "', "class:digit"]


@pytest.mark.parametrize("bad", ["nope", "feature:nope", 'prev:"abcde"', "feature:in_quote@lag", 'depth:"(","("',
                                 "class:vowel", 'since:"abc"', "feature:in_quote@fade0", "feature:column@fade64"])
def test_bad_rule_ids_are_one_line_errors(bad):
    with pytest.raises(RnnvizError, match="bad rule id"):
        simulate(bad, "some text")


def test_every_rule_id_of_the_space_round_trips():
    """Each dense rule's id parses back to its own values and explanation; fades for each binary feature
    that varies on the text."""
    text = mixed_text(100)
    rules, D = dense_rules(text)
    for j, r in enumerate(rules):
        assert np.array_equal(simulate(r.id, text), D[:, j]) and explain_id(r.id) == r.explanation, r.id
    fades = [r.id for r in rules if "@fade" in r.id]
    assert fades == [f"feature:{name}@fade{k}" for name in ("in_quote", "sentence_start", "in_string")
                     for k in FADES]
    assert not any(r.binary for r in rules if "@fade" in r.id)


def long_quote_text(n: int = 8000, seed: int = 4) -> str:
    """Words with double-quoted spans of 1-40 words, so a rule fading over tens of characters differs
    from the plain quote rule."""
    rng = np.random.default_rng(seed)
    out = []
    while sum(map(len, out)) < n:
        words = " ".join(rng.choice(WORDS, rng.integers(1, 41)))
        out.append(f'"{words}"' if rng.random() < 0.5 else words)
    return " ".join(out)


@pytest.mark.parametrize("rule, sign", [("feature:in_quote@fade128", 1), ("feature:in_quote@fade32", -1),
                                        ("feature:in_quote", 1)])
def test_a_fading_unit_gets_its_time_constant_and_a_plain_one_the_plain_rule(tmp_path, rule, sign):
    text = long_quote_text()
    st = make_store(tmp_path / "st", text, {1: sign * simulate(rule, text)}, hidden=3)
    row = explain(st, units=["0:h:1"]).iloc[0]
    assert (row["rule"], row["sign"]) == (rule, sign)
    assert row["score"] == pytest.approx(1.0, abs=1e-3)


def test_combination_needs_its_coefficients():
    with pytest.raises(RnnvizError, match="coef"):
        simulate('class:digit & prev:"a"', "a1")


def test_bracket_pairs_only_when_the_text_balances_them():
    ids = [r.id for r in dense_rules("(a) " * 10 + "[b] " * 10 + "{" * 10 + "x" * 10)[0]]
    assert 'depth:"(",")"' in ids and 'depth:"[","]"' in ids and 'depth:"{","}"' not in ids


def test_top_contexts(tmp_path):
    text = hand_text(n=2000)
    v = np.arange(len(text), dtype=np.float64) % 97
    st = make_store(tmp_path / "st", text, {1: v}, hidden=2)
    ctx = top_contexts(st, "0:h:1", top=5, per_decile=2, context=10, seed=0)
    top = ctx[ctx["group"] == "top"]
    assert len(top) == 5 and (top["value"] == 96).all()
    assert all(abs(a - b) >= 10 for a in top["pos"] for b in top["pos"] if a != b)
    assert list(ctx["group"][5:]) == [f"decile {d}" for d in range(10, 0, -1) for _ in range(2)]
    deciles = ctx[ctx["group"] != "top"]
    assert deciles["value"].is_monotonic_decreasing or deciles["value"].iloc[0] > deciles["value"].iloc[-1]
    row = ctx.iloc[0]
    assert row["char"] == text[row["pos"]] and row["before"] == text[row["pos"] - 10 : row["pos"]]
    assert ctx.equals(top_contexts(st, "0:h:1", top=5, per_decile=2, context=10, seed=0))


def test_too_short_a_store_says_how_long_it_must_be(tmp_path):
    st = make_store(tmp_path / "st", ("ab " * MIN_LENGTH)[: MIN_LENGTH - 1], {}, hidden=2)
    with pytest.raises(RnnvizError, match=f"has {MIN_LENGTH - 1} characters; explain needs at least {MIN_LENGTH}"):
        explain(st)


def test_unknown_units_are_one_line_errors(tmp_path):
    st = make_store(tmp_path / "st", hand_text(), {}, hidden=2)
    with pytest.raises(RnnvizError, match="unit '0:h:9' is not in this store"):
        explain(st, units=["0:h:9"])
    with pytest.raises(RnnvizError, match="bad unit name"):
        explain(st, units=["h9"])
    with pytest.raises(RnnvizError, match="no units to explain"):
        explain(st, units=[])
    r = CliRunner().invoke(main, ["explain", str(st.path), "--units", ","])
    assert r.exit_code == 1 and r.output == "Error: no units to explain\n"


def test_constant_units_and_one_character_texts_are_unexplained_not_nan(tmp_path):
    text = hand_text()
    st = make_store(tmp_path / "st", text, {0: np.full(len(text), 0.25), 1: np.zeros(len(text))}, hidden=3)
    df = explain(st)
    assert list(df["explanation"][:2]) == ["unexplained"] * 2 and list(df["score"][:2]) == [0.0, 0.0]
    st1 = make_store(tmp_path / "st1", "a" * 500, {0: np.full(500, 1.0)}, hidden=3)
    df1 = explain(st1)
    assert (df1["explanation"] == "unexplained").all()
    assert not df1[["score", "fit_score"]].isna().any().any()


def test_cli_explain_json_table_and_errors(tmp_path, planted):
    st, _ = planted
    runner = CliRunner()
    r = runner.invoke(main, ["explain", str(st.path), "--units", "0:c:0,0:c:1,0:c:12", "--format", "json",
                             "--control", "none"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [x["unit"] for x in rows] == ["0:c:0", "0:c:1", "0:c:12"]
    assert rows[0]["rule"] == "feature:in_quote" and rows[0]["sign"] == 1 and rows[0]["auroc"] > 0.9
    assert {"unit", "explanation", "rule", "score", "sign", "auroc"} <= set(rows[0])
    assert rows[2]["explanation"] == "unexplained"
    r = runner.invoke(main, ["explain", str(st.path), "--units", "0:c:0", "--min-score", "0.99", "--control", "none"])
    assert r.exit_code == 0 and "unexplained" in r.output and "0:c:0" in r.output
    r = runner.invoke(main, ["explain", str(st.path), "--units", "0:c:0,0:h:1", "--control", "none"])
    assert "inside a double-quoted span" in r.output and "units explained at score >= 0.5 / >= 0.8" in r.output
    r = runner.invoke(main, ["explain", str(st.path), "--units", "9:c:0"])
    assert r.exit_code == 1 and r.output.startswith("Error: unit '9:c:0' is not in this store")
    r = runner.invoke(main, ["explain", str(st.path), "--units", "0:c:0", "--format", "csv", "--control", "none"])
    assert r.output.splitlines()[0].startswith("unit,layer,kind,index,explanation,rule,score")
    assert "Example" in runner.invoke(main, ["explain", "--help"]).output


# --- the dashboard's catalog tab ---


def _call(app, output_part: str, inputs: list[dict], state: list[dict], changed: str) -> dict:
    """POST one callback the way the page does; returns Dash's ``response`` dict."""
    from rnnviz.views.dashboard.guard import callback_body

    values = {f"{d['id']}.{d['property']}": d["value"] for d in inputs + state}
    body = callback_body(app.callback_map, output_part, values, changed)
    r = app.server.test_client().post("/_dash-update-component", json=body)
    assert r.status_code == 200, r.data[:300]
    return r.get_json()["response"]


def test_dashboard_catalog_lists_units_and_a_click_opens_one(planted):
    from rnnviz.views.dashboard import create_app

    st, df = planted
    app = create_app([st.path])
    view = {"store": 0, "unit": st.units[0], "cmp": "", "start": 0, "feature": "", "hl": None}
    hide = {"id": "catalog-hide", "property": "value", "value": []}
    out = _call(app, "catalog-table.rowData", [{"id": "catalog-go", "property": "n_clicks", "value": 1}, hide],
                [{"id": "view", "property": "data", "value": view}], "catalog-go.n_clicks")
    # explain runs in the background: the click answers with its progress and starts the poll
    assert "catalog-table" not in out  # the grid is left as it is
    assert out["catalog-msg"]["children"].startswith(f"st: explaining {len(st.units)} units, ")
    assert out["catalog-progress"]["style"]["display"] == "block" and out["catalog-poll"]["disabled"] is False
    for n in range(1, 600):  # the page polls every POLL_MS until the rows come
        out = _call(app, "catalog-table.rowData", [{"id": "catalog-poll", "property": "n_intervals", "value": n}, hide],
                    [{"id": "view", "property": "data", "value": view}], "catalog-poll.n_intervals")
        if "catalog-table" in out:
            break
        time.sleep(0.1)
    assert out["catalog-poll"]["disabled"] is True and out["catalog-progress"]["style"]["display"] == "none"
    rows = out["catalog-table"]["rowData"]
    assert [r["unit"] for r in rows] == st.units
    assert [r["rule"] for r in rows] == list(df["rule"])
    assert [r["sign"] for r in rows] == ["+" if s > 0 else "\u2212" for s in df["sign"]]
    cells, inputs = int((df["role"] == "cell").sum()), int((df["role"] == "input detector").sum())
    assert out["catalog-msg"]["children"] == (
        f"st: {cells} of {len(df)} units explained at score >= 0.3 as cells, {inputs} as input detectors (the "
        "character just read alone); no control here: `rnnviz explain` gives the fractions beside the same "
        "architecture at initialisation")
    assert out["catalog-msg"]["className"] == "note"  # a success: grey, not the error red
    cell = {"value": "0:c:1", "colId": "unit", "rowIndex": 1, "rowId": "0:c:1"}
    out = _call(app, "catalog-track.figure", [{"id": "catalog-table", "property": "cellClicked", "value": cell}],
                [{"id": "view", "property": "data", "value": view}], "catalog-table.cellClicked")
    x = st.unit("0:c:1").astype(np.float32)
    peak = int(x.argmax())  # its sign is +
    start = 0 if peak < 2000 else min(peak - 200, st.length - 2000)  # the first window holds it, or one 200 before
    assert out["url"]["search"] == f"?store=st&unit=0%3Ac%3A1&start={start}"
    unit_trace, rule_trace = out["catalog-track"]["figure"]["data"]
    sim = simulate('since:";"', st.text)[start : start + len(rule_trace["y"])]
    assert rule_trace["name"] == "rule" and np.allclose(rule_trace["y"], sim)
    assert np.allclose(unit_trace["y"], x[start : start + len(unit_trace["y"])])
    assert "top" in str(out["catalog-contexts"]["children"])


def test_export_can_append_the_catalog(tmp_path, planted):
    st, df = planted
    out = tmp_path / "page.html"
    r = CliRunner().invoke(main, ["export", str(st.path), "--unit", "0:c:1", "--length", "300", "--catalog",
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    page = out.read_text(encoding="utf-8")
    cells, inputs = int((df["role"] == "cell").sum()), int((df["role"] == "input detector").sum())
    assert cells == 18 and inputs == 6  # PLANTED in h and c: 8 rules and the pair as cells, 3 input detectors
    assert (f"<h2>Catalog</h2><p class=src>{cells} of {len(df)} units explained at score &gt;= 0.3 as cells, "
            f"{inputs} as input detectors (the character just read alone); no control here: `rnnviz explain` gives "
            "the fractions beside the same architecture at initialisation. Rule chosen") in page
    body = page.split("<table class=catalog>")[1]
    assert body.count("<tr>") == len(df) + 1  # the header and one row per unit
    row = df.set_index("unit").loc["0:c:1"]
    assert (f"<tr><td>0:c:1</td><td>{row['score']:.3f}</td><td>+</td><td></td>"
            "<td>characters since the last &quot;;&quot;</td><td>since:&quot;;&quot;</td></tr>") in body


def test_a_text_of_thousands_of_distinct_characters(tmp_path):
    """n-gram ids stay exact however large the alphabet (no base-V overflow)."""
    rng = np.random.default_rng(5)
    text = "".join(chr(0x4E00 + int(k)) + ("\u4e00\u4e01" if k % 7 == 0 else "") + ("\u4e01" if k % 5 == 0 else "")
                   for k in rng.integers(0, 3000, 4000))  # the trigger's last character also stands alone
    v = simulate('prev:"\u4e00\u4e01"', text)
    st = make_store(tmp_path / "st", text, {0: v}, hidden=2)
    row = explain(st, units=["0:h:0"]).iloc[0]
    assert row["rule"] == 'prev:"\u4e00\u4e01"' and row["score"] == pytest.approx(1.0, abs=1e-3)


def test_halves_alternate_in_blocks_and_cover_the_text():
    assert split_halves(10, 3) == ([(0, 3), (6, 9)], [(3, 6), (9, 10)])
    assert split_halves(10, None) == ([(0, 5)], [(5, 10)])
    assert split_halves(11, None) == ([(0, 6)], [(6, 11)])
    assert split_halves(10, 100) == ([(0, 5)], [(5, 10)])  # a short text still splits in two


def test_a_cell_for_something_only_the_first_half_has_is_scored_on_blocks_across_the_text(tmp_path):
    # Dialogue only in the first half (as in War and Peace's test split): the contiguous split scores the
    # quote cell on a stretch without quotes (its rule is constant there: score 0); alternate blocks do not.
    text = mixed_text(600, seed=3)
    half = len(text) // 2
    text = text[:half] + text[half:].replace('"', "'")
    st = make_store(tmp_path / "st", text, {1: zscore(simulate("feature:in_quote", text))}, hidden=3)
    blocks = explain(st, units=["0:h:1"], block=1024).iloc[0]
    assert (blocks["rule"], blocks["score"]) == ("feature:in_quote", pytest.approx(1.0, abs=1e-3))
    assert blocks["auroc"] == pytest.approx(1.0)
    contiguous = explain(st, units=["0:h:1"], block=None).iloc[0]
    assert contiguous["score"] == 0.0 and contiguous["explanation"] == "unexplained"
    r = CliRunner().invoke(main, ["explain", str(st.path), "--units", "0:h:1", "--block", "0", "--control", "none"])
    assert r.exit_code == 0
    assert f"rules chosen on {(len(text) + 1) // 2:,} of {len(text):,} characters (the first half)" in r.output
    with pytest.raises(RnnvizError, match="block must be >= 1 character, got 0"):
        explain(st, block=0)
