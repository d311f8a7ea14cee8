"""rnnviz.stopping: a stop signal waits out a deferred() block, and the temp paths it protects are removed at exit.

The process-level behaviour (a SIGTERM the moment the store's temp folder exists, in one process and in a torchrun
worker) is in test_hostile_processes.py; here the two pieces are pinned one by one, in this process.
"""

from __future__ import annotations

import os
import signal

import pytest

from rnnviz import stopping
from rnnviz.fsutil import atomic_dir, atomic_file
from rnnviz.stopping import deferred, remove_leftovers, settle, stop_handler, track


@pytest.fixture(autouse=True)
def own_list(monkeypatch):
    """A list of this test's own: whatever else the test process has on it is not this test's to remove."""
    monkeypatch.setattr(stopping, "_leftovers", {})


class Stopped(Exception):
    pass


def stop(signum, frame):
    raise Stopped(signum)


def test_a_signal_in_a_deferred_block_is_handled_as_the_block_ends():
    done = []
    with stop_handler(stop):
        with pytest.raises(Stopped) as e:
            with deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("after the signal")  # the block runs to its end
            done.append("after the block")
    assert done == ["after the signal"]
    assert e.value.args == (signal.SIGTERM,)


def test_the_handler_waits_for_the_outermost_block_and_an_error_in_it_is_kept_as_context():
    done = []
    with stop_handler(stop):
        with pytest.raises(Stopped) as e:
            with deferred():
                with deferred():
                    os.kill(os.getpid(), signal.SIGHUP)
                done.append("inner block ended")
                raise ValueError("the block's own error")
    assert done == ["inner block ended"]
    assert e.value.args == (signal.SIGHUP,)
    assert isinstance(e.value.__context__, ValueError)


def test_outside_a_deferred_block_the_handler_runs_at_once():
    with stop_handler(stop), pytest.raises(Stopped):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs at the next bytecode boundary; this loop has many
            pass
        pytest.fail("the signal was held back outside a deferred block")


def test_remove_leftovers_removes_what_is_tracked_and_not_settled(tmp_path):
    folder, file, kept = tmp_path / "f.tmp", tmp_path / "x.tmp", tmp_path / "kept.tmp"
    folder.mkdir()
    (folder / "inside").write_bytes(b"1")
    file.write_bytes(b"2")
    kept.write_bytes(b"3")
    for p in (folder, file, kept):
        track(p)
    settle(kept)
    assert sorted(p.name for p in remove_leftovers()) == ["f.tmp", "x.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.tmp"]
    assert remove_leftovers() == []  # taken off the list as they went


def test_a_forked_child_leaves_its_parents_temps_alone(tmp_path):
    folder = track(tmp_path / "parent.tmp")
    folder.mkdir()
    pid = os.fork()
    if pid == 0:  # the child: what it removes is only what it made
        os._exit(0 if remove_leftovers() == [] else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert folder.is_dir()
    assert remove_leftovers() == [folder]


@pytest.mark.parametrize("writer", [atomic_dir, atomic_file])
def test_an_atomic_write_is_off_the_list_once_in_place_or_removed(tmp_path, writer):
    with writer(tmp_path / "done"):
        pass
    with pytest.raises(RuntimeError), writer(tmp_path / "failed"):
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done"]
    assert remove_leftovers() == []
