"""Code features: the C lexer (comments, strings, character literals), bracket depths, indentation, and
the if features read from :mod:`.if_parse` (see :mod:`rnnviz.analysis.features` for the conventions every
feature follows)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

from rnnviz.analysis.features.base import _codes, _ffill, _line_ends, _reflected_walk, _spans
from rnnviz.analysis.features.ctokens import LEX
from rnnviz.analysis.features.if_parse import if_statements

TAB = 8  # tab stops for `indent`

# --- the lexer ---


@dataclass(frozen=True)
class _Lexed:
    code: np.ndarray  # (T,) bool: outside comments, strings and char literals (read-only)
    comment: np.ndarray  # (T,) float32 span feature (read-only)
    string: np.ndarray  # (T,) float32 span feature (read-only)


@functools.lru_cache(maxsize=2)
def _lex(text: str) -> _Lexed:
    """Comments, strings and char literals of C-like text.

    Cached by the text's content (``lru_cache`` hashes and compares the string; thread-safe), for the
    two texts lexed last: every code feature of a text lexes it once. The arrays are read-only, since
    every caller shares them.
    """
    T = len(text)
    tok_s, tok_e, com_s, com_e, str_s, str_e = [], [], [], [], [], []
    for m in LEX.finditer(text):
        s, e, kind = m.start(), m.end(), m.lastgroup
        tok_s.append(s)
        tok_e.append(e)
        if kind == "block":
            com_s.append(s)
            com_e.append(e - 1 if m.group().endswith("*/") and e - s >= 4 else e)
        elif kind == "line":
            com_s.append(s)
            com_e.append(e)
        elif kind == "str":
            str_s.append(s)
            str_e.append(e - 1 if m.group("closed") else e)
    lexed = _Lexed(_spans(T, tok_s, tok_e) == 0, _spans(T, com_s, com_e), _spans(T, str_s, str_e))
    for a in (lexed.code, lexed.comment, lexed.string):
        a.flags.writeable = False
    return lexed


# --- features of the lexed text ---


def _depth(text: str, open_ch: str, close_ch: str) -> np.ndarray:
    c = _codes(text)
    code = _lex(text).code
    steps = np.zeros(len(c), dtype=np.int8)
    steps[(c == ord(open_ch)) & code] = 1
    steps[(c == ord(close_ch)) & code] = -1
    return _reflected_walk(steps)


def brace_depth(text: str) -> np.ndarray:
    """Curly braces open after reading this character (code only): a { counts from itself, a } lowers
    the depth from itself. An unmatched } is ignored (the depth never goes below 0)."""
    return _depth(text, "{", "}")


def paren_depth(text: str) -> np.ndarray:
    """Round brackets open after reading this character (code only), counted like brace_depth."""
    return _depth(text, "(", ")")


def in_comment(text: str) -> np.ndarray:
    """1 inside a comment: a /* */ comment from its / (inclusive) to its closing / (exclusive;
    unterminated: to the end of the text); a // comment from its first / to the line end (exclusive).
    Comment markers inside strings do not count."""
    return _lex(text).comment.copy()


def in_string(text: str) -> np.ndarray:
    """1 inside a double-quoted string literal: from the opening " (inclusive) to the closing "
    (exclusive). A backslash escapes the next character (\\" and \\\\ do not end the string; a
    backslash-newline continues it); an unterminated string ends at the line end. Quotes inside
    comments or character literals ('"') do not count."""
    return _lex(text).string.copy()


_INDENT = re.compile(r"(?:\A|(?<=[\r\n]))[ \t]+")


def indent(text: str) -> np.ndarray:
    """Width of the current line's leading whitespace read so far: a space adds 1, a tab moves to the
    next multiple of 8. On the rest of the line (line end included) it is the full indentation;
    0 on a line with none."""
    c = _codes(text)
    T = len(c)
    _, start = _line_ends(c)
    val = np.zeros(T, dtype=np.float64)
    defined = start.copy()
    for m in _INDENT.finditer(text):
        w = 0
        for j, ch in enumerate(m.group(), start=m.start()):
            w = (w // TAB + 1) * TAB if ch == "\t" else w + 1
            val[j] = w
        defined[m.start() : m.end()] = True
    return _ffill(val, defined)


def _end_of_indent(text: str, values: np.ndarray) -> np.ndarray:
    """t = the last character of a line's leading whitespace: the next one ends the indentation."""
    out = np.zeros(len(text), dtype=bool)
    for m in _INDENT.finditer(text):
        if m.end() < len(text) and text[m.end()] not in "\r\n":
            out[m.end() - 1] = True
    return out


# --- the if features (parsed from tokens by .if_parse) ---


def _line_of(text: str, positions: list[int]) -> np.ndarray:
    """(T,) float32: 1 on the lines holding any of ``positions``, from a line's first character to its line end
    (exclusive)."""
    c = _codes(text)
    le, start = _line_ends(c)
    line = np.cumsum(start) - 1  # (T,) line number of each character
    hit = np.zeros(int(line[-1]) + 1 if len(c) else 0, dtype=bool)
    hit[line[np.asarray(positions, dtype=np.int64)]] = True
    return (hit[line] & ~le).astype(np.float32) if len(c) else np.zeros(0, np.float32)


def in_if(text: str) -> np.ndarray:
    """1 inside an if-statement (code only): from the i of `if` (inclusive) through its parenthesised
    condition and its body, to the character that ends the body (exclusive): the } of a braced body,
    or the ; of a single-statement body (a nested if/for/while/switch/do body is followed to its own
    end). The else branch is not part of it (an `else if` starts its own). Read from C tokens: `#if` and
    `if` in comments, strings or identifiers do not count; an if in a #define body ends with the macro;
    an unclosed if runs to the end of the text."""
    ifs = if_statements(text)
    return _spans(len(text), [s.keyword for s in ifs], [s.body[1] for s in ifs])


def in_if_cond(text: str) -> np.ndarray:
    """1 inside an if's condition (code only): from the ( after `if` (inclusive) to its matching )
    (exclusive); nested brackets and calls inside it included. Read from C tokens, like in_if."""
    ifs = if_statements(text)
    return _spans(len(text), [s.cond[0] for s in ifs], [s.cond[1] for s in ifs])


def in_if_body(text: str) -> np.ndarray:
    """1 inside an if's body (code only): from the body's first character (a { or the first token of a
    single statement) to the character that ends it (exclusive: the } or the ;). Nested statements
    (ifs, loops, blocks) inside a body are inside it; the else branch is not (an `else if` has its own
    condition and body), nor are the condition or the blanks between ) and the body. Read from C
    tokens, like in_if."""
    ifs = if_statements(text)
    return _spans(len(text), [s.body[0] for s in ifs], [s.body[1] for s in ifs])


def if_end_line(text: str) -> np.ndarray:
    """1 on each line that holds the end of an if statement (code only): the } or ; that ends its last
    branch (the else branch when there is one), the whole line from its first character to its line
    end (exclusive). An if that never ends marks no line. Read from C tokens, like in_if."""
    return _line_of(text, [s.end for s in if_statements(text) if s.end is not None])
