"""Caches beside a store (rnnviz.store.column_cache): column-major copies and computed features are exactly what
reading the store gives, ignored when stale or corrupt, written atomically, never followed through links."""

from __future__ import annotations

import os

import numpy as np
import pytest

from rnnviz.analysis.features import compute_feature
from rnnviz.analysis.similar import SimilarConfig, _close_gaps, find_matches, on_counts
from rnnviz.errors import RnnvizError
from rnnviz.model.charrnn import ModelConfig
from rnnviz.model.vocab import Vocab
from rnnviz.store import column_cache as colcache
from rnnviz.store.column_cache import ColumnCache, cache_name, cached_feature
from rnnviz.store.reader import array_name, open_store
from rnnviz.store.writer import write_store

TEXT = ('He said "hello there" and left.\n/* a comment */ x = 1;\n' * 90)[:5000]
H = 6


def make(path, seed: int = 0):
    rng = np.random.default_rng(seed)
    vocab = Vocab.from_text(TEXT)
    arrays = {(l, k): rng.normal(0, 1, (len(TEXT), H)).astype(np.float32) for l in (0, 1) for k in "hc"}
    cfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=2, hidden=H)
    return write_store(path, TEXT, arrays, cfg, vocab, overwrite=True)


@pytest.fixture
def store(tmp_path):
    return make(tmp_path / "st")


def fresh(store):
    """The store opened again: a new process's view (no copy opened yet)."""
    return open_store(store.path)


def test_copy_is_the_array_transposed_and_reads_agree(store):
    assert store.colcache.columns(1, "c") is None  # nothing built by reading
    cols = store.colcache.columns(1, "c", build=True)
    assert cols.shape == (H, len(TEXT)) and cols.dtype == np.float16
    assert np.array_equal(cols.view(np.uint16), np.asarray(store.array(1, "c")).T.view(np.uint16))
    again = fresh(store)
    assert again.colcache.columns(1, "c") is not None  # found by another process, not rebuilt
    for unit in ("1:c:0", "1:c:5"):
        assert np.array_equal(again.unit(unit), np.ascontiguousarray(store.array(1, "c")[:, int(unit[-1])]))
    assert sorted(p.name for p in store.path.iterdir() if "colcache" in p.name) == ["colcache.L1.c", "colcache.lock"]


def test_scans_with_and_without_copies_are_identical(store):
    units, signs = ["1:c:2", "0:h:4", "1:c:5"], [1, -1, 1]
    plain = on_counts(fresh(store), units, signs, 0.7)
    for l, k in ((1, "c"), (0, "h")):
        store.colcache.columns(l, k, build=True)
    again = fresh(store)
    assert again.colcache.blocks(units, 0, again.length) is not None
    cached = on_counts(again, units, signs, 0.7)
    assert all(np.array_equal(a, b) for a, b in zip(plain, cached, strict=True))
    part = on_counts(again, units, signs, 0.7, lo=1000, hi=3500)
    assert all(np.array_equal(a[1000:3500], b) for a, b in zip(plain, part, strict=True))
    cfg = SimilarConfig(threshold=0.7, top=50)
    got = find_matches(again, units, signs, cfg, query=(10, 40))
    assert len(got) == 50 and got.equals(find_matches(store_without_copies(store), units, signs, cfg, query=(10, 40)))


def test_a_store_without_copies_scans_the_same(store, monkeypatch):
    units = ["0:c:1", "1:h:3"]
    want = on_counts(store, units, [1, 1], 0.5)
    monkeypatch.setattr(ColumnCache, "blocks", lambda *a: None)
    got = on_counts(fresh(store), units, [1, 1], 0.5)
    assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True))


def test_stale_copy_is_ignored_and_rebuilt(store):
    store.colcache.columns(0, "h", build=True)
    new = make(store.path, seed=1)  # re-recorded in place: other values, other files
    assert new.colcache.columns(0, "h") is None
    assert np.array_equal(new.unit("0:h:2"), np.ascontiguousarray(new.array(0, "h")[:, 2]))
    rebuilt = new.colcache.columns(0, "h", build=True)
    assert np.array_equal(rebuilt, np.asarray(new.array(0, "h")).T)


def test_edited_array_makes_the_copy_stale(store):
    store.colcache.columns(0, "c", build=True)
    f = store.path / array_name(0, "c")
    st = os.stat(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # same size, touched
    assert fresh(store).colcache.columns(0, "c") is None


def test_corrupt_copy_is_dropped_and_the_store_read(store):
    make_copy(store, 1, "h")
    path = store.path / cache_name(1, "h")
    size = path.stat().st_size
    flip(path, size - (H - 3) * len(TEXT) * 2 + 7)  # one payload byte of unit 3's row
    s = fresh(store)
    assert np.array_equal(s.unit("1:h:3"), np.ascontiguousarray(store.array(1, "h")[:, 3]))  # CRC fails: store read
    assert not path.exists()  # and the copy is gone
    make_copy(store, 1, "h")
    flip(path, size - 3)  # the last unit's row, near the end of the text
    s = fresh(store)
    units = ["1:h:5", "1:h:0"]
    got = on_counts(s, units, [1, 1], 0.4)  # a scan checks the CRCs at its end, then reads the store instead
    want = on_counts(store_without_copies(store), units, [1, 1], 0.4)
    assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True))
    assert not path.exists()


def flip(path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


def make_copy(store, layer, kind):
    ColumnCache(store).columns(layer, kind, build=True)


def store_without_copies(store):
    s = fresh(store)
    s.__dict__["colcache"] = type("NoCopies", (), {"blocks": lambda *a: None, "column": lambda *a: None})()
    return s


@pytest.mark.parametrize("damage", ["truncate", "garbage header", "other shape", "empty"])
def test_malformed_copy_is_ignored(store, damage):
    make_copy(store, 0, "h")
    path = store.path / cache_name(0, "h")
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[:-2])
    elif damage == "garbage header":
        path.write_bytes(raw[:8] + (10**12).to_bytes(8, "little") + raw[16:])
    elif damage == "other shape":
        path.write_bytes(raw.replace(b'"shape":[6,', b'"shape":[5,', 1))
    else:
        path.write_bytes(b"")
    s = fresh(store)
    assert s.colcache.columns(0, "h") is None
    assert np.array_equal(s.unit("0:h:1"), np.ascontiguousarray(store.array(0, "h")[:, 1]))


def test_a_link_in_place_of_a_copy_is_not_followed(store, tmp_path):
    make_copy(store, 1, "c")
    elsewhere = tmp_path / "elsewhere"
    os.replace(store.path / cache_name(1, "c"), elsewhere)
    before = elsewhere.read_bytes()
    (store.path / cache_name(1, "c")).symlink_to(elsewhere)
    s = fresh(store)
    assert s.colcache.columns(1, "c") is None  # a valid copy, but through a link: not read
    s.colcache.columns(1, "c", build=True)  # the link is replaced, its target untouched
    assert not (store.path / cache_name(1, "c")).is_symlink() and elsewhere.read_bytes() == before


def test_a_failed_build_leaves_nothing(store, monkeypatch):
    def boom(*a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(colcache.os, "pwrite", boom)
    s = fresh(store)
    assert s.colcache.columns(0, "c", build=True) is None
    assert [p.name for p in store.path.iterdir() if "colcache.L" in p.name] == []  # no copy, no temp file
    assert s.colcache.columns(0, "c", build=True) is None  # not tried again by this process
    monkeypatch.undo()
    assert np.array_equal(s.unit("0:c:2"), np.ascontiguousarray(store.array(0, "c")[:, 2]))


def test_a_copy_appears_whole_or_not_at_all(store, monkeypatch):
    seen = []
    real = colcache.os.replace

    def spy(src, dst):  # at the rename, the temp file is complete and the copy's name is still free
        seen.append((os.path.basename(src).startswith(".colcache."), os.path.exists(dst)))
        return real(src, dst)

    monkeypatch.setattr(colcache.os, "replace", spy)
    make_copy(store, 0, "h")
    assert seen == [(True, False)]
    assert fresh(store).colcache.columns(0, "h") is not None


def test_a_copy_another_process_is_building_is_not_built_twice(store):
    import fcntl

    fd = os.open(store.path / "colcache.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        s = fresh(store)
        # flock is per open file: this process's own second descriptor is refused like another process's
        assert s.colcache.columns(0, "c", build=True) is None
        assert not (store.path / cache_name(0, "c")).exists()
    finally:
        os.close(fd)
    assert s.colcache.columns(0, "c", build=True) is not None  # tried again once the lock is free


def test_build_async_builds_once(store):
    s = fresh(store)
    t = s.colcache.build_async(1, "c")
    t.join()
    assert s.colcache.columns(1, "c") is not None and s.colcache.build_async(1, "c") is None
    assert np.array_equal(s.colcache.columns(1, "c"), np.asarray(store.array(1, "c")).T)


def test_cached_feature_round_trip_and_staleness(store, monkeypatch):
    want = np.asarray(compute_feature("in_quote", store.text), np.float32)
    assert np.array_equal(cached_feature(store, "in_quote", lambda: compute_feature("in_quote", store.text)), want)
    assert (store.path / "featcache.in_quote").exists()

    def never():
        raise AssertionError("recomputed a valid cached feature")

    assert np.array_equal(cached_feature(fresh(store), "in_quote", never), want)
    # Other feature code: stale.
    monkeypatch.setattr(colcache, "_features_code", lambda: "0" * 64)
    assert np.array_equal(cached_feature(store, "in_quote", lambda: want + 1), want + 1)
    monkeypatch.undo()
    # A corrupt payload: recomputed.
    path = store.path / "featcache.in_quote"
    make_feature = lambda: compute_feature("in_quote", store.text)  # noqa: E731
    cached_feature(store, "in_quote", make_feature)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x10
    path.write_bytes(bytes(raw))
    assert np.array_equal(cached_feature(store, "in_quote", make_feature), want)
    with pytest.raises(RnnvizError, match="not a built-in feature name"):
        cached_feature(store, "../x", make_feature)


def test_close_gaps_fills_only_inner_gaps_up_to_the_slack():
    rng = np.random.default_rng(3)

    def reference(on, gap):  # the loop it replaces
        edges = np.diff(np.concatenate(([True], on, [True])).astype(np.int8))
        out = on.copy()
        for s, e in zip(np.flatnonzero(edges == -1), np.flatnonzero(edges == 1), strict=True):
            if e - s <= gap and s > 0 and e < len(on):
                out[s:e] = True
        return out

    for _ in range(200):
        on = rng.random(int(rng.integers(1, 60))) < rng.uniform(0.1, 0.9)
        for gap in (0, 1, 2, 5):
            assert np.array_equal(_close_gaps(on, gap), reference(on, gap))
    assert _close_gaps(np.array([1, 0, 0, 1, 0, 1, 0], bool), 2).tolist() == [1, 1, 1, 1, 1, 1, 0]
