"""The text view: one window of the store's text, each character coloured by a unit.

Colours are the HTML export's (:mod:`rnnviz.colors`, the same ``N_BINS`` steps as CSS classes
``d0..d32`` / ``s0..s32``, the same colour ranges), so a cell looks the same here and in an exported page.
A second unit shows as a bar over each character, a feature as a bar under it. Each character is its own
``<span>`` whose ``title`` holds the value(s), the character's loss and the model's next-character
guesses.

The server sends the window as plain data (:func:`render`: characters, classes, tooltips) and the
browser builds the spans with ``textContent`` (``draw`` in ``assets/rnnviz.js``), so no character is ever
parsed as HTML. Why not one Dash component per character: Dash's renderer spends milliseconds per
component, and 2,000 of them took 7–10 s to appear on a 2-core machine; the DOM builds them in ~10 ms.

Only the window's rows are read from the store (a few hundred kB on any store size).
"""

from __future__ import annotations

import numpy as np
from dash import html

from ..colors import FEATURE_RGB, KIND_NAMES, N_BINS, PALETTES, RANGES, ColourScale
from ..display import char_loss, shown, visible
from ..models import parse_unit

TOP_SHOWN = 3  # next-character guesses in a tooltip
FEATURE_STEPS = 4  # intensity steps of the feature bar


def css() -> str:
    """Style rules for the colour classes (background, the compare bar, the feature bar)."""
    rules = []
    for name, pal in PALETTES.items():
        c = name[0]
        for i, col in enumerate(pal):
            rules.append(f".tv .{c}{i}{{background:{col}}}.tv .o{c}{i}{{border-top-color:{col}}}")
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

    ``view``: a clean :class:`~.state.View`; ``feature``: the view's feature over the whole store
    ((T,) float32) or None; ``scales``: the unit's (and compare unit's) colour scales. Returns
    ``{"start", "stop", "chars", "cls", "tips", "hl"}``: per character the text drawn
    (:func:`rnnviz.display.visible`), its CSS classes and its tooltip, each a list of length stop - start;
    ``hl``: the outlined run, as offsets into the window, or None.
    """
    start = view.start
    stop = min(store.length, start + window)
    units = [view.unit] + ([view.cmp] if view.cmp else [])
    vals = store.window(start, stop, units).astype(np.float16)  # (n, U): only the window's rows
    text = store.text[start:stop]
    n = stop - start

    classes = [[] for _ in range(n)]
    main = scales[0]
    for i, b in enumerate(main.bins(vals[:, 0]).tolist()):
        classes[i].append(f"{main.name[0]}{b}" if b >= 0 else "nan")
    if len(units) > 1:
        other = scales[1]
        for i, b in enumerate(other.bins(vals[:, 1]).tolist()):
            if b >= 0:
                classes[i].append(f"o{other.name[0]}{b}")
    fvals = None
    if feature is not None:
        fvals = feature[start:stop]
        hi = float(np.nanmax(feature)) if feature.size else 1.0
        for i, s in enumerate(feature_steps(fvals, hi).tolist()):
            if s:
                classes[i].append(f"f{s}")
    hl = view.hl
    shown_hl = None
    if hl and hl[0] < stop and hl[1] > start:
        shown_hl = [max(hl[0], start) - start, min(hl[1], stop) - start]
        for t in range(shown_hl[0], shown_hl[1]):
            classes[t].append("hl")

    # Tooltip lines: value(s); position, character and its loss (-log p(char | text before)); guesses.
    # A float16 prints as the shortest text that reads back as the same float16 (what the store holds).
    lines = [[f"{u} = {v!s}" for v in vals[:, j]] for j, u in enumerate(units)]
    loss = char_loss(store, start, stop)
    ids, probs = store.topk
    k = min(TOP_SHOWN, ids.shape[1])
    names = [shown(c) for c in store.vocab.chars]
    guesses = None
    if k:
        gi = np.asarray(ids[start:stop, :k]).tolist()
        gp = np.rint(np.asarray(probs[start:stop, :k], dtype=np.float32) * 100).astype(int).tolist()
        guesses = [
            "next: " + "  ".join(f"{names[c]} {p}%" for c, p in zip(row, prow, strict=True) if c < len(names))
            for row, prow in zip(gi, gp, strict=True)
        ]
    tips = []
    for i, ch in enumerate(text):
        tip = [lines[j][i] for j in range(len(units))]
        if fvals is not None:
            tip.append(f"{view.feature} = {fvals[i]:.3g}")
        loss_i = loss[i]
        tip.append(f"#{start + i} {shown(ch)}" + ("" if np.isnan(loss_i) else f"  loss {loss_i:.3g} nats"))
        if guesses:
            tip.append(guesses[i])
        tips.append("\n".join(tip))
    return {
        "start": start,
        "stop": stop,
        "chars": [visible(ch, text[i + 1 : i + 2], text[i - 1] if i else "") for i, ch in enumerate(text)],
        "cls": [" ".join(c) for c in classes],
        "tips": tips,
        "hl": shown_hl,
    }


def legend(store, unit: str, scale: ColourScale, mode: str = "max") -> html.Div:
    """What the colours mean for ``unit`` (which value is blue, white, red) and its whole-store statistics."""
    layer, kind, index = parse_unit(unit)
    c = scale.name[0]
    row = store.stats.loc[unit]
    lo, mid, hi = scale.ends()
    if scale.name == "diverging":
        meaning = f"colour: blue = {lo}, white = {mid}, red = {hi} ({RANGES[mode]})"
    else:
        meaning = f"colour: white = {lo}, green = {hi} ({RANGES[mode]})"
    return html.Div(
        [
            html.B(unit),
            f" {KIND_NAMES.get(kind, kind)} · layer {layer} · unit {index} · ",
            html.Span([html.I(className=f"{c}{b}") for b in range(N_BINS)], className="bar"),
            f" {meaning} · whole store: mean {row['mean']:.3g}, std {row['std']:.3g}, "
            f"min {row['min']:.3g}, max {row['max']:.3g}",
        ],
        className="legend tv",
    )
