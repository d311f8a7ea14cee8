"""The activation store: a directory of memory-mapped float16 arrays, one per recorded layer × kind.

Layout (see docs/architecture.md)::

    manifest.json          format, version, length T, cell, hidden H, layers, kinds, model, vocab, ...
    text.txt               the recorded text, UTF-8, exactly T characters
    L{layer}.{kind}.f16    (T, H) little-endian float16, C order; row t = state after reading char t
    logprob.f32            (T,) float32 log p(text[t+1] | text[:t+1]) in nats, NaN at t = T-1
    topk_ids.u16           (T, K) uint16 and topk_p.f16 (T, K) float16: top-K next-char predictions
    stats.json             per unit: mean std min max sat_lo (fraction < 0.1) sat_hi (fraction > 0.9)

Nothing is ever loaded whole: readers slice the memmaps, and the summary statistics are computed
while writing so that views need not scan the store. A store is written into a temp directory that
is renamed into place, so it appears complete or not at all (the write side: :mod:`rnnviz.store.writer`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from rnnviz.errors import RnnvizError
from rnnviz.fsutil import (
    MAX_JSON_BYTES,
    loads_json,
    member,
    read_format_json,
    read_member,
    recover_dir,
)
from rnnviz.model.charrnn import CELLS, KINDS, MAX_HIDDEN, MAX_LAYERS, ModelConfig, group_units, parse_unit
from rnnviz.model.vocab import Vocab
from rnnviz.store.stats import STAT_COLUMNS

FORMAT = "rnnviz-store"
VERSION = 1
MANIFEST, TEXT, STATS = "manifest.json", "text.txt", "stats.json"
LOGPROB, TOPK_IDS, TOPK_P = "logprob.f32", "topk_ids.u16", "topk_p.f16"


def array_name(layer: int, kind: str) -> str:
    return f"L{layer}.{kind}.f16"


MAX_LENGTH = 1 << 31  # characters in a store (an 8 GB text); the arrays' real sizes are checked too
SAMPLE_ROWS, SAMPLE_BLOCKS = 200_000, 20  # a bounded sample (read(sample=True)): rows, in evenly spaced blocks


def _int_field(m: dict, key: str, lo: int, hi: int, mpath: Path, default=None) -> int:
    v = m.get(key, default)
    if type(v) is not int or not lo <= v <= hi:
        raise RnnvizError(f"{mpath}: manifest field missing or malformed ({key} must be an integer from {lo} "
                          f"to {hi:,}, got {_short(v)})")
    return v


@dataclass(frozen=True)
class Manifest:
    """A store's manifest.json, checked (see :meth:`from_dict`): what :class:`Store` reads its files by.
    ``model`` is the recorded model's config (None for a synthetic store), ``recorder`` the recording's
    settings and timings, ``checkpoint`` {"path", "sha256"} of the recorded checkpoint or None."""

    length: int  # T characters
    hidden: int  # H units per layer and kind
    cell: str
    layers: list[int]
    kinds: list[str]
    topk: int  # K next-character predictions kept per position (0: none)
    vocab: Vocab
    has_logprob: bool = True
    checkpoint: dict | None = None
    model: ModelConfig | None = None
    recorder: dict = field(default_factory=dict)
    created: str | None = None

    @classmethod
    def from_dict(cls, m: dict, mpath: Path) -> Manifest:
        """The manifest's sizes and names, checked against each other before any file is touched: sizes
        are integers within the caps (SECURITY.md), the cell is known, layers and kinds are distinct and
        valid (a kind names a file: only the cell's own kinds, so no path can be built from one)."""
        bad = lambda why: RnnvizError(f"{mpath}: manifest field missing or malformed ({why})")  # noqa: E731
        T = _int_field(m, "length", 1, MAX_LENGTH, mpath)
        H = _int_field(m, "hidden", 1, MAX_HIDDEN, mpath)
        cell = m.get("cell")
        if cell not in CELLS:
            raise bad(f"cell must be one of {', '.join(CELLS)}, got {_short(cell)}")
        layers, kinds = m.get("layers"), m.get("kinds")
        if not (isinstance(layers, list) and layers and all(type(l) is int and 0 <= l < MAX_LAYERS for l in layers)
                and len(set(layers)) == len(layers)):
            raise bad(f"layers must be distinct integers from 0 to {MAX_LAYERS - 1}, got {_short(layers)}")
        if not (isinstance(kinds, list) and kinds and all(isinstance(k, str) and k in KINDS[cell] for k in kinds)
                and len(set(kinds)) == len(kinds)):
            raise bad(f"kinds must be distinct kinds of a {cell} ({', '.join(KINDS[cell])}), got {_short(kinds)}")
        if not isinstance(m.get("vocab"), list):
            raise bad("vocab must be a list of characters")
        vocab = Vocab.from_json(m["vocab"])
        K = _int_field(m, "topk", 0, len(vocab), mpath, default=0)
        if not isinstance(m.get("has_logprob", True), bool):
            raise bad(f"has_logprob must be true or false, got {_short(m['has_logprob'])}")
        ck = m.get("checkpoint")
        if ck is not None and not (isinstance(ck, dict) and all(isinstance(ck.get(k), (str, type(None)))
                                                                for k in ("path", "sha256"))):
            raise bad(f"checkpoint must be null or {{\"path\": ..., \"sha256\": ...}}, got {_short(ck)}")
        rec = m.get("recorder") or {}
        if not isinstance(rec, dict):
            raise bad(f"recorder must be an object, got {_short(rec)}")
        return cls(T, H, cell, layers, kinds, K, vocab, m.get("has_logprob", True), ck,
                   _manifest_model(m.get("model"), cell, H, layers, vocab, bad), rec,
                   m.get("created") if isinstance(m.get("created"), str) else None)


def _manifest_model(model, cell: str, H: int, layers: list[int], vocab: Vocab, bad) -> ModelConfig | None:
    """The recorded model's config, checked against the manifest's own sizes."""
    if model is None:
        return None
    if not isinstance(model, dict):
        raise bad(f"model must be a model config, got {_short(model)}")
    cfg = ModelConfig.from_dict(model)
    if (cfg.cell, cfg.hidden, cfg.vocab_size) != (cell, H, len(vocab)) or max(layers) >= cfg.layers:
        raise bad(f"the manifest ({cell}, hidden {H}, layers {_short(layers)}, {len(vocab)} characters) does "
                  f"not fit its model ({cfg.cell}, hidden {cfg.hidden}, {cfg.layers} layers, "
                  f"vocabulary {cfg.vocab_size})")
    return cfg


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


class UnitNames(Sequence):
    """The names ``LAYER:KIND:INDEX`` of every unit of a store, ordered by layer, kind, index, computed
    on demand: a store of 30 layers x 6 kinds x 16,384 units does not hold 3 million strings."""

    def __init__(self, layers: list[int], kinds: list[str], hidden: int):
        self.layers, self.kinds, self.hidden = tuple(layers), tuple(kinds), hidden
        self._layer = {l: i for i, l in enumerate(self.layers)}
        self._kind = {k: i for i, k in enumerate(self.kinds)}

    def __len__(self) -> int:
        return len(self.layers) * len(self.kinds) * self.hidden

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        i = i + n if i < 0 else i
        if not 0 <= i < n:
            raise IndexError("unit index out of range")
        lk, index = divmod(i, self.hidden)
        l, k = divmod(lk, len(self.kinds))
        return f"{self.layers[l]}:{self.kinds[k]}:{index}"

    def __iter__(self):
        return (f"{l}:{k}:{i}" for l in self.layers for k in self.kinds for i in range(self.hidden))

    def index(self, name, start=0, stop=None) -> int:
        parts = name.split(":") if isinstance(name, str) else ()
        if len(parts) == 3 and parts[0].isascii() and parts[0].isdigit() and parts[2].isascii() \
                and parts[2].isdigit():
            l, k, i = self._layer.get(int(parts[0])), self._kind.get(parts[1]), int(parts[2])
            if l is not None and k is not None and i < self.hidden and f"{int(parts[0])}:{parts[1]}:{i}" == name:
                pos = (l * len(self.kinds) + k) * self.hidden + i
                if start <= pos and (stop is None or pos < stop):
                    return pos
        raise ValueError(f"{name!r} is not a unit of this store")

    def __contains__(self, name) -> bool:
        try:
            self.index(name)
        except ValueError:
            return False
        return True

    def __eq__(self, other) -> bool:
        if isinstance(other, UnitNames):
            return (self.layers, self.kinds, self.hidden) == (other.layers, other.kinds, other.hidden)
        return isinstance(other, Sequence) and not isinstance(other, str) and len(other) == len(self) \
            and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # mutable-looking sequences are not hashable (as a list)

    def __repr__(self) -> str:
        return f"UnitNames(layers={list(self.layers)}, kinds={list(self.kinds)}, hidden={self.hidden})"


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
        m = read_format_json(mpath, FORMAT, VERSION, "store manifest")
        if m.get("dtype", "float16") != "float16":  # a size check alone would call it "corrupt"
            raise RnnvizError(f"{mpath}: activations are {_short(m['dtype'])}; this rnnviz reads float16")
        self.manifest: dict = m  # the file as read; ``meta`` is what was checked and is used
        self.meta = meta = Manifest.from_dict(m, mpath)
        self.length, self.hidden, self.cell, self.layers, self.kinds, self.k, self.vocab = (
            meta.length, meta.hidden, meta.cell, meta.layers, meta.kinds, meta.topk, meta.vocab)
        self._check_sizes()
        if not (self.path / TEXT).exists() and not (self.path / TEXT).is_symlink():
            raise RnnvizError(f"{self.path}: store is incomplete ({TEXT} missing)")
        T = self.length
        raw = read_member(self.path, TEXT, 4 * T)  # UTF-8: 1 to 4 bytes a character
        try:
            self.text: str = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RnnvizError(f"{self.path / TEXT}: not valid UTF-8 (corrupt store)") from None
        if len(self.text) != T:
            raise RnnvizError(f"{self.path / TEXT}: {len(self.text)} characters, the manifest says {T}")
        self._maps: dict[tuple[int, str], np.memmap] = {}

    def _check_sizes(self) -> None:
        """Every file the manifest implies has exactly its size, before anything is read or mapped."""
        T, H, K = self.length, self.hidden, self.k
        expected = {array_name(l, k): T * H * 2 for l in self.layers for k in self.kinds}
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
        return UnitNames(self.layers, self.kinds, self.hidden)

    def array(self, layer: int, kind: str) -> np.memmap:
        """The (T, H) float16 memmap of one layer × kind (read-only, never loaded whole)."""
        key = (int(layer), kind)
        if key not in self._maps:
            if key[0] not in self.layers or kind not in self.kinds:
                raise RnnvizError(
                    f"layer {layer} kind {kind!r} is not in this store "
                    f"(layers {_join(self.layers)}; kinds {_join(self.kinds)})"
                )
            self._maps[key] = np.memmap(
                self.path / array_name(*key), dtype="<f2", mode="r", shape=(self.length, self.hidden)
            )
        return self._maps[key]

    def locate(self, name: str) -> tuple[int, str, int]:
        """``(layer, kind, index)`` of the unit ``name`` of this store; a one-line error naming what the
        store holds when it is not one of its units (a malformed name gets the name format)."""
        layer, kind, index = parse_unit(name)
        if layer not in self.layers or kind not in self.kinds or index >= self.hidden:
            raise RnnvizError(
                f"unit {name!r} is not in this store (layers {_join(self.layers)}; kinds {_join(self.kinds)}; "
                f"indices 0..{self.hidden - 1})"
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
        return col if col is not None else np.ascontiguousarray(self.array(layer, kind)[:, index])

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
            parts = [self.array(l, k)[start:stop] for l in self.layers for k in self.kinds]
            return np.concatenate(parts, axis=1, dtype=np.float32)
        out = np.empty((stop - start, len(units)), dtype=np.float32)
        for layer, kind, idx, cols in self.groups(units):
            # One contiguous row slice per array, then the columns: a window reads only its own pages.
            out[:, cols] = self.array(layer, kind)[start:stop][:, idx]
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
        """Close the store's memory maps (they reopen on the next read): its files' pages can then leave
        the OS page cache (a benchmark's cold read)."""
        self._maps.clear()
        for name in ("logprob", "topk"):
            self.__dict__.pop(name, None)

    def read_columns(self, layer: int, kind: str, start: int, stop: int, idx: np.ndarray) -> np.ndarray:
        """Rows start:stop of the columns ``idx`` of one array, as a fresh (n, len(idx)) float16 array."""
        block = self.array(layer, kind)[start:stop]
        if len(idx) == self.hidden and (idx == np.arange(self.hidden)).all():
            return np.array(block)
        return block[:, idx]

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
        read_format_json(path / MANIFEST, FORMAT, VERSION, "store manifest")
    except RnnvizError:
        return False
    return True


def open_store(path: str | Path) -> Store:
    """Open a store directory, checking the manifest against the files' sizes."""
    return Store(path)


def _join(xs) -> str:
    return ",".join(map(str, xs))
