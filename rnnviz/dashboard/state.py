"""The view: which store, unit, window and feature the page shows; and its round trip through the URL.

A view is a plain dict (it lives in a ``dcc.Store`` in the browser) with the keys of :data:`DEFAULT`.
Everything from the browser is validated against the :class:`StoreSet` here: a store is named by index
or name, a unit must be one of the store's, the window start is clipped to the text, a feature must be a
built-in name or ``re:`` plus a pattern of bounded size.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode

from ..features import FEATURES
from .stores import MAX_PATTERN, StoreSet

WINDOW = 2000  # characters per text window

DEFAULT = {
    "store": 0,  # index into the StoreSet
    "unit": "",  # "LAYER:KIND:INDEX", colours the text
    "cmp": "",  # a second unit to compare ("" = none): the bar under each character
    "start": 0,  # first character of the window
    "feature": "",  # built-in feature name or "re:PATTERN" ("" = none)
    "hl": None,  # [a, b): characters outlined (a search hit, a match, a jump target); not in the URL
}
URL_KEYS = ("store", "unit", "cmp", "start", "feature")


def to_int(value) -> int:
    """``int(value)`` for a number from the browser. A crafted request can send 1e400 (inf once parsed):
    that raises ValueError here, like any other non-number, never OverflowError."""
    try:
        return int(value)
    except OverflowError:
        raise ValueError(f"not a finite number: {value!r}") from None


def clip_start(start, length: int) -> int:
    """A window start inside the text: 0 <= start <= max(0, length - 1)."""
    try:
        start = to_int(start)
    except (TypeError, ValueError):
        start = 0
    return max(0, min(start, max(0, length - 1)))


def valid_feature(spec) -> str:
    """``spec`` if it is a built-in feature name or ``re:`` + 1..MAX_PATTERN characters, else ""."""
    if not isinstance(spec, str) or not spec:
        return ""
    if spec.startswith("re:"):
        return spec if 0 < len(spec) - 3 <= MAX_PATTERN else ""
    return spec if spec in FEATURES else ""


def clean(view: dict | None, stores: StoreSet, window: int = WINDOW) -> dict:
    """A complete, valid view from any dict (missing or bad fields get defaults)."""
    view = {**DEFAULT, **(view if isinstance(view, dict) else {})}  # from the browser: any JSON at all
    i = stores.resolve(view["store"])
    i = 0 if i is None else i
    store = stores[i]
    units = store.units  # O(1) membership, never a set of every name
    unit = view["unit"] if isinstance(view["unit"], str) and view["unit"] in units else store.units[0]
    cmp = view["cmp"] if isinstance(view["cmp"], str) and view["cmp"] in units and view["cmp"] != unit else ""
    hl = view["hl"]
    if not (isinstance(hl, (list, tuple)) and len(hl) == 2 and all(isinstance(x, int) for x in hl)):
        hl = None
    return {
        "store": i,
        "unit": unit,
        "cmp": cmp,
        "start": clip_start(view["start"], store.length),
        "feature": valid_feature(view["feature"]),
        "hl": list(hl) if hl else None,
    }


def query_fields(search: str | None) -> dict[str, str]:
    """The view's fields in a URL query string, as given (first value of each)."""
    try:
        q = parse_qs(search.lstrip("?") if isinstance(search, str) else "", max_num_fields=20)
    except ValueError:  # more fields than any link of ours has: nothing in it is trusted
        return {}
    return {k: v[0] for k, v in q.items() if k in URL_KEYS}


def from_query(search: str | None, stores: StoreSet, window: int = WINDOW) -> dict:
    """``?store=wp&unit=1:c:17&start=4000&feature=in_quote`` -> a valid view (bad fields -> defaults)."""
    return clean(query_fields(search), stores, window)


def to_query(view: dict, stores: StoreSet) -> str:
    """The view as a URL query string (store by name; empty fields left out)."""
    q = {
        "store": stores.names[view["store"]],
        "unit": view["unit"],
        "cmp": view["cmp"],
        "start": str(view["start"]),
        "feature": view["feature"],
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
