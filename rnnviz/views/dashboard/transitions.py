"""What a user does to the view: pure functions ``(stores, view, value, ctx) -> (new view, message)``.

No Dash here, so each is tested as a plain call. ``value`` is what the control that fired holds;
``ctx`` (:class:`Inputs`) carries the other text boxes and the window size. A user error leaves the view
as it was and says why in one line; :data:`TRANSITIONS` maps each control's id to its function, and
:func:`apply` runs one and then re-validates the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rnnviz.analysis.evidence import strongest
from rnnviz.analysis.features import FEATURES
from rnnviz.analysis.on_threshold import parse_theta, theta_problem
from rnnviz.analysis.similar import MAX_FOLLOW
from rnnviz.errors import RnnvizError
from rnnviz.model.units import parse_unit
from rnnviz.store.reader import spaced_blocks
from rnnviz.views.colours import RANGES
from rnnviz.views.dashboard.state import (
    WINDOW,
    View,
    clip_start,
    find_text,
    from_query,
    query_fields,
    step_unit,
    tabs_of,
    to_int,
)
from rnnviz.views.dashboard.stores import StoreSet, check_regex
from rnnviz.views.display import row_word

CONTEXT = 200  # rows shown before a search hit or a match
MAX_NEEDLE = 200  # characters of a search string


@dataclass(frozen=True)
class Inputs:
    """The other controls' contents when one fires (text boxes hold any JSON a crafted request sends)."""

    feature_pick: str | None = None
    regex: str | None = None
    jump: object = None
    find: str | None = None
    window: int = WINDOW


def _short(s: str, n: int = 40) -> str:
    return repr(s if len(s) <= n else s[:n] + "…")


def load(stores: StoreSet, _view, search, ctx: Inputs) -> tuple[View, str]:
    """A page load or a changed URL: the view the link asks for, and what in it could not be honoured."""
    new = from_query(search, stores, ctx.window)
    asked = query_fields(search)
    msg = _unhonoured(stores, new, asked)
    if new.feature.startswith("re:"):  # a link's regex is checked like a typed one (size and syntax)
        try:
            check_regex(new.feature[3:])
        except RnnvizError as e:
            new, msg = new.replace(feature=""), str(e)
    if not asked.get("unit"):  # a link that names no unit: the store's strongest cell (where it fires, unless placed)
        from rnnviz.views.dashboard.opening import opening_view  # it uses show_peak, below

        new = opening_view(stores, new, ctx.window, place="start" not in asked)
    return new, msg


def _unhonoured(stores: StoreSet, new: View, asked: dict[str, str]) -> str:
    """What in a link's fields ``asked`` the view ``new`` could not honour, in one line ("" when all was)."""
    name = stores.names[new.store]
    msg = ""
    if "store" in asked and stores.resolve(asked["store"]) is None:
        msg = (f"no store {_short(asked['store'])} here: this dashboard serves {', '.join(stores.names)} "
               f"(showing {name})")
    elif asked.get("unit") and asked["unit"] != new.unit:
        msg = f"no unit {_short(asked['unit'])} in {name}: showing {new.unit}"
    elif asked.get("feature") and not new.feature:
        msg = (f"no feature {_short(asked['feature'])}: choose one of {', '.join(FEATURES)}, or re:PATTERN "
               "(showing none)")
    elif asked.get("range") and asked["range"] != new.range:
        msg = f"no colour range {_short(asked['range'])}: choose one of {', '.join(RANGES)}"
    elif asked.get("sel") and new.sel is None:
        msg = f"the selection {_short(asked['sel'])} is not a range A-B inside the text (0..{stores[new.store].length})"
    elif asked.get("theta") and str(new.theta) != asked["theta"] and theta_problem(asked["theta"]):
        msg = theta_problem(asked["theta"])
    elif asked.get("cells") is not None and len(new.cells) < len([c for c in asked["cells"].split(",") if c]):
        msg = f"cells: give 1 to {MAX_FOLLOW} units of {name} (LAYER:KIND:INDEX, comma-separated)"
    return msg


def pick_store(stores, view: View, value, ctx: Inputs) -> tuple[View, str]:
    return View.clean({**view.to_dict(), "store": value, "hl": None, "sel": None, "cells": ()}, stores,
                      ctx.window), ""


def _unit_part(stores, view: View, part: str, value) -> tuple[View, str]:
    """Change one part of the unit (layer, kind or index); a unit the store lacks is refused. A new layer or
    kind keeps the index, or takes the last one of a narrower array (an LSTM's h with proj_size)."""
    store = stores[view.store]
    layer, kind, index = parse_unit(view.unit)
    last = store.width(layer, kind) - 1
    try:
        if part == "layer":
            layer = int(value)
        elif part == "kind":
            kind = str(value)
        else:
            index = to_int(value)
    except (TypeError, ValueError):
        return view, f"a unit index is a whole number from 0 to {last}"
    if part != "index" and layer in store.layers and kind in store.kinds:
        index = min(index, store.width(layer, kind) - 1)
    unit = f"{layer}:{kind}:{index}"
    if unit not in store.units:
        where = f"no unit {_short(unit)} in {stores.names[view.store]}"
        return view, f"{where}: indices run from 0 to {last}" if part == "index" else where
    return view.replace(unit=unit, cmp="" if view.cmp == unit else view.cmp), ""


def pick_layer(stores, view, value, ctx):
    return _unit_part(stores, view, "layer", value)


def pick_kind(stores, view, value, ctx):
    return _unit_part(stores, view, "kind", value)


def pick_index(stores, view, value, ctx):
    return _unit_part(stores, view, "index", value)


def prev_unit(stores, view: View, _value, ctx) -> tuple[View, str]:
    return view.replace(unit=step_unit(stores[view.store].units, view.unit, -1)), ""


def next_unit(stores, view: View, _value, ctx) -> tuple[View, str]:
    return view.replace(unit=step_unit(stores[view.store].units, view.unit, 1)), ""


def set_compare(stores, view: View, value, ctx) -> tuple[View, str]:
    name = value.strip() if isinstance(value, str) else ""
    store = stores[view.store]
    if name and name not in store.units:
        where = stores.names[view.store]
        return view, f"no unit {_short(name)} in {where}: give LAYER:KIND:INDEX, e.g. {store.units[-1]}"
    return view.replace(cmp="" if name == view.unit else name), ""


def _page(stores, view: View, step: int, window: int) -> tuple[View, str]:
    length = stores[view.store].length
    start = clip_start(view.start + step, length, window)
    if start == view.start:
        return view, "this is the end of the text" if step > 0 else "this is the start of the text"
    return view.replace(start=start, hl=None), ""


def page_prev(stores, view, _value, ctx):
    return _page(stores, view, -ctx.window, ctx.window)


def page_next(stores, view, _value, ctx):
    return _page(stores, view, ctx.window, ctx.window)


def jump(stores, view: View, _value, ctx: Inputs) -> tuple[View, str]:
    try:
        pos = to_int(ctx.jump)
    except (TypeError, ValueError):
        return view, f"type a {row_word(stores[view.store], 1)} position to go to"
    length = stores[view.store].length
    pos = min(max(pos, 0), length - 1)
    start = view.start if view.start <= pos < view.start + ctx.window else clip_start(pos, length, ctx.window)
    return view.replace(start=start, hl=(pos, pos + 1)), ""


def find(stores, view: View, _value, ctx: Inputs) -> tuple[View, str]:
    """The next occurrence of the text in the find box after the outlined run (or the window's start), outlined:
    the rows (characters, or the tokens) it touches."""
    needle = ctx.find if isinstance(ctx.find, str) else ""
    if not needle:
        return view, "type some text to find"
    if len(needle) > MAX_NEEDLE:
        return view, f"search for at most {MAX_NEEDLE} characters"
    store = stores[view.store]
    row = view.hl[0] + 1 if view.hl else view.start
    after = store.chars_of_rows(row, store.length)[0] if row < store.length else len(store.text)
    i = find_text(store.text, needle, after)
    if i < 0:
        return view, f"{_short(needle)} does not occur in {stores.names[view.store]}"
    msg = "search wrapped around to the top" if i < after else ""
    a, b = store.rows_of_chars(i, i + len(needle))
    if a == b:  # only between tokens (a space): the token after it
        a, b = min(a, store.length - 1), min(a, store.length - 1) + 1
    return _show(view, a, b, store.length, ctx.window), msg


def _show(view: View, a: int, b: int, length: int, window: int) -> View:
    """``view`` with rows [a, b) outlined (the text is scrolled to them when drawn): the same window if they are
    in it, else one that starts CONTEXT rows before them."""
    new = view.replace(hl=(a, b))
    if not view.start <= a <= view.start + window - (b - a):
        new = new.replace(start=clip_start(a - CONTEXT, length, window))
    return new


def show_peak(stores, view: View, unit: str, sign: int, window: int, within: tuple[int, int] | None = None,
              sample: bool = False) -> View:
    """``view`` with ``unit``'s strongest activation (its highest value; its lowest for ``sign`` -1) outlined and on
    screen (:func:`_show`): over rows ``within`` = (a, b), else over the whole store (reads the unit's column), or
    with ``sample`` over a bounded sample of it (:func:`~rnnviz.store.reader.spaced_blocks`: the whole store up
    to 200,000 rows; for a page load)."""
    store = stores[view.store]
    a, b = within or (0, store.length)
    if sample:
        blocks = spaced_blocks(store.length)
        rows = np.concatenate([np.arange(lo, hi) for lo, hi in blocks])  # the row of each value read
        x = store.read([unit], blocks=blocks)[:, 0]
    else:
        rows = None
        x = store.window(a, b, [unit])[:, 0] if within else store.unit(unit)  # (b - a,)
    p = strongest(np.asarray(x, np.float32), 1, 1, -1 if sign < 0 else 1)[0]
    p = int(rows[p]) if rows is not None else a + p
    return _show(view, p, p + 1, store.length, window)


def pick_feature(stores, view: View, value, ctx) -> tuple[View, str]:
    return view.replace(feature=value if isinstance(value, str) and value in FEATURES else ""), ""


def rank(stores, view: View, _value, ctx: Inputs) -> tuple[View, str]:
    """The regex box (or, when empty, the picked feature) becomes the view's feature."""
    regex = ctx.regex if isinstance(ctx.regex, str) else ""
    if regex:
        try:
            check_regex(regex)
        except RnnvizError as e:
            return view, str(e)
        return view.replace(feature="re:" + regex), ""
    return pick_feature(stores, view, ctx.feature_pick, ctx)


def pick_range(stores, view: View, value, ctx) -> tuple[View, str]:
    if not (isinstance(value, str) and value in RANGES):
        return view, f"no colour range {_short(str(value))}: choose one of {', '.join(RANGES)}"
    return view.replace(range=value), ""


def pick_tab(stores, view: View, value, ctx) -> tuple[View, str]:
    ok = isinstance(value, str) and value in tabs_of(stores[view.store])
    return (view.replace(tab=value), "") if ok else (view, "")


def unit_row(stores, view: View, value, ctx: Inputs) -> tuple[View, str]:
    """A click on a ranked unit ("TABLE/UNIT", or "TABLE/UNIT/SIGN" with SIGN + or -): colour the text by it and
    show where it fires most (:func:`show_peak`): inside the selection for a cell of select-to-find (TABLE
    "sel"), else over the whole store."""
    tag, _, unit = str(value).partition("/")
    down = unit.endswith("/-")
    unit = unit.removesuffix("/-").removesuffix("/+")
    if unit not in stores[view.store].units:
        return view, f"no unit {_short(unit)} in {stores.names[view.store]}"
    new = view.replace(unit=unit, cmp="" if view.cmp == unit else view.cmp)
    within = view.sel if tag == "sel" else None
    return show_peak(stores, new, unit, -1 if down else 1, ctx.window, within), ""


def match_row(stores, view: View, value, ctx: Inputs) -> tuple[View, str]:
    """A click on a match ("START-STOP"): outline it and show it with some context before it."""
    try:
        a, b = (to_int(x) for x in str(value).split("-"))
    except ValueError:
        return view, ""
    store = stores[view.store]
    if not 0 <= a < b <= store.length:
        return view, ""
    return view.replace(hl=(a, b), start=clip_start(a - CONTEXT, store.length, ctx.window)), ""


def set_selection(stores, view: View, value, ctx) -> tuple[View, str]:
    """Select-to-find ran on rows [a, b) at θ (``{"a", "b", "theta"}``, and ``"tab"`` to open): the pattern view
    follows it."""
    try:
        a, b = to_int(value["a"]), to_int(value["b"])
    except (TypeError, ValueError, KeyError):
        return view, ""
    length = stores[view.store].length
    if not 0 <= a < b <= length:
        return view, ""
    theta = value.get("theta", view.theta)
    tab = value.get("tab") if value.get("tab") in tabs_of(stores[view.store]) else view.tab
    return view.replace(sel=(a, b), cells=(), theta=parse_theta(theta, view.theta), tab=tab), ""


def set_cells(stores, view: View, value, ctx) -> tuple[View, str]:
    """The pattern view's cell set, typed as "1:c:12, 0:c:40" (1 to MAX_FOLLOW units of the store)."""
    names = [c.strip() for c in value.split(",") if c.strip()] if isinstance(value, str) else []
    store = stores[view.store]
    if not names:
        return view, f"cells: give 1 to {MAX_FOLLOW} units, e.g. {store.units[-1]}"
    if len(names) > MAX_FOLLOW:
        return view, f"cells: at most {MAX_FOLLOW} at once, got {len(names)}"
    bad = [c for c in names if c not in store.units]
    if bad:
        return view, f"no unit {_short(bad[0])} in {stores.names[view.store]}: give LAYER:KIND:INDEX"
    return view.replace(cells=tuple(dict.fromkeys(names))), ""


def set_theta(stores, view: View, value, ctx) -> tuple[View, str]:
    problem = theta_problem(value)
    return (view, problem) if problem else (view.replace(theta=float(value)), "")


TRANSITIONS: dict[str | None, Callable] = {
    None: load, "url": load, "store-pick": pick_store, "layer-pick": pick_layer, "kind-pick": pick_kind,
    "index-pick": pick_index, "unit-prev": prev_unit, "unit-next": next_unit, "cmp-input": set_compare,
    "page-prev": page_prev, "page-next": page_next, "jump-go": jump, "jump-input": jump, "find-go": find,
    "find-input": find, "feature-pick": pick_feature, "regex-input": rank, "rank-go": rank,
    "range-pick": pick_range, "tabs": pick_tab, "unit-row": unit_row, "match-row": match_row,
    "sel-view": set_selection, "pat-cells": set_cells, "pat-thr": set_theta,
}


def apply(stores: StoreSet, view, trigger: str | None, value=None, ctx: Inputs | None = None) -> tuple[View, str]:
    """Run the transition of control ``trigger`` on ``view`` (any dict from the browser, or a View).

    Returns (a valid new view, message for the user or ""). A newly chosen feature is computed here
    (cached), so that a bad or slow regex is refused once, not by every panel."""
    ctx = ctx or Inputs()
    if trigger not in TRANSITIONS:
        raise KeyError(trigger)
    old = None if trigger in (None, "url") else View.clean(view, stores, ctx.window)
    new, msg = TRANSITIONS[trigger](stores, old, value, ctx)
    new = View.clean(new, stores, ctx.window)
    if new.feature and (old is None or (new.feature, new.store) != (old.feature, old.store)):
        try:
            stores.feature(new.store, new.feature)
        except RnnvizError as e:
            new, msg = new.replace(feature=""), str(e)
    return new, msg
