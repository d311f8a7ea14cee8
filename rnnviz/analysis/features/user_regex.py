"""The user-regex sandbox: the one check of a user's regular expression (:func:`check_regex`) and the
feature it defines (:func:`regex_feature`), run in-process with a deadline."""

from __future__ import annotations

import re

import numpy as np
import regex

from rnnviz.errors import RnnvizError

REGEX_MAX_PATTERN = 1000  # characters in a user's regex: the one limit (CLI, library, dashboard, links)
REGEX_TIMEOUT = 10.0  # seconds a user's regex may run before it is stopped

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
