"""Reading text strictly, the 90/5/5 split, and contiguous batch streams for truncated BPTT."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import RnnvizError

SPLITS = {"train": (0.0, 0.90), "val": (0.90, 0.95), "test": (0.95, 1.0)}


def read_text(path: str | Path) -> str:
    """Read a file as strict UTF-8, keeping every character as it is in the file.

    No newline translation (CRLF stays CRLF) and a leading BOM is kept as a character, so that
    character counts and positions match the file's bytes as decoded.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RnnvizError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RnnvizError(f"{path}: is a directory, expected a text file") from None
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


def split(text: str, name: str) -> str:
    """The named part of the 90/5/5 split of Karpathy et al. (2015), in file order (no shuffling)."""
    if name not in SPLITS:
        raise RnnvizError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
    lo, hi = SPLITS[name]
    n = len(text)
    return text[int(n * lo) : int(n * hi)]


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
