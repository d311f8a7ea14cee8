"""What every feature shares: the :class:`Feature` record, the default targets, and the vectorised
helpers (line ends, spans, carried values) that the prose and code features are built from."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Feature:
    """A named hypothesis. ``fn(text) -> (T,) float32``; ``doc`` is its exact definition.

    ``predicts(text, values) -> (T,) bool``: the positions t whose *next* character the hypothesis is
    about (the closing quote for ``in_quote``, the line end for ``to_line_end``): ablation reports
    the loss of predicting text[t+1] there.
    """

    name: str
    type: str  # "binary" (0/1) or "numeric"
    domain: str  # "prose" or "code"
    doc: str
    fn: Callable[[str], np.ndarray]
    predicts: Callable[[str, np.ndarray], np.ndarray] | None = None

    @property
    def summary(self) -> str:
        """The definition as one line."""
        return " ".join(self.doc.split())

    def targets(self, text: str, values: np.ndarray) -> np.ndarray:
        """(T,) bool: positions whose next character this hypothesis predicts (see the class doc)."""
        fn = self.predicts or (span_ends if self.type == "binary" else drops)
        return fn(text, values)


# --- helpers (all vectorised over characters, except loops over sparse events) ---


def _codes(text: str) -> np.ndarray:
    """(T,) uint32 code points."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _line_ends(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(is_line_end (T,) bool, is_line_start (T,) bool). Position 0 starts a line."""
    le = (c == 10) | (c == 13)
    start = np.zeros(len(c), dtype=bool)
    if len(c):
        start[0] = True
        # After a line end, unless this is the \n of a \r\n.
        start[1:] = le[:-1] & ~((c[:-1] == 13) & (c[1:] == 10))
    return le, start


def _ffill(values: np.ndarray, defined: np.ndarray, initial: float = 0.0) -> np.ndarray:
    """Carry the last defined value forward: out[t] = values[u], u = max{u <= t: defined[u]}."""
    T = len(values)
    idx = np.where(defined, np.arange(T), -1)
    np.maximum.accumulate(idx, out=idx)
    out = np.where(idx >= 0, values[np.maximum(idx, 0)], initial)
    return out.astype(np.float32)


def _events(T: int, positions: list[int], values: list[float], initial: float = 0.0) -> np.ndarray:
    """A piecewise-constant signal: ``values[j]`` from ``positions[j]`` (increasing) to the next event."""
    v = np.zeros(T, dtype=np.float64)
    d = np.zeros(T, dtype=bool)
    if positions:
        p = np.asarray(positions, dtype=np.int64)
        v[p] = values
        d[p] = True
    return _ffill(v, d, initial)


def _spans(T: int, starts, ends) -> np.ndarray:
    """(T,) float32: 1 inside any [start, end), 0 elsewhere."""
    delta = np.zeros(T + 1, dtype=np.int32)
    np.add.at(delta, np.asarray(starts, dtype=np.int64), 1)
    np.add.at(delta, np.asarray(ends, dtype=np.int64), -1)
    return (np.cumsum(delta[:-1]) > 0).astype(np.float32)


def _reflected_walk(steps: np.ndarray) -> np.ndarray:
    """Running sum of +-1 steps that never goes below 0 (an unmatched closer is ignored)."""
    s = np.cumsum(steps, dtype=np.int64)
    low = np.minimum(np.minimum.accumulate(s), 0) if len(s) else s
    return (s - low).astype(np.float32)


_LE = r"(?:\r\n|\r(?!\n)|\n)"
_PARAGRAPH = re.compile(_LE + r"[ \t]*(?=[\r\n])")  # event at m.end(): the second line end


# --- targets: which next characters a hypothesis predicts ---


def span_ends(text: str, values: np.ndarray) -> np.ndarray:
    """t where a span is on and turns off at t+1: the next character closes it."""
    out = np.zeros(len(values), dtype=bool)
    out[:-1] = (values[:-1] > 0) & (values[1:] == 0)
    return out


def drops(text: str, values: np.ndarray) -> np.ndarray:
    """t where the value falls at t+1."""
    out = np.zeros(len(values), dtype=bool)
    out[:-1] = values[1:] < values[:-1]
    return out
