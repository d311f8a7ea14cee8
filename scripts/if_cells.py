"""Which unit, if any, tracks the if features (``in_if_cond``, ``in_if_body``, ``if_end_line``, and ``in_if``)?

    python scripts/if_cells.py STORE [--init INIT_STORE]
    python scripts/if_cells.py STORE --short     # the best units and the restricted searches only

STORE: a character store of h and c (``rnnviz record CKPT TEXT --split test``). For each feature, units are
scored as ``rnnviz find`` scores them: AUROC, score = max(AUROC, 1 - AUROC), a control that shuffles the labels
among positions holding the same character, units ranked by selectivity = score - control score, the exact
scores computed for the units a Pearson screen keeps (the best :data:`SCREEN` by |r| and by |r| - |r_control|).
Then:

- **best unit**: the most selective on the whole store (what ``find`` reports), its AUROC and its control AUROC
  with block-bootstrap 95% intervals (:func:`rnnviz.analysis.statistics.bootstrap_interval`, each resample scored
  in the reported direction);
- **held out**: the most selective unit on the first half of the rows, scored on the second half (the first
  figure carries the selection among all units, this one does not);
- **beyond the obvious**: the best unit's AUROC with the feature's confound held fixed: inside any round brackets
  for ``in_if_cond``, positives compared only with negatives at the same curly-brace depth for the others; then
  every unit searched again on restricted rows: an if's condition against other bracketed text (and the winner
  inside the brackets of if/while/for/switch only: an if's condition against the other control statements'), and
  the line that ends an if against the rest of the if statement;
- ``--init``: the same search over a store of the same architecture at initialisation on the same text.
"""

from __future__ import annotations

import argparse

import numpy as np

from rnnviz.analysis.features import compute_feature
from rnnviz.analysis.features.ctokens import CODE, tokenize
from rnnviz.analysis.features.if_parse import Part
from rnnviz.analysis.ranking import control_permutation
from rnnviz.analysis.statistics import auroc, bootstrap_interval, float16_codes, weighted_auroc
from rnnviz.store.reader import open_store

FEATURES = ("in_if_cond", "in_if_body", "if_end_line", "in_if")


SCREEN = 40  # units per feature scored exactly: the best by |r| and by |r| - |r_control| (as `find` screens)


def _codes(store) -> tuple[list[str], np.ndarray]:
    """Every unit's name and its (U, T) uint16 value codes (about 650 MB for 1,024 units of 320k rows)."""
    names, cols = [], []
    for layer in store.layers:
        for kind in store.kinds:
            a = np.asarray(store.array(layer, kind))  # (T, H) float16
            for i in range(a.shape[1]):
                names.append(f"{layer}:{kind}:{i}")
                cols.append(float16_codes(np.ascontiguousarray(a[:, i])))
    return names, np.stack(cols)


def _screen(store, ys: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(F, U) bool: the units worth scoring exactly for each of the (F, T) labels (controls in the odd rows):
    Pearson r of every unit with each label over the rows weighted 0/1 by ``w``, one matmul per array."""
    keep = w > 0
    Y = ys[:, keep].astype(np.float32)
    Y = (Y - Y.mean(1, keepdims=True)) / (Y.std(1, keepdims=True) + 1e-12)
    rs = []
    for layer in store.layers:
        for kind in store.kinds:
            X = np.asarray(store.array(layer, kind))[keep].astype(np.float32)  # (T', H)
            X = (X - X.mean(0)) / (X.std(0) + 1e-12)
            rs.append(Y @ X / keep.sum())  # (F, H)
    r = np.abs(np.concatenate(rs, axis=1))  # (F, U)
    pick = np.zeros((len(ys) // 2, r.shape[1]), dtype=bool)
    for j in range(len(ys) // 2):
        a, ac = r[2 * j], r[2 * j + 1]
        pick[j, np.argsort(-a)[:SCREEN]] = True
        pick[j, np.argsort(-(a - ac))[:SCREEN]] = True
    return pick


def _scores(store, codes: np.ndarray, labels: list[tuple[np.ndarray, np.ndarray]], w: np.ndarray) -> np.ndarray:
    """(F, U, 3): AUROC, control AUROC and selectivity over the rows weighted by ``w`` (T,), for each (labels,
    control) pair, of the units the screen keeps (the others: NaN, selectivity -inf)."""
    pick = _screen(store, np.stack([v for pair in labels for v in pair]), w)
    out = np.full((len(labels), len(codes), 3), np.nan)
    out[:, :, 2] = -np.inf
    for u in np.flatnonzero(pick.any(0)):
        c = codes[u]
        allc = np.bincount(c, weights=w, minlength=65536)
        for j, (y, yc) in enumerate(labels):
            if pick[j, u]:
                a = auroc(np.bincount(c, weights=w * y, minlength=65536), allc)
                ac = auroc(np.bincount(c, weights=w * yc, minlength=65536), allc)
                out[j, u] = a, ac, max(a, 1 - a) - max(ac, 1 - ac)
    return out


def _stratified_auroc(c: np.ndarray, y: np.ndarray, strata: np.ndarray, w: np.ndarray) -> float:
    """AUROC comparing positives only with negatives of the same stratum (strata < 0 left out), pooled over strata
    by their number of positive-negative pairs."""
    num = den = 0.0
    for s in np.unique(strata[strata >= 0]):
        m = w * (strata == s)
        p, n = (m * y).sum(), (m * (1 - y)).sum()
        if p > 0 and n > 0:
            num += weighted_auroc(c, y, m) * p * n
            den += p * n
    return num / den if den else float("nan")


def _fmt(x: float, ci: tuple[float, float]) -> str:
    return f"{x:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _interval(stat, sign: int, T: int) -> tuple[float, tuple[float, float]]:
    """``stat(w)`` (an AUROC) at the data as it is and its block-bootstrap interval, turned by ``sign``."""
    def turned(w: np.ndarray) -> float:
        a = stat(w)
        return a if sign > 0 else 1 - a
    return turned(np.ones(T)), bootstrap_interval(turned, T)


def _best(s: np.ndarray) -> tuple[int, int]:
    """(unit index, sign) of the most selective unit of a (U, 3) score table."""
    b = int(np.argmax(s[:, 2]))
    return b, 1 if s[b, 0] >= 0.5 else -1


def _feature_lines(name: str, names: list[str], codes, y, yc, scores: dict, strata: np.ndarray, where: str,
                   init_codes) -> list[str]:
    """The report of one feature (see the module doc); ``scores``: {"all", "half", "init"}: (U, 3) tables."""
    T = len(y)
    s = scores["all"]
    b, sign = _best(s)
    c = codes[b]
    auc, ci = _interval(lambda w: weighted_auroc(c, y, w), sign, T)
    ctrl, ci_c = _interval(lambda w: weighted_auroc(c, yc, w), sign, T)
    strat, ci_s = _interval(lambda w: _stratified_auroc(c, y, strata, w), sign, T)
    second = np.arange(T) >= T // 2
    bh, sh = _best(scores["half"])
    held, ci_h = _interval(lambda w: weighted_auroc(codes[bh], y, w * second), sh, T)
    top = np.argsort(-s[:, 2], kind="stable")[:3]
    lines = [
        f"{name}: {int(y.sum()):,} of {T:,} characters ({y.mean():.1%})",
        f"  best unit {names[b]} (sign {'+' if sign > 0 else '-'}): AUROC {_fmt(auc, ci)}; same unit on the "
        f"character-only control {_fmt(ctrl, ci_c)}",
        f"  same unit, {where}: AUROC {_fmt(strat, ci_s)}",
        f"  held out: most selective on the first half {names[bh]} (sign {'+' if sh > 0 else '-'}), AUROC on the "
        f"second half {_fmt(held, ci_h)}",
        "  top 3 by selectivity: " + ", ".join(
            f"{names[u]} {max(s[u, 0], 1 - s[u, 0]):.3f} (control {max(s[u, 1], 1 - s[u, 1]):.3f})" for u in top),
    ]
    if init_codes is not None:
        bi, si = _best(scores["init"])
        ai, ci_i = _interval(lambda w: weighted_auroc(init_codes[bi], y, w), si, T)
        lines.append(f"  at initialisation: most selective unit {names[bi]} AUROC {_fmt(ai, ci_i)} (control "
                     f"{max(scores['init'][bi, 1], 1 - scores['init'][bi, 1]):.3f})")
    return lines


def report(store, init=None) -> None:
    """Print the report of the module doc for ``store`` (and ``init``: the same text at initialisation)."""
    text, T = store.text, store.length
    perm = control_permutation(store.row_keys(), 0)
    names, codes = _codes(store)
    init_codes = _codes(init)[1] if init is not None else None
    labels = [(y, y[perm]) for y in (compute_feature(f, text).astype(np.float64) for f in FEATURES)]
    ones, first = np.ones(T), (np.arange(T) < T // 2).astype(np.float64)
    tables = {"all": _scores(store, codes, labels, ones), "half": _scores(store, codes, labels, first)}
    if init_codes is not None:
        tables["init"] = _scores(init, init_codes, labels, ones)
    in_parens = compute_feature("paren_depth", text) > 0
    depth = compute_feature("brace_depth", text).astype(np.int64)
    print(f"{store.path}: {T:,} characters, {len(names)} units")
    for j, name in enumerate(FEATURES):
        cond = name == "in_if_cond"
        strata, where = ((np.where(in_parens, 0, -1), "inside round brackets only") if cond
                         else (depth, "positives against negatives at the same brace depth"))
        y, yc = labels[j]
        print("\n".join(["", *_feature_lines(name, names, codes, y, yc, {k: v[j] for k, v in tables.items()},
                                             strata, where, init_codes)]))
    # Beyond the obvious, every unit: an if's condition against other bracketed text, and the line that ends an
    # if against the rest of the if statement.
    y, yc = labels[0]
    b, sign = _restricted(store, names, codes, y, yc, in_parens.astype(np.float64),
                          "in_if_cond inside round brackets only")
    ctl = _control_conditions(text)
    auc, ci = _interval(lambda w: weighted_auroc(codes[b], y, w * ctl), sign, T)
    print(f"  the same unit inside the brackets of if, while, for and switch only ({int(ctl.sum()):,} characters, "
          f"{int((y * ctl).sum()):,} of them an if's): AUROC {_fmt(auc, ci)}")
    y, yc = labels[2]
    _restricted(store, names, codes, y, yc, np.maximum(labels[3][0], y), "if_end_line inside if statements only")


def _restricted(store, names, codes, y, yc, mask, what: str) -> tuple[int, int]:
    """Print the most selective unit for ``y`` on the rows where ``mask`` is 1; return it and its sign."""
    T = len(y)
    s = _scores(store, codes, [(y, yc)], mask)[0]
    b, sign = _best(s)
    auc, ci = _interval(lambda w: weighted_auroc(codes[b], y, w * mask), sign, T)
    print(f"\n{what} ({int(mask.sum()):,} characters), every unit: most selective {names[b]} (sign "
          f"{'+' if sign > 0 else '-'}) AUROC {_fmt(auc, ci)} (control {max(s[b, 1], 1 - s[b, 1]):.3f})")
    return b, sign


def _control_conditions(text: str) -> np.ndarray:
    """(T,) float64: 1 from the ( after if/while/for/switch (inclusive) to its matching ) (exclusive)."""
    toks = [t for t in tokenize(text).code if t.group == CODE]
    part = Part(toks, len(text))
    starts, ends = [], []
    for i in range(part.n - 1):
        if part.tok[i] in ("if", "while", "for", "switch") and part.tok[i + 1] == "(":
            starts.append(part.start[i + 1])
            ends.append(part.char(part.match[i + 1]))
    out = np.zeros(len(text) + 1)
    np.add.at(out, starts, 1)
    np.add.at(out, ends, -1)
    return (np.cumsum(out[:-1]) > 0).astype(np.float64)


def short_report(store) -> None:
    """Only the most selective unit per feature and the two restricted searches, with intervals (no held-out or
    stratified figures): what ``--short`` prints, the same for a trained store and one at initialisation."""
    text, T = store.text, store.length
    perm = control_permutation(store.row_keys(), 0)
    names, codes = _codes(store)
    labels = [(y, y[perm]) for y in (compute_feature(f, text).astype(np.float64) for f in FEATURES)]
    S = _scores(store, codes, labels, np.ones(T))
    print(f"{store.path}: {T:,} characters, {len(names)} units")
    for j, name in enumerate(FEATURES):
        b, sign = _best(S[j])
        auc, ci = _interval(lambda w, c=codes[b], y=labels[j][0]: weighted_auroc(c, y, w), sign, T)
        ctrl = max(S[j, b, 1], 1 - S[j, b, 1])
        print(f"{name}: most selective {names[b]} AUROC {_fmt(auc, ci)} (control {ctrl:.3f})")
    in_parens = (compute_feature("paren_depth", text) > 0).astype(np.float64)
    _restricted(store, names, codes, *labels[0], in_parens, "in_if_cond inside round brackets only")
    _restricted(store, names, codes, *labels[2], np.maximum(labels[3][0], labels[2][0]),
                "if_end_line inside if statements only")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("store")
    p.add_argument("--init", help="store of the same architecture at initialisation, over the same text")
    p.add_argument("--short", action="store_true", help="only the best units and the restricted searches")
    a = p.parse_args()
    if a.short:
        short_report(open_store(a.store))
    else:
        report(open_store(a.store), open_store(a.init) if a.init else None)


if __name__ == "__main__":
    main()
