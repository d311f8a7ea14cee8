"""Columns a pass over a store keeps over the whole text (a text's rule values, each feature and its control):
in memory while they fit in the pass's share of the memory setting, else in an unnamed temporary file that is
read back a block of rows at a time.

The file is created beside the store (``O_TMPFILE``: it has no name, and goes when it is closed or the process
dies), else in the temp directory when the store's directory is read-only. Each column is written once, whole
and contiguous, as it is computed, so a column costs its own bytes in memory once and a block's rows after.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from rnnviz.fsutil import pread_into, pwrite_all


class Scratch:
    """(T,) columns of any dtype, numbered in the order they are added. ``limit``: bytes they may take in
    memory (None: no limit); past it every column goes to the file (``spilled``)."""

    def __init__(self, length: int, limit: int | None, where: str | Path | None = None):
        self.length, self.limit, self.where = int(length), limit, where
        self._mem: list[np.ndarray] = []  # the columns while in memory
        self._cols: list[tuple[int, np.dtype]] = []  # (byte offset in the file, dtype) once spilled
        self._file = None
        self._end = 0

    @property
    def spilled(self) -> bool:
        """Whether the columns are in the file (else in memory)."""
        return self._file is not None

    def __len__(self) -> int:
        return len(self._cols) if self.spilled else len(self._mem)

    def add(self, values: np.ndarray) -> int:
        """Keep a (T,) column; returns its number."""
        values = np.ascontiguousarray(values)
        if values.shape != (self.length,):
            raise ValueError(f"a scratch column has shape ({self.length},), got {values.shape}")
        if not self.spilled:
            held = sum(v.nbytes for v in self._mem) + values.nbytes
            if self.limit is None or held <= self.limit:
                self._mem.append(values)
                return len(self._mem) - 1
            self._spill()
        self._write(values)
        return len(self._cols) - 1

    def get(self, j: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows start:stop of column ``j`` (a read-only view in memory, a fresh array from the file)."""
        stop = self.length if stop is None else stop
        if not self.spilled:
            return self._mem[j][start:stop]
        offset, dtype = self._cols[j]
        out = np.empty(max(stop - start, 0), dtype=dtype)
        self._read(out, offset + start * dtype.itemsize)
        return out

    def stack(self, cols, start: int, stop: int, dtype=None, out: np.ndarray | None = None) -> np.ndarray:
        """(len(cols), stop - start): rows start:stop of the columns ``cols``, one row each (in the first
        stop - start columns of ``out`` when given: a buffer reused from block to block)."""
        cols = list(cols)
        if out is None:
            out = np.empty((len(cols), stop - start), dtype=dtype or (self._dtype(cols[0]) if cols else np.float32))
        out = out[:, : stop - start]
        for i, j in enumerate(cols):
            if self.spilled and self._cols[j][1] == out.dtype:
                self._read(out[i], self._cols[j][0] + start * out.dtype.itemsize)
            else:
                out[i] = self.get(j, start, stop)
        return out

    def close(self) -> None:
        """Free the columns (the file goes with its descriptor)."""
        self._mem.clear()
        if self._file is not None:
            self._file.close()
        self._file = None

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _dtype(self, j: int) -> np.dtype:
        return self._cols[j][1] if self.spilled else self._mem[j].dtype

    def _spill(self) -> None:
        """Move the columns held so far into the file."""
        for where in (self.where, None):  # beside the store, else the temp directory
            try:
                self._file = tempfile.TemporaryFile(dir=where)
                break
            except OSError:
                if where is None:
                    raise
        held, self._mem = self._mem, []
        for v in held:
            self._write(v)

    def _write(self, values: np.ndarray) -> None:
        self._cols.append((self._end, values.dtype))
        self._end = pwrite_all(self._file.fileno(), memoryview(values).cast("B"), self._end)

    def _read(self, out: np.ndarray, pos: int) -> None:
        pread_into(self._file.fileno(), out, pos, "a scratch file was cut short (its disk was full?)")
