"""The dashboard's background jobs (rnnviz.views.dashboard.jobs): progress while running, the result or a one-line
error after, one job per key, and the unit card's ablation and rule callbacks called without a browser."""

from __future__ import annotations

import threading
import time

import pytest
from dash.exceptions import PreventUpdate
from helpers import QUOTE_UNIT, make_quote_store

from rnnviz.errors import RnnvizError
from rnnviz.views.dashboard import create_app, unit_card
from rnnviz.views.dashboard.jobs import DONE, FAILED, RUNNING, Jobs
from rnnviz.views.dashboard.state import View


def wait(jobs: Jobs, job_id: str, state: str) -> dict:
    for _ in range(500):
        s = jobs.status(job_id)
        if s["state"] == state:
            return s
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} never reached {state}: {jobs.status(job_id)}")


def test_a_job_reports_progress_then_its_result_and_the_same_key_is_the_same_job():
    jobs, go, halfway = Jobs(), threading.Event(), threading.Event()
    runs = []

    def work(progress):
        runs.append(1)
        progress(3, 10)
        halfway.set()
        go.wait(5)
        progress(10, 10)
        return {"answer": 42}

    a = jobs.start(("k", 1), work)
    assert halfway.wait(5)
    s = jobs.status(a)
    assert (s["state"], s["done"], s["total"], s["result"]) == (RUNNING, 3, 10, None)
    assert jobs.start(("k", 1), work) == a  # a second click follows the running job
    go.set()
    s = wait(jobs, a, DONE)
    assert (s["done"], s["total"], s["result"], s["error"]) == (10, 10, {"answer": 42}, "")
    assert jobs.start(("k", 1), work) == a and runs == [1]  # done: its result, not a second run
    assert jobs.start(("k", 2), lambda p: 7) != a


def test_a_failed_job_says_why_in_one_line_and_runs_again_when_asked():
    jobs = Jobs()

    def bad(progress):
        raise RnnvizError("the store's checkpoint is not reachable")

    a = jobs.start("x", bad)
    assert wait(jobs, a, FAILED)["error"] == "the store's checkpoint is not reachable"
    b = jobs.start("x", lambda p: 1 / 0)
    assert b != a and wait(jobs, b, FAILED)["error"] == "ZeroDivisionError: division by zero"


def test_unknown_ids_and_old_jobs_are_none():
    jobs = Jobs(keep=2)
    ids = [jobs.start(k, lambda p, k=k: k) for k in range(3)]
    for i in ids[1:]:
        wait(jobs, i, DONE)
    assert jobs.status(ids[0]) is None and jobs.status({"x": 1}) is None and jobs.status("999") is None
    assert jobs.start(0, lambda p: 0) not in ids  # forgotten: started afresh


@pytest.fixture(scope="module")
def quote_app(tmp_path_factory):
    base = tmp_path_factory.mktemp("cardjobs")
    make_quote_store(base / "quote", 3000)  # a model config but no checkpoint
    return create_app([base / "quote"])


def test_ablate_without_a_checkpoint_says_so_and_starts_nothing(quote_app):
    jobs = Jobs()
    job, disabled, progress, out = unit_card.start_ablation(jobs, quote_app.stores, 1, {"store": 0, "unit": QUOTE_UNIT})
    assert (job, disabled, progress) == (None, True, "")
    assert out == "no ablation: the store's checkpoint is not reachable (moved, or its weights changed)"
    with pytest.raises(PreventUpdate):
        unit_card.start_ablation(jobs, quote_app.stores, None, {"store": 0})
    assert unit_card.poll(jobs, "1") == ("", "", True)  # no such job: the poll stops


@pytest.mark.parametrize("rule", [None, "", "   ", 'depth:"("', "re:a{99999999}", "feature:column@fade8"])
def test_a_bad_rule_typed_in_the_card_is_a_message_not_an_error(quote_app, rule):
    view = View.clean({"store": 0, "unit": QUOTE_UNIT}, quote_app.stores)
    text, fig, cls = unit_card.own_rule(quote_app.stores, view, rule)
    assert cls == "msg" and isinstance(text, str) and text and fig is unit_card.no_update


def test_the_card_takes_the_catalogs_rule_when_the_catalog_is_computed(quote_app, monkeypatch):
    from rnnviz.analysis.rule_score import score_rule
    from rnnviz.views.dashboard.catalog import catalog_rows

    stores = quote_app.stores
    row = next(r for r in catalog_rows(stores, 0) if r["unit"] == "1:h:5")  # the catalog computed, as on its tab

    def no_explain(*args, **kwargs):
        raise AssertionError("explain ran again")

    monkeypatch.setattr(unit_card, "explain", no_explain)
    e = unit_card.explanation(stores, 0, "1:h:5")
    assert (e["rule"], e["sign"], e["explained"]) == (row["rule"], row["_sign"], True) == ("feature:in_quote", -1, True)
    s = score_rule(stores[0], "1:h:5", "feature:in_quote", sign=-1)
    assert (e["score"].rule, e["score"].score, e["score"].sign) == (s.rule, s.score, -1) and s.score == pytest.approx(1)
