"""Prose features: quotes, brackets, lines, words and sentences (see :mod:`rnnviz.analysis.features` for the
conventions every feature follows)."""

from __future__ import annotations

import re

import numpy as np

from rnnviz.analysis.features.base import _PARAGRAPH, _codes, _events, _line_ends, _spans, span_ends

# --- targets of the line and word features ---


def _before_line_end(text: str, values: np.ndarray) -> np.ndarray:
    """t where text[t] is not a line end and text[t+1] starts one."""
    le, _ = _line_ends(_codes(text))
    out = np.zeros(len(le), dtype=bool)
    out[:-1] = ~le[:-1] & le[1:]
    return out


def _before_word_end(text: str, values: np.ndarray) -> np.ndarray:
    return span_ends(text, (values > 0).astype(np.float32))


def in_quote(text: str) -> np.ndarray:
    """1 inside a double-quoted span: from the opening quote (inclusive) to the closing quote
    (exclusive). A straight " toggles; a curly opening quote (U+201C, U+201E) opens and a curly closing
    quote (U+201D) closes. A paragraph break closes any open quote, so an unbalanced quote never
    spreads past its paragraph (and a quotation continued in the next paragraph reopens with its
    new opening quote)."""
    pos, val, state = [], [], 0
    for m in re.finditer(r'["\u201c\u201d\u201e]|' + _PARAGRAPH.pattern, text):
        ch = m.group()
        if ch == '"':
            state = 1 - state
            p = m.start()
        elif ch in "\u201c\u201e":
            state, p = 1, m.start()
        elif ch == "\u201d":
            state, p = 0, m.start()
        else:
            state, p = 0, m.end()
        pos.append(p)
        val.append(state)
    return _events(len(text), pos, val)


def column(text: str) -> np.ndarray:
    """Characters read since the last line end: 1 at a line's first character, 2 at its second, ...;
    0 on the line-end characters themselves (both of a CRLF)."""
    c = _codes(text)
    le, start = _line_ends(c)
    T = len(c)
    last = np.where(start, np.arange(T), 0)
    np.maximum.accumulate(last, out=last)
    col = np.arange(T) - last + 1
    col[le] = 0
    return col.astype(np.float32)


def to_line_end(text: str) -> np.ndarray:
    """Characters after this one and before the next line end (on the last line: before the end of the
    text): 0 on a line's last character; on a line end, the length of the next line (0 on the \\r of a
    CRLF)."""
    c = _codes(text)
    le, _ = _line_ends(c)
    T = len(c)
    nxt = np.where(le, np.arange(T), T)
    nxt = np.minimum.accumulate(nxt[::-1])[::-1]  # first line end at or after t
    after = np.append(nxt[1:], T)  # first line end after t
    return (after - np.arange(T) - 1).astype(np.float32)


_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


def word_pos(text: str) -> np.ndarray:
    """Position inside the current word: 1 on a word's first character, 2 on its second, ...; 0
    outside words. A word is a run of letters and digits (Unicode), with an apostrophe (' or U+2019)
    between two such characters kept inside it ("don't" is one word)."""
    T = len(text)
    spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if not spans:
        return np.zeros(T, dtype=np.float32)
    s, e = np.array(spans).T
    inside = _spans(T, s, e) > 0
    first = np.zeros(T, dtype=bool)
    first[s] = True
    base = np.where(first, np.arange(T), 0)
    np.maximum.accumulate(base, out=base)
    return np.where(inside, np.arange(T) - base + 1, 0).astype(np.float32)


def in_parens(text: str) -> np.ndarray:
    """1 while at least one round bracket is open: from a ( (inclusive) to the ) that closes the
    outermost one (exclusive). An unmatched ) is ignored; a paragraph break closes everything."""
    pos, val, depth = [], [], 0
    for m in re.finditer(r"[()]|" + _PARAGRAPH.pattern, text):
        ch = m.group()
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(depth - 1, 0)
        else:
            depth = 0
        pos.append(m.start() if ch in "()" else m.end())
        val.append(1 if depth else 0)
    return _events(len(text), pos, val)


_SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s+")


def sentence_start(text: str) -> np.ndarray:
    """1 between two sentences: on a run of . ! or ?, the closing quotes or brackets right after it
    (" ' U+201D U+2019 ) ]) and the whitespace (spaces, tabs, line ends) that must follow, up to the next
    sentence's first character (exclusive). Abbreviations such as "Mr. " count too."""
    spans = [(m.start(), m.end()) for m in _SENTENCE_END.finditer(text)]
    if not spans:
        return np.zeros(len(text), dtype=np.float32)
    s, e = np.array(spans).T
    return _spans(len(text), s, e)
