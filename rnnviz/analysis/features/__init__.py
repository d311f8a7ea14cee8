"""Hypothesis features: one value per character, computed from the text alone.

A feature is what a cell might track: "inside a quotation", "characters left on this line",
"inside an if-statement". :mod:`rnnviz.analysis.ranking` scores every recorded unit against it.

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

The package, one job per module: :mod:`.base` (the :class:`Feature` record and the vectorised helpers),
:mod:`.prose` (quotes, brackets, lines, words, sentences), :mod:`.code` (the C lexer, bracket depths,
indentation and the if features), :mod:`.ctokens` (the C tokenizer the if features read), :mod:`.if_parse` (the
if statements found on its tokens), :mod:`.user_regex` (the one check of a user's regex and its
time-limited feature) and :mod:`.registry` (:data:`FEATURES`, :func:`compute_feature`, :func:`resolve`).
"""

from __future__ import annotations

from rnnviz.analysis.features.base import Feature, drops, span_ends
from rnnviz.analysis.features.base import _codes as _codes  # used by rnnviz.analysis.rules
from rnnviz.analysis.features.base import _reflected_walk as _reflected_walk  # used by rnnviz.analysis.rules
from rnnviz.analysis.features.code import (
    TAB,
    brace_depth,
    if_end_line,
    in_comment,
    in_if,
    in_if_body,
    in_if_cond,
    in_string,
    indent,
    paren_depth,
)
from rnnviz.analysis.features.prose import column, in_parens, in_quote, sentence_start, to_line_end, word_pos
from rnnviz.analysis.features.registry import FEATURES, compute_feature, feature_name, resolve
from rnnviz.analysis.features.user_regex import (
    REGEX_MAX_EXPANDED,
    REGEX_MAX_PATTERN,
    REGEX_TIMEOUT,
    check_regex,
    regex_feature,
)

__all__ = [
    "FEATURES", "REGEX_MAX_EXPANDED", "REGEX_MAX_PATTERN", "REGEX_TIMEOUT", "TAB", "Feature", "brace_depth",
    "check_regex", "column", "compute_feature", "drops", "feature_name", "if_end_line", "in_comment", "in_if",
    "in_if_body", "in_if_cond", "in_parens",
    "in_quote", "in_string", "indent", "paren_depth", "regex_feature", "resolve", "sentence_start", "span_ends",
    "to_line_end", "word_pos",
]
