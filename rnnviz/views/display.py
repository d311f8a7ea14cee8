"""How a character is shown beside the model's numbers: its visible form and its loss; and how rows (characters,
or tokens in a token store) meet the characters drawn (:func:`row_word`, :func:`row_labels`, :func:`char_rows`).

The one definition for the dashboard's text view and tooltips, the exported page's tooltips
(:mod:`rnnviz.views.export` sends :func:`shown`'s symbols to its script) and one-line snippets in tables.
Whitespace and control characters become symbols so that each has a width to colour and a name to read.
"""

from __future__ import annotations

import re

import numpy as np

# How a tooltip names whitespace. U+240D (the control picture of CR) is drawn by no font the
# dashboard or the page can count on, so a CR is named "CR".
_NAMES = {" ": "\u2423", "\n": "\u21b5", "\t": "\u21e5", "\r": "CR"}
_LINE_END = re.compile(r"\r\n|\r|\n")


def visible(ch: str, after: str = "", before: str = "") -> str:
    """How a character is drawn (``after``: the next character): a line end as ↵ then the line break,
    a CRLF as ↵ on the CR and the break on the LF (one line end, as the export shows it), other control
    characters as their Unicode control pictures (so each has a width to colour; no font here has
    U+240D, so a CR is never one), everything else as itself. ``before``: the previous character."""
    if ch == "\n":
        return "\n" if before == "\r" else "\u21b5\n"
    if ch == "\r":
        return "\u21b5" if after == "\n" else "\u21b5\n"
    if ch == "\t":
        return "\t"
    o = ord(ch)
    if o < 32:
        return chr(0x2400 + o)
    if o == 127:
        return "\u2421"
    return ch


def shown(ch: str) -> str:
    """A character named in a tooltip: whitespace and control characters as symbols."""
    return _NAMES.get(ch) or visible(ch)


def visible_line(s: str) -> str:
    """Text on one line, every whitespace and control character as a symbol (a token's or a guess's label)."""
    return "".join(shown(c) for c in s)


def readable_line(s: str) -> str:
    """Text on one line as a person reads it (snippets in tables): spaces and tabs as they are, each line end
    (LF, CRLF or CR) as one ↵ with no break, other control characters as their control pictures."""
    return "".join(visible(c) for c in _LINE_END.sub("\u21b5", s))


def sign_symbol(sign) -> str:
    """How a unit's sign is shown, everywhere: "+" (it codes by going up; 0 too) or "−" (U+2212, by going down);
    "" for none (None, NaN)."""
    if sign is None or sign != sign:
        return ""
    return "+" if sign >= 0 else "\u2212"


def char_loss(store, start: int, stop: int) -> np.ndarray:
    """(stop - start,) float32 nats: the loss of each character of ``store.text[start:stop]``,
    -log p(text[t] | text[:t]) = ``-store.logprob[t - 1]``; NaN at t = 0 (nothing predicts the first
    character) and wherever the store has no log-probabilities."""
    lp = np.asarray(store.logprob[max(start - 1, 0) : stop - 1], dtype=np.float32)
    return -np.concatenate([[np.nan], lp]).astype(np.float32) if start == 0 else -lp


# --- rows: characters, or tokens with spans in the text ---


def row_word(store, n: int = 2) -> str:
    """What a row of ``store`` is called: "character(s)", or "token(s)" in a token store (plural unless n == 1)."""
    word = "token" if store.is_tokens else "character"
    return word if n == 1 else word + "s"


def row_labels(store, start: int, stop: int) -> list[str]:
    """How each row of ``start:stop`` is named beside its numbers: a character as :func:`shown`, a token as its
    text on one line (:func:`visible_line`)."""
    if not store.is_tokens:
        return [shown(c) for c in store.text[start:stop]]
    text = store.text
    return [visible_line(text[s:e]) for s, e in np.asarray(store.spans[start:stop]).tolist()]


def char_rows(store, start: int, stop: int) -> tuple[int, np.ndarray]:
    """The characters that rows ``start:stop`` cover, ``(a, rows)``: they are ``store.text[a:a + len(rows)]``
    and ``rows[j]`` is the row (counted from ``start``) that character ``a + j`` belongs to, or -1 between
    tokens (a space between words: no row, no colour). In a char store ``rows`` is ``0..stop - start``."""
    if not store.is_tokens:
        return start, np.arange(stop - start, dtype=np.int64)
    a, b = store.chars_of_rows(start, stop)
    spans = np.asarray(store.spans[start:stop], dtype=np.int64) - a
    lengths = spans[:, 1] - spans[:, 0]
    ends = np.cumsum(lengths)
    within = np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - lengths, lengths)
    rows = np.full(b - a, -1, dtype=np.int64)
    rows[np.repeat(spans[:, 0], lengths) + within] = np.repeat(np.arange(len(spans)), lengths)
    return a, rows
