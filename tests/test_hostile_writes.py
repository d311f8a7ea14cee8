"""Hostile inputs, round three, security: nothing we write inside a run or store lands outside it.

A run's ``log.jsonl``, ``samples.txt`` and ``snapshots/`` are written by training; a store's caches by the
readers. Each member that is a symbolic link (to a file or folder outside, or even inside), a FIFO or a
directory in place of a file is refused with one ``Error:`` line before any work, and what it pointed at is
left as it was. Files we replace atomically (a snapshot, a cache) replace the link itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import cli, one_line_error

from rnnviz.analysis.features import compute_feature
from rnnviz.errors import RnnvizError
from rnnviz.fsutil import append_text, truncate_member, writable_dir, writable_member
from rnnviz.model.trainer import TrainConfig, train
from rnnviz.store.column_cache import cached_feature
from rnnviz.threads import torch_threads

pytestmark = pytest.mark.usefixtures("one_thread")

SECRET = "the user's own file\n"


def make_run(tmp_path: Path, snapshots: bool = True) -> tuple[Path, Path]:
    """(text file, a 4-step run with log.jsonl, samples.txt and, with ``snapshots``, snapshots/)."""
    rng = np.random.default_rng(0)
    src = tmp_path / "t.txt"
    src.write_text("".join(rng.choice(["the ", "cat ", "sat. ", '"hi" ', "mat\n"], size=400)), encoding="utf-8")
    cfg = TrainConfig(layers=1, hidden=8, batch=2, seq_len=16, max_steps=4, eval_every=2, log_every=2,
                      sample_chars=8, snapshot_every=2 if snapshots else 0)
    with torch_threads(1):
        train(src, tmp_path / "run", cfg)
    return src, tmp_path / "run"


def outside(tmp_path: Path) -> Path:
    p = tmp_path / "elsewhere" / "notes.txt"
    p.parent.mkdir(exist_ok=True)
    p.write_text(SECRET, encoding="utf-8")
    return p


def resume(src: Path, run: Path, *extra):
    return cli("train", src, "--out", run, "--resume", "--max-steps", 6, *extra)


@pytest.mark.parametrize("name", ["log.jsonl", "samples.txt"])
def test_resume_refuses_a_log_linked_outside(tmp_path, name):
    src, run = make_run(tmp_path, snapshots=False)
    target = outside(tmp_path)
    (run / name).unlink()
    (run / name).symlink_to(target)
    one_line_error(resume(src, run), f"{name}: is a symbolic link")
    assert target.read_text(encoding="utf-8") == SECRET  # neither cut back nor appended to


def test_resume_refuses_a_log_linked_to_another_file_of_the_run(tmp_path):
    src, run = make_run(tmp_path, snapshots=False)
    before = (run / "samples.txt").read_bytes()
    (run / "log.jsonl").unlink()
    (run / "log.jsonl").symlink_to(run / "samples.txt")
    one_line_error(resume(src, run), "log.jsonl: is a symbolic link")
    assert (run / "samples.txt").read_bytes() == before


def test_resume_refuses_a_fifo_log_without_waiting(tmp_path):
    src, run = make_run(tmp_path, snapshots=False)
    (run / "samples.txt").unlink()
    os.mkfifo(run / "samples.txt")
    one_line_error(resume(src, run), "samples.txt: not a regular file")


def test_resume_refuses_a_directory_in_place_of_the_log(tmp_path):
    src, run = make_run(tmp_path, snapshots=False)
    (run / "log.jsonl").unlink()
    (run / "log.jsonl").mkdir()
    one_line_error(resume(src, run), "log.jsonl: not a regular file")


def test_resume_refuses_snapshots_linked_outside(tmp_path):
    src, run = make_run(tmp_path)
    away = tmp_path / "elsewhere-snaps"
    (run / "snapshots").rename(away)
    (run / "snapshots").symlink_to(away)
    kept = sorted(p.name for p in away.iterdir())
    one_line_error(resume(src, run), "snapshots: is a symbolic link")
    assert sorted(p.name for p in away.iterdir()) == kept  # nothing written there, nothing pruned


def test_a_new_run_refuses_snapshots_linked_outside(tmp_path):
    src = tmp_path / "t.txt"
    src.write_text("the cat sat on the mat.\n" * 40, encoding="utf-8")
    away = tmp_path / "elsewhere-snaps"
    away.mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "snapshots").symlink_to(away)
    r = cli("train", src, "--out", tmp_path / "run", "--layers", 1, "--hidden", 8, "--batch", 2, "--seq-len", 16,
            "--max-steps", 2, "--snapshot-every", 1)
    one_line_error(r, "snapshots: is a symbolic link")
    assert list(away.iterdir()) == []


def test_snapshots_as_a_file_is_refused(tmp_path):
    src, run = make_run(tmp_path)
    for p in (run / "snapshots").iterdir():
        p.unlink()
    (run / "snapshots").rmdir()
    (run / "snapshots").write_text("not a folder", encoding="utf-8")
    one_line_error(resume(src, run), "snapshots: not a directory")
    assert (run / "snapshots").read_text(encoding="utf-8") == "not a folder"


def test_a_snapshot_file_linked_outside_is_replaced_not_written_through(tmp_path):
    src, run = make_run(tmp_path)
    target = outside(tmp_path)
    link = run / "snapshots" / "step-00000006.safetensors"  # the snapshot the resumed run writes
    link.symlink_to(target)
    r = resume(src, run)
    assert r.exit_code == 0, r.output
    assert target.read_text(encoding="utf-8") == SECRET
    assert link.is_file() and not link.is_symlink()


def test_force_over_a_run_with_linked_logs_leaves_their_targets(tmp_path):
    src, run = make_run(tmp_path, snapshots=False)
    target = outside(tmp_path)
    (run / "log.jsonl").unlink()
    (run / "log.jsonl").symlink_to(target)
    r = cli("train", src, "--out", run, "--force", "--layers", 1, "--hidden", 8, "--batch", 2, "--seq-len", 16,
            "--max-steps", 2, "--eval-every", 2)
    assert r.exit_code == 0, r.output
    assert target.read_text(encoding="utf-8") == SECRET
    assert not (run / "log.jsonl").is_symlink() and (run / "log.jsonl").stat().st_size > 0


def test_append_and_truncate_never_follow_a_link(tmp_path):
    target = outside(tmp_path)
    link = tmp_path / "log.jsonl"
    link.symlink_to(target)
    with pytest.raises(RnnvizError, match="is a symbolic link"):
        append_text(link, "more\n")
    with pytest.raises(RnnvizError, match="is a symbolic link"):
        truncate_member(link, 0)
    assert target.read_text(encoding="utf-8") == SECRET
    with pytest.raises(RnnvizError, match="is a symbolic link"):
        writable_member(tmp_path, "log.jsonl")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")  # a link to nothing: creating it would create there
    with pytest.raises(RnnvizError, match="is a symbolic link"):
        append_text(tmp_path / "dangling", "x")
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "dir-link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RnnvizError, match="is a symbolic link"):
        writable_dir(tmp_path, "dir-link")
    append_text(tmp_path / "plain.txt", "a")
    append_text(tmp_path / "plain.txt", "b")
    truncate_member(tmp_path / "plain.txt", 1)
    assert (tmp_path / "plain.txt").read_text() == "a"


def test_a_feature_cache_linked_outside_is_replaced_not_written_through(tmp_path):
    from helpers import make_quote_store

    store = make_quote_store(tmp_path / "st", length=600)
    target = outside(tmp_path)
    (store.path / "featcache.in_quote").symlink_to(target)
    got = cached_feature(store, "in_quote", lambda: compute_feature("in_quote", store.text))
    assert np.array_equal(got, compute_feature("in_quote", store.text))
    assert target.read_text(encoding="utf-8") == SECRET
    assert not (store.path / "featcache.in_quote").is_symlink()


def test_a_column_cache_lock_linked_outside_is_refused(tmp_path):
    from helpers import make_quote_store

    store = make_quote_store(tmp_path / "st", length=600)
    target = outside(tmp_path)
    (store.path / "colcache.lock").symlink_to(target)
    try:
        store.colcache.columns(1, "c", build=True)
    except (RnnvizError, OSError):
        pass  # refused or not built: either way nothing was written through the link
    assert target.read_text(encoding="utf-8") == SECRET


# --- data loss: a command never destroys what is not ours, nor before it has checked everything ---


def user_folder(tmp_path: Path) -> Path:
    d = tmp_path / "documents"
    d.mkdir()
    (d / "thesis.txt").write_text(SECRET, encoding="utf-8")
    return d


def test_record_force_replaces_only_a_store(tmp_path, tiny_ckpt):
    src = tmp_path / "t.txt"
    src.write_text("First Citizen:\nBefore we proceed.\n" * 4, encoding="utf-8")
    docs = user_folder(tmp_path)
    one_line_error(cli("record", tiny_ckpt, src, "--out", docs, "--force"), "is a folder of 1 entry: thesis.txt")
    assert (docs / "thesis.txt").read_text(encoding="utf-8") == SECRET
    _, run = make_run(tmp_path, snapshots=False)
    kept = sorted(p.name for p in run.iterdir())
    one_line_error(cli("record", tiny_ckpt, src, "--out", run, "--force"), "is a training run")
    assert sorted(p.name for p in run.iterdir()) == kept
    store = tmp_path / "store"
    for _ in range(2):  # a store is replaced, an empty folder taken
        assert cli("record", tiny_ckpt, src, "--out", store, "--force").exit_code == 0
    (tmp_path / "empty").mkdir()
    assert cli("record", tiny_ckpt, src, "--out", tmp_path / "empty", "--force").exit_code == 0


def test_record_api_never_renames_a_users_file_away(tmp_path, make_model):
    from rnnviz.recording.recorder import record

    a_file = tmp_path / "notes.txt"
    a_file.write_text(SECRET, encoding="utf-8")
    with pytest.raises(RnnvizError, match="is a file, not one of ours"):
        record(make_model(), "First Citizen:\n", a_file, overwrite=True)
    assert a_file.read_text(encoding="utf-8") == SECRET
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no temp folder left behind


def test_train_force_replaces_only_a_run(tmp_path):
    src = tmp_path / "t.txt"
    src.write_text("the cat sat on the mat.\n" * 40, encoding="utf-8")
    docs = user_folder(tmp_path)
    one_line_error(cli("train", src, "--out", docs, "--force", "--max-steps", 1), "not a training run")
    assert sorted(p.name for p in docs.iterdir()) == ["thesis.txt"]


@pytest.mark.parametrize("bad", [("--init-from", "no-such-run"), ("--device", "cuda"), ("--short-text",)])
def test_a_refused_train_force_has_removed_nothing(tmp_path, bad):
    src, run = make_run(tmp_path)
    if bad == ("--device", "cuda") and __import__("torch").cuda.is_available():
        pytest.skip("CUDA is there: the device is not refused")
    before = {name: (run / name).read_bytes() for name in ("log.jsonl", "samples.txt")}
    snaps = sorted(p.name for p in (run / "snapshots").iterdir())
    text = src
    if bad == ("--short-text",):
        text = tmp_path / "short.txt"
        text.write_text("ab", encoding="utf-8")
        bad = ()
    one_line_error(cli("train", text, "--out", run, "--force", "--layers", 1, "--hidden", 8, "--max-steps", 2, *bad))
    assert {name: (run / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == snaps


def test_train_force_over_a_snapshot_run_drops_its_snapshots(tmp_path):
    src, run = make_run(tmp_path)  # snapshots at steps 2 and 4
    r = cli("train", src, "--out", run, "--force", "--layers", 1, "--hidden", 8, "--batch", 2, "--seq-len", 16,
            "--max-steps", 2, "--eval-every", 2, "--snapshot-every", 2)
    assert r.exit_code == 0, r.output
    from rnnviz.model.snapshots import list_snapshots

    assert [s.step for s in list_snapshots(run)] == [2]  # the old step 4 is gone: emergence ends at 2


def test_outputs_that_are_not_files_are_refused(tmp_path):
    from helpers import make_quote_store

    store = make_quote_store(tmp_path / "st", length=600)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    one_line_error(cli("export", store.path, "--unit", "1:c:3", "--out", fifo), "is a FIFO, device or socket")
    assert fifo.exists() and not fifo.is_file()
    before = (store.path / "text.txt").read_bytes()
    one_line_error(cli("export", store.path, "--unit", "1:c:3", "--out", store.path / "text.txt"),
                   "is inside the store")
    assert (store.path / "text.txt").read_bytes() == before


def test_a_run_is_trained_by_one_process_at_a_time(tmp_path):
    from rnnviz.fsutil import process_lock

    src, run = make_run(tmp_path, snapshots=False)
    log = (run / "log.jsonl").read_bytes()
    with process_lock(run / ".run.lock", note="rnnviz train, process 4242") as held:  # another train holds it
        assert held
        one_line_error(resume(src, run), "is being trained by another process (rnnviz train, process 4242)")
    assert (run / "log.jsonl").read_bytes() == log  # the refused one wrote nothing
    r = resume(src, run)  # released: the run goes on
    assert r.exit_code == 0, r.output
