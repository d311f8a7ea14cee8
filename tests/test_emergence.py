"""``rnnviz emergence``: the best unit per feature at every snapshot, checked against a NumPy oracle
(the float64 reference RNN, brute-force AUROC and Pearson r), the appearance rule, the CLI and the figure."""

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import WORDS, train_snapshot_rnn, words_text

from rnnviz.analysis.emergence import appearance_sentences, appears_at, emergence, emergence_figure
from rnnviz.analysis.features import compute_feature
from rnnviz.analysis.ranking import control_permutation
from rnnviz.cli import main
from rnnviz.errors import RnnvizError
from rnnviz.model import reference
from rnnviz.model.checkpoint import load_checkpoint
from rnnviz.model.snapshots import list_snapshots, load_snapshot_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny step loops: one torch thread (see conftest)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("emergence")
    text = words_text([*WORDS, '"no, ', 'not yet" '])  # quotes that span words too
    (tmp / "text.txt").write_text(text, encoding="utf-8")
    train_snapshot_rnn(tmp / "text.txt", tmp / "run")
    return tmp / "run", text[:900]  # < 1000 characters: the recorder reads them as one exact stream


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# --- the oracle ---


def _auroc(x, pos):
    """P(x at a positive > x at a negative), ties 1/2, over every pair."""
    a, b = x[pos][:, None], x[~pos][None, :]
    return float(((a > b) + 0.5 * (a == b)).mean())


def _score(x, y, binary):
    if binary:
        auc = _auroc(x, y > 0)
        return max(auc, 1 - auc)
    if x.std() == 0:
        return 0.0
    return abs(float(np.corrcoef(x, y)[0, 1]))


def oracle(run_dir, text, feature, binary):
    """{step: (best unit, its score, its selectivity, {unit: score})} from the reference RNN."""
    model = load_checkpoint(run_dir / "last")
    ids = model.vocab.encode(text)
    y = compute_feature(feature, text).astype(np.float64)
    y_ctrl = y[control_permutation(text, 0)]
    out = {}
    for snap in list_snapshots(run_dir):
        load_snapshot_weights(model, snap)
        params = reference.params_from_torch(model)
        _, cache = reference.forward(params, ids, ids, np.zeros(params.hidden))
        h = cache.hs[1:, 0, :].astype(np.float16).astype(np.float64)  # (T, H) as the store keeps it
        scores = {f"0:h:{u}": _score(h[:, u], y, binary) for u in range(h.shape[1])}
        sel = {u: s - _score(h[:, int(u.split(":")[2])], y_ctrl, binary) for u, s in scores.items()}
        best = sorted(scores, key=lambda u: (-sel[u], -scores[u]))[0]
        out[snap.step] = (best, scores[best], sel[best], scores)
    return out


@pytest.mark.parametrize("feature, binary", [("in_quote", True), ("word_pos", False)])
def test_emergence_matches_the_reference_rnn(run, feature, binary, one_thread):
    run_dir, text = run
    df = emergence(run_dir, text, [feature])
    want = oracle(run_dir, text, feature, binary)
    snaps = list_snapshots(run_dir)
    assert list(df["step"]) == [5, 10, 15, 20] == [s.step for s in snaps]
    assert list(df["val_loss"]) == [s.val_loss for s in snaps]
    assert list(df["seconds"]) == [s.seconds for s in snaps]
    assert set(df["metric"]) == {"auroc" if binary else "pearson"}
    final_unit = want[20][0]
    assert set(df["final_unit"]) == {final_unit}
    tol = 2e-3  # float16 rounding of float32 (torch) and float64 (reference) may differ by one step
    for row in df.itertuples():
        best, score, sel, scores = want[row.step]
        assert row.best_unit == best, row.step
        assert row.score == pytest.approx(score, abs=tol)
        assert row.selectivity == pytest.approx(sel, abs=2 * tol)
        assert row.final_score == pytest.approx(scores[final_unit], abs=tol)
        assert row.same_as_final == (best == final_unit)
    # the rule, coded again: the first step from which the final unit stays >= chance + 90% of its climb
    chance = 0.5 if binary else 0.0
    finals = [want[s][3][final_unit] for s in (5, 10, 15, 20)]
    bar = chance + 0.9 * (finals[-1] - chance)
    first = 20
    for step, v in zip((20, 15, 10, 5), finals[::-1], strict=True):
        if v < bar - tol:
            break
        first = step
    assert df.attrs["appears_at"] == {feature: first}
    assert df.attrs["final_step"] == 20


def test_appears_at_rule():
    def frame(metric, scores):
        return pd.DataFrame({"feature": "f", "metric": metric, "step": range(10, 10 * len(scores) + 1, 10),
                             "final_score": scores})

    # bar = 0.5 + 0.9 * (0.95 - 0.5) = 0.905
    assert appears_at(frame("auroc", [0.5, 0.9, 0.7, 0.92, 0.95])) == {"f": 40}
    assert appears_at(frame("auroc", [0.96, 0.6, 0.95, 0.95])) == {"f": 30}  # a spike that fades is not it
    assert appears_at(frame("auroc", [0.91, 0.93, 0.95])) == {"f": 10}
    # |r|: chance is 0, bar = 0.9 * 0.5 = 0.45
    assert appears_at(frame("pearson", [0.1, 0.46, 0.44, 0.45, 0.5])) == {"f": 40}
    assert appears_at(frame("pearson", [0.5])) == {"f": 10}


def test_bad_input_is_an_error_before_any_recording(run, tmp_path):
    run_dir, text = run
    with pytest.raises(RnnvizError, match="no snapshots"):
        emergence(tmp_path, text, ["in_quote"])
    with pytest.raises(RnnvizError, match=r"1 character\(s\) not in the model's vocabulary: '☃'"):
        emergence(run_dir, text + "☃", ["in_quote"])
    with pytest.raises(RnnvizError, match="unknown feature 'quotes'; choose one of in_quote"):
        emergence(run_dir, text, ["quotes"])
    with pytest.raises(RnnvizError, match="feature in_if is constant on this text"):
        emergence(run_dir, text, ["in_if"])
    with pytest.raises(RnnvizError, match="no features"):
        emergence(run_dir, text, [])
    only = tmp_path / "only-snapshots"  # killed before its first checkpoint
    shutil.copytree(run_dir / "snapshots", only / "snapshots")
    with pytest.raises(RnnvizError, match="only-snapshots: no last/ checkpoint, whose model the snapshots"):
        emergence(only, text, ["in_quote"])


def test_cli_table_json_and_figure(run, tmp_path, one_thread):
    run_dir, text = run
    src = tmp_path / "t.txt"
    src.write_text("xx" + text, encoding="utf-8")  # --start 2 skips the two unknown characters
    out = tmp_path / "fig.html"
    r = cli("emergence", run_dir, src, "--feature", "in_quote", "--feature", "word_pos", "--split", "all",
            "--start", 2, "--out", out)
    assert r.exit_code == 0, r.output
    df = emergence(run_dir, text, ["in_quote", "word_pos"])
    for s in appearance_sentences(df):
        assert s[0].upper() + s[1:] + "." in r.output
    # one table per feature: a row per snapshot, the best unit of that snapshot in it
    for name, part in df.groupby("feature"):
        block = r.output.split(f"\n{name} (")[1].split("\n\n")[0].splitlines()
        assert [int(line.split()[0]) for line in block[2:]] == [5, 10, 15, 20]
        assert [line.split()[2] for line in block[2:]] == list(part["best_unit"])
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "When each cell emerges" in page
    assert "plotly.js v" in page  # inlined: the page opens offline
    assert not re.search(r"<script[^>]+src=", page)
    assert "in_quote: best unit" in page and "validation loss" in page

    r = cli("emergence", run_dir, src, "--feature", "word_pos", "--split", "all", "--start", 2,
            "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    part = df[df["feature"] == "word_pos"]
    assert doc["appears_at"] == {"word_pos": df.attrs["appears_at"]["word_pos"]} and doc["final_step"] == 20
    assert [s["best_unit"] for s in doc["snapshots"]] == list(part["best_unit"])
    assert [s["final_score"] for s in doc["snapshots"]] == pytest.approx(list(part["final_score"]), abs=1e-6)


def test_cli_bad_input_is_one_line(run, tmp_path):
    run_dir, text = run
    src = tmp_path / "t.txt"
    src.write_text(text + "☃", encoding="utf-8")
    cases = [
        ((tmp_path, src, "--feature", "in_quote"), "no snapshots (train with --snapshot-every N"),
        ((run_dir, src, "--feature", "in_quote"), "not in the model's vocabulary: '☃'"),
        ((run_dir, src, "--feature", "in_quote", "--length", 100, "--feature", "nope"), "unknown feature 'nope'"),
        ((run_dir, src, "--feature", "in_quote", "--length", 100, "--out", tmp_path / "no" / "f.html"),
         "its directory does not exist"),
        ((run_dir, src, "--feature", "in_quote", "--start", 10**6), "past the end"),
        ((run_dir, src, "--feature", "in_quote", "--length", 0), "--length must be >= 1, got 0"),
        ((run_dir, src, "--feature", "in_quote", "--length", 100, "--kinds", "c"), "a rnn has no kind 'c'"),
    ]
    for args, needle in cases:
        r = cli("emergence", *args, "--split", "all")
        assert r.exit_code == 1, (args, r.output)
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], (args, r.output)
    assert not (tmp_path / "no").exists()


def test_figure_traces(run):
    run_dir, text = run
    df = emergence(run_dir, text, ["in_quote"])
    fig = emergence_figure(df)
    names = [t.name for t in fig.data]
    final = df["final_unit"].iloc[0]
    assert names == ["in_quote: best unit", f"in_quote: final {final}", None, "validation loss"]
    assert list(fig.data[0].y) == list(df["score"]) and list(fig.data[1].y) == list(df["final_score"])
    assert list(fig.data[2].x) == [df.attrs["appears_at"]["in_quote"]]  # the star where the cell appears
    assert fig.data[3].yaxis == "y2" and list(fig.data[3].y) == list(df["val_loss"])
    assert fig.layout.yaxis2.overlaying == "y"
