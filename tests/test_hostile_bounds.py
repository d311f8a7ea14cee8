"""Hostile inputs, round three: memory bounds and locks. `ngram` counts at most a cap of distinct n-grams of
one length (one ``Error:`` line naming the cap and the order that fits), a chunk of positions at a time;
a store being recorded is held by one process, as a run being trained is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import cli, one_line_error

from rnnviz.errors import RnnvizError
from rnnviz.model import ngram
from rnnviz.model.ngram import ngram_logprobs, ngram_loss

ROOT = Path(__file__).resolve().parent.parent


def random_letters(n: int, seed: int = 0, newlines: bool = True) -> str:
    """``n`` seeded random lowercase letters (a line break every ~60 with ``newlines``): nearly every n-gram
    longer than 5 is new, the worst case for counting."""
    rng = np.random.default_rng(seed)
    a = rng.integers(97, 123, n, dtype=np.uint8)
    if newlines:
        a[rng.integers(0, n, n // 60)] = 10
    return a.tobytes().decode("ascii")


# --- ngram: bounded memory ---


def test_more_distinct_ngrams_than_the_cap_is_one_line_naming_it_and_the_order_that_fits(tmp_path):
    path = tmp_path / "rand.txt"
    path.write_text(random_letters(40_000), encoding="utf-8")
    r = cli("ngram", path, "--max-contexts", 5000)
    one_line_error(r, "more than 5,000 distinct 3-character n-grams", "--max-contexts", "use --order 2 or lower")
    r = cli("ngram", path, "--max-contexts", 5000, "--order", 2)  # the order it names fits
    assert r.exit_code == 0, r.output


def test_the_cap_holds_for_a_single_line(monkeypatch):
    monkeypatch.setattr(ngram, "MAX_CONTEXTS", 20_000)
    with pytest.raises(RnnvizError, match=r"more than 20,000 distinct 4-character n-grams.*--order 3 or lower"):
        ngram_loss(random_letters(200_000, newlines=False))


def test_the_cap_is_checked_at_the_highest_order_too():
    text = random_letters(3000, seed=1)
    with pytest.raises(RnnvizError, match=r"more than 600 distinct 2-character n-grams.*--order 1 or lower"):
        ngram_loss(text, order=2, max_contexts=600)
    assert ngram_loss(text, order=1, max_contexts=600)[0] > 0


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_a_cap_that_is_not_a_count_is_refused(bad):
    with pytest.raises(RnnvizError, match="max contexts must be a whole number >= 1"):
        ngram_logprobs(np.arange(10) % 3, np.arange(5) % 3, 3, 2, max_contexts=bad)


def test_max_contexts_flag_must_be_positive(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abc" * 20, encoding="utf-8")
    r = cli("ngram", path, "--max-contexts", 0)
    assert r.exit_code == 2 and "Invalid value for '--max-contexts'" in r.output


@pytest.mark.parametrize("order", [30, 64])
def test_an_order_longer_than_the_text_is_counted_not_crashed(tmp_path, order):
    """Orders past the training text's length have no n-grams to count: the lower orders decide (it was an
    IndexError from an empty table)."""
    path = tmp_path / "t.txt"
    path.write_text("ab" * 15, encoding="utf-8")
    r = cli("ngram", path, "--order", order, "--json")
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert ngram_loss("ab" * 15, order=order) == ngram_loss("ab" * 15, order=3)


@pytest.mark.parametrize("order", [1, 3, 5])
def test_counting_a_chunk_at_a_time_changes_nothing(monkeypatch, order):
    """Chunks of 7 positions (so every table is merged many times, keys seen again and new) give the very
    probabilities one chunk gives."""
    rng = np.random.default_rng(order)
    words = ["the ", "then ", "than ", "hen ", "a ", "an ", "tea ", "ten "]
    text = "".join(rng.choice(words, 300))
    parts = [(0, 900), (900, len(text))]
    (train, held), v = ngram._codes(text, parts)
    whole = ngram_logprobs(train, held, v, order)
    monkeypatch.setattr(ngram, "CHUNK", 7)
    (train7, held7), v7 = ngram._codes(text, parts)
    assert v7 == v and np.array_equal(train7, train) and np.array_equal(held7, held)
    assert np.array_equal(ngram_logprobs(train, held, v, order), whole)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_as_the_ngram_text_is_one_line(device):
    one_line_error(cli("ngram", device), f"{device}: not a regular file")


def _peak_rss_mb(args: list[str]) -> tuple[str, float]:
    """Run ``python -m rnnviz ARGS`` under a fresh wrapper: its last output line and its peak resident memory
    in MB (the wrapper's only child, so no earlier process of the tests counts)."""
    wrapper = ("import resource, subprocess, sys\n"
               "r = subprocess.run([sys.executable, '-m', 'rnnviz', *sys.argv[1:]], capture_output=True, text=True)\n"
               "print(r.returncode, (r.stdout + r.stderr).strip().splitlines()[-1])\n"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True, env=env, timeout=600)
    line, kb = r.stdout.strip().splitlines()
    return line, int(kb) / 1024


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ngram_memory_is_bounded_by_its_cap(tmp_path):
    """8 MB of random letters: the counts stop at the cap (here 200,000 n-grams) with memory to match, where
    counting everything held some 240 bytes a character (2 GB here; 6.5 GB for 30 MB)."""
    path = tmp_path / "rand.txt"
    path.write_text(random_letters(8_000_000, seed=2), encoding="utf-8")
    baseline = _peak_rss_mb(["features", "--json"])[1]  # the interpreter with rnnviz and torch imported
    line, peak = _peak_rss_mb(["ngram", str(path), "--max-contexts", "200000"])
    assert line.startswith("1 Error: ") and "more than 200,000 distinct 4-character n-grams" in line, line
    print(f"peak {peak:.0f} MB, interpreter {baseline:.0f} MB")
    assert peak - baseline < 300, f"{peak:.0f} MB peak against {baseline:.0f} MB for the interpreter"


# --- a store being written is held by one process ---

HOLDER = "rnnviz record, process 4242"


@pytest.fixture
def recording(tmp_path, tiny_ckpt) -> tuple[Path, Path, Path]:
    """(checkpoint, a text it can record, the store path to write)."""
    from conftest import TEXT

    src = tmp_path / "t.txt"
    src.write_text(TEXT * 4, encoding="utf-8")
    return tiny_ckpt, src, tmp_path / "st"


def held_by_another(out: Path):
    """The store lock of ``out`` held through another open file, as a second process holds it."""
    from rnnviz.fsutil import process_lock

    return process_lock(out.parent / f".{out.name}.lock", note=HOLDER)


def beside(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}"))


def test_a_second_record_of_a_store_is_refused_before_it_reads_the_text(recording, tmp_path):
    ck, src, out = recording
    fifo = tmp_path / "text.fifo"  # reading it would be its own error: the lock's comes first
    os.mkfifo(fifo)
    with held_by_another(out) as held:
        assert held
        one_line_error(cli("record", ck, fifo, "--out", out), f"{out} is being written by another process ({HOLDER})")
        assert not out.exists() and beside(out) == [f".{out.name}.lock"]  # no temp folder was made
    r = cli("record", ck, src, "--out", out)  # released: the store is written, and no lock is left
    assert r.exit_code == 0, r.output
    assert beside(out) == [] and not any(p.name.endswith(".lock") for p in out.iterdir())


def test_record_force_over_a_store_being_written_changes_nothing(recording):
    ck, src, out = recording
    assert cli("record", ck, src, "--out", out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with held_by_another(out):
        one_line_error(cli("record", ck, src, "--out", out, "--force"), "is being written by another process")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_the_launcher_of_nproc_workers_checks_the_lock_first(recording, tmp_path):
    ck, _, out = recording
    fifo = tmp_path / "text.fifo"
    os.mkfifo(fifo)
    with held_by_another(out):
        one_line_error(cli("record", ck, fifo, "--out", out, "--nproc", 2), "is being written by another process")


def test_the_same_store_named_another_way_is_the_same_lock(recording, tmp_path, monkeypatch):
    ck, src, out = recording
    monkeypatch.chdir(tmp_path)
    with held_by_another(out):
        for name in ("st", f"../{tmp_path.name}/st", str(out) + "/"):
            one_line_error(cli("record", ck, src, "--out", name), "is being written by another process")
    assert not out.exists()


def test_the_python_api_keeps_the_lock(recording, make_model):
    from helpers import small_store

    from rnnviz.recording.recorder import record

    _, _, out = recording
    with held_by_another(out):
        with pytest.raises(RnnvizError, match=f"is being written by another process \\({HOLDER}\\)"):
            record(make_model(), "First Citizen:\n" * 3, out)
        with pytest.raises(RnnvizError, match="is being written by another process"):
            small_store(out)
    assert not out.exists()
    record(make_model(), "First Citizen:\n" * 3, out)
    assert beside(out) == []


def test_record_api_overwrite_of_a_store_being_written_changes_nothing(recording, make_model):
    from rnnviz.recording.recorder import record

    _, _, out = recording
    record(make_model(), "First Citizen:\n" * 3, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with held_by_another(out), pytest.raises(RnnvizError, match="is being written"):
        record(make_model(), "Before we proceed.\n" * 3, out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_second_record_process_names_the_first(recording):
    """Two processes: one holds the store (as `rnnviz record` does, through its writer), the other's
    `rnnviz record` is one line naming it, exit 1."""
    ck, src, out = recording
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(
        [sys.executable, "-c", "import sys; from rnnviz.store.writer import store_lock\n"
         f"with store_lock({str(out)!r}, 'rnnviz record'):\n    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert first.stdout.readline().strip() == "held"
        r = subprocess.run([sys.executable, "-m", "rnnviz", "record", str(ck), str(src), "--out", str(out)],
                           capture_output=True, text=True, env=env, timeout=100)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip() == (f"Error: {out} is being written by another process (rnnviz record, process "
                                    f"{first.pid}): wait for it to finish or stop it first")
    finally:
        first.communicate("", timeout=30)
    assert beside(out) == []  # the holder removed its lock when done


@pytest.mark.timeout(120)
def test_a_writer_killed_with_sigkill_blocks_nothing(recording):
    """kill -9 leaves the lock file, but the kernel released its lock: the next record takes it, then
    removes it."""
    import signal

    ck, src, out = recording
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(
        [sys.executable, "-c", "import time; from rnnviz.store.writer import store_lock\n"
         f"with store_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(100)"],
        stdout=subprocess.PIPE, text=True, env=env)
    assert first.stdout.readline().strip() == "held"
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    assert beside(out) == [f".{out.name}.lock"]  # left behind, unlocked
    r = cli("record", ck, src, "--out", out)
    assert r.exit_code == 0, r.output
    assert beside(out) == []


def test_a_link_in_place_of_the_lock_is_refused(recording, tmp_path):
    ck, src, out = recording
    target = tmp_path / "elsewhere.txt"
    target.write_text("the user's own file\n", encoding="utf-8")
    (out.parent / f".{out.name}.lock").symlink_to(target)
    one_line_error(cli("record", ck, src, "--out", out), ".st.lock: is a symbolic link")
    assert target.read_text(encoding="utf-8") == "the user's own file\n" and not out.exists()


def test_a_directory_in_place_of_the_lock_is_refused(recording):
    ck, src, out = recording
    (out.parent / f".{out.name}.lock").mkdir()
    one_line_error(cli("record", ck, src, "--out", out), ".st.lock: not a regular file")
    assert not out.exists()


def test_other_stores_and_a_failed_record_are_not_blocked(recording, tmp_path):
    ck, src, out = recording
    with held_by_another(out):  # another store of the same folder is another lock
        assert cli("record", ck, src, "--out", tmp_path / "other").exit_code == 0
    bad = tmp_path / "bad.txt"
    bad.write_text("§§§ not in the vocabulary", encoding="utf-8")
    one_line_error(cli("record", ck, bad, "--out", out), "not in the model's vocabulary")
    assert beside(out) == []  # a refused recording released and removed its lock
    assert cli("record", ck, src, "--out", out).exit_code == 0
