"""The rule space of :func:`rnnviz.explain`: simple, readable rules computed from the text alone.

A rule gives one value per character (the value at t describes the text after reading character t,
like a store's row t) and has a machine-readable id, parsed back by :func:`simulate`:

- ``feature:NAME``: a built-in feature (:mod:`rnnviz.analysis.features`); ``feature:NAME@lag3``: its value 3
  characters earlier; ``feature:NAME@onset`` / ``@offset``: 1 where a binary feature just turned on / off;
  ``feature:NAME@fade64``: exp(-age/64) inside a run of a binary feature (age: characters since the run
  began, 0 at its first character), 0 outside, for a unit that fades over a long span.
- ``prev:"th"``: the last 1-4 characters read are these (``prev:"e"``: just read an e).
- ``class:digit``: just read a character of a class (letter digit space punct upper newline).
- ``since:"\\n"``: characters read since the last occurrence of a character or two-character string
  (0 on it; counted from the start of the text before the first one).
- ``depth:"{","}"``: nesting depth of a bracket pair, an unmatched closer ignored (raw characters:
  unlike ``brace_depth`` it does not skip comments and strings).
- ``A & B``: two rules fitted together, ``coef = [a, b, c]`` gives ``a*A + b*B + c``.

Strings in ids are JSON strings, so ``"\\n"`` is a line end and any character can appear.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from rnnviz.analysis.features import FEATURES, _codes, _reflected_walk
from rnnviz.errors import RnnvizError

LAGS = (1, 2, 4, 8)  # feature:NAME@lagK
# feature:NAME@fadeK: time constants in characters, a factor 4 apart (a factor-2 grid from 8 to 1024 explained
# no more units of War and Peace; its quote cells pick 128-1024, so the grid reaches 512).
FADES = (32, 128, 512)
MAX_NGRAM = 4  # prev:"..." looks at the character just read and up to 3 before it
SINCE_CHARS = 48  # "since" counters for at most this many characters (most frequent first)
SINCE_BIGRAMS = 8  # ... and this many two-character strings made of neither letters nor digits
SINCE_MIN_COUNT = 20  # occurrences a character needs in the text to get a counter
BRACKETS = ("()", "[]", "{}", "<>", "\u201c\u201d", "\u2018\u2019", "\u00ab\u00bb")
PHRASES = {  # a feature as a person says it
    "in_quote": "inside a double-quoted span",
    "column": "position on the line (characters since the line began)",
    "to_line_end": "characters left before the line end",
    "word_pos": "position inside the current word",
    "in_parens": "inside round brackets",
    "sentence_start": "between two sentences",
    "in_if": "inside an if statement",
    "in_if_cond": "inside an if's condition",
    "in_if_body": "inside an if's body",
    "if_end_line": "on a line that ends an if statement",
    "brace_depth": "curly-brace depth of the code",
    "paren_depth": "round-bracket depth of the code",
    "in_comment": "inside a comment",
    "in_string": "inside a string literal",
    "indent": "indentation of the line",
}
CLASSES: dict[str, tuple[str, Callable[[str], bool]]] = {
    "letter": ("just read a letter", str.isalpha),
    "digit": ("just read a digit", str.isdigit),
    "space": ("just read a space or tab", lambda ch: ch in " \t"),
    "punct": ("just read punctuation", lambda ch: not ch.isalnum() and not ch.isspace()),
    "upper": ("just read an upper-case letter", str.isupper),
    "newline": ("just read a line end", lambda ch: ch in "\r\n"),
}


@dataclass(frozen=True)
class Rule:
    """One candidate: ``id`` (see the module doc), a one-line ``explanation``, 0/1 values or not."""

    id: str
    explanation: str
    binary: bool


def q(s: str) -> str:
    """A string as it appears in rule ids and explanations: JSON-quoted (line ends as \\n)."""
    return json.dumps(s, ensure_ascii=False)


# --- values of each family ---


def lagged(y: np.ndarray, k: int) -> np.ndarray:
    """The values k characters earlier (0 before the text starts)."""
    if k == 0:
        return y.copy()
    out = np.zeros_like(y)
    if k < len(y):
        out[k:] = y[:-k]
    return out


def onset(y: np.ndarray) -> np.ndarray:
    return ((y > 0) & (lagged(y, 1) == 0)).astype(np.float32)


def offset(y: np.ndarray) -> np.ndarray:
    return ((y == 0) & (lagged(y, 1) > 0)).astype(np.float32)


def run_age(y: np.ndarray) -> np.ndarray:
    """(T,) int64 characters since the current run of ``y > 0`` began (0 at its first character), -1
    outside the runs."""
    on = y > 0
    T = len(on)
    start = np.where(on & (lagged(on, 1) == 0), np.arange(T), -1)  # the run begins here
    np.maximum.accumulate(start, out=start)  # inside a run: where it began
    return np.where(on, np.arange(T) - start, -1)


def fade(y: np.ndarray, tau: int) -> np.ndarray:
    """exp(-age / tau) inside the runs of ``y > 0`` (1 at a run's first character), 0 outside. (An exponential
    fitted War and Peace's quote cell better than a step "the first K characters" or a linear ramp: held
    r 0.551 against 0.532 and 0.529 at K = 256.)"""
    age = run_age(y)
    return np.where(age >= 0, np.exp(-np.maximum(age, 0) / tau), 0.0).astype(np.float32)


def ends_with(text: str, s: str) -> np.ndarray:
    """(T,) bool: the text read up to and including t ends with ``s``."""
    c = _codes(text)
    out = np.ones(len(c), dtype=bool)
    for j, ch in enumerate(reversed(s)):  # j characters before t
        out &= lagged(c, j) == ord(ch)
    out[: len(s) - 1] = False
    return out


def since(text: str, s: str) -> np.ndarray:
    """Characters read since ``s`` last ended (0 where it ends; t + 1 before the first one)."""
    hit = ends_with(text, s)
    T = len(hit)
    last = np.where(hit, np.arange(T), -1)
    np.maximum.accumulate(last, out=last)
    return (np.arange(T) - last).astype(np.float32)


def depth(text: str, open_ch: str, close_ch: str) -> np.ndarray:
    c = _codes(text)
    steps = np.zeros(len(c), dtype=np.int8)
    steps[c == ord(open_ch)] = 1
    steps[c == ord(close_ch)] = -1
    return _reflected_walk(steps)


def char_class(text: str, name: str) -> np.ndarray:
    pred = CLASSES[name][1]
    uniq = sorted(set(text))
    table = {ord(ch): pred(ch) for ch in uniq}
    c = _codes(text)
    keys = np.array(list(table), dtype=np.uint32)
    vals = np.array(list(table.values()), dtype=bool)
    return vals[np.searchsorted(keys, c)].astype(np.float32) if len(c) else np.zeros(0, np.float32)


# --- explanations ---


def _feature_phrase(name: str) -> str:
    return PHRASES.get(name, FEATURES[name].summary.split(". ")[0])


def explain_id(rule_id: str) -> str:
    """The one-line explanation of a rule id (a combination: both parts joined with "and")."""
    parts = split_combo(rule_id)
    if len(parts) == 2:
        return f"{explain_id(parts[0])}, and {explain_id(parts[1])} (two rules together)"
    family, args, transform = parse(rule_id)
    if family == "feature":
        phrase = _feature_phrase(args[0])
        if transform.startswith("lag"):
            k = int(transform[3:])
            return f"{phrase}, {k} character{'s' if k > 1 else ''} ago"
        if transform.startswith("fade"):
            return f"{phrase}, fading over about {int(transform[4:])} characters"
        return {"onset": f"just entered: {phrase}", "offset": f"just left: {phrase}"}.get(transform, phrase)
    if family == "prev":
        return f"just read {q(args[0])}" if len(args[0]) == 1 else f"after {q(args[0])}"
    if family == "class":
        return CLASSES[args[0]][0]
    if family == "since":
        return "characters since the last line end" if args[0] == "\n" else f"characters since the last {q(args[0])}"
    if family == "depth":
        return f"nesting depth of {q(args[0])} ... {q(args[1])}"
    raise RnnvizError(f"unknown rule family {family!r}")


# --- ids ---

_STR = r'"(?:[^"\\]|\\.)*"'
_ID = re.compile(rf"(?P<family>[a-z]+):(?P<args>(?:{_STR}|[A-Za-z_][\w]*)(?:,(?:{_STR}))*)(?:@(?P<tf>\w+))?")


def split_combo(rule_id: str) -> list[str]:
    """``"A & B"`` -> ``["A", "B"]`` (an ``&`` inside a quoted string does not split)."""
    m = _ID.match(rule_id)
    if m and rule_id[m.end() :].startswith(" & "):
        return [rule_id[: m.end()], rule_id[m.end() + 3 :]]
    return [rule_id]


def parse(rule_id: str) -> tuple[str, list[str], str]:
    """``'since:"\\n"'`` -> ``("since", ["\\n"], "")``; raises RnnvizError on anything else."""
    m = _ID.fullmatch(rule_id.strip())
    if not m:
        raise RnnvizError(f"bad rule id {rule_id!r}: expected e.g. feature:in_quote, prev:\"e\" or since:\"\\n\"")
    raw = re.findall(rf"{_STR}|[A-Za-z_]\w*", m["args"])
    args = [json.loads(a) if a.startswith('"') else a for a in raw]
    family, tf = m["family"], m["tf"] or ""
    ok = {
        "feature": len(args) == 1 and args[0] in FEATURES
        and (tf in ("", "onset", "offset") or bool(re.fullmatch(r"lag[1-9]\d*", tf))
             or (bool(re.fullmatch(r"fade[1-9]\d*", tf)) and FEATURES[args[0]].type == "binary")),
        "prev": len(args) == 1 and 1 <= len(args[0]) <= MAX_NGRAM and not tf,
        "class": len(args) == 1 and args[0] in CLASSES and not tf,
        "since": len(args) == 1 and 1 <= len(args[0]) <= 2 and not tf,
        "depth": len(args) == 2 and all(len(a) == 1 for a in args) and args[0] != args[1] and not tf,
    }.get(family, False)
    if not ok:
        raise RnnvizError(f"bad rule id {rule_id!r}")
    return family, args, tf


def simulate(rule_id: str, text: str, coef=None) -> np.ndarray:
    """(T,) float32: the rule's values over ``text``. A combination ``A & B`` needs ``coef = [a, b, c]``
    (the row's ``coef`` in :func:`rnnviz.explain`'s output) and gives ``a*A + b*B + c``."""
    parts = split_combo(rule_id)
    if len(parts) == 2:
        if coef is None or len(coef) != 3:
            raise RnnvizError(f"rule {rule_id!r} combines two rules: give coef = [a, b, c]")
        a, b = (simulate(p, text) for p in parts)
        return (coef[0] * a + coef[1] * b + coef[2]).astype(np.float32)
    family, args, tf = parse(rule_id)
    if family == "feature":
        return transform(FEATURES[args[0]].fn(text).astype(np.float32), tf)
    if family == "prev":
        return ends_with(text, args[0]).astype(np.float32)
    if family == "class":
        return char_class(text, args[0])
    if family == "since":
        return since(text, args[0])
    return depth(text, args[0], args[1])


# --- the searched space for one text ---


def balanced(text: str, open_ch: str, close_ch: str) -> bool:
    """The text uses the pair (>= 3 of each) and balances it: little left open at the end, few closers
    without an opener (each at most 2 + 5% of the openers)."""
    n_open, n_close = text.count(open_ch), text.count(close_ch)
    if n_open < 3 or n_close < 3:
        return False
    d = depth(text, open_ch, close_ch)
    unmatched = n_open - n_close - float(d[-1])  # closers the depth ignored (never below 0)
    slack = 2 + 0.05 * n_open
    return float(d[-1]) <= slack and -unmatched <= slack


def since_targets(text: str) -> list[str]:
    """The characters and two-character strings that get a "since" counter in this text."""
    counts = Counter(text)
    chars = [ch for ch, n in counts.most_common(SINCE_CHARS) if n >= SINCE_MIN_COUNT]
    c = _codes(text).astype(np.int64)
    other = np.array([not chr(k).isalnum() for k in range(int(c.max()) + 1)]) if len(c) else np.zeros(0, bool)
    keep = other[c[:-1]] & other[c[1:]]  # pairs of neither letters nor digits (counted vectorised)
    keys, n = np.unique(c[:-1][keep] * (1 << 21) + c[1:][keep], return_counts=True)
    pairs = [chr(k >> 21) + chr(k & ((1 << 21) - 1)) for k in keys[np.argsort(-n, kind="stable")]]
    pairs = [s for s, m in zip(pairs, np.sort(n)[::-1], strict=True) if m >= SINCE_MIN_COUNT and not s.isspace()]
    return chars + pairs[:SINCE_BIGRAMS]


def transform(y: np.ndarray, tf: str) -> np.ndarray:
    """A feature's (T,) values under the transform of its id ("" = none, "lag3", "onset", "offset", "fade64")."""
    if tf.startswith("lag"):
        return lagged(y, int(tf[3:]))
    if tf.startswith("fade"):
        return fade(y, int(tf[4:]))
    return {"onset": onset, "offset": offset}.get(tf, lambda v: v)(y)


def feature_transforms(y: np.ndarray, binary: bool) -> Iterator[tuple[str, np.ndarray, bool]]:
    """A feature's (T,) values and its transforms searched, one at a time: (id suffix, values, 0/1 or not) for
    the plain feature, each lag, and for a 0/1 feature its onsets, offsets and fades (which are not 0/1)."""
    names = [""] + [f"lag{k}" for k in LAGS]
    if binary:
        names += ["onset", "offset"] + [f"fade{k}" for k in FADES]
    for t in names:
        yield f"@{t}" if t else "", transform(y, t), binary and not t.startswith("fade")


def dense_columns(text: str) -> Iterator[tuple[Rule, np.ndarray]]:
    """Every rule of the space except the n-gram triggers (which :mod:`rnnviz.analysis.explain` searches
    exhaustively by counting), one at a time with its (T,) float32 values (one column in memory at a time,
    whatever the number of rules). Rules constant on the text are left out."""

    def candidates() -> Iterator[tuple[str, np.ndarray, bool]]:
        for name, f in FEATURES.items():
            for suffix, values, binary in feature_transforms(f.fn(text).astype(np.float32), f.type == "binary"):
                yield f"feature:{name}{suffix}", values, binary
        for name in CLASSES:
            yield f"class:{name}", char_class(text, name), True
        for s in since_targets(text):
            yield f"since:{q(s)}", since(text, s), False
        for pair in BRACKETS:
            if balanced(text, pair[0], pair[1]):
                yield f"depth:{q(pair[0])},{q(pair[1])}", depth(text, pair[0], pair[1]), False

    for rule_id, values, binary in candidates():
        if len(values) and values.min() != values.max():
            yield Rule(rule_id, explain_id(rule_id), binary), values.astype(np.float32)


def dense_rules(text: str) -> tuple[list[Rule], np.ndarray]:
    """:func:`dense_columns` as (rules, (T, C) float32): the whole matrix in memory (tests, small texts)."""
    got = list(dense_columns(text))
    T = len(text)
    return [r for r, _ in got], (np.stack([v for _, v in got], axis=1) if got else np.zeros((T, 0), dtype=np.float32))


def ngram_ids(text: str, n: int, fit: int | np.ndarray, min_count: int) -> tuple[np.ndarray, list[str]]:
    """(T,) int64 id of the n characters read up to t, and the n-grams: those seen at least ``min_count``
    times at the positions ``fit`` (an array of positions, or an int: the first ``fit`` characters) get
    ids 0..G-1, every other position (and t < n-1) gets id G."""
    c = _codes(text)
    T = len(c)
    uniq, dense = np.unique(c, return_inverse=True)
    key = np.zeros(T, dtype=np.int64)
    for j in range(n):  # the last n characters as one number, ranked after each step so it never overflows
        key = np.unique(key * len(uniq) + lagged(dense.astype(np.int64), j), return_inverse=True)[1].astype(np.int64)
    key[: n - 1] = -1
    keys, first, inv = np.unique(key, return_index=True, return_inverse=True)
    counts = np.bincount(inv[:fit] if isinstance(fit, int) else inv[fit], minlength=len(keys))
    keep = (counts >= min_count) & (keys >= 0)
    new_id = np.full(len(keys), int(keep.sum()), dtype=np.int64)
    new_id[keep] = np.arange(int(keep.sum()))
    grams = [text[p - n + 1 : p + 1] for p in first[keep]]  # read off the text where each first occurs
    return new_id[inv], grams
