"""Caches beside a store: column-major copies of its arrays, and any other array computed from it.

A store keeps each (layer, kind) array row-major, (T, H) float16: a window of rows is one contiguous
read, but one unit over the whole text touches every page of the array (T·H·2 bytes read for T·2
wanted). Select-to-find, the pattern view's search and :meth:`Store.unit` read a few units over the
whole text, so the first such read of an array builds its column-major copy, (H, T) float16, in the
store's directory (``colcache.L{layer}.{kind}``); every later read of any of its units is T·2 bytes.

Every cache file (:func:`write_cache` / :func:`read_cache`) is one regular file:

    b"RNNVIZC1"   8 bytes
    n             uint64 little-endian: the length of the JSON header (at most MAX_HEADER)
    header        JSON: format version, what the payload is (kind, key, dtype, shape), the stamp of the
                  store files it was computed from, and a CRC-32 of each payload row
    padding       to the next multiple of 4096 bytes
    payload       the array, C order, little-endian

It is written atomically (a temp file renamed into place, so a reader sees a whole file or none) and
used only when it is a regular file of exactly the header's size (never a symlink, FIFO or device),
its header parses and names what is asked for, and its stamp equals the store's files' stamp now
(size, mtime, inode and the manifest's ``created``): a re-recorded or edited store ignores it, and it
is rebuilt. A row's CRC-32 is checked whenever the whole row is read (:meth:`ColumnCache.column`, a
scan over the whole text): a corrupt copy is removed and the store itself is read instead. Results are
bit-for-bit those of reading the store. Nothing is written where the store's directory is read-only;
reads then go to the store. Delete ``colcache.*`` files to reclaim their space (as much as the arrays
they copy).

Smaller results computed from a store are kept the same way by :func:`cached_array` (numbers) and
:func:`cached_json` (a table as JSON bytes, parsed, never run): the built-in features (``featcache.NAME``), each
unit's two states (``cache.two_state``, written by ``rnnviz record``) and the catalog's explanations
(``cache.explain``). Each is keyed by the stamp of the store files it was computed from, a hash of the code
that computes it and its settings; a stale, torn or corrupt one is ignored and computed again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from rnnviz.errors import RnnvizError
from rnnviz.fsutil import atomic_file, member, process_lock

MAGIC = b"RNNVIZC1"
VERSION = 1
ALIGN = 4096
MAX_HEADER = 8 << 20  # bytes of JSON: a CRC per row of a 16,384-unit array is ~200 kB
SCAN_ROWS = 1 << 20  # rows per block of a scan over the whole text: k units × 4 MB of float32 each
BUILD_BYTES = 64 << 20  # bytes of the row-major array read at a time while building a copy


def cache_name(layer: int, kind: str) -> str:
    return f"colcache.L{int(layer)}.{kind}"


def stamp(store, names: list[str]) -> dict:
    """What a cache computed from the store files ``names`` was computed from: each file's size, mtime
    (ns) and inode, and the manifest's ``created`` time. A cache whose stamp differs is stale."""
    files = {}
    for name in names:
        st = os.stat(member(store.path, name))
        files[name] = [st.st_size, st.st_mtime_ns, st.st_ino]
    return {"created": store.meta.created, "files": files}


def _header(meta: dict, width: int = 0) -> tuple[bytes, int]:
    """The header bytes (magic, length, JSON padded with spaces to ``width`` bytes) and the payload's
    offset."""
    raw = json.dumps(meta, separators=(",", ":")).encode()
    raw += b" " * (width - len(raw))
    head = MAGIC + len(raw).to_bytes(8, "little") + raw
    return head, -(-len(head) // ALIGN) * ALIGN


def write_cache(path: Path, meta: dict, dtype: str, shape: tuple[int, ...],
                fill: Callable[[Callable[[int, np.ndarray], None]], list[int]]) -> None:
    """Write a cache file atomically. ``fill(write)`` produces the (shape) ``dtype`` payload by calls
    ``write(pos, array)`` (``array``'s bytes at byte ``pos`` of the payload) and returns the CRC-32 of
    each payload row, kept in the header. Raises :class:`RnnvizError` when the file cannot be written
    (a read-only directory, a full disk)."""
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    meta = {**meta, "version": VERSION, "dtype": dtype, "shape": list(shape)}
    with atomic_file(path, "w+b", durable=False) as f:  # a cache: a torn one fails its CRC, is rebuilt
        # The header is written last, once the rows' CRCs are known: its room (the widest CRCs) first.
        room, offset = _header({**meta, "crc": [0xFFFFFFFF] * shape[0]})
        f.truncate(offset + n)
        fd = f.fileno()

        def write(pos: int, a: np.ndarray) -> None:
            data = memoryview(np.ascontiguousarray(a, dtype=dtype)).cast("B")
            pos += offset
            while data:  # pwrite may write less than asked
                done = os.pwrite(fd, data, pos)
                data, pos = data[done:], pos + done

        crc = fill(write)
        head, _ = _header({**meta, "crc": [int(c) for c in crc]}, width=len(room) - 16)
        if os.pwrite(fd, head, 0) != len(head):
            raise RnnvizError(f"cannot write {path}: short write")


def read_cache(path: Path, expect: dict, dtype: str, shape: tuple[int, ...] | None):
    """(read-only memmap of the payload, header) when ``path`` is a valid cache of ``expect`` (every key
    of it equal in the header: kind, key, stamp), else None. ``shape=None``: any 2-D shape the header gives
    (the file's size still checked against it). Never raises for a bad cache file."""
    try:
        member(path.parent, path.name)
    except RnnvizError:
        return None
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        meta, offset = _read_header(f)
        if meta is None:
            return None
        if shape is None:
            shape = meta.get("shape")
            if not (isinstance(shape, list) and len(shape) == 2 and all(type(n) is int and 0 < n < 1 << 40
                                                                         for n in shape)):
                return None
            shape = tuple(shape)
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        ok = (meta.get("version") == VERSION and meta.get("dtype") == dtype and meta.get("shape") == list(shape)
              and all(meta.get(k) == v for k, v in expect.items())
              and isinstance(meta.get("crc"), list) and len(meta["crc"]) == shape[0]
              and os.fstat(fd).st_size == offset + size)
        if not ok:
            return None
        # Mapped through the descriptor that was checked: a file swapped in meanwhile is not the one read.
        return np.memmap(f, dtype=dtype, mode="r", offset=offset, shape=shape), meta


def _read_header(f) -> tuple[dict | None, int]:
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):
        return None, 0
    head = f.read(16)
    if len(head) != 16 or head[:8] != MAGIC:
        return None, 0
    n = int.from_bytes(head[8:], "little")
    if n > MAX_HEADER or 16 + n > st.st_size:
        return None, 0
    try:
        meta = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, 0
    return (meta if isinstance(meta, dict) else None), -(-(16 + n) // ALIGN) * ALIGN


def crc_rows(a: np.ndarray, crc: list[int] | None = None) -> list[int]:
    """CRC-32 of each row of a 2-D array (continuing ``crc``, one value per row, when given)."""
    crc = crc or [0] * a.shape[0]
    return [zlib.crc32(np.ascontiguousarray(row), c) for row, c in zip(a, crc, strict=True)]


class CacheCorrupt(Exception):
    """A cached row failed its CRC (the cache file has been removed): read the store instead."""


class ColumnCache:
    """Column-major copies of one store's arrays, reused across processes and restarts.

    ``columns(layer, kind)`` opens a valid copy (or returns None); ``build=True`` builds a missing one
    first (one pass over the array: seconds on a large store), ``build_async`` does that in a thread (a
    server answers from the row-major array meanwhile). One build per array at a time, across threads
    (a lock) and processes (``flock`` on ``colcache.lock``: a second process skips and finds the copy
    later). A copy that cannot be written (read-only directory, full disk) is not tried again."""

    BUILD_ROWS = 1024  # rows transposed at a time: a (1024, H) tile stays in the CPU cache

    def __init__(self, store):
        self.store = store
        self._maps: dict[tuple[int, str], tuple[np.ndarray, list[int]]] = {}
        self._verified: set[tuple[int, str, int]] = set()
        self._failed: set[tuple[int, str]] = set()
        self._building: set[tuple[int, str]] = set()
        self._lock = threading.Lock()  # the maps and sets above
        self._build_lock = threading.Lock()

    def _expect(self, layer: int, kind: str) -> dict:
        from rnnviz.store.reader import array_name

        return {"kind": "columns", "key": f"L{layer}.{kind}", "source": stamp(self.store, [array_name(layer, kind)])}

    def columns(self, layer: int, kind: str, build: bool = False) -> np.ndarray | None:
        """The (H, T) float16 column-major copy of array (layer, kind) if a valid one exists (built first
        when ``build``), else None."""
        key = (int(layer), kind)
        found = self._maps.get(key)
        if found is not None:
            return found[0]
        self.store.array(*key)  # validates layer and kind
        found = self._open(key)  # no lock: a copy appears whole (renamed into place) or not at all
        if found is None and build and key not in self._failed:
            with self._build_lock:  # one build at a time; readers of other copies never wait for it
                found = self._open(key) or self._build(key)
        if found is None:
            return None
        with self._lock:
            return self._maps.setdefault(key, found)[0]

    def build_async(self, layer: int, kind: str) -> threading.Thread | None:
        """Build the copy of (layer, kind) in a daemon thread unless it exists, is being built or cannot be."""
        key = (int(layer), kind)
        if key in self._maps or key in self._failed:
            return None
        with self._lock:
            if key in self._building:
                return None
            self._building.add(key)

        def run() -> None:
            try:
                self.columns(*key, build=True)
            finally:
                self._building.discard(key)

        t = threading.Thread(target=run, name=f"colcache {self.store.path.name} L{key[0]}.{key[1]}", daemon=True)
        t.start()
        return t

    def _open(self, key: tuple[int, str]):
        H, T = self.store.hidden, self.store.length
        got = read_cache(self.store.path / cache_name(*key), self._expect(*key), "<f2", (H, T))
        return None if got is None else (got[0], got[1]["crc"])

    def _build(self, key: tuple[int, str]):
        try:
            with process_lock(self.store.path / "colcache.lock") as mine:
                if not mine:  # another process is building it: use it once it is there
                    return None
                found = self._open(key)  # built by another process since we looked
                if found is None:
                    write_cache(self.store.path / cache_name(*key), self._expect(*key), "<f2",
                                (self.store.hidden, self.store.length), self._filler(key))
                    found = self._open(key)
                return found
        except (RnnvizError, OSError):
            self._failed.add(key)
            return None

    def _filler(self, key: tuple[int, str]):
        src = self.store.array(*key)
        H, T = self.store.hidden, self.store.length
        rows = max(self.BUILD_ROWS, BUILD_BYTES // (2 * H))

        def fill(write) -> list[int]:
            crc = [0] * H
            cols = np.empty((H, min(rows, T)), dtype=np.float16)  # one buffer, reused: no fresh pages
            for s in range(0, T, rows):
                block = src[s : s + rows]  # (n, H): one contiguous stretch of the file
                n = len(block)
                for r in range(0, n, self.BUILD_ROWS):  # tiled transpose: ~3x numpy's own
                    cols[:, r : min(r + self.BUILD_ROWS, n)] = block[r : r + self.BUILD_ROWS].T
                for h in range(H):  # row h of the copy: its bytes s..s+n
                    write((h * T + s) * 2, cols[h, :n])
                crc = crc_rows(cols[:, :n], crc)
            return crc

        return fill

    def drop(self, layer: int, kind: str) -> None:
        """Forget and delete the copy of (layer, kind) (after a failed CRC); not rebuilt by this process."""
        key = (int(layer), kind)
        with self._lock:
            self._maps.pop(key, None)
            self._failed.add(key)
            try:
                (self.store.path / cache_name(*key)).unlink()
            except OSError:
                pass

    def column(self, name: str) -> np.ndarray | None:
        """One unit over the whole text, (T,) float16, from an existing copy (its CRC checked once per
        process), or None when there is none."""
        layer, kind, index = self.store.locate(name)
        self.columns(layer, kind)
        found = self._maps.get((layer, kind))
        if found is None:
            return None
        out = np.array(found[0][index])
        if (layer, kind, index) not in self._verified:
            if zlib.crc32(out) != found[1][index]:
                self.drop(layer, kind)
                return None
            self._verified.add((layer, kind, index))
        return out

    def blocks(self, units: list[str], lo: int, hi: int) -> Iterator[tuple[int, int, np.ndarray]] | None:
        """Rows [lo, hi) of ``units`` as ``(start, stop, (n, k) float32)`` blocks read from existing
        column-major copies, or None when one of their arrays has none. A scan of the whole text checks
        every row's CRC at its end and raises :class:`CacheCorrupt` on a mismatch (the copy is dropped)."""
        where = [self.store.locate(u) for u in units]
        maps = {}
        for layer, kind, _ in where:
            if (layer, kind) not in maps:
                self.columns(layer, kind)
                found = self._maps.get((layer, kind))
                if found is None:
                    return None
                maps[(layer, kind)] = found  # (copy, CRCs) as opened now, whatever another thread does
        return self._iter(where, maps, lo, hi)

    def _iter(self, where, maps, lo: int, hi: int):
        whole = lo == 0 and hi == self.store.length
        crc = [0] * len(where)
        for s in range(lo, hi, SCAN_ROWS):
            e = min(s + SCAN_ROWS, hi)
            out = np.empty((e - s, len(where)), dtype=np.float32)
            for j, (layer, kind, index) in enumerate(where):
                col = maps[(layer, kind)][0][index, s:e]
                if whole:
                    crc[j] = zlib.crc32(col, crc[j])
                out[:, j] = col
            yield s, e, out
        if whole:
            for j, (layer, kind, index) in enumerate(where):
                if crc[j] != maps[(layer, kind)][1][index]:
                    self.drop(layer, kind)
                    raise CacheCorrupt(f"{cache_name(layer, kind)}: unit {index} fails its CRC")


@functools.lru_cache(maxsize=8)
def code_hash(*files: Path) -> str:
    """SHA-256 of the source files that compute a cached result: one computed by other code is stale."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _features_code() -> str:
    """SHA-256 of the feature definitions' source (``rnnviz/analysis/features/*.py``)."""
    from rnnviz.analysis import features

    return code_hash(*sorted(Path(features.__file__).parent.glob("*.py")))


def array_stamp(store, text: bool = False) -> dict:
    """:func:`stamp` of every array of the store (and its text, with ``text``): what a result computed from all
    of its units (their two states, their explanations) was computed from."""
    from rnnviz.store.reader import array_name

    return stamp(store, [array_name(*key) for key in store.meta.widths] + (["text.txt"] if text else []))


def cached_array(store, name: str, expect: dict, dtype: str, shape: tuple[int, ...] | None,
                 compute: Callable[[], np.ndarray] | None) -> np.ndarray | None:
    """A result computed from the store, (shape) ``dtype``: read from the cache file ``name`` beside it when
    that is valid (:func:`read_cache` of ``expect``: same store files, same code and settings; every row's CRC
    intact), else ``compute()``d and written there (atomically, when the directory takes it) for the next
    process. ``shape=None``: whatever 2-D shape the file says (a JSON payload's length). A cache file that is
    stale, torn or corrupt is ignored and rewritten; nothing in it is executed (an array of numbers).
    ``compute=None``: only read (None when there is no valid cache)."""
    path = store.path / name
    got = read_cache(path, expect, dtype, shape)
    if got is not None:
        values = np.array(got[0])
        if crc_rows(values) == got[1]["crc"]:
            return values
    if compute is None:
        return None
    values = np.asarray(compute(), dtype=dtype)
    values = values.reshape(shape) if shape is not None else values.reshape(1, -1)

    def fill(write) -> list[int]:
        write(0, values)
        return crc_rows(values)

    try:
        write_cache(path, expect, dtype, values.shape, fill)
    except (RnnvizError, OSError):
        pass  # a read-only store: computed in every process
    return values


def cached_json(store, name: str, expect: dict, compute: Callable[[], object] | None):
    """:func:`cached_array` for a JSON document (a table): its UTF-8 bytes are the payload, parsed with
    :func:`json.loads` (never code). A payload that does not parse is recomputed and rewritten (``compute=None``:
    only read; None when there is no valid cache)."""
    def encode():
        return np.frombuffer(json.dumps(compute(), separators=(",", ":")).encode(), dtype=np.uint8)

    for _ in range(2):  # a valid CRC over bytes that are not JSON (written by hand): computed again, once
        raw = cached_array(store, name, expect, "u1", None, None if compute is None else encode)
        if raw is None:
            return None
        try:
            return json.loads(raw.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            try:
                (store.path / name).unlink()
            except OSError:
                return None if compute is None else json.loads(json.dumps(compute()))
    raise RnnvizError(f"{store.path / name}: cannot cache a result that is not JSON")


def cached_feature(store, name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """Built-in feature ``name`` over the store's text, (T,) float32: read from ``featcache.{name}`` beside
    the store when that is valid (same text file, same feature code, CRC intact), else ``compute()``d and
    written there (when the directory takes it) for the next process."""
    if not name.isidentifier():
        raise RnnvizError(f"not a built-in feature name: {name!r}")
    expect = {"kind": "feature", "key": name, "source": stamp(store, ["text.txt"]), "code": _features_code()}
    return cached_array(store, f"featcache.{name}", expect, "<f4", (1, store.length), compute)[0]
