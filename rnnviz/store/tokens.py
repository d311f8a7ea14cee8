"""Tokens and their characters: how rows of a token store meet the text it shows.

A token store's rows are tokens; ``spans.i64`` gives each token's [start, end) in ``text.txt``. A user
gives tokens as strings (joined with spaces into the text, as LSTMVis shows words), as strings found in
order in their own text, or as (start, end) spans of it. Features computed per character are read at each
token's last character (:meth:`rnnviz.store.reader.Store.at_rows`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from rnnviz.errors import RnnvizError

Tokens = Sequence[str] | np.ndarray | Callable[[str], Sequence]


def first_bad_span(spans: np.ndarray, prev_end: int, n_chars: int) -> int | None:
    """The one rule for token spans, over a block (n, 2) that follows a token ending at ``prev_end``: the
    index of the first span that is empty, starts before the previous one ended, or ends past the text's
    ``n_chars`` characters; None when every span is good."""
    starts, ends = spans[:, 0], spans[:, 1]
    prev = np.concatenate([[prev_end], ends[:-1]])
    bad = np.flatnonzero((starts < prev) | (ends <= starts) | (ends > n_chars))
    return int(bad[0]) if len(bad) else None


def token_spans(tokens: Tokens, text: str | None = None) -> tuple[str, np.ndarray]:
    """``(text, spans (T, 2) int64)`` for ``tokens``:

    - strings, no ``text``: the text is the tokens joined by single spaces;
    - strings and ``text``: each token is found in the text in order, after the previous one
      (a token that is not there, such as ``<eos>``, is an error naming it: map it to its text first);
    - a (T, 2) integer array of [start, end) offsets into ``text``;
    - a callable: ``tokens(text)`` gives one of the above.
    """
    if callable(tokens):
        if text is None:
            raise RnnvizError("a tokenizer (a callable) needs the text to tokenize")
        tokens = tokens(text)
    if isinstance(tokens, str):
        raise RnnvizError("tokens must be a sequence of token strings or of (start, end) spans, not one string")
    arr = np.asarray(tokens) if not isinstance(tokens, list) or (tokens and not isinstance(tokens[0], str)) \
        else None
    if arr is not None and arr.ndim == 2 and np.issubdtype(arr.dtype, np.integer):
        if text is None:
            raise RnnvizError("token spans need the text they point into (text=...)")
        return text, arr.astype(np.int64)
    tokens = list(tokens)
    if not tokens:
        raise RnnvizError("no tokens given")
    bad = next((i for i, t in enumerate(tokens) if not isinstance(t, str) or not t), None)
    if bad is not None:
        raise RnnvizError(f"token {bad:,} is {tokens[bad]!r}: tokens are non-empty strings (or give spans)")
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    if text is None:
        starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
        return " ".join(tokens), np.stack([starts, starts + lengths], 1)
    return text, _find_in(text, tokens, lengths)


def _find_in(text: str, tokens: list[str], lengths: np.ndarray) -> np.ndarray:
    """Each token's start in ``text``, searched in order from the previous token's end."""
    starts = np.empty(len(tokens), dtype=np.int64)
    pos = 0
    for i, t in enumerate(tokens):
        at = text.find(t, pos)
        if at < 0:
            raise RnnvizError(f"token {i:,} {t[:40]!r} is not in the text after character {pos:,}: give the "
                              "tokens as they appear in the text (map special tokens such as <eos> to their "
                              "text), or give (start, end) spans")
        starts[i], pos = at, at + len(t)
    return np.stack([starts, starts + lengths], 1)
