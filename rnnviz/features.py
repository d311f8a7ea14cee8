"""Hypothesis features: one value per character, computed from the text alone.

A feature is what a cell might track: "inside a quotation", "characters left on this line",
"inside an if-statement". :mod:`rnnviz.discover` scores every recorded unit against it.

Conventions shared by every feature (so that the value at t lines up with row t of a store, the
state *after reading* character t):

- A **line end** is ``\\n``, ``\\r\\n`` or a lone ``\\r``; both characters of a CRLF belong to it.
- A **paragraph break** is a line end, optional spaces/tabs, and a second line end; it takes effect at
  the first character of the second line end.
- A **span** is 1 from its opening character (inclusive) up to its closing character (exclusive):
  after reading the opening quote you are inside, after reading the closing quote you are not.
- **Code** features lex C-like text first: ``/* */`` and ``//`` comments, ``"..."`` strings (with
  backslash escapes; an unterminated one stops at the line end) and ``'x'`` character literals. Braces,
  parentheses and keywords count only outside them.

``compute_feature(spec, text)`` takes a built-in name, ``"re:PATTERN"`` or a compiled regex (matches
mark spans: 1 inside a non-empty match), or a callable ``str -> array``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import regex

from .errors import RnnvizError

REGEX_MAX_PATTERN = 1000  # characters in a user's regex
REGEX_TIMEOUT = 10.0  # seconds a user's regex may run before it is stopped
TAB = 8  # tab stops for `indent`


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


def _before_line_end(text: str, values: np.ndarray) -> np.ndarray:
    """t where text[t] is not a line end and text[t+1] starts one."""
    le, _ = _line_ends(_codes(text))
    out = np.zeros(len(le), dtype=bool)
    out[:-1] = ~le[:-1] & le[1:]
    return out


def _before_word_end(text: str, values: np.ndarray) -> np.ndarray:
    return span_ends(text, (values > 0).astype(np.float32))


def _end_of_indent(text: str, values: np.ndarray) -> np.ndarray:
    """t = the last character of a line's leading whitespace: the next one ends the indentation."""
    out = np.zeros(len(text), dtype=bool)
    for m in _INDENT.finditer(text):
        if m.end() < len(text) and text[m.end()] not in "\r\n":
            out[m.end() - 1] = True
    return out


# --- prose ---


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


# --- code ---

_LEX = re.compile(
    r"""(?P<block>/\*.*?(?:\*/|\Z))
      | (?P<line>//[^\r\n]*)
      | (?P<str>"(?:\\(?:\r\n|.)|[^"\\\r\n])*(?P<closed>")?)
      | (?P<chr>'(?:\\.|[^'\\\r\n]){1,8}')""",
    re.S | re.X,
)


@dataclass
class _Lexed:
    code: np.ndarray  # (T,) bool: outside comments, strings and char literals
    comment: np.ndarray  # (T,) float32 span feature
    string: np.ndarray  # (T,) float32 span feature


_lex_cache: dict[int, tuple[str, _Lexed]] = {}


def _lex(text: str) -> _Lexed:
    """Comments, strings and char literals of C-like text (cached for the last text lexed)."""
    hit = _lex_cache.get(id(text))
    if hit is not None and hit[0] is text:
        return hit[1]
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
    _lex_cache.clear()
    _lex_cache[id(text)] = (text, lexed)
    return lexed


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


_IF = re.compile(r"\bif\b")
_PREPROCESSOR_IF = re.compile(r"#[ \t]*if\b")
_IDENT = re.compile(r"[A-Za-z_]\w*")
_OPEN, _CLOSE = "({[", ")}]"


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
        if q >= T or depth > 200:
            return T
        if text[q] == "{":
            return int(self.match[q])
        if text[q] == ";":
            return q
        w = self.word(q)
        if w in ("if", "while", "for", "switch"):
            p = self.code_at(q + len(w))
            if p < T and text[p] == "(":
                close = int(self.match[p])
                if close >= T:
                    return T
                e = self.statement_end(self.code_at(close + 1), depth + 1)
                if w == "if" and e < T:
                    n = self.code_at(e + 1)
                    if self.word(n) == "else":
                        e = self.statement_end(self.code_at(n + 4), depth + 1)
                return e
        if w == "do":
            e = self.statement_end(self.code_at(q + 2), depth + 1)
            n = self.code_at(e + 1) if e < T else T
            if self.word(n) == "while":
                p = self.code_at(n + 5)
                if p < T and text[p] == "(" and self.match[p] < T:
                    s = self.code_at(int(self.match[p]) + 1)
                    return s if s < T and text[s] == ";" else T
            return T
        # An expression, declaration, return...: the first ; outside brackets.
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


FEATURES: dict[str, Feature] = {
    f.name: f
    for f in [
        Feature("in_quote", "binary", "prose", in_quote.__doc__, in_quote),
        Feature("column", "numeric", "prose", column.__doc__, column, _before_line_end),
        Feature("to_line_end", "numeric", "prose", to_line_end.__doc__, to_line_end, _before_line_end),
        Feature("word_pos", "numeric", "prose", word_pos.__doc__, word_pos, _before_word_end),
        Feature("in_parens", "binary", "prose", in_parens.__doc__, in_parens),
        Feature("sentence_start", "binary", "prose", sentence_start.__doc__, sentence_start),
        Feature("in_if", "binary", "code", in_if.__doc__, in_if),
        Feature("brace_depth", "numeric", "code", brace_depth.__doc__, brace_depth, drops),
        Feature("paren_depth", "numeric", "code", paren_depth.__doc__, paren_depth, drops),
        Feature("in_comment", "binary", "code", in_comment.__doc__, in_comment),
        Feature("in_string", "binary", "code", in_string.__doc__, in_string),
        Feature("indent", "numeric", "code", indent.__doc__, indent, _end_of_indent),
    ]
}


# --- user hypotheses: a regex (time-limited) or any callable ---

# Why the `regex` package: its matcher checks a deadline as it backtracks (``timeout=``), so a pattern
# like ``(a+)+$`` is stopped in-process: no child process that could outlive us (the fork-and-pipe
# sandbox this replaces left a 100% CPU orphan when its parent was killed). google-re2 would need no
# deadline (linear time) but drops backreferences and lookaround, which hypotheses such as
# ``(?<=")[^"]*`` need. The syntax stays Python's ``re`` (checked with its parser, compiled in
# ``regex``'s re-compatible V0 mode). ``regex`` expands counted repeats when compiling, which the
# deadline does not cover, so ``REGEX_MAX_EXPANDED`` bounds the expanded size first.
REGEX_MAX_EXPANDED = 100_000  # pattern items after counted repeats are expanded: ~0.2 s to compile

try:  # the stdlib parser, to measure a pattern without compiling it (re._parser from Python 3.11)
    from re import _parser as _sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse as _sre_parse  # type: ignore[no-redef]


def _expanded_size(items) -> int:
    """How many items a parsed pattern grows to when every counted repeat is written out."""
    c = _sre_parse
    total = 0
    for op, av in items:
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", c.MAX_REPEAT)):
            lo, hi, sub = av
            total += max(lo if hi == c.MAXREPEAT else hi, 1) * _expanded_size(sub)
        elif op is c.SUBPATTERN:
            total += _expanded_size(av[-1])
        elif op is c.BRANCH:
            total += sum(_expanded_size(b) for b in av[1])
        elif op in (c.ASSERT, c.ASSERT_NOT):
            total += _expanded_size(av[1])
        elif op is getattr(c, "ATOMIC_GROUP", None):
            total += _expanded_size(av)
        elif op is c.GROUPREF_EXISTS:
            total += sum(_expanded_size(b) for b in av[1:] if b is not None)
        else:
            total += 1
    return total


def check_regex(pattern: str | re.Pattern, flags: int = 0):
    """The one check of a user's regex (CLI, library, dashboard, links): a non-empty str pattern of at
    most ``REGEX_MAX_PATTERN`` characters, valid Python ``re`` syntax, whose counted repeats expand to at
    most ``REGEX_MAX_EXPANDED`` items. Returns it compiled with the ``regex`` package; raises
    :class:`RnnvizError` with one line otherwise."""
    src, flags = (pattern.pattern, pattern.flags) if isinstance(pattern, re.Pattern) else (pattern, flags)
    if isinstance(src, bytes) or not isinstance(src, str):
        raise RnnvizError("the regular expression must be a str pattern, not " + type(src).__name__)
    if not src:
        raise RnnvizError("empty regular expression")
    if len(src) > REGEX_MAX_PATTERN:
        raise RnnvizError(f"the regular expression is {len(src)} characters; the limit is {REGEX_MAX_PATTERN}")
    try:
        size = _expanded_size(_sre_parse.parse(src, flags))
    except (re.error, RecursionError, OverflowError, ValueError) as e:
        raise RnnvizError(f"bad regular expression {src!r}: {e}") from None
    if size > REGEX_MAX_EXPANDED:
        raise RnnvizError(
            f"the regular expression {src!r} repeats too much ({size:,} items once its counts are expanded; "
            f"the limit is {REGEX_MAX_EXPANDED:,})"
        )
    # The two modules number their flags differently (re.ASCII is regex.V1): translate them one by one.
    rx_flags = regex.VERSION0
    for name in ("IGNORECASE", "MULTILINE", "DOTALL", "VERBOSE", "ASCII"):
        if flags & getattr(re, name):
            rx_flags |= getattr(regex, name)
    try:
        return regex.compile(src, rx_flags)
    except (regex.error, RecursionError, OverflowError, ValueError) as e:
        raise RnnvizError(f"bad regular expression {src!r}: {e}") from None


def regex_feature(pattern: str | re.Pattern, text: str, timeout: float = REGEX_TIMEOUT) -> np.ndarray:
    """(T,) float32: 1 inside every non-empty match of ``pattern``, 0 elsewhere.

    Checked by :func:`check_regex`; the match runs in this process with a deadline of ``timeout``
    seconds over the whole text (the ``regex`` package checks it while backtracking), after which it
    raises :class:`RnnvizError`.
    """
    compiled = check_regex(pattern)
    src = compiled.pattern
    delta = np.zeros(len(text) + 1, dtype=np.int32)
    try:
        for m in compiled.finditer(text, timeout=timeout):
            if m.end() > m.start():
                delta[m.start()] += 1
                delta[m.end()] -= 1
    except TimeoutError:
        raise RnnvizError(
            f"the regular expression {src!r} ran longer than {timeout:g} s and was stopped; make it simpler"
        ) from None
    except (RecursionError, MemoryError) as e:
        raise RnnvizError(f"the regular expression {src!r} failed: {type(e).__name__}") from None
    return (np.cumsum(delta[:-1]) > 0).astype(np.float32)


def feature_name(spec) -> str:
    """A display name for a feature spec: the built-in name, ``re:PATTERN``, or the callable's name."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, re.Pattern):
        return f"re:{spec.pattern}"
    return getattr(spec, "__name__", None) or type(spec).__name__


def compute_feature(spec, text: str) -> np.ndarray:
    """The feature ``spec`` over ``text``: (T,) float32, T = len(text).

    ``spec``: a name in :data:`FEATURES`; ``"re:PATTERN"`` or a compiled regex (1 inside matches, run
    time-limited); or a callable ``str -> array`` of T finite numbers.
    """
    if isinstance(spec, str):
        if spec.startswith("re:"):
            return regex_feature(spec[3:], text)
        if spec not in FEATURES:
            raise RnnvizError(
                f"unknown feature {spec!r}; choose one of {', '.join(FEATURES)}, or re:PATTERN for a regex"
            )
        return FEATURES[spec].fn(text)
    if isinstance(spec, re.Pattern):
        return regex_feature(spec, text)
    if callable(spec):
        try:
            values = np.asarray(spec(text), dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise RnnvizError(f"feature {feature_name(spec)!r} did not return numbers: {e}") from None
        if values.shape != (len(text),):
            raise RnnvizError(
                f"feature {feature_name(spec)!r} returned shape {values.shape}, expected ({len(text)},): "
                "one value per character"
            )
        if not np.isfinite(values).all():
            raise RnnvizError(f"feature {feature_name(spec)!r} returned NaN or infinite values")
        return values
    raise RnnvizError(f"a feature is a name, 're:PATTERN', a compiled regex or a callable, not {type(spec).__name__}")


def resolve(spec, text: str) -> tuple[Feature, np.ndarray]:
    """``(Feature, values)`` for any spec; a user's feature is binary when its values are all 0 or 1."""
    values = compute_feature(spec, text)
    if isinstance(spec, str) and spec in FEATURES:
        return FEATURES[spec], values
    binary = bool(np.isin(values, (0.0, 1.0)).all())
    name = feature_name(spec)
    doc = f"user feature {name}" if callable(spec) else f"1 inside the matches of the regular expression {name[3:]!r}"
    return Feature(name, "binary" if binary else "numeric", "user", doc, lambda t: values), values
