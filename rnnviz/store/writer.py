"""The activation store's write side: :class:`StoreWriter` fills a store's preallocated files by row ranges
(from one process or a torchrun job) and commits it atomically; :func:`write_store` writes one from arrays.

The layout and the reading side are in :mod:`rnnviz.store.reader`.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch

from rnnviz import __version__
from rnnviz.errors import RnnvizError
from rnnviz.fsutil import atomic_dir, exclusive, pwrite_all, write_json
from rnnviz.model.charrnn import (
    CELLS,
    MAX_HIDDEN,
    MAX_LAYERS,
    SIGMOID_KINDS,
    ModelConfig,
    kind_width,
    parse_kinds,
    parse_layers,
)
from rnnviz.model.distributed import Group
from rnnviz.model.vocab import TokenVocab, Vocab
from rnnviz.store.arrays import block_rows
from rnnviz.store.manifest import (
    EXTERNAL,
    FORMAT,
    LOGPROB,
    MANIFEST,
    SPANS,
    STATS,
    TEXT,
    TOPK_IDS,
    TOPK_P,
    VERSION,
    VERSION_OPEN,
    UnitNames,
    array_name,
    kinds_ok,
)
from rnnviz.store.reader import Store, is_store
from rnnviz.store.stats import STAT_COLUMNS, RunningStats, StreamStats, saturating_ranges
from rnnviz.store.tokens import first_bad_span

F16_MAX = 65504.0  # the largest finite float16


def store_lock(path: str | Path, note: str = "rnnviz, writing a store"):
    """Hold the store being written at ``path`` for this process (:func:`rnnviz.fsutil.exclusive`): its lock
    is ``.NAME.lock`` beside it, never inside (the store is a temp folder renamed into place whole), and is
    removed once done. A second writer of the same store is one error naming the first."""
    path = Path(path)
    return exclusive(path.parent / f".{path.name}.lock", f"{path} is being written", note)


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
        vocab: Vocab | TokenVocab | list[str],
        model_config: ModelConfig | dict | None = None,
        topk: int = 0,
        has_logprob: bool = True,
        checkpoint: dict | None = None,
        recorder: dict | None = None,
        overwrite: bool = False,
        streams: int | None = None,
        group: Group | None = None,
        cell: str | None = None,
        widths: dict[tuple[int, str], int] | None = None,
        spans: np.ndarray | None = None,
        source: dict | None = None,
    ):
        self.path = Path(path)
        self.group = group or Group()
        if not text:
            raise RnnvizError("nothing to record: the text is empty")
        self.config = model_config if isinstance(model_config, (ModelConfig, type(None))) \
            else ModelConfig.from_dict(model_config)
        self.spans = None if spans is None else check_spans(spans, len(text))
        tokens = self.spans is not None
        self.vocab = vocab if isinstance(vocab, (Vocab, TokenVocab)) else (TokenVocab if tokens else Vocab)(vocab)
        self.text, self.length = text, len(text) if self.spans is None else len(self.spans)
        if not layers or not kinds:
            raise RnnvizError("a store needs at least one layer and one kind")
        self.cell, self.layers, self.kinds, self.widths = _layout(self.config, cell, layers, kinds, widths)
        self.hidden = self.config.hidden if self.config is not None else \
            max(self.widths.values(), key=list(self.widths.values()).count)  # the most common width
        if not 0 <= topk <= len(self.vocab):
            raise RnnvizError(f"topk must be from 0 to the vocabulary size {len(self.vocab)}, got {topk}")
        self.topk, self.has_logprob = int(topk), has_logprob
        self.checkpoint, self.source = checkpoint, source
        self.recorder = dict(recorder or {})  # the caller may add to it until the block exits
        self.overwrite = overwrite
        self.streams = streams
        if streams is not None and len(set(self.widths.values())) > 1:
            raise RnnvizError("per-stream statistics need arrays of one width")
        self.rewind()
        self.store: Store | None = None
        self._lock = threading.Lock()
        self._stack = ExitStack()
        self._fds: dict[str, int] = {}
        self._given: set[str] = set()  # optional outputs that some write() supplied

    @property
    def version(self) -> int:
        """1 for what older rnnviz reads (a char store of our CharRNN), 2 where a store needs more."""
        plain = (self.spans is None and self.cell != EXTERNAL and self.source is None
                 and len(set(self.widths.values())) == 1)
        return VERSION if plain else VERSION_OPEN

    def rewind(self) -> None:
        """Forget every row written and every statistic: the rows will all be written again (a recorder
        that records once more from corrected start states)."""
        # One accumulator per layer over all its kinds side by side (n, len(kinds)·H): fewer, larger ops.
        sat = {l: saturating_ranges(self.kinds, [self.widths[(l, k)] for k in self.kinds],
                                    SIGMOID_KINDS.get(self.cell, ())) for l in self.layers}
        if self.streams is None:
            self.stats = {l: RunningStats(sum(self.widths[(l, k)] for k in self.kinds), sat[l]) for l in self.layers}
        else:
            self.stats = {l: StreamStats(len(self.kinds), self.hidden, self.streams, self.group.device, sat[l])
                          for l in self.layers}
        self.rows_written = 0

    def __enter__(self) -> StoreWriter:
        T, K = self.length, self.topk
        sizes = {array_name(l, k): T * w * 2 for (l, k), w in self.widths.items()}
        if self.has_logprob:
            sizes[LOGPROB] = T * 4
        if K:
            sizes.update({TOPK_IDS: T * K * 2, TOPK_P: T * K * 2})
        with ExitStack() as stack:
            tmp = None
            try:
                if self.group.is_main:  # rank 0 holds the store until it is in place (released last)
                    stack.enter_context(store_lock(self.path))
                    tmp = stack.enter_context(atomic_dir(self.path, overwrite=self.overwrite, ours=is_store))
                    for name, size in sizes.items():
                        fd = self._fds[name] = os.open(tmp / name, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
                        stack.callback(os.close, fd)
                        os.ftruncate(fd, size)
            finally:  # the other ranks learn where the files are, or that rank 0 could not make them
                tmp = self.group.broadcast_object(None if tmp is None else str(tmp))
            if tmp is None:  # rank 0 failed or was stopped: its error is the one to show, and torchrun stops
                # this rank too (a RuntimeError, which the CLI takes for such an echo: rnnviz.cli._Group)
                raise RuntimeError(f"rank 0 could not create {self.path}")
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
            if tuple(a.shape) != (n, self.widths[key]):
                raise RnnvizError(f"block for {key} has shape {tuple(a.shape)}, expected ({n}, {self.widths[key]})")
        if start < 0 or start + n > self.length:
            raise RnnvizError(f"rows {start}:{start + n} fall outside the text (length {self.length})")
        for (l, k), a in arrays.items():
            self._pwrite(array_name(l, k), _bytes(a, np.dtype("<f2")), start * self.widths[(l, k)] * 2)
        if self.has_logprob and logprob is not None:
            self._pwrite(LOGPROB, _bytes(logprob, np.dtype("<f4")), start * 4)
            self._given.add(LOGPROB)
        if self.topk and topk_ids is not None:
            self._given.add(TOPK_IDS)
            self._pwrite(TOPK_IDS, _bytes(topk_ids, np.dtype("<u2")), start * self.topk * 2)
            self._pwrite(TOPK_P, _bytes(topk_p, np.dtype("<f2")), start * self.topk * 2)
        with self._lock:
            self.rows_written += n

    def write_logits(self, start: int, arrays: dict[tuple[int, str], object], logits: torch.Tensor,
                     ids: torch.Tensor) -> None:
        """:meth:`write` rows ``start:start+n`` from the model's next-token ``logits`` (n, V): log p(next id) in nats
        (``ids`` (T,): every row's id, so row t predicts ids[t+1]; NaN after the last) and the top-K predictions."""
        n = logits.shape[0]
        logp = logits.float().log_softmax(-1)  # (n, V)
        nxt = ids[start + 1 : start + n + 1].to(logp.device)  # one fewer at the text's end
        lp = torch.full((n,), float("nan"), device=logp.device)
        lp[: len(nxt)] = logp[torch.arange(len(nxt), device=logp.device), nxt]
        top_p, top_i = logp.topk(self.topk, -1) if self.topk else (None, None)
        self.write(start, arrays, logprob=lp.cpu(), topk_ids=None if not self.topk else top_i.int().cpu(),
                   topk_p=None if not self.topk else top_p.exp().half().cpu())

    def _pwrite(self, name: str, data: memoryview, offset: int) -> None:
        pwrite_all(self._fds[name], data, offset)

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
        if self.spans is not None:
            with open(self.tmp / SPANS, "wb") as f:
                f.write(_bytes(self.spans, np.dtype("<i8")))
        names = list(UnitNames(self.layers, self.kinds, self.hidden, self.widths))
        cols: dict[str, list] = {"unit": names, **{c: [] for c in STAT_COLUMNS}}
        for l in self.layers:
            for c, v in self.stats[l].columns().items():
                cols[c].extend(v)
        write_json(self.tmp / STATS, cols)
        manifest = {
            "format": FORMAT,
            "version": self.version,
            "length": self.length,
            "cell": self.cell,
            "hidden": self.hidden,
            "layers": self.layers,
            "kinds": self.kinds,
            "dtype": "float16",
            "model": None if self.config is None or self.spans is not None else self.config.to_dict(),
            "vocab": self.vocab.to_json(),
            "checkpoint": self.checkpoint,
            "recorder": self.recorder,
            "topk": self.topk,
            "has_logprob": self.has_logprob,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rnnviz_version": __version__,
        }
        if self.version == VERSION_OPEN:
            manifest["widths"] = {f"{l}:{k}": w for (l, k), w in self.widths.items() if w != self.hidden}
            manifest["tokens"] = None if self.spans is None else {"chars": len(self.text)}
            manifest["source"] = self.source
        write_json(self.tmp / MANIFEST, manifest)  # written last: its presence marks a finished store


def check_spans(spans, n_chars: int) -> np.ndarray:
    """``spans`` as a (T, 2) int64 array of each token's [start, end) in a text of ``n_chars`` characters,
    checked as the reader checks them: every token non-empty, in order, no overlap, inside the text."""
    a = np.asarray(spans)
    if a.ndim != 2 or a.shape[1] != 2 or not len(a) or not np.issubdtype(a.dtype, np.integer):
        raise RnnvizError(f"token spans must be a (T, 2) integer array of [start, end) offsets, got shape "
                          f"{a.shape} of {a.dtype}")
    a = a.astype(np.int64)
    t = first_bad_span(a, 0, n_chars)
    if t is not None:
        raise RnnvizError(f"token {t:,} spans characters {a[t].tolist()}: spans must be non-empty, in order, "
                          f"without overlap, inside the text's {n_chars:,} characters")
    return a


def _layout(config: ModelConfig | None, cell: str | None, layers, kinds, widths) -> tuple[str, list, list, dict]:
    """(cell, layers, kinds, {(layer, kind): width}) of a store: from a CharRNN's config, or given (a user's
    module, external states), checked as the reader checks a manifest."""
    if config is not None:
        layers, kinds = parse_layers(layers, config.layers), parse_kinds(kinds, config.cell)
        return config.cell, layers, kinds, {(l, k): kind_width(config.cell, config.hidden, k) for l in layers
                                            for k in kinds}
    if cell not in (*CELLS, EXTERNAL):
        raise RnnvizError(f"cell must be one of {', '.join(CELLS)}, {EXTERNAL}, got {cell!r}")
    layers = sorted(layers)
    if not all(type(l) is int and 0 <= l < MAX_LAYERS for l in layers) or len(set(layers)) != len(layers):
        raise RnnvizError(f"layers must be distinct integers from 0 to {MAX_LAYERS - 1}, got {layers}")
    kinds = list(kinds) if cell == EXTERNAL else parse_kinds(list(kinds), cell)
    if not kinds_ok(cell, kinds):
        raise RnnvizError(f"kinds of external states are distinct lower-case names (a-z, 0-9, _; at most 24 "
                          f"characters, starting with a letter), got {kinds}")
    widths = widths or {}
    missing = [f"{l}:{k}" for l in layers for k in kinds if (l, k) not in widths]
    if missing:
        raise RnnvizError(f"no width given for {', '.join(missing[:3])}")
    out = {(l, k): widths[(l, k)] for l in layers for k in kinds}
    if not all(type(w) is int and 1 <= w <= MAX_HIDDEN for w in out.values()):
        raise RnnvizError(f"every array's width must be an integer from 1 to {MAX_HIDDEN:,}")
    return cell, layers, kinds, out


def write_store(
    path: str | Path,
    text: str,
    arrays: dict[tuple[int, str], np.ndarray],
    model_config: ModelConfig | dict | None = None,
    vocab: Vocab | TokenVocab | list[str] | None = None,
    logprob: np.ndarray | None = None,
    topk: tuple[np.ndarray, np.ndarray] | None = None,
    recorder: dict | None = None,
    overwrite: bool = False,
    checkpoint: dict | None = None,
    cell: str | None = None,
    spans: np.ndarray | None = None,
    source: dict | None = None,
    progress=None,
    finite: bool = False,
) -> Store:
    """Write a whole store from arrays {(layer, kind): (T, width)} (any array-like with slicing: numpy, a
    memmap, an HDF5 dataset), copied a block of rows at a time (at most 65,536 rows, 64 MB of float32 an
    array), so memory stays bounded.

    ``model_config``: the CharRNN they came from, or None with ``cell`` (rnn, gru, lstm, or "external" for
    states with free kind names) and each array's own width. ``spans`` (T, 2): rows are tokens with these
    [start, end) offsets in ``text`` (else one row per character). ``logprob``: (T,) nats; ``topk``:
    (ids (T, K), probs (T, K)). Values are stored as float16. ``progress(rows)`` is called after each block.
    ``finite``: refuse NaN, ±inf and values past float16's range (a user's arrays; tests write NaN stores on
    purpose).
    """
    if vocab is None:
        raise RnnvizError("write_store needs the vocabulary")
    keys = list(arrays)
    layers = sorted({l for l, _ in keys})
    kinds = list(dict.fromkeys(k for _, k in keys))
    missing = [(l, k) for l in layers for k in kinds if (l, k) not in arrays]
    if missing:
        raise RnnvizError(f"arrays must cover every layer × kind; missing {missing[:3]}")
    T = len(text) if spans is None else len(spans)
    for key, a in arrays.items():
        shape = tuple(np.shape(a))
        if len(shape) != 2 or shape[0] != T or (model_config is not None and shape[1] != _hidden(model_config)):
            want = f"({T}, {_hidden(model_config)})" if model_config is not None else f"({T}, width)"
            raise RnnvizError(f"array {key} has shape {shape}, expected {want}")
    K = 0 if topk is None else int(np.shape(topk[0])[1])
    if logprob is not None and np.shape(logprob) != (T,):
        raise RnnvizError(f"logprob has shape {np.shape(logprob)}, expected ({T},)")
    writer = StoreWriter(
        path, text, layers=layers, kinds=kinds, model_config=model_config, vocab=vocab, topk=K,
        has_logprob=logprob is not None, checkpoint=checkpoint, recorder=recorder, overwrite=overwrite,
        cell=cell, widths={key: int(np.shape(a)[1]) for key, a in arrays.items()}, spans=spans, source=source,
    )
    rows = block_rows(max(writer.widths.values()))
    with writer:
        for s in range(0, T, rows):
            block = {key: _block(key, a, s, rows, finite) for key, a in arrays.items()}
            writer.observe(block)
            writer.write(
                s,
                block,
                logprob=None if logprob is None else logprob[s : s + rows],
                topk_ids=None if topk is None else topk[0][s : s + rows],
                topk_p=None if topk is None else topk[1][s : s + rows],
            )
            if progress is not None:
                progress(min(rows, T - s))
    return writer.store


def _block(key: tuple[int, str], a, start: int, rows: int, finite: bool) -> torch.Tensor:
    """Rows ``start:start+rows`` of one array (T, width) as a float16 tensor. ``finite``: refuse NaN, ±inf
    and values past float16's ±65,504 (which would be stored as ±inf), naming the array (and ``a.label``,
    where it has one: the dataset of a file)."""
    with np.errstate(over="ignore", invalid="ignore"):  # float64 past float32's range: inf, refused below
        b = np.asarray(a[start : start + rows], dtype=np.float32)
    if finite:
        bad = ~(np.abs(b) <= F16_MAX)  # NaN compares False: bad too
        if bad.any():
            r = int(np.flatnonzero(bad.any(axis=1))[0])
            name = f"{key[0]}:{key[1]}" + (f" ({a.label})" if isinstance(getattr(a, "label", None), str) else "")
            raise RnnvizError(f"array {name} holds {b[r][bad[r]][0]} at row {start + r:,}: values must be finite "
                              f"and within float16's ±{F16_MAX:,.0f}")
    return torch.from_numpy(b.astype(np.float16))


def _hidden(config: ModelConfig | dict) -> int:
    return config.hidden if isinstance(config, ModelConfig) else ModelConfig.from_dict(config).hidden
