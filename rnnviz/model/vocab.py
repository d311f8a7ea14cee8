"""Characters <-> integer ids, and what happens to characters the model never saw."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from rnnviz.errors import RnnvizError


class UnknownCharsError(RnnvizError):
    """The text holds characters that are not in the vocabulary."""

    def __init__(self, unknown: dict[str, tuple[int, int]]):
        self.unknown = unknown  # char -> (count, first position)
        shown = ", ".join(
            f"{ch!r} x{n} (first at {pos})" for ch, (n, pos) in list(unknown.items())[:10]
        )
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        super().__init__(
            f"{len(unknown)} character(s) not in the model's vocabulary: {shown}{more}. "
            "Use --unknown skip or --unknown replace:CHAR to handle them."
        )


class Vocab:
    """An ordered list of characters; id i is ``chars[i]``.

    >>> v = Vocab.from_text("hello")
    >>> v.decode(v.encode("hole"))
    'hole'
    """

    def __init__(self, chars: Iterable[str]):
        self.chars: list[str] = list(chars)
        if not self.chars:
            raise RnnvizError("a vocabulary needs at least one character")
        if any(not isinstance(c, str) or len(c) != 1 for c in self.chars):
            raise RnnvizError("vocabulary entries must be single characters")
        if len(set(self.chars)) != len(self.chars):
            raise RnnvizError("vocabulary has duplicate characters")
        bad = [c for c in self.chars if "\ud800" <= c <= "\udfff"]
        if bad:  # only Python strings hold these (surrogateescape): no UTF-8 file, checkpoint or store can
            raise RnnvizError(f"the text holds {bad[0]!r}, a lone surrogate: decode it as UTF-8 first")
        self.index: dict[str, int] = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        """The sorted set of characters in ``text``."""
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars

    def __contains__(self, ch: str) -> bool:
        return ch in self.index

    def _ids(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """``text``'s code points (T,) uint32 and ids (T,) int64, -1 where outside the vocabulary (a lone
        surrogate included): one lookup table over code points, ~50x faster than a Python loop on MBs."""
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        table = np.full(max(int(codes.max(initial=0)), max(map(ord, self.chars), default=0)) + 1, -1, np.int64)
        table[[ord(c) for c in self.chars]] = np.arange(len(self.chars))
        return codes, table[codes]

    def unknown_chars(self, text: str) -> dict[str, tuple[int, int]]:
        """Characters of ``text`` outside the vocabulary: char -> (count, first position)."""
        return _unknown(*self._ids(text))

    def prepare(self, text: str, unknown: str = "error") -> str:
        """Apply the unknown-character policy to ``text`` and return text that encodes cleanly.

        ``unknown``: ``"error"`` (raise :class:`UnknownCharsError`), ``"skip"`` (drop them),
        or ``"replace:X"`` (map each to the in-vocabulary character X).
        """
        if unknown not in ("error", "skip") and not (unknown.startswith("replace:") and len(unknown) == 9):
            raise RnnvizError(f"unknown-character policy must be error, skip or replace:X, not {unknown!r}")
        bad = self.unknown_chars(text)
        if not bad:
            return text
        if unknown == "error":
            raise UnknownCharsError(bad)
        if unknown == "skip":
            return "".join(ch for ch in text if ch in self.index)
        rep = unknown[-1]  # replace:X
        if rep not in self.index:
            raise RnnvizError(f"replacement character {rep!r} is not in the vocabulary")
        return "".join(ch if ch in self.index else rep for ch in text)

    def encode(self, text: str) -> np.ndarray:
        """``text`` -> int64 ids, shape (len(text),). Raises on characters outside the vocabulary."""
        codes, ids = self._ids(text)
        if (ids < 0).any():
            raise UnknownCharsError(_unknown(codes, ids))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def to_json(self) -> list[str]:
        return list(self.chars)

    @classmethod
    def from_json(cls, chars: list[str]) -> Vocab:
        return cls(chars)


def _unknown(codes: np.ndarray, ids: np.ndarray) -> dict[str, tuple[int, int]]:
    """From code points and ids (-1: unknown), each unknown character's (count, first position), in order of
    first appearance: one pass (not one scan of the text per character: 31,000 distinct ones in 9 MB took a
    minute)."""
    where = np.flatnonzero(ids < 0)
    chars, first, counts = np.unique(codes[where], return_index=True, return_counts=True)
    return {chr(int(chars[i])): (int(counts[i]), int(where[first[i]])) for i in np.argsort(first, kind="stable")}


class TokenVocab:
    """A token model's vocabulary (a word, BPE or any other tokenizer's): id i is the string ``chars[i]``,
    any string of at most ``MAX_CHARS`` characters (named ``chars`` as :class:`Vocab`'s entries are, so
    that views show either the same way). Only held and shown: rnnviz never tokenizes with it."""

    MAX_CHARS = 1000

    def __init__(self, tokens: Iterable[str]):
        from rnnviz.model.cells import MAX_VOCAB

        self.chars: list[str] = list(tokens)
        if len(self.chars) > MAX_VOCAB:  # empty: a store of states without predictions
            raise RnnvizError(f"a token vocabulary has at most {MAX_VOCAB:,} entries, got {len(self.chars):,}")
        if any(not isinstance(t, str) or len(t) > self.MAX_CHARS for t in self.chars):
            raise RnnvizError(f"token vocabulary entries must be strings of at most {self.MAX_CHARS} characters")

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenVocab) and self.chars == other.chars

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.chars[int(i)] for i in ids)

    def to_json(self) -> list[str]:
        return list(self.chars)

    @classmethod
    def from_json(cls, tokens: list[str]) -> TokenVocab:
        return cls(tokens)
