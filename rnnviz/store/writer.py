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
from rnnviz.fsutil import atomic_dir, exclusive, write_json
from rnnviz.model.charrnn import ModelConfig, parse_kinds, parse_layers, unit_names
from rnnviz.model.distributed import Group
from rnnviz.model.vocab import Vocab
from rnnviz.store.reader import (
    FORMAT,
    LOGPROB,
    MANIFEST,
    STATS,
    TEXT,
    TOPK_IDS,
    TOPK_P,
    VERSION,
    Store,
    array_name,
    is_store,
)
from rnnviz.store.stats import STAT_COLUMNS, RunningStats, StreamStats


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
        self.streams = streams
        self.rewind()
        self.bytes_written = 0
        self.store: Store | None = None
        self._lock = threading.Lock()
        self._stack = ExitStack()
        self._fds: dict[str, int] = {}
        self._given: set[str] = set()  # optional outputs that some write() supplied

    def rewind(self) -> None:
        """Forget every row written and every statistic: the rows will all be written again (a recorder
        that records once more from corrected start states)."""
        # One accumulator per layer over all its kinds side by side (n, len(kinds)·H): fewer, larger ops.
        if self.streams is None:
            self.stats = {l: RunningStats(len(self.kinds) * self.hidden) for l in self.layers}
        else:
            self.stats = {l: StreamStats(len(self.kinds), self.hidden, self.streams, self.group.device)
                          for l in self.layers}
        self.rows_written = 0

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
                if self.group.is_main:  # rank 0 holds the store until it is in place (released last)
                    stack.enter_context(store_lock(self.path))
                    tmp = stack.enter_context(atomic_dir(self.path, overwrite=self.overwrite, ours=is_store))
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
