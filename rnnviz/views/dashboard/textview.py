"""The text view: one window of the store's rows, the text of each coloured by a unit.

Colours are the HTML export's (:mod:`rnnviz.views.colours`, the same ``N_BINS`` steps as CSS classes
``d0..d32`` / ``s0..s32``, the same colour ranges), so a cell looks the same here and in an exported page.
A second unit shows as a bar over each character, a feature as a bar under it. Each character is its own
``<span>`` whose ``title`` holds the value(s), the character's loss and the model's next-character
guesses.

The server sends the window as plain data (:func:`render`: characters, classes, tooltips) and the
browser builds the spans with ``textContent`` (``draw`` in ``assets/rnnviz.js``), so no character is ever
parsed as HTML. Why not one Dash component per character: Dash's renderer spends milliseconds per
component, and 2,000 of them took 7–10 s to appear on a 2-core machine; the DOM builds them in ~10 ms.

Only the window's rows are read from the store (a few hundred kB on any store size).

In a token store the window is its tokens' text: every character of a token takes the token's classes,
characters between tokens (the spaces between words) none; the tooltips are the tokens' (``tips`` holds one
per row and ``rows`` each character's row, -1 between tokens), and the outlined run covers the characters
of its rows.
"""

from __future__ import annotations

import numpy as np
from dash import html

from rnnviz.model.units import parse_unit
from rnnviz.views.colours import (
    COMPARE_PALETTES,
    COMPARE_WORDS,
    FEATURE_RGB,
    N_BINS,
    PALETTES,
    RANGES,
    ColourScale,
    kind_name,
)
from rnnviz.views.display import char_loss, char_rows, row_labels, visible, visible_line

TOP_SHOWN = 3  # next-row guesses in a tooltip
FEATURE_STEPS = 4  # intensity steps of the feature bar


def css() -> str:
    """Style rules for the colour classes (background; the compare bar, in its own colours; the feature bar)."""
    rules = []
    for name, pal in PALETTES.items():
        c = name[0]
        for i, (col, bar) in enumerate(zip(pal, COMPARE_PALETTES[name], strict=True)):
            rules.append(f".tv .{c}{i}{{background:{col}}}.tv .o{c}{i}{{border-top-color:{bar}}}")
    r, g, b = FEATURE_RGB
    for j in range(1, FEATURE_STEPS + 1):
        rules.append(f".tv .f{j}{{border-bottom-color:rgba({r},{g},{b},{j / FEATURE_STEPS:.2f})}}")
    return "".join(rules)


def feature_steps(values: np.ndarray, hi: float) -> np.ndarray:
    """Feature values -> bar intensity 0..FEATURE_STEPS (0 = no bar); ``hi`` maps to the darkest."""
    hi = hi if hi > 0 else 1.0
    with np.errstate(invalid="ignore"):
        s = np.ceil(np.clip(np.nan_to_num(values) / hi, 0, 1) * FEATURE_STEPS)
    return s.astype(np.int8)


def render(
    store,
    view,
    window: int,
    feature: np.ndarray | None = None,
    scales: list[ColourScale] | None = None,
) -> dict:
    """The window as data for the browser to draw.

    ``view``: a clean :class:`~.state.View`; ``feature``: the view's feature at each row of the store
    ((T,) float32) or None; ``scales``: the unit's (and compare unit's) colour scales. Returns
    ``{"start", "stop", "chars", "cls", "tips", "hl"}`` (rows ``start:stop``): per character drawn the text
    (:func:`rnnviz.views.display.visible`) and its CSS classes; the tooltips, one per row; ``hl``: the outlined
    run as offsets of characters into the window, or None. A token store adds ``rows``: each character's row
    (from ``start``; -1 between tokens). In a char store rows are the characters.
    """
    start = view.start
    stop = min(store.length, start + window)
    units = [view.unit] + ([view.cmp] if view.cmp else [])
    vals = store.window(start, stop, units).astype(np.float16)  # (n, U): only the window's rows
    a, rows = char_rows(store, start, stop)
    fvals = None if feature is None else feature[start:stop]
    cls = np.concatenate([_classes(vals, scales, feature, fvals), [""]])[rows]  # rows -1: between tokens
    hl = view.hl
    if hl and hl[0] < stop and hl[1] > start:
        c0, c1 = store.chars_of_rows(max(hl[0], start), min(hl[1], stop))
        hl = [c0 - a, c1 - a]
        cls[hl[0] : hl[1]] = cls[hl[0] : hl[1]] + " hl"
    else:
        hl = None
    out = {
        "start": start,
        "stop": stop,
        "chars": _visible_chars(store.text[a : a + len(rows)]),
        "cls": [c.lstrip() for c in cls.tolist()],
        "tips": _tips(store, view, units, vals, fvals),
        "hl": hl,
    }
    if store.is_tokens:
        out["rows"] = rows.tolist()
    return out


def _visible_chars(text: str) -> list[str]:
    """:func:`visible` of each character with its neighbours (none before the first)."""
    memo: dict[str, str] = {}
    out = []
    for i, ch in enumerate(text):
        if ch in "\r\n":
            out.append(visible(ch, text[i + 1 : i + 2], text[i - 1] if i else ""))
        else:
            v = memo.get(ch)
            out.append(v if v is not None else memo.setdefault(ch, visible(ch)))
    return out


def _classes(vals: np.ndarray, scales: list[ColourScale], feature, fvals) -> np.ndarray:
    """Each row's CSS classes (an object array): the unit's colour step (``nan`` for NaN), the compare unit's
    bar (``o`` + step) and the feature bar (``f1``..``f4``)."""
    main = scales[0]
    names = np.array([f"{main.name[0]}{b}" for b in range(N_BINS)] + ["nan"], dtype=object)
    cls = names[main.bins(vals[:, 0])]  # a NaN's step -1 picks "nan"
    if vals.shape[1] > 1:
        other = scales[1]
        names = np.array([f" o{other.name[0]}{b}" for b in range(N_BINS)] + [""], dtype=object)
        cls = cls + names[other.bins(vals[:, 1])]
    if fvals is not None:
        hi = float(np.nanmax(feature)) if feature.size else 1.0
        names = np.array([""] + [f" f{j}" for j in range(1, FEATURE_STEPS + 1)], dtype=object)
        cls = cls + names[feature_steps(fvals, hi)]
    return cls


_F16_TEXT: dict[int, str] = {}  # float16 bit pattern -> its shortest text (at most 65,536 entries)


def _f16_text(values: np.ndarray) -> list[str]:
    """``str`` of each float16: the shortest text that reads back as the same float16."""
    bits = np.ascontiguousarray(values, dtype=np.float16).view(np.uint16)
    for b in np.unique(bits).tolist():
        if b not in _F16_TEXT:
            _F16_TEXT[b] = str(np.uint16(b).view(np.float16))
    return [_F16_TEXT[b] for b in bits.tolist()]


def _tips(store, view, units: list[str], vals: np.ndarray, fvals) -> list[str]:
    """Each row's tooltip lines: value(s); the feature's value; position, the character (or token) and its
    loss (-log p(row | rows before)); the model's top guesses for the next row."""
    start = view.start
    n = len(vals)
    lines = [[f"{u} = {t}" for t in _f16_text(vals[:, j])] for j, u in enumerate(units)]
    if fvals is not None:
        lines.append([f"{view.feature} = {x:.3g}" for x in np.asarray(fvals, np.float32).tolist()])
    loss = char_loss(store, start, start + n).tolist()
    lines.append([f"#{start + i} {label}" + ("" if x != x else f"  loss {x:.3g} nats")  # x != x: NaN, no loss
                  for i, (label, x) in enumerate(zip(row_labels(store, start, start + n), loss, strict=True))])
    guesses = _guesses(store, start, start + n)
    if guesses is not None:
        lines.append(guesses)
    return ["\n".join(parts) for parts in zip(*lines, strict=True)]


def _guesses(store, start: int, stop: int) -> list[str] | None:
    """"next: " and the model's TOP_SHOWN likeliest next characters with their probability (%), or None.
    Built a column at a time (an id outside the vocabulary is left out)."""
    ids, probs = store.topk
    k = min(TOP_SHOWN, ids.shape[1])
    if not k:
        return None
    names = np.array([visible_line(c) for c in store.vocab.chars] + [""], dtype=object)  # a token: each character
    gi = np.asarray(ids[start:stop, :k]).astype(np.int64)
    gp = np.rint(np.asarray(probs[start:stop, :k], dtype=np.float32) * 100).astype(int)
    bad = gi >= len(names) - 1
    gi[bad] = len(names) - 1
    pct = np.array([f" {p}%" for p in range(101)], dtype=object)
    cols = []
    for j in range(k):
        p = gp[:, j]
        inside = (p >= 0) & (p <= 100)
        text = pct[np.where(inside, p, 0)]
        if not inside.all():  # a probability outside [0, 1] (a damaged store) is shown as it is
            text[~inside] = [f" {x}%" for x in p[~inside].tolist()]
        cols.append(np.where(bad[:, j], "", names[gi[:, j]] + text).tolist())
    return ["next: " + "  ".join(g for g in row if g) for row in zip(*cols, strict=True)]


CLIPPED = ("p99", "robust")  # the colour ranges that values of the unit may lie beyond


def _why(mode: str) -> str:
    return RANGES[mode] + ("; beyond: the end colours" if mode in CLIPPED else "")


def compare_legend(unit: str, scale: ColourScale, mode: str) -> html.Div:
    """What the bar over each character means for the compare unit ``unit``: its colours, lowest to highest."""
    lo, mid, hi = scale.ends()
    low, high = COMPARE_WORDS[scale.name]
    middle = f", white = {mid}" if scale.name == "diverging" else ""
    return html.Div([
        html.B(unit), " compared: the bar over each character · ",
        html.Span([html.I(style={"background": col}) for col in COMPARE_PALETTES[scale.name]], className="bar"),
        f" {low} = {lo}{middle}, {high} = {hi} ({_why(mode)})",
    ], className="legend", id="legend-cmp")


def legend(store, unit: str, scale: ColourScale, mode: str) -> html.Div:
    """What the colours mean for ``unit`` (which value is blue, white, red, over which range, and that values
    beyond a percentile range take its end colours) and its whole-store statistics."""
    layer, kind, index = parse_unit(unit)
    c = scale.name[0]
    row = store.stats.loc[unit]
    lo, mid, hi = scale.ends()
    why = _why(mode)
    if scale.name == "diverging":
        middle = "" if float(mid) == 0 else " (the middle of the range)"
        meaning = f"colour: blue = {lo}, white = {mid}{middle}, red = {hi} ({why})"
    else:
        meaning = f"colour: white = {lo}, green = {hi} ({why})"
    return html.Div(
        [
            html.B(unit),
            f" {kind_name(kind, store.cell)} · layer {layer} · unit {index} · ",
            html.Span([html.I(className=f"{c}{b}") for b in range(N_BINS)], className="bar"),
            f" {meaning} · whole store: mean {row['mean']:.3g}, std {row['std']:.3g}, "
            f"min {row['min']:.3g}, max {row['max']:.3g}",
        ],
        className="legend tv",
    )
