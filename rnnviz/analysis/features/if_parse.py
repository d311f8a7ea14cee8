"""The `if` statements of C-like text, found on :mod:`.ctokens` tokens: where each one's condition, body and
whole statement begin and end, as character offsets. :mod:`.code` turns them into the ``in_if``, ``in_if_cond``,
``in_if_body`` and ``if_end_line`` features.

A statement, starting at a token, ends at (the token that ends it):

- ``{``: its matching ``}``; ``;``: itself (the empty statement);
- ``if``/``while``/``for``/``switch`` ``( ... )`` then a statement: that statement's end; an ``if``'s is followed
  by its ``else`` branch when one comes next;
- ``do`` statement ``while ( ... ) ;``: the final ``;``;
- ``NAME ( ... ) { ... }`` with NAME not a keyword (a loop macro such as ``list_for_each_entry``): the ``}``;
- anything else (an expression, a declaration, ``return``, ``goto``...): the first ``;`` outside brackets, or an
  enclosing block's closer if that comes first (a malformed statement stops there).

Code and each ``#define`` body are parsed apart: a statement left open ends with its part (the text, the macro).
Nested statements are followed :data:`MAX_NESTING` deep; past that the statement is taken to run to the end of
its part.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from rnnviz.analysis.features.ctokens import CODE, Token, tokenize

MAX_NESTING = 200  # nested statements followed before giving up (the statement then runs to the end)
_OPEN, _CLOSE = "({[", ")}]"
_CONTROL = ("if", "while", "for", "switch")  # keyword ( condition ) body
_NOT_MACROS = frozenset({"return", "sizeof", "typeof", "__typeof__", "case", "else", "do"})


@dataclass(frozen=True)
class IfStatement:
    """One ``if``: character offsets (``end`` of the text or macro when a part never closes)."""

    keyword: int  # the i of `if`
    cond: tuple[int, int]  # from its ( (inclusive) to its matching ) (exclusive)
    body: tuple[int, int]  # from the body's first character to the } or ; that ends it (exclusive)
    end: int | None  # the } or ; that ends the whole statement, else branches included (None: never ends)


class Part:
    """The tokens of one part (the code, or one #define body), with bracket matches."""

    def __init__(self, tokens: list[Token], stop: int):
        self.tok = [t.text if t.kind in ("ident", "punct") else "" for t in tokens]
        self.ident = [t.kind == "ident" for t in tokens]
        self.start = [t.start for t in tokens]
        self.n, self.stop = len(tokens), stop  # stop: the character a part left open ends at
        self.match = [self.n] * self.n  # opener -> its closer (n: unmatched)
        stacks: dict[str, list[int]] = {o: [] for o in _OPEN}
        for i, s in enumerate(self.tok):
            if s and s in _OPEN:
                stacks[s].append(i)
            elif s and s in _CLOSE:
                st = stacks[_OPEN[_CLOSE.index(s)]]
                if st:
                    self.match[st.pop()] = i

    def at(self, i: int) -> str:
        return self.tok[i] if i < self.n else ""

    def char(self, i: int) -> int:
        """Offset of token i (the part's stop when there is none)."""
        return self.start[i] if i < self.n else self.stop

    def statement_end(self, q: int, depth: int = 0) -> int:
        """Index of the token that ends the statement starting at token q (its ; or }), n if none."""
        n, s = self.n, self.at(q)
        if q >= n or depth > MAX_NESTING:
            return n
        if s == "{":
            return self.match[q]
        if s == ";":
            return q
        if s in _CONTROL and self.at(q + 1) == "(":
            close = self.match[q + 1]
            if close >= n:
                return n
            e = self.statement_end(close + 1, depth + 1)
            return self.else_end(e, depth) if s == "if" else e
        if s == "do":
            return self._do_end(q, depth)
        if self.ident[q] and s not in _NOT_MACROS and self.at(q + 1) == "(":
            close = self.match[q + 1]
            if close < n and self.at(close + 1) == "{":
                return self.match[close + 1]
        return self._expression_end(q)

    def else_end(self, e: int, depth: int) -> int:
        """The end of an if whose body ends at token e: its else branch's end when one follows."""
        if e < self.n and self.at(e + 1) == "else":
            return self.statement_end(e + 2, depth + 1)
        return e

    def _do_end(self, q: int, depth: int) -> int:
        """End of ``do body while (...);`` starting at q: its final ;, n if it is malformed."""
        n = self.n
        e = self.statement_end(q + 1, depth + 1)
        if e < n and self.at(e + 1) == "while" and self.at(e + 2) == "(":
            close = self.match[e + 2]
            if close < n and self.at(close + 1) == ";":
                return close + 1
        return n

    def _expression_end(self, q: int) -> int:
        """The first ; outside brackets from token q, or an enclosing closer if one comes first."""
        i = q
        while i < self.n:
            s = self.tok[i]
            if s == ";":
                return i
            if s and s in _OPEN:
                i = self.match[i]
                if i >= self.n:
                    return self.n
            elif s and s in _CLOSE:
                return i  # an enclosing block closes first (malformed statement): stop there
            i += 1
        return self.n

    def ifs(self) -> list[IfStatement]:
        out = []
        for i in range(self.n):
            if self.tok[i] != "if" or self.at(i + 1) != "(":
                continue
            close = self.match[i + 1]
            body_end = self.n if close >= self.n else self.statement_end(close + 1)
            end = self.else_end(body_end, 0) if body_end < self.n else self.n
            out.append(IfStatement(
                keyword=self.start[i],
                cond=(self.start[i + 1], self.char(close)),
                body=(self.char(close + 1), self.char(body_end)) if close < self.n else (self.stop, self.stop),
                end=self.start[end] if end < self.n else None,
            ))
        return out


@functools.lru_cache(maxsize=2)
def if_statements(text: str) -> tuple[IfStatement, ...]:
    """Every ``if`` statement of ``text``, in order of their keywords. Cached by content for the two texts read
    last (every if feature of a text parses it once)."""
    toks = tokenize(text)
    parts: dict[int, list[Token]] = {}
    for t in toks.code:
        parts.setdefault(t.group, []).append(t)
    out: list[IfStatement] = []
    for group, tokens in parts.items():
        stop = len(text) if group == CODE else toks.directives[group][1]
        out.extend(Part(tokens, stop).ifs())
    return tuple(sorted(out, key=lambda s: s.keyword))
