"""The view: what the page shows, as one small frozen dataclass, and its round trip through the URL.

Everything the browser sends is validated against the :class:`StoreSet` here (:meth:`View.clean`): a store
is named by index or name, a unit must be one of the store's, the window start is clipped so that a window
is full whenever the text is long enough, a feature must be a built-in name or ``re:`` plus a pattern of
bounded size. What a user *does* to a view is in :mod:`.transitions` (pure functions, no Dash).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

from rnnviz.analysis.features import FEATURES
from rnnviz.analysis.on_threshold import THETA, parse_theta
from rnnviz.analysis.similar import MAX_FOLLOW
from rnnviz.views.colours import RANGES
from rnnviz.views.dashboard.stores import MAX_PATTERN, StoreSet, has_model

WINDOW = 2000  # rows (characters, or tokens) per text window
TABS = ("hyp", "sel", "pattern", "overview", "plots", "sample", "emerge", "catalog", "unit")
MODEL_TABS = ("sample", "emerge")  # shown only for a store recorded from an rnnviz model (stores.has_model)
DEFAULT_RANGE = "robust"  # the colour range of a view that names none (left out of its URL): each unit's own
TEXT_FIELDS = ("store", "unit", "cmp", "start", "feature", "hl", "range")  # what the text view is drawn from
URL_KEYS = ("store", "unit", "cmp", "start", "feature", "range", "tab", "sel", "theta", "cells")


@dataclass(frozen=True)
class View:
    store: int = 0  # index into the StoreSet
    unit: str = ""  # "LAYER:KIND:INDEX", colours the text
    cmp: str = ""  # a second unit to compare ("" = none): the bar over each character
    start: int = 0  # first row of the window (a character, or a token)
    feature: str = ""  # built-in feature name or "re:PATTERN" ("" = none): the bar under each character
    hl: tuple[int, int] | None = None  # rows [a, b) outlined (a search hit, a match); not in the URL
    range: str = DEFAULT_RANGE  # colour range: a key of rnnviz.views.colours.RANGES
    tab: str = "hyp"  # the open panel on the right
    sel: tuple[int, int] | None = None  # the selection, rows [a, b), of select-to-find and the pattern view
    theta: float = THETA  # θ in σ: a cell is "on" above it
    cells: tuple[str, ...] = ()  # the pattern view's cell set (empty: the ranking's best)

    def to_dict(self) -> dict:
        """JSON for the browser's ``dcc.Store`` (tuples become lists)."""
        return dataclasses.asdict(self)

    def replace(self, **kw) -> View:
        return dataclasses.replace(self, **kw)

    @classmethod
    def clean(cls, d, stores: StoreSet, window: int = WINDOW) -> View:
        """A complete, valid view from any dict or View (missing or bad fields get defaults)."""
        if isinstance(d, View):
            d = d.to_dict()
        d = d if isinstance(d, dict) else {}  # from the browser: any JSON at all
        i = stores.resolve(d.get("store"))
        i = 0 if i is None else i
        store = stores[i]
        units = store.units  # O(1) membership, never a set of every name
        unit = d.get("unit") if isinstance(d.get("unit"), str) and d.get("unit") in units else store.units[0]
        cmp = d.get("cmp")
        cmp = cmp if isinstance(cmp, str) and cmp in units and cmp != unit else ""
        cells = d.get("cells") or ()
        cells = tuple(dict.fromkeys(c for c in cells if isinstance(c, str) and c in units))[:MAX_FOLLOW] \
            if isinstance(cells, (list, tuple)) else ()
        return cls(
            store=i,
            unit=unit,
            cmp=cmp,
            start=clip_start(d.get("start"), store.length, window),
            feature=valid_feature(d.get("feature")),
            hl=valid_span(d.get("hl"), store.length),
            range=_choice(d.get("range"), RANGES, DEFAULT_RANGE),
            tab=_choice(d.get("tab"), tabs_of(store), "hyp"),
            sel=valid_span(d.get("sel"), store.length),
            theta=parse_theta(d.get("theta"), THETA),
            cells=cells,
        )


def tabs_of(store) -> tuple[str, ...]:
    """The panels a store has: all but sampling and emergence when no rnnviz model recorded it."""
    return TABS if has_model(store) else tuple(t for t in TABS if t not in MODEL_TABS)


def _choice(value, allowed, default: str) -> str:
    """``value`` when it is one of the ``allowed`` strings (any JSON may come from the browser)."""
    return value if isinstance(value, str) and value in allowed else default


def to_int(value) -> int:
    """``int(value)`` for a number from the browser. A crafted request can send 1e400 (inf once parsed):
    that raises ValueError here, like any other non-number, never OverflowError."""
    if isinstance(value, bool):
        raise ValueError("not a number")
    try:
        return int(value)
    except OverflowError:
        raise ValueError(f"not a finite number: {value!r}") from None


def clip_start(start, length: int, window: int = WINDOW) -> int:
    """A window start inside the text: 0 <= start <= max(0, length - window), so a window is always full
    when the text is at least a window long (paging past the end stops at the last full window)."""
    try:
        start = to_int(start)
    except (TypeError, ValueError):
        start = 0
    return max(0, min(start, max(0, length - window)))


def valid_feature(spec) -> str:
    """``spec`` if it is a built-in feature name or ``re:`` + 1..MAX_PATTERN characters, else ""."""
    if not isinstance(spec, str) or not spec:
        return ""
    if spec.startswith("re:"):
        return spec if 0 < len(spec) - 3 <= MAX_PATTERN else ""
    return spec if spec in FEATURES else ""


def valid_span(span, length: int) -> tuple[int, int] | None:
    """[a, b) as a tuple when it is two ints with 0 <= a < b <= length, else None."""
    if isinstance(span, (list, tuple)) and len(span) == 2 and all(type(x) is int for x in span):
        a, b = span
        if 0 <= a < b <= length:
            return (a, b)
    return None


def query_fields(search: str | None) -> dict[str, str]:
    """The view's fields in a URL query string, as given (first value of each)."""
    try:
        q = parse_qs(search.lstrip("?") if isinstance(search, str) else "", max_num_fields=20)
    except ValueError:  # more fields than any link of ours has: nothing in it is trusted
        return {}
    return {k: v[0] for k, v in q.items() if k in URL_KEYS}


def _parse_span(s: str):
    a, _, b = s.partition("-")
    try:
        return [to_int(a), to_int(b)]
    except (TypeError, ValueError):
        return None


def from_query(search: str | None, stores: StoreSet, window: int = WINDOW) -> View:
    """``?store=wp&unit=1:c:17&start=4000&feature=in_quote&sel=10-20&cells=1:c:1,1:c:2`` -> a valid view."""
    q: dict = dict(query_fields(search))
    if "sel" in q:
        q["sel"] = _parse_span(q["sel"])
    if "cells" in q:
        q["cells"] = [c.strip() for c in q["cells"].split(",")][: MAX_FOLLOW + 1]
    return View.clean(q, stores, window)


def to_query(view: View, stores: StoreSet) -> str:
    """The view as a URL query string (store by name; empty and default fields left out)."""
    q = {
        "store": stores.names[view.store],
        "unit": view.unit,
        "cmp": view.cmp,
        "start": str(view.start),
        "feature": view.feature,
        "range": "" if view.range == DEFAULT_RANGE else view.range,
        "tab": "" if view.tab == "hyp" else view.tab,
        "sel": f"{view.sel[0]}-{view.sel[1]}" if view.sel else "",
        "theta": "" if view.theta == THETA else f"{view.theta:g}",
        "cells": ",".join(view.cells),
    }
    return "?" + urlencode({k: v for k, v in q.items() if v not in ("", None)})


def step_unit(units: list[str], unit: str, step: int) -> str:
    """The unit ``step`` places after ``unit`` in the store's order (wrapping around)."""
    i = units.index(unit) if unit in units else 0
    return units[(i + step) % len(units)]


def find_text(text: str, needle: str, after: int) -> int:
    """Index of the next occurrence of ``needle`` at or after ``after`` (wrapping to the top); -1 if none."""
    if not needle:
        return -1
    i = text.find(needle, after)
    return text.find(needle) if i < 0 else i
