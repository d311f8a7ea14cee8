"""The dashboard's Emergence tab: the same figure and numbers as ``rnnviz emergence`` for the run a store
was recorded from; clear messages when there is nothing to show; wired into the served app."""

import json
import shutil

import pytest
from conftest import train_snapshot_rnn, words_text
from helpers import make_recorded_store

import rnnviz
from rnnviz.analysis.emergence import emergence
from rnnviz.model.checkpoint import load_checkpoint
from rnnviz.threads import torch_threads
from rnnviz.views.dashboard import emergence_tab
from rnnviz.views.dashboard.app import create_app
from rnnviz.views.dashboard.guard import callback_body
from rnnviz.views.dashboard.stores import StoreSet


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("emg")
    text = words_text()
    (tmp / "text.txt").write_text(text, encoding="utf-8")
    train_snapshot_rnn(tmp / "text.txt", tmp / "run")
    train_snapshot_rnn(tmp / "text.txt", tmp / "plain", snapshot_every=0)
    with torch_threads(1):
        with_snaps = rnnviz.record(load_checkpoint(tmp / "run" / "best"), text[:900], tmp / "st")
        without = rnnviz.record(load_checkpoint(tmp / "plain" / "best"), text[:900], tmp / "st-plain")
    return tmp, text[:900], [with_snaps.path, without.path]


def test_the_tab_shows_what_the_cli_computes(stores, one_thread):
    tmp, text, paths = stores
    s = StoreSet(paths)
    fig, table, msg = emergence_tab.compute(s, {"store": 0}, ["word_pos", "in_quote", "no-such"], 900)
    assert msg == ""
    df = emergence(tmp / "run", text, ["word_pos", "in_quote"])
    assert [t.name for t in fig.data if t.name] == [
        "word_pos: best unit", f"word_pos: final {df[df.feature == 'word_pos'].final_unit.iloc[0]}",
        "in_quote: best unit", f"in_quote: final {df[df.feature == 'in_quote'].final_unit.iloc[0]}",
        "validation loss"]
    assert list(fig.data[0].y) == list(df[df.feature == "word_pos"]["score"])
    rows = table.children[1].children[1].children  # note, table -> tbody -> rows
    assert [r.children[0].children for r in rows] == ["word_pos", "in_quote"]
    for r, (name, part) in zip(rows, df.groupby("feature", sort=False), strict=True):
        cells = [c.children for c in r.children]
        assert cells[1] == part["final_unit"].iloc[-1] and cells[3] == str(df.attrs["appears_at"][name])
        assert r.id == {"type": "unit-row", "index": f"emerge/{cells[1]}"}  # a click colours the text by it
    # the result is cached: a second press does not record again
    again = emergence_tab.compute(s, {"store": 0}, ["word_pos", "in_quote"], 900)
    assert again[0] == fig


def test_messages_when_there_is_nothing_to_show(stores):
    tmp, text, paths = stores
    s = StoreSet(paths)
    fig, table, msg = emergence_tab.compute(s, {"store": 1}, ["word_pos"], 900)
    assert table is None and "kept no snapshots (train with --snapshot-every N)" in msg
    assert fig.layout.annotations[0].text == "no snapshots for this store's run"
    assert emergence_tab.compute(s, {"store": 0}, [], 900)[2] == "pick one or more features"
    assert emergence_tab.compute(s, {"store": 0}, ["<script>"], 900)[2] == "pick one or more features"
    msg = emergence_tab.compute(s, {"store": 0}, ["in_if"], 900)[2]
    assert msg == "feature in_if is constant on this text: nothing to rank (choose another text)"


def test_the_tab_says_what_the_run_offers_before_compute(stores, tmp_path):
    tmp, text, paths = stores
    s = StoreSet(paths)
    n = len(list(tmp.joinpath("run", "snapshots").glob("step-*.safetensors")))
    assert n > 1 and emergence_tab.run_note(s, 0) == (f"run: {n} weight snapshots, each recorded on \"Compute\"", True)
    assert emergence_tab.run_note(s, 1) == (
        "plain kept no weight snapshots: train with --snapshot-every N to see when each cell appeared", False)
    gone = make_recorded_store(tmp_path, "gone")  # its checkpoint then deleted: no run at all
    shutil.rmtree(tmp_path / "ckpt")
    assert emergence_tab.run_note(StoreSet([gone]), 0) == (
        "gone: its checkpoint is not reachable (moved or deleted): emergence needs the run it was trained in", False)


def test_the_tab_is_served(stores, one_thread):
    tmp, text, paths = stores
    app = create_app(paths)
    body = callback_body(app.callback_map, "emg-graph.figure", {
        "emg-go.n_clicks": 1, "emg-features.value": ["word_pos"], "emg-chars.value": 900,
        "view.data": {"store": "0"}})
    assert [s["id"] for s in body["state"]] == ["emg-features", "emg-chars", "view"]
    client = app.server.test_client()
    crafted = json.loads(json.dumps(body))
    crafted["state"][1]["value"] = "1e400"  # not a value a number box sends: refused before the callback
    assert client.post("/_dash-update-component", json=crafted).status_code == 400
    r = client.post("/_dash-update-component", json=body)
    assert r.status_code == 200, r.data[:300]
    resp = json.loads(r.data)["response"]
    assert resp["emg-msg"]["children"] == ""
    names = [t.get("name") for t in resp["emg-graph"]["figure"]["data"]]
    assert names[0] == "word_pos: best unit" and names[-1] == "validation loss"
    page = app.server.test_client().get("/").data.decode()
    assert r.status_code == 200 and "_dash-config" in page
    layout = json.loads(app.server.test_client().get("/_dash-layout").data)
    assert '"emg-go"' in json.dumps(layout) and '"Emergence"' in json.dumps(layout)
