"""Score one rule against one unit the way :func:`rnnviz.explain` scores its own: a person's explanation checked.

The rule is an id of the ``explain`` rule language (:mod:`rnnviz.analysis.rules`: ``feature:in_quote``,
``prev:"th"``, ``since:"\\n"``, ``A & B`` ...) or a regex ``re:PATTERN`` (1 inside every match, 0 elsewhere:
:func:`rnnviz.analysis.features.regex_feature`, time-limited). Like ``explain``:

- the text is split into the same alternate blocks (:func:`rnnviz.analysis.explain.split_halves`): what the rule
  needs is **fitted on the first half** (its sign; for ``A & B`` the weights ``coef = [a, b, c]`` by least
  squares), and its **score is Pearson r on the held half**, signed by that sign (a rule that fitted noise scores
  about 0). Given ``sign`` (and ``coef``) as ``explain`` chose them, nothing is fitted and the score is
  ``explain``'s own;
- the score's 95% interval is the block bootstrap of the held rows
  (:class:`rnnviz.analysis.statistics.BlockBootstrap`), the rule kept fixed: ``explain``'s ``score_lo`` /
  ``score_hi`` exactly, for its rule;
- a 0/1 rule also gets its AUROC on the held half (oriented by the sign; 0.5 = chance).

``line`` puts the rule in the unit's own units, ``a * rule + c`` fitted on the first half (a combination's
``coef`` already is): the rule's simulated values, drawn beside the unit's (:func:`predicted`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rnnviz.analysis import rules as R
from rnnviz.analysis.explain import BLOCK, _rows, split_halves
from rnnviz.analysis.features import regex_feature
from rnnviz.analysis.features.user_regex import REGEX_TIMEOUT
from rnnviz.analysis.statistics import BlockBootstrap, auroc, float16_codes
from rnnviz.errors import RnnvizError

REGEX = "re:"  # a rule that starts so is a regex


@dataclass(frozen=True)
class RuleScore:
    """What :func:`score_rule` gives (JSON-able with :meth:`to_dict`)."""

    unit: str
    rule: str
    explanation: str  # the rule in words
    score: float  # sign * Pearson r on the held half
    score_lo: float  # 95% block-bootstrap interval of score (NaN under 10 blocks of held rows)
    score_hi: float
    sign: int  # +1: the unit goes up where the rule is high; chosen on the fitting half unless given
    fit_score: float  # sign * r on the fitting half (what choosing the sign saw)
    auroc: float  # a 0/1 rule: the unit's values, rule on against off, held half, oriented by sign; else NaN
    held: int  # rows scored
    line: list[float]  # the rule in the unit's units: [a, c] (a * rule + c) or a combination's [a, b, c]

    def to_dict(self) -> dict:
        return asdict(self)


def rule_values(store, rule: str, coef=None, timeout: float = REGEX_TIMEOUT) -> tuple[np.ndarray, str, bool]:
    """(values at each row, (T,) float64; the rule in words; whether it is 0/1). A combination ``A & B`` without
    ``coef`` gives its two parts as (T, 2). Raises :class:`RnnvizError` with one line for a bad rule or regex."""
    if not isinstance(rule, str) or not rule.strip():
        raise RnnvizError('type a rule, e.g. feature:in_quote, prev:"th", since:"\\n", or a regex re:"[^"]*"')
    rule = rule.strip()
    if rule.startswith(REGEX):
        v = store.at_rows(regex_feature(rule[len(REGEX):], store.text, timeout=timeout))
        return v.astype(np.float64), f"inside a match of the regex {rule[len(REGEX):]}", True
    parts = R.split_combo(rule)
    words = R.explain_id(rule)  # parses every part: a bad id raises here
    if len(parts) == 2 and coef is None:
        both = np.stack([store.at_rows(R.simulate(p, store.text)) for p in parts], 1)
        return both.astype(np.float64), words, False
    v = store.at_rows(R.simulate(rule, store.text, coef)).astype(np.float64)
    binary = len(parts) == 1 and bool(np.isin(v, (0.0, 1.0)).all())
    return v, words, binary


def score_rule(store, unit: str, rule: str, sign: int | None = None, coef=None, block: int | None = BLOCK,
               timeout: float = REGEX_TIMEOUT) -> RuleScore:
    """``rule``'s held-out score against ``unit`` of ``store`` (see the module). ``sign`` / ``coef``: as
    :func:`rnnviz.explain` chose them (its row's ``sign`` and ``coef``); None: fitted on the first half.
    ``block``: the halves' block size, as ``explain``'s. Raises :class:`RnnvizError` for a bad rule or unit,
    and for a rule that is constant on either half (it has no correlation to score)."""
    store.check_units([unit])
    if sign is not None and sign not in (1, -1):
        raise RnnvizError(f"sign must be 1 or -1, got {sign!r}")
    fit_ranges, held_ranges = split_halves(store.length, block)
    fit, held = _rows(fit_ranges), _rows(held_ranges)
    x = np.nan_to_num(store.unit(unit).astype(np.float64), nan=0.0, posinf=65504.0, neginf=-65504.0)  # (T,)
    v, words, binary = rule_values(store, rule, coef, timeout)
    if v.ndim == 2:  # A & B: weights fitted on the first half (x ~ a*A + b*B + c), then one rule
        coef = _least_squares(v[fit], x[fit])
        v, sign = v @ coef[:2] + coef[2], 1
    for name, rows in (("fitting", fit), ("held-out", held)):
        if len(rows) < 2 or np.ptp(v[rows]) == 0:
            raise RnnvizError(f"the rule {rule.strip()!r} is constant on the {name} half of the text (e.g. a regex "
                              "that never matches): there is nothing to correlate the unit with")
    r_fit = _pearson(x[fit], v[fit])
    sign = sign if sign is not None else (1 if r_fit >= 0 else -1)
    boot = BlockBootstrap(len(held))
    lo, hi = boot.interval(sign * boot.pearson(x[held], v[held]))
    line = list(coef) if coef is not None and len(R.split_combo(rule.strip())) == 2 else _line(v[fit], x[fit])
    return RuleScore(
        unit=unit, rule=rule.strip(), explanation=words, score=sign * _pearson(x[held], v[held]), score_lo=lo,
        score_hi=hi, sign=sign, fit_score=sign * r_fit, auroc=_auroc(x[held], v[held] > 0, sign) if binary
        else float("nan"), held=len(held), line=[float(c) for c in line],
    )


def predicted(values: np.ndarray, line: list[float]) -> np.ndarray:
    """The rule's values in the unit's units: ``line[0] * values + line[-1]`` ((T,) values of a single rule;
    a combination's values already are, from :func:`rule_values` with its ``coef``)."""
    return values if len(line) == 3 else line[0] * values + line[1]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r of two (n,) float64 arrays; 0 when the unit is constant (a dead unit scores nothing)."""
    dx, dy = x - x.mean(), y - y.mean()
    den = np.sqrt((dx @ dx) * (dy @ dy))
    return float(dx @ dy / den) if den > 0 else 0.0


def _least_squares(parts: np.ndarray, x: np.ndarray) -> np.ndarray:
    """[a, b, c] minimising |a*A + b*B + c - x|² over the rows given ((n, 2) parts, (n,) x)."""
    design = np.column_stack([parts, np.ones(len(x))])
    return np.linalg.lstsq(design, x, rcond=None)[0]


def _line(v: np.ndarray, x: np.ndarray) -> list[float]:
    """[a, c]: the least-squares line x ~ a*v + c (v not constant)."""
    a = float(((v - v.mean()) @ (x - x.mean())) / ((v - v.mean()) @ (v - v.mean())))
    return [a, float(x.mean() - a * v.mean())]


def _auroc(x: np.ndarray, on: np.ndarray, sign: int) -> float:
    """AUROC of the unit's values (as the store holds them, float16) for the rows where the rule is on."""
    codes = float16_codes(x.astype(np.float16)).astype(np.intp)
    allc = np.bincount(codes, minlength=65536)
    nz = np.flatnonzero(allc)
    a = auroc(np.bincount(codes, weights=on, minlength=65536)[nz], allc[nz].astype(np.float64))
    return a if sign > 0 or np.isnan(a) else 1.0 - a
