"""Code features: the C lexer (comments, strings, character literals), bracket depths, indentation, and
the ``in_if`` parser (see :mod:`rnnviz.analysis.features` for the conventions every feature follows)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

from rnnviz.analysis.features.base import _codes, _ffill, _line_ends, _reflected_walk, _spans

TAB = 8  # tab stops for `indent`

# --- the lexer ---

_LEX = re.compile(
    r"""(?P<block>/\*.*?(?:\*/|\Z))
      | (?P<line>//[^\r\n]*)
      | (?P<str>"(?:\\(?:\r\n|.)|[^"\\\r\n])*(?P<closed>")?)
      | (?P<chr>'(?:\\.|[^'\\\r\n]){1,8}')""",
    re.S | re.X,
)


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
    for m in _LEX.finditer(text):
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


# --- the in_if parser ---

_IF = re.compile(r"\bif\b")
_PREPROCESSOR_IF = re.compile(r"#[ \t]*if\b")
_IDENT = re.compile(r"[A-Za-z_]\w*")
_OPEN, _CLOSE = "({[", ")}]"
_CONTROL = ("if", "while", "for", "switch")  # keyword ( condition ) body
_MAX_NESTING = 200  # nested statements followed before giving up (the statement then runs to the end)


class _CodeIndex:
    """Bracket matches and "next code character" lookups for the in_if parser."""

    def __init__(self, text: str):
        T = len(text)
        self.text, self.T = text, T
        c = _codes(text)
        code = _lex(text).code
        solid = code & ~np.isin(c, [9, 10, 11, 12, 13, 32])
        nxt = np.where(solid, np.arange(T), T)
        self.next = np.append(np.minimum.accumulate(nxt[::-1])[::-1], T)  # (T+1,)
        ev = np.flatnonzero(code & np.isin(c, [ord(x) for x in "({[)}];"]))
        self.ev = ev
        self.match = np.full(T, T, dtype=np.int64)  # opener -> its closer (T: unmatched)
        stacks: dict[str, list[int]] = {o: [] for o in _OPEN}
        for p in ev.tolist():
            ch = text[p]
            if ch in _OPEN:
                stacks[ch].append(p)
            elif ch in _CLOSE:
                st = stacks[_OPEN[_CLOSE.index(ch)]]
                if st:
                    self.match[st.pop()] = p

    def code_at(self, p: int) -> int:
        return int(self.next[min(p, self.T)])

    def word(self, p: int) -> str:
        m = _IDENT.match(self.text, p) if p < self.T else None
        return m.group() if m and (p == 0 or not (self.text[p - 1].isalnum() or self.text[p - 1] == "_")) else ""

    def statement_end(self, q: int, depth: int = 0) -> int:
        """Index of the character that ends the statement starting at q (its ; or }), T if none."""
        T, text = self.T, self.text
        if q >= T or depth > _MAX_NESTING:
            return T
        if text[q] == "{":
            return int(self.match[q])
        if text[q] == ";":
            return q
        w = self.word(q)
        if w in _CONTROL:
            p = self.code_at(q + len(w))
            if p < T and text[p] == "(":
                return self._control_end(w, p, depth)
        if w == "do":
            return self._do_end(q, depth)
        return self._expression_end(q)

    def _control_end(self, w: str, p: int, depth: int) -> int:
        """End of ``w (...) body`` whose ( is at p; an if's body is followed by its else branch."""
        T = self.T
        close = int(self.match[p])
        if close >= T:
            return T
        e = self.statement_end(self.code_at(close + 1), depth + 1)
        if w == "if" and e < T:
            n = self.code_at(e + 1)
            if self.word(n) == "else":
                e = self.statement_end(self.code_at(n + 4), depth + 1)
        return e

    def _do_end(self, q: int, depth: int) -> int:
        """End of ``do body while (...);`` starting at q: its final ;, T if it is malformed."""
        T, text = self.T, self.text
        e = self.statement_end(self.code_at(q + 2), depth + 1)
        n = self.code_at(e + 1) if e < T else T
        if self.word(n) == "while":
            p = self.code_at(n + 5)
            if p < T and text[p] == "(" and self.match[p] < T:
                s = self.code_at(int(self.match[p]) + 1)
                return s if s < T and text[s] == ";" else T
        return T

    def _expression_end(self, q: int) -> int:
        """An expression, declaration, return...: the first ; outside brackets."""
        T, text = self.T, self.text
        i = int(np.searchsorted(self.ev, q))
        while i < len(self.ev):
            p = int(self.ev[i])
            ch = text[p]
            if ch == ";":
                return p
            if ch in _OPEN:
                m = int(self.match[p])
                if m >= T:
                    return T
                i = int(np.searchsorted(self.ev, m + 1))
            else:  # an enclosing block closes first (malformed statement): stop there
                return p
        return T


def in_if(text: str) -> np.ndarray:
    """1 inside an if-statement (code only): from the i of `if` (inclusive) through its parenthesised
    condition and its body, to the character that ends the body (exclusive): the } of a braced body,
    or the ; of a single-statement body (a nested if/for/while/switch/do body is followed to its own
    end). The else branch is not part of it (an `else if` starts its own). `#if` and `if` in
    comments, strings or identifiers do not count; an unclosed if runs to the end of the text."""
    T = len(text)
    code = _lex(text).code
    idx = None
    starts, ends = [], []
    pre = {m.end() - 2 for m in _PREPROCESSOR_IF.finditer(text)}
    for m in _IF.finditer(text):
        i = m.start()
        if not code[i] or i in pre:
            continue
        if idx is None:
            idx = _CodeIndex(text)
        p = idx.code_at(i + 2)
        if p >= T or text[p] != "(":
            continue
        close = int(idx.match[p])
        end = T if close >= T else idx.statement_end(idx.code_at(close + 1))
        starts.append(i)
        ends.append(min(end, T))
    return _spans(T, starts, ends)
