"""Reading text strictly, a window of it, the 90/5/5 split, and contiguous batch streams for truncated BPTT."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rnnviz.errors import RnnvizError

MAX_TEXT_BYTES = 1 << 31  # 2 GiB: checked before reading (a store holds at most 2³¹ characters)

SPLITS = {"train": (0.0, 0.90), "val": (0.90, 0.95), "test": (0.95, 1.0)}


def read_text(path: str | Path) -> str:
    """Read a file as strict UTF-8, keeping every character as it is in the file.

    No newline translation (CRLF stays CRLF) and a leading BOM is kept as a character, so that
    character counts and positions match the file's bytes as decoded.
    """
    path = Path(path)
    try:  # non-blocking: a FIFO cannot make us wait; a device or FIFO is refused on the open descriptor
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise RnnvizError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RnnvizError(f"{path}: is a directory, expected a text file") from None
    except OSError as e:
        raise RnnvizError(f"{path}: cannot read ({e.strerror})") from None
    st = os.fstat(fd)
    problem = ("is a directory, expected a text file" if stat.S_ISDIR(st.st_mode)
               else "not a regular file (a FIFO or device), expected a text file" if not stat.S_ISREG(st.st_mode)
               else f"{st.st_size:,} bytes, more than the {MAX_TEXT_BYTES:,} a text may have"
               if st.st_size > MAX_TEXT_BYTES else None)
    if problem:
        os.close(fd)
        raise RnnvizError(f"{path}: {problem}")
    with os.fdopen(fd, "rb") as f:
        try:
            raw = f.read(st.st_size)  # what it held when checked
        except OSError as e:
            raise RnnvizError(f"{path}: cannot read ({e.strerror})") from None
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise RnnvizError(
            f"{path}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}, line {line})"
        ) from None
    if not text:
        raise RnnvizError(f"{path}: the file is empty")
    return text


def check_window(start: int, length: int | None) -> None:
    """The one rule for a window of a text: ``start`` >= 0 and ``length`` >= 1 characters, or None for
    "to the end" (0 is an error, not another way to say it; a length past the end stops at the end)."""
    if start < 0:
        raise RnnvizError(f"--start must be >= 0, got {start}")
    if length is not None and length < 1:
        raise RnnvizError(f"--length must be >= 1, got {length}")


def text_window(text: str, start: int = 0, length: int | None = None, source: str = "the text") -> str:
    """``text[start : start + length]``, in characters (code points), checked by :func:`check_window`.

    ``length=None`` runs to the end, and a length past the end stops at the end; a ``start`` at or past
    the end is an error that names ``source`` (the file the text came from).
    """
    check_window(start, length)
    if start >= len(text):
        raise RnnvizError(f"--start {start} is past the end of {source} ({len(text)} characters)")
    return text[start : None if length is None else start + length]


def split(text: str, name: str) -> str:
    """The named part of the 90/5/5 split of Karpathy et al. (2015), in file order (no shuffling)."""
    return text[slice(*split_bounds(len(text), name))]


def split_bounds(n: int, name: str) -> tuple[int, int]:
    """[start, stop) of the named part of the 90/5/5 split of a text of ``n`` characters."""
    if name not in SPLITS:
        raise RnnvizError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
    lo, hi = SPLITS[name]
    return int(n * lo), int(n * hi)


class BatchStream:
    """Contiguous streams for truncated BPTT.

    The token array is cut into ``batch`` equal contiguous streams; step k yields the k-th window
    of ``seq_len`` characters of every stream, so that the hidden state at the end of one batch is
    the right initial state for the next. ``position`` (the step within the epoch) is all that is
    needed to resume exactly.
    """

    def __init__(self, ids: np.ndarray, batch: int, seq_len: int):
        if batch < 1 or seq_len < 1:
            raise RnnvizError("batch and seq-len must be positive")
        per_stream = (len(ids) - 1) // batch
        self.steps_per_epoch = per_stream // seq_len
        if self.steps_per_epoch < 1:
            raise RnnvizError(
                f"text too short: {len(ids)} characters cannot fill one batch of "
                f"{batch} x {seq_len} (+1); use a smaller --batch or --seq-len"
            )
        n = per_stream * batch
        self.x = np.ascontiguousarray(ids[:n].reshape(batch, per_stream))  # (B, L)
        self.y = np.ascontiguousarray(ids[1 : n + 1].reshape(batch, per_stream))  # (B, L)
        self.batch, self.seq_len = batch, seq_len

    @property
    def chars_per_step(self) -> int:
        return self.batch * self.seq_len

    def get(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets of step ``step`` of an epoch, each (B, T) int64."""
        a = step * self.seq_len
        return self.x[:, a : a + self.seq_len], self.y[:, a : a + self.seq_len]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for k in range(self.steps_per_epoch):
            yield self.get(k)
