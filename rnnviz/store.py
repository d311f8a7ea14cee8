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
is renamed into place, so it appears complete or not at all.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .distributed import Group
from .errors import RnnvizError
from .fsutil import (
    MAX_JSON_BYTES,
    atomic_dir,
    loads_json,
    member,
    read_format_json,
    read_member,
    recover_dir,
    write_json,
)
from .models import CELLS, KINDS, MAX_HIDDEN, MAX_LAYERS, ModelConfig, parse_kinds, parse_layers, parse_unit, unit_names
from .streamstats import STAT_COLUMNS, RunningStats, StreamStats
from .vocab import Vocab

FORMAT = "rnnviz-store"
VERSION = 1
MANIFEST, TEXT, STATS = "manifest.json", "text.txt", "stats.json"
LOGPROB, TOPK_IDS, TOPK_P = "logprob.f32", "topk_ids.u16", "topk_p.f16"


def array_name(layer: int, kind: str) -> str:
    return f"L{layer}.{kind}.f16"


MAX_LENGTH = 1 << 31  # characters in a store (an 8 GB text); the arrays' real sizes are checked too


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

    def _locate(self, name: str) -> tuple[int, str, int]:
        layer, kind, index = parse_unit(name)
        if layer not in self.layers or kind not in self.kinds or index >= self.hidden:
            raise RnnvizError(
                f"unit {name!r} is not in this store (layers {_join(self.layers)}; kinds {_join(self.kinds)}; "
                f"indices 0..{self.hidden - 1})"
            )
        return layer, kind, index

    @cached_property
    def colcache(self):
        """The column-major copies of this store's arrays (:class:`rnnviz.colcache.ColumnCache`)."""
        from .colcache import ColumnCache

        return ColumnCache(self)

    def unit(self, name: str) -> np.ndarray:
        """One unit over the whole text: (T,) float16, e.g. ``store.unit("1:c:17")`` (from the array's
        column-major copy when one has been built: the same values, T·2 bytes read instead of T·H·2)."""
        layer, kind, index = self._locate(name)
        col = self.colcache.column(name)
        return col if col is not None else np.ascontiguousarray(self.array(layer, kind)[:, index])

    def window(self, start: int, stop: int, units: list[str] | None = None) -> np.ndarray:
        """Rows ``start:stop`` (clipped to the text, like a slice) of the given units (default all).

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
        groups: dict[tuple[int, str], tuple[list[int], list[int]]] = {}
        for col, name in enumerate(units):
            layer, kind, index = self._locate(name)
            cols, idx = groups.setdefault((layer, kind), ([], []))
            cols.append(col)
            idx.append(index)
        for (layer, kind), (cols, idx) in groups.items():
            # One contiguous row slice per array, then the columns: a window reads only its own pages.
            out[:, cols] = self.array(layer, kind)[start:stop][:, idx]
        return out

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
        from .checkpoint import WEIGHTS, sha256_file

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


def open_store(path: str | Path) -> Store:
    """Open a store directory, checking the manifest against the files' sizes."""
    return Store(path)


def _join(xs) -> str:
    return ",".join(map(str, xs))


def _as_tensor(a) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))


def _bytes(a, dtype: np.dtype) -> memoryview:
    """A CPU tensor / array -> its little-endian bytes in ``dtype`` (no copy when already right)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return memoryview(np.ascontiguousarray(a, dtype=dtype)).cast("B")


class StoreWriter:
    """Streaming write side: preallocated files filled by row ranges, committed atomically.

    >>> with StoreWriter(path, text, layers=[0], kinds=["h"], model_config=cfg, vocab=v) as w:
    ...     w.observe({(0, "h"): block})              # statistics (any device)
    ...     w.write(0, {(0, "h"): block}, logprob=lp)  # bytes at rows 0..len(block)
    >>> w.store                                       # the opened Store, once the block has exited

    :meth:`write` is thread-safe (positional writes), so a recorder can hand blocks to a writer thread
    while it computes the next one. On leaving the block without error the writer checks that every
    row was written, writes ``text.txt``, ``stats.json`` and ``manifest.json`` and renames the temp
    directory into place; on any error (full disk, Ctrl-C) the temp directory is removed.

    ``streams=B``: statistics kept per stream (:meth:`observe_streams`), the same bits however the streams
    are shared among processes. ``group``: under torchrun, rank 0 creates the files and commits the store;
    every rank writes its own rows into them, then calls :meth:`join` before leaving the block.
    """

    def __init__(
        self,
        path: str | Path,
        text: str,
        *,
        layers: list[int],
        kinds: list[str],
        model_config: ModelConfig | dict,
        vocab: Vocab | list[str],
        topk: int = 0,
        has_logprob: bool = True,
        checkpoint: dict | None = None,
        recorder: dict | None = None,
        overwrite: bool = False,
        streams: int | None = None,
        group: Group | None = None,
    ):
        self.path = Path(path)
        self.group = group or Group()
        self.config = model_config if isinstance(model_config, ModelConfig) else ModelConfig.from_dict(model_config)
        self.vocab = vocab if isinstance(vocab, Vocab) else Vocab.from_json(vocab)
        if not text:
            raise RnnvizError("nothing to record: the text is empty")
        self.text, self.length, self.hidden = text, len(text), self.config.hidden
        if not layers or not kinds:
            raise RnnvizError("a store needs at least one layer and one kind")
        self.layers = parse_layers(layers, self.config.layers)
        self.kinds = parse_kinds(kinds, self.config.cell)  # canonical order: h, c, then gates
        if not 0 <= topk <= len(self.vocab):
            raise RnnvizError(f"topk must be from 0 to the vocabulary size {len(self.vocab)}, got {topk}")
        self.topk, self.has_logprob = int(topk), has_logprob
        self.checkpoint = checkpoint
        self.recorder = dict(recorder or {})  # the caller may add to it until the block exits
        self.overwrite = overwrite
        # One accumulator per layer over all its kinds side by side (n, len(kinds)·H): fewer, larger ops.
        if streams is None:
            self.stats = {l: RunningStats(len(self.kinds) * self.hidden) for l in self.layers}
        else:

            self.stats = {l: StreamStats(len(self.kinds), self.hidden, streams, self.group.device) for l in self.layers}
        self.rows_written = 0
        self.bytes_written = 0
        self.store: Store | None = None
        self._lock = threading.Lock()
        self._stack = ExitStack()
        self._fds: dict[str, int] = {}
        self._given: set[str] = set()  # optional outputs that some write() supplied

    def __enter__(self) -> StoreWriter:
        T, H, K = self.length, self.hidden, self.topk
        sizes = {array_name(l, k): T * H * 2 for l in self.layers for k in self.kinds}
        if self.has_logprob:
            sizes[LOGPROB] = T * 4
        if K:
            sizes.update({TOPK_IDS: T * K * 2, TOPK_P: T * K * 2})
        with ExitStack() as stack:
            tmp = None
            try:
                if self.group.is_main:
                    tmp = stack.enter_context(atomic_dir(self.path, overwrite=self.overwrite))
                    for name, size in sizes.items():
                        fd = self._fds[name] = os.open(tmp / name, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
                        stack.callback(os.close, fd)
                        os.ftruncate(fd, size)
            finally:  # the other ranks learn where the files are, or that rank 0 could not make them
                tmp = self.group.broadcast_object(None if tmp is None else str(tmp))
            if tmp is None:
                raise RnnvizError(f"rank 0 could not create {self.path} (see its error)")
            self.tmp = Path(tmp)
            if not self.group.is_main:  # the others write into rank 0's preallocated files
                for name in sizes:
                    fd = self._fds[name] = os.open(self.tmp / name, os.O_RDWR)
                    stack.callback(os.close, fd)
            self._stack = stack.pop_all()
        return self

    def observe(self, arrays: dict[tuple[int, str], object]) -> None:
        """Fold blocks {(layer, kind): (n, H) float16 values} into the per-unit statistics."""
        for l in self.layers:
            if any((l, k) in arrays for k in self.kinds):
                self.observe_layer(l, torch.cat([_as_tensor(arrays[(l, k)]) for k in self.kinds], 1))

    def observe_streams(self, layer: int, block: torch.Tensor, first: int, counts: list[int]) -> None:
        """Fold one layer's block (len(kinds), g, n, H) of streams ``first..first+g-1`` into the per-stream
        statistics (``streams=`` writers); stream ``first+j`` has ``counts[j]`` real rows."""
        self.stats[layer].update(block, first, counts)

    def join(self) -> None:
        """Under torchrun, on every rank once its rows are written: the ranks' row counts and statistics
        are combined, so that rank 0 can check and commit the store when the block exits."""
        if self.group.world == 1:
            return
        for fd in self._fds.values():
            os.fsync(fd)
        rows = torch.tensor([self.rows_written], dtype=torch.float64, device=self.group.device)
        self.rows_written = int(self.group.all_reduce(rows).item())
        for st in self.stats.values():
            st.reduce(self.group)
        given = torch.tensor([LOGPROB in self._given, TOPK_IDS in self._given], dtype=torch.float64,
                             device=self.group.device)
        self.group.all_reduce(given, "max")
        self._given |= {name for name, v in zip((LOGPROB, TOPK_IDS), given.tolist(), strict=True) if v}

    def observe_layer(self, layer: int, block) -> None:
        """Fold one layer's block into the statistics: (n, len(kinds)·H) or (len(kinds), n, H), kinds in
        manifest order."""
        self.stats[layer].update(_as_tensor(block))

    def write(
        self,
        start: int,
        arrays: dict[tuple[int, str], object],
        logprob=None,
        topk_ids=None,
        topk_p=None,
    ) -> None:
        """Write rows ``start:start+n`` of every array: {(layer, kind): (n, H)} (CPU array or tensor),
        logprob (n,) nats, topk_ids / topk_p (n, K). Every recorded key must be given."""
        n = None
        for key in ((l, k) for l in self.layers for k in self.kinds):
            if key not in arrays:
                raise RnnvizError(f"block for layer {key[0]} kind {key[1]!r} is missing")
            a = arrays[key]
            if n is None:
                n = a.shape[0]
            if tuple(a.shape) != (n, self.hidden):
                raise RnnvizError(f"block for {key} has shape {tuple(a.shape)}, expected ({n}, {self.hidden})")
        if start < 0 or start + n > self.length:
            raise RnnvizError(f"rows {start}:{start + n} fall outside the text (length {self.length})")
        for (l, k), a in arrays.items():
            self._pwrite(array_name(l, k), _bytes(a, np.dtype("<f2")), start * self.hidden * 2)
        if self.has_logprob and logprob is not None:
            self._pwrite(LOGPROB, _bytes(logprob, np.dtype("<f4")), start * 4)
            self._given.add(LOGPROB)
        if self.topk and topk_ids is not None:
            self._given.add(TOPK_IDS)
            self._pwrite(TOPK_IDS, _bytes(topk_ids, np.dtype("<u2")), start * self.topk * 2)
            self._pwrite(TOPK_P, _bytes(topk_p, np.dtype("<f2")), start * self.topk * 2)
        with self._lock:
            self.rows_written += n

    def _pwrite(self, name: str, data: memoryview, offset: int) -> None:
        fd = self._fds[name]
        while data:  # pwrite may write less than asked (signals, huge buffers)
            done = os.pwrite(fd, data, offset)
            data, offset = data[done:], offset + done
            with self._lock:
                self.bytes_written += done

    def __exit__(self, exc_type, exc, tb) -> bool:
        stack, self._stack = self._stack, ExitStack()  # closes the files, then commits or removes the dir
        if exc_type is not None:
            return bool(stack.__exit__(exc_type, exc, tb))
        if not self.group.is_main:  # rank 0 commits the store
            stack.close()
            return False
        with stack:
            self._finish()
        self.store = Store(self.path)
        return False

    def _finish(self) -> None:
        if self.rows_written != self.length:
            raise RnnvizError(f"store incomplete: {self.rows_written} of {self.length} rows written")
        for fd in self._fds.values():
            os.fsync(fd)
        # Optional outputs never supplied are dropped, not left as zeros that would read as data.
        if self.has_logprob and LOGPROB not in self._given:
            self.has_logprob = False
            (self.tmp / LOGPROB).unlink()
        if self.topk and TOPK_IDS not in self._given:
            self.topk = 0
            (self.tmp / TOPK_IDS).unlink()
            (self.tmp / TOPK_P).unlink()
        with open(self.tmp / TEXT, "w", encoding="utf-8", newline="") as f:
            f.write(self.text)
        names = unit_names(self.layers, self.kinds, self.hidden)
        cols: dict[str, list] = {"unit": names, **{c: [] for c in STAT_COLUMNS}}
        for l in self.layers:
            for c, v in self.stats[l].columns().items():
                cols[c].extend(v)
        write_json(self.tmp / STATS, cols)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "length": self.length,
            "cell": self.config.cell,
            "hidden": self.hidden,
            "layers": self.layers,
            "kinds": self.kinds,
            "dtype": "float16",
            "model": self.config.to_dict(),
            "vocab": self.vocab.to_json(),
            "checkpoint": self.checkpoint,
            "recorder": self.recorder,
            "topk": self.topk,
            "has_logprob": self.has_logprob,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rnnviz_version": __version__,
        }
        write_json(self.tmp / MANIFEST, manifest)  # written last: its presence marks a finished store


def write_store(
    path: str | Path,
    text: str,
    arrays: dict[tuple[int, str], np.ndarray],
    model_config: ModelConfig | dict,
    vocab: Vocab | list[str],
    logprob: np.ndarray | None = None,
    topk: tuple[np.ndarray, np.ndarray] | None = None,
    recorder: dict | None = None,
    overwrite: bool = False,
    checkpoint: dict | None = None,
) -> Store:
    """Write a whole store from in-memory arrays {(layer, kind): (T, H)} (for tests and synthetic data).

    ``logprob``: (T,) nats; ``topk``: (ids (T, K), probs (T, K)). Values are stored as float16.
    """
    config = model_config if isinstance(model_config, ModelConfig) else ModelConfig.from_dict(model_config)
    keys = list(arrays)
    layers = sorted({l for l, _ in keys})
    kinds = list(dict.fromkeys(k for _, k in keys))
    missing = [(l, k) for l in layers for k in kinds if (l, k) not in arrays]
    if missing:
        raise RnnvizError(f"arrays must cover every layer × kind; missing {missing[:3]}")
    for key, a in arrays.items():
        if np.shape(a) != (len(text), config.hidden):
            raise RnnvizError(f"array {key} has shape {np.shape(a)}, expected ({len(text)}, {config.hidden})")
    K = 0 if topk is None else int(np.shape(topk[0])[1])
    if logprob is not None and np.shape(logprob) != (len(text),):
        raise RnnvizError(f"logprob has shape {np.shape(logprob)}, expected ({len(text)},)")
    writer = StoreWriter(
        path, text, layers=layers, kinds=kinds, model_config=config, vocab=vocab, topk=K,
        has_logprob=logprob is not None, checkpoint=checkpoint, recorder=recorder, overwrite=overwrite,
    )
    rows = 65536
    with writer:
        for s in range(0, len(text), rows):
            block = {key: torch.from_numpy(np.asarray(a[s : s + rows], dtype=np.float16)) for key, a in arrays.items()}
            writer.observe(block)
            writer.write(
                s,
                block,
                logprob=None if logprob is None else logprob[s : s + rows],
                topk_ids=None if topk is None else topk[0][s : s + rows],
                topk_p=None if topk is None else topk[1][s : s + rows],
            )
    return writer.store
