"""The registry: the built-in features by name, and :func:`compute_feature` / :func:`resolve`, which
turn any feature spec (a name, ``re:PATTERN``, a compiled regex or a callable) into values."""

from __future__ import annotations

import re

import numpy as np

from rnnviz.analysis.features import code, prose
from rnnviz.analysis.features.base import Feature, drops
from rnnviz.analysis.features.user_regex import regex_feature
from rnnviz.errors import RnnvizError


def _builtin(type_: str, domain: str, fn, predicts=None) -> Feature:
    """A built-in feature: named after its function, defined by its docstring."""
    return Feature(fn.__name__, type_, domain, fn.__doc__, fn, predicts)


FEATURES: dict[str, Feature] = {
    f.name: f
    for f in [
        _builtin("binary", "prose", prose.in_quote),
        _builtin("numeric", "prose", prose.column, prose._before_line_end),
        _builtin("numeric", "prose", prose.to_line_end, prose._before_line_end),
        _builtin("numeric", "prose", prose.word_pos, prose._before_word_end),
        _builtin("binary", "prose", prose.in_parens),
        _builtin("binary", "prose", prose.sentence_start),
        _builtin("binary", "code", code.in_if),
        _builtin("binary", "code", code.in_if_cond),
        _builtin("binary", "code", code.in_if_body),
        _builtin("binary", "code", code.if_end_line),
        _builtin("numeric", "code", code.brace_depth, drops),
        _builtin("numeric", "code", code.paren_depth, drops),
        _builtin("binary", "code", code.in_comment),
        _builtin("binary", "code", code.in_string),
        _builtin("numeric", "code", code.indent, code._end_of_indent),
    ]
}


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
