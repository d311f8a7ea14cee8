"""The activation store: a directory of memory-mapped float16 arrays, one per recorded layer × kind.

Layout (see docs/architecture.md)::

    manifest.json          format, version, length T, cell, hidden H, layers, kinds, model, vocab, ...
    text.txt               the recorded text, UTF-8, exactly T characters
    L{layer}.{kind}.f16    (T, H) little-endian float16, C order; row t = state after reading char t
    logprob.f32            (T,) float32 log p(text[t+1] | text[:t+1]) in nats, NaN at t = T-1
    topk_ids.u16           (T, K) uint16 and topk_p.f16 (T, K) float16: top-K next-char predictions
    stats.json             per unit: mean std min max sat_lo (fraction < 0.1) sat_hi (fraction > 0.9); the sat_
                           columns of sigmoid gates only (LSTM i f o, GRU r z), NaN for every other kind

Nothing is ever loaded whole: rows are read a block at a time into a buffer (:meth:`Store.blocks`; the OS
page cache keeps what was read, the process only its block, so a pass over the whole store stays as small
as its block), and the summary statistics are computed while writing so that views need not scan the store.
A store is written into a temp directory that is renamed into place, so it appears complete or not at all
(the write side: :mod:`rnnviz.store.writer`).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from rnnviz.errors import RnnvizError
from rnnviz.fsutil import (
    MAX_JSON_BYTES,
    loads_json,
    member,
    pread_into,
    read_format_json,
    read_member,
    recover_dir,
)
from rnnviz.memory import block_rows
from rnnviz.model.units import group_units, parse_unit
from rnnviz.store.manifest import (  # noqa: F401 (the store's names, re-exported for its readers)
    FORMAT,
    LOGPROB,
    MANIFEST,
    SPANS,
    STAT_COLUMNS,
    STATS,
    TEXT,
    TOPK_IDS,
    TOPK_P,
    VERSION,
    VERSIONS,
    Manifest,
    UnitNames,
    _short,
    array_name,
)
from rnnviz.store.tokens import first_bad_span

SAMPLE_ROWS, SAMPLE_BLOCKS = 200_000, 20  # a bounded sample (read(sample=True)): rows, in evenly spaced blocks


class Store:
    """Read side of a store. Open with :func:`open_store`; every array is a read-only memmap."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        recover_dir(self.path)
        if not self.path.is_dir():
            raise RnnvizError(f"{self.path}: no such store directory")
        mpath = self.path / MANIFEST
        if not mpath.exists():
            raise RnnvizError(f"{self.path}: not an rnnviz store ({MANIFEST} missing)")
        m = read_format_json(mpath, FORMAT, VERSIONS, "store manifest")
        if m.get("dtype", "float16") != "float16":  # a size check alone would call it "corrupt"
            raise RnnvizError(f"{mpath}: activations are {_short(m['dtype'])}; this rnnviz reads float16")
        self.manifest: dict = m  # the file as read; ``meta`` is what was checked and is used
        self.meta = meta = Manifest.from_dict(m, mpath)
        self.length, self.hidden, self.cell, self.layers, self.kinds, self.k, self.vocab = (
            meta.length, meta.hidden, meta.cell, meta.layers, meta.kinds, meta.topk, meta.vocab)
        self._check_sizes()
        if not (self.path / TEXT).exists() and not (self.path / TEXT).is_symlink():
            raise RnnvizError(f"{self.path}: store is incomplete ({TEXT} missing)")
        N = self.length if meta.chars is None else meta.chars
        raw = read_member(self.path, TEXT, 4 * N)  # UTF-8: 1 to 4 bytes a character
        try:
            self.text: str = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RnnvizError(f"{self.path / TEXT}: not valid UTF-8 (corrupt store)") from None
        if len(self.text) != N:
            raise RnnvizError(f"{self.path / TEXT}: {len(self.text)} characters, the manifest says {N}")
        self._maps: dict[tuple[int, str], np.memmap] = {}
        self._fds: dict[tuple[int, str], int] = {}  # the arrays' files, open for reads (closed with the store)
        weakref.finalize(self, _close_files, self._fds)
        self.spans: np.ndarray | None = None if meta.chars is None else self._check_spans()

    @property
    def is_tokens(self) -> bool:
        """Whether rows are tokens with spans in the text (else one row per character of :attr:`text`)."""
        return self.spans is not None

    def _check_spans(self) -> np.ndarray:
        """(T, 2) int64 memmap: each token's [start, end) in :attr:`text`, checked a block at a time: every
        token has at least one character, tokens are in order and do not overlap, all inside the text."""
        spans = np.memmap(self.path / SPANS, dtype="<i8", mode="r", shape=(self.length, 2))
        prev_end = 0
        for s in range(0, self.length, 1 << 20):
            b = np.asarray(spans[s : s + (1 << 20)])
            bad = first_bad_span(b, prev_end, len(self.text))
            if bad is not None:
                t = s + bad
                raise RnnvizError(f"{self.path / SPANS}: token {t:,} spans {spans[t].tolist()}; spans must be "
                                  f"non-empty, in order, without overlap, within the {len(self.text):,} characters "
                                  "of the text (corrupt store)")
            prev_end = int(b[-1, 1])
        return spans

    def width(self, layer: int, kind: str) -> int:
        """The number of units of one array (``hidden`` unless the store says otherwise)."""
        return self.meta.width(layer, kind)

    @cached_property
    def last_chars(self) -> np.ndarray | None:
        """(T,) int64: the position in :attr:`text` of each token's last character (None in a char store,
        where row t is character t)."""
        return None if self.spans is None else np.asarray(self.spans[:, 1]) - 1

    def at_rows(self, per_char: np.ndarray) -> np.ndarray:
        """(T, ...) values of a per-character array (N, ...) at each row: itself in a char store, each
        token's last character in a token store (how features computed on the text meet token rows)."""
        return per_char if self.spans is None else per_char[self.last_chars]

    def row_keys(self) -> np.ndarray:
        """(T,) int64: what each row reads, as a number equal for equal inputs: the character's code point,
        or the token string's index among the store's distinct tokens (controls shuffle within a key)."""
        if self.spans is None:
            return np.frombuffer(self.text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
        words = [self.text[a:b] for a, b in np.asarray(self.spans).tolist()]
        return np.unique(np.array(words, dtype=object), return_inverse=True)[1].astype(np.int64)

    def chars_of_rows(self, start: int, stop: int) -> tuple[int, int]:
        """The characters [a, b) of the text that rows ``start:stop`` (clipped) cover."""
        stop = min(max(int(stop), 0), self.length)
        start = min(max(int(start), 0), stop)
        if self.spans is None or start == stop:
            return (start, stop) if self.spans is None else (0, 0)
        return int(self.spans[start, 0]), int(self.spans[stop - 1, 1])

    def rows_of_chars(self, a: int, b: int) -> tuple[int, int]:
        """The rows [r0, r1) whose tokens overlap the characters [a, b) (a char store: the same range)."""
        if self.spans is None:
            b = min(max(int(b), 0), self.length)
            return min(max(int(a), 0), b), b
        r0 = int(np.searchsorted(self.spans[:, 1], a, side="right"))
        r1 = int(np.searchsorted(self.spans[:, 0], b, side="left"))
        return r0, max(r0, r1)

    def _check_sizes(self) -> None:
        """Every file the manifest implies has exactly its size, before anything is read or mapped."""
        T, K = self.length, self.k
        expected = {array_name(l, k): T * w * 2 for (l, k), w in self.meta.widths.items()}
        if self.meta.chars is not None:
            expected[SPANS] = T * 16
        if self.meta.has_logprob:
            expected[LOGPROB] = T * 4
        if K:
            expected.update({TOPK_IDS: T * K * 2, TOPK_P: T * K * 2})
        for name, size in expected.items():
            try:
                f = member(self.path, name)
            except RnnvizError as e:
                if not (self.path / name).exists() and not (self.path / name).is_symlink():
                    raise RnnvizError(f"{self.path}: store is incomplete ({name} missing)") from None
                raise e from None
            if f.stat().st_size != size:
                raise RnnvizError(
                    f"{f}: {f.stat().st_size} bytes, expected {size} for the manifest's shape (corrupt store)"
                )

    def __repr__(self) -> str:
        return (
            f"Store({str(self.path)!r}, length={self.length}, cell={self.cell!r}, layers={self.layers}, "
            f"kinds={self.kinds}, hidden={self.hidden})"
        )

    def __len__(self) -> int:
        return self.length

    @cached_property
    def units(self) -> UnitNames:
        """Every recorded unit name, ordered by layer, kind (manifest order), index: a read-only
        sequence computed on demand (``in`` and ``index`` are O(1)), not millions of strings."""
        return UnitNames(self.layers, self.kinds, self.hidden, self.meta.widths)

    def array(self, layer: int, kind: str) -> np.memmap:
        """The (T, width) float16 memmap of one layer × kind (read-only, never loaded whole)."""
        key = self._key(layer, kind)
        if key not in self._maps:
            self._maps[key] = np.memmap(
                self.path / array_name(*key), dtype="<f2", mode="r", shape=(self.length, self.width(*key))
            )
        return self._maps[key]

    def rows(self, layer: int, kind: str, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``start:stop`` (clipped to the text) of one array, (n, width) float16, read from its file into
        ``out`` (its first n rows; default a fresh array): a read, not a map, so nothing of the file stays in
        this process once the rows are used."""
        key = self._key(layer, kind)
        stop = min(max(int(stop), 0), self.length)
        start = min(max(int(start), 0), stop)
        W = self.width(*key)
        out = np.empty((stop - start, W), dtype="<f2") if out is None else out[: stop - start]
        # a store file is never shorter (its size is checked at open)
        pread_into(self._fd(key), out, start * W * 2,
                   f"{self.path / array_name(*key)}: shorter than its manifest says (corrupt store)")
        return out

    def blocks(self, layer: int, kind: str, idx: np.ndarray | None = None, lo: int = 0, hi: int | None = None,
               rows: int | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(start, stop, block)`` over rows [lo, hi) of one array, ``rows`` at a time (default: the most
        a block takes, :data:`rnnviz.memory.BLOCK_BYTES`): ``block`` is (stop - start, len(idx)) float16, the
        columns ``idx`` (default all, in one buffer reused from block to block: copy what you keep)."""
        key = self._key(layer, kind)
        hi = self.length if hi is None else min(int(hi), self.length)
        W = self.width(*key)
        rows = block_rows(2 * W, None) if rows is None else int(rows)
        if rows < 1:
            raise RnnvizError(f"rows must be >= 1, got {rows}")
        buf = np.empty((min(rows, max(hi - lo, 0)), W), dtype="<f2")
        whole = idx is None or every_column(idx, W)
        for s in range(int(lo), hi, rows):
            block = self.rows(*key, s, min(s + rows, hi), out=buf)
            yield s, s + len(block), block if whole else block[:, idx]

    def _key(self, layer: int, kind: str) -> tuple[int, str]:
        key = (int(layer), kind)
        if key[0] not in self.layers or kind not in self.kinds:
            raise RnnvizError(
                f"layer {layer} kind {kind!r} is not in this store "
                f"(layers {_join(self.layers)}; kinds {_join(self.kinds)})"
            )
        return key

    def _fd(self, key: tuple[int, str]) -> int:
        fd = self._fds.get(key)
        if fd is None:
            fd = os.open(member(self.path, array_name(*key)), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            if hasattr(os, "posix_fadvise"):  # passes read on: a larger read-ahead
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            mine, fd = fd, self._fds.setdefault(key, fd)
            if fd != mine:  # another thread opened it meanwhile
                os.close(mine)
        return fd

    def locate(self, name: str) -> tuple[int, str, int]:
        """``(layer, kind, index)`` of the unit ``name`` of this store; a one-line error naming what the
        store holds when it is not one of its units (a malformed name gets the name format)."""
        layer, kind, index = parse_unit(name)
        if layer not in self.layers or kind not in self.kinds or index >= self.width(layer, kind):
            w = self.width(layer, kind) if layer in self.layers and kind in self.kinds else self.hidden
            raise RnnvizError(
                f"unit {name!r} is not in this store (layers {_join(self.layers)}; kinds {_join(self.kinds)}; "
                f"indices 0..{w - 1})"
            )
        return layer, kind, index

    def check_units(self, names: Iterable[str] | str | None) -> Sequence[str]:
        """``names`` (one name or many) deduplicated in order, each checked with :meth:`locate`; None gives
        every unit of the store (:attr:`units`, not a list of millions of strings)."""
        if names is None:
            return self.units
        names = list(dict.fromkeys([names] if isinstance(names, str) else names))
        for name in names:
            self.locate(name)
        return names

    def groups(self, names: Sequence[str]) -> list[tuple[int, str, np.ndarray, np.ndarray]]:
        """``names`` by the array they live in, in first-seen order, so that each array is read once:
        ``[(layer, kind, indices in the array, positions in names)]``."""
        found = group_units(self.locate(name) for name in names)
        return [(l, k, np.array(i), np.array(p)) for (l, k), (p, i) in found.items()]

    @cached_property
    def colcache(self):
        """The column-major copies of this store's arrays (:class:`rnnviz.store.column_cache.ColumnCache`)."""
        from rnnviz.store.column_cache import ColumnCache

        return ColumnCache(self)

    def unit(self, name: str) -> np.ndarray:
        """One unit over the whole text: (T,) float16, e.g. ``store.unit("1:c:17")`` (from the array's
        column-major copy when one has been built: the same values, T·2 bytes read instead of T·H·2)."""
        layer, kind, index = self.locate(name)
        col = self.colcache.column(name)
        if col is not None:
            return col
        out = np.empty(self.length, dtype="<f2")
        for s, e, block in self.blocks(layer, kind):
            out[s:e] = block[:, index]
        return out

    def window(self, start: int, stop: int, units: Sequence[str] | None = None) -> np.ndarray:
        """Rows ``start:stop`` (clipped to the text, like a slice) of the given units (default all), from the
        arrays' rows.

        Returns (stop - start, U) float32, columns in the order of ``units`` (or :attr:`units`).
        """
        if start < 0 or stop < 0:
            raise RnnvizError(f"window bounds must be >= 0, got {start}:{stop}")
        stop = min(int(stop), self.length)
        start = min(int(start), stop)
        if units is None:
            parts = [self.rows(l, k, start, stop) for l in self.layers for k in self.kinds]
            return np.concatenate(parts, axis=1, dtype=np.float32)
        out = np.empty((stop - start, len(units)), dtype=np.float32)
        for layer, kind, idx, cols in self.groups(units):
            # One contiguous row slice per array, then the columns: a window reads only its own pages.
            out[:, cols] = self.rows(layer, kind, start, stop)[:, idx]
        return out

    def read(self, units: Sequence[str] | None = None, rows: tuple[int, int] | None = None,
             blocks: Sequence[tuple[int, int]] | None = None, sample: bool = False) -> np.ndarray:
        """Values of ``units`` (default all) as float32 (n, U): over ``rows`` (start, stop), the row ranges
        ``blocks`` one after another, or with ``sample`` a bounded sample (:func:`spaced_blocks`); the whole
        text when none is given. One unit is read from its array's column-major copy (:attr:`colcache`) when
        there is one (T·2 bytes), more than one from the arrays' rows."""
        if sum(x is not None and x is not False for x in (rows, blocks, sample)) > 1:
            raise RnnvizError("read takes one of rows, blocks or sample")
        if sample:
            blocks = spaced_blocks(self.length)
        elif blocks is None:
            blocks = [rows if rows is not None else (0, self.length)]
        if units is not None and len(units) == 1:  # one unit: its column, where there is one
            col = self.colcache.column(units[0])
            if col is not None:
                return np.concatenate([col[a:b] for a, b in blocks]).astype(np.float32)[:, None]
        return np.concatenate([self.window(a, b, units) for a, b in blocks])

    def scan(self, units: Sequence[str], lo: int = 0, hi: int | None = None, rows: int = 65536):
        """Yield ``(start, stop, (stop - start, U) float32)`` over rows [lo, hi) of ``units``: from the
        column-major copies when every unit's array has one (T·2 bytes a unit), else ``rows`` rows at a time
        from the arrays. A copy that fails its CRC at the end of a scan of the whole text is dropped and the
        rows are read again from the arrays: a consumer writes its results by position."""
        from rnnviz.store.column_cache import CacheCorrupt

        hi = self.length if hi is None else hi
        cached = self.colcache.blocks(list(units), lo, hi)
        if cached is not None:
            try:
                yield from cached
                return
            except CacheCorrupt:
                pass
        for s in range(lo, hi, rows):
            yield s, min(s + rows, hi), self.window(s, min(s + rows, hi), units)

    def close(self) -> None:
        """Close the store's memory maps and files (they reopen on the next read): its files' pages can then
        leave the OS page cache (a benchmark's cold read)."""
        self._maps.clear()
        _close_files(self._fds)
        for name in ("logprob", "topk"):
            self.__dict__.pop(name, None)

    def read_columns(self, layer: int, kind: str, start: int, stop: int, idx: np.ndarray) -> np.ndarray:
        """Rows start:stop of the columns ``idx`` of one array, as a fresh (n, len(idx)) float16 array."""
        block = self.rows(layer, kind, start, stop)
        return block if every_column(idx, self.width(layer, kind)) else block[:, idx]

    def iter_blocks(self, rows: int = 65536, units: list[str] | None = None):
        """Yield ``(start, stop, (stop - start, U) float32)`` over the whole text, ``rows`` at a time."""
        if rows < 1:
            raise RnnvizError(f"rows must be >= 1, got {rows}")
        for start in range(0, self.length, rows):
            stop = min(start + rows, self.length)
            yield start, stop, self.window(start, stop, units)

    @cached_property
    def logprob(self) -> np.ndarray:
        """(T,) float32 memmap: log-probability (nats) the model gave the actual next character.

        NaN at the last position; all NaN if the store was written without it.
        """
        if not self.meta.has_logprob:
            return np.full(self.length, np.nan, dtype=np.float32)
        return np.memmap(self.path / LOGPROB, dtype="<f4", mode="r", shape=(self.length,))

    @cached_property
    def topk(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids (T, K) uint16, probs (T, K) float16): the model's K most likely next characters, best first."""
        T, K = self.length, self.k
        if not K:
            return np.zeros((T, 0), dtype=np.uint16), np.zeros((T, 0), dtype=np.float16)
        ids = np.memmap(self.path / TOPK_IDS, dtype="<u2", mode="r", shape=(T, K))
        probs = np.memmap(self.path / TOPK_P, dtype="<f2", mode="r", shape=(T, K))
        return ids, probs

    @cached_property
    def stats(self):
        """pandas.DataFrame indexed by unit: mean std min max sat_lo sat_hi (over the whole text).
        A missing, malformed or mismatched stats.json is a one-line error (see :attr:`has_stats`)."""
        import pandas as pd

        path = self.path / STATS
        d = loads_json(read_member(self.path, STATS, MAX_JSON_BYTES), path)
        try:
            df = pd.DataFrame({c: d[c] for c in STAT_COLUMNS}, index=pd.Index(d["unit"], name="unit"))
            df = df.astype("float64")  # a non-number ("high") is malformed too
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RnnvizError(f"{path}: missing or malformed ({e})") from None
        if list(df.index) != self.units:  # views look units up here: a missing row must not be a KeyError
            raise RnnvizError(f"{path}: its units do not match the manifest's (corrupt store)")
        return df

    @property
    def has_stats(self) -> bool:
        """Whether the store has a stats.json (written by the recorder): without one, what needs the units'
        statistics computes them from the arrays; a damaged one is an error, never a silent fallback."""
        return (self.path / STATS).exists()

    @cached_property
    def checkpoint_path(self) -> Path | None:
        """The recorded checkpoint's directory if it still exists with the same weights, else None."""
        from rnnviz.model.checkpoint import WEIGHTS, sha256_file

        ck = self.meta.checkpoint or {}  # its shape was checked at open
        if not ck.get("path"):
            return None
        path = Path(ck["path"])
        weights = path / WEIGHTS
        if not weights.is_file() or weights.is_symlink():
            return None
        if ck.get("sha256") and sha256_file(weights) != ck["sha256"]:
            return None
        return path


def spaced_blocks(length: int, rows: int = SAMPLE_ROWS, blocks: int = SAMPLE_BLOCKS) -> list[tuple[int, int]]:
    """Row ranges for a bounded sample of a store of ``length`` rows: everything when it has at most
    ``rows``, else ``blocks`` evenly spaced blocks of ``rows // blocks`` rows."""
    if length <= rows:
        return [(0, length)]
    size = rows // blocks
    starts = np.linspace(0, length - size, blocks).astype(int)
    return [(int(s), int(s) + size) for s in starts]


def is_store(path: str | Path) -> bool:
    """Whether ``path`` is an rnnviz store directory (its manifest names the format): what ``--force`` may
    replace when recording."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        read_format_json(path / MANIFEST, FORMAT, VERSIONS, "store manifest")
    except RnnvizError:
        return False
    return True


def open_store(path: str | Path) -> Store:
    """Open a store directory, checking the manifest against the files' sizes."""
    return Store(path)


def every_column(idx, width: int) -> bool:
    """Whether the column indices ``idx`` are each column of a ``width``-wide array, in order: a block is then
    used as read, without gathering its columns."""
    return len(idx) == width and bool((np.asarray(idx) == np.arange(width)).all())


def _close_files(fds: dict) -> None:
    while fds:
        os.close(fds.popitem()[1])


def _join(xs) -> str:
    return ",".join(map(str, xs))
