"""A small C tokenizer: comments, string and character literals, preprocessor directives, identifiers and
keywords, numbers and punctuation, each with its character offsets.

The `if` features (:mod:`.if_parse`) read tokens, not raw text, so that an ``if`` in a comment, a string, an
identifier (``ifdef``) or a directive (``#if``) is never taken for the keyword. The comment, string and character
rules are :data:`LEX`'s, the one pattern :mod:`.code` lexes with too.

Directives: a ``#`` that is the first token of its line starts one; it runs to the first line end that is not
escaped by a backslash (a ``/* */`` comment may cross lines inside it). A ``#define`` body is kept as code of its
own (``group`` = the directive's number: an ``if`` in a macro body is an ``if``, but it ends with the macro); every
other directive (``#if``, ``#include``, ...) is dropped, its tokens are not code.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# Comments, strings (backslash escapes; an unterminated one stops at the line end) and character literals.
LEX = re.compile(
    r"""(?P<block>/\*.*?(?:\*/|\Z))
      | (?P<line>//[^\r\n]*)
      | (?P<str>"(?:\\(?:\r\n|.)|[^"\\\r\n])*(?P<closed>")?)
      | (?P<chr>'(?:\\.|[^'\\\r\n]){1,8}')""",
    re.S | re.X,
)
_TOKEN = re.compile(
    LEX.pattern
    + r"""| (?P<eol>\r\n|\r|\n)
      | (?P<blank>[ \t\f\v]+)
      | (?P<ident>[A-Za-z_]\w*)
      | (?P<number>\.?\d(?:[eEpP][+-]|[\w.])*)
      | (?P<punct>\.\.\.|<<=|>>=|->|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||\#\#|[-+*/%&|^=!<>]=|[^\s\w])
      | (?P<other>.)""",
    re.S | re.X,
)
_KIND = {"block": "comment", "line": "comment", "str": "string", "chr": "char"}
CODE = -1  # ``Token.group`` of ordinary code (a #define body gets its directive's number, from 0)


@dataclass(frozen=True)
class Token:
    kind: str  # "ident" (keywords included), "number", "string", "char", "punct" or "other"
    text: str
    start: int  # offset of its first character
    end: int  # offset just past its last character
    group: int = CODE  # CODE, or the number of the #define whose body holds it


@dataclass(frozen=True)
class Tokens:
    """A text's code tokens and directive spans (comments, blanks and line ends are not tokens)."""

    code: tuple[Token, ...]  # every token of code and of #define bodies, in text order
    directives: tuple[tuple[int, int], ...]  # (start, end) of each directive, the # to its line end (exclusive)


@functools.lru_cache(maxsize=2)
def tokenize(text: str) -> Tokens:
    """The tokens of C-like ``text`` (see the module doc). Cached by content for the two texts read last."""
    code: list[Token] = []
    directives: list[tuple[int, int]] = []
    line_empty = True  # no token yet on this line (comments and blanks do not count)
    directive: tuple[int, str] | None = None  # (start, name) of the directive being read
    last = ""  # the previous token's text, for backslash-newline inside a directive
    for m in _TOKEN.finditer(text):
        kind, s, e = m.lastgroup, m.start(), m.end()
        if kind in ("block", "line", "blank"):
            continue
        if kind == "eol":
            if directive is not None and last != "\\":
                directives.append((directive[0], s))
                directive = None
            elif directive is not None and code and code[-1].text == "\\" and code[-1].group == len(directives):
                code.pop()  # a #define's line continuation is not code
            line_empty, last = directive is None, ""
            continue
        tok_text = m.group()
        if directive is None and line_empty and tok_text == "#":
            directive = (s, "")
        elif directive is not None and directive[1] == "" and kind == "ident":
            directive = (directive[0], tok_text)  # the directive's name
        elif directive is None or directive[1] == "define":
            group = CODE if directive is None else len(directives)
            code.append(Token(_KIND.get(kind, kind), tok_text, s, e, group))
        line_empty, last = False, tok_text
    if directive is not None:
        directives.append((directive[0], len(text)))
    return Tokens(tuple(code), tuple(directives))
