"""A whole store's :func:`~rnnviz.analysis.explain.explain`, kept beside the store (``cache.explain``).

Explaining every unit takes seconds per 1,000 units x 100k characters (12 s for the 3,072 units of a 2x256
LSTM's six kinds), every time a server process first shows its catalog. The result is a table of numbers,
words and rule ids, so it is written once as JSON in the store's cache format
(:func:`rnnviz.store.column_cache.cached_json`: written atomically; used only when its stamp equals the
store's arrays' and text's now, its code hash the explain code's, its settings the ones asked for, and its
CRC holds; anything else is ignored and computed again). It is read back as the same DataFrame, value for
value, dtypes and ``attrs`` included. :func:`stored_explain` only reads: a page that loads never computes.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pandas as pd

from rnnviz.analysis.explain import explain
from rnnviz.analysis.ranking import Progress
from rnnviz.errors import RnnvizError
from rnnviz.store.column_cache import array_stamp, cached_json, code_hash

CACHE = "cache.explain"
SETTINGS = ("min_score", "min_count", "combo_gain", "combo_below", "block", "intervals")  # what keys the cache
CATALOG = {"intervals": False}  # the dashboard's catalog (and the unit it opens on): no interval is shown


def settings_of(**given) -> dict:
    """Every setting of :data:`SETTINGS`, ``given`` or :func:`explain`'s default: the cache's key."""
    unknown = sorted(set(given) - set(SETTINGS))
    if unknown:
        raise RnnvizError(f"cannot cache explain with {', '.join(unknown)}: only {', '.join(SETTINGS)}")
    defaults = {k: p.default for k, p in inspect.signature(explain).parameters.items() if k in SETTINGS}
    return {**defaults, **given}


def _code() -> str:
    """SHA-256 of the explain code (the search, the rules, the features, the roles): other code, stale cache."""
    here = Path(__file__).parent
    files = [here / "explain.py", here / "explain_control.py", here / "rule_space.py", here / "rules.py",
             here / "statistics.py"]
    return code_hash(*files, *sorted((here / "features").glob("*.py")))


def _expect(store, settings: dict) -> dict:
    return {"kind": "explain", "key": settings, "source": array_stamp(store, text=True), "code": _code()}


def to_doc(df: pd.DataFrame) -> dict:
    """A DataFrame as JSON: its columns, their dtypes, their values (NA as null) and its ``attrs``."""
    def plain(v):
        if v is pd.NA:
            return None
        return v.item() if hasattr(v, "item") else v  # a numpy scalar as the Python one (exactly)

    return {"columns": list(df.columns), "dtypes": [str(t) for t in df.dtypes],
            "data": [[plain(v) for v in df[c]] for c in df.columns], "attrs": df.attrs}


def from_doc(doc: dict) -> pd.DataFrame:
    """:func:`to_doc`'s inverse. Raises ValueError (KeyError, TypeError) on a document of another shape."""
    cols = {c: pd.Series(v, dtype=t) for c, t, v in zip(doc["columns"], doc["dtypes"], doc["data"], strict=True)}
    df = pd.DataFrame(cols, columns=doc["columns"])
    df.attrs.update(doc["attrs"])
    return df


def cached_explain(store, progress: Progress | None = None, **settings) -> pd.DataFrame:
    """:func:`explain` of every unit of ``store`` with ``settings`` (:data:`SETTINGS`), read from beside the
    store when computed before (by any process), else computed (``progress(done, total)`` as it goes) and
    written there."""
    settings = settings_of(**settings)
    doc = cached_json(store, CACHE, _expect(store, settings),
                      lambda: to_doc(explain(store, progress=progress, **settings)))
    df = _frame(store, doc)
    return from_doc(to_doc(explain(store, progress=progress, **settings))) if df is None else df


def stored_explain(store, **settings) -> pd.DataFrame | None:
    """The cached :func:`explain` of ``store`` with ``settings`` when there is a valid one, else None (never
    computes: fast enough for a page load)."""
    settings = settings_of(**settings)
    doc = cached_json(store, CACHE, _expect(store, settings), None)
    return None if doc is None else _frame(store, doc)


def _frame(store, doc) -> pd.DataFrame | None:
    """The DataFrame of a cached document, or None when it is not one of this store's units (a file written by
    hand with a valid stamp and CRC)."""
    try:
        df = from_doc(doc)
        ok = list(df["unit"]) == list(store.units)
    except (KeyError, TypeError, ValueError):
        return None
    return df if ok else None
