"""The stores one dashboard may reach, fixed at start-up, and what is cached about them.

The browser names a store by its index or its name in this list, never by a path, so no request can
open another file. Features over a whole store (a few MB each), loaded checkpoints and slow analyses
(rankings, gradient flow) are cached here, bounded, shared by every browser tab of the server process.
A regex typed in the browser is checked by :func:`rnnviz.analysis.features.check_regex` (the one check of a
user's regex) and run by :func:`rnnviz.analysis.features.regex_feature` with an in-process deadline.

Rows are characters, or tokens in a token store: a feature is computed over the text's characters and read
at each row (a token's last character, :meth:`rnnviz.store.reader.Store.at_rows`). What a store can show
beyond its states is decided here too: :func:`has_model` (sampling, gradient flow, emergence) and
:func:`has_predictions` (loss, next-token guesses).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rnnviz.analysis.features import FEATURES, REGEX_MAX_PATTERN, compute_feature, regex_feature
from rnnviz.analysis.features import check_regex as check_regex  # the one check of a user regex, used by callbacks
from rnnviz.errors import RnnvizError
from rnnviz.store.column_cache import cached_feature
from rnnviz.store.reader import Store, open_store

MAX_PATTERN = REGEX_MAX_PATTERN  # characters in a user's regex: one limit everywhere
REGEX_TIMEOUT = 2.0  # seconds it may run over a whole store


def has_model(store: Store) -> bool:
    """Whether ``store`` was recorded from an rnnviz CharRNN: sampling, gradient flow and emergence run its
    checkpoint (a user's module, arrays from elsewhere: never)."""
    return store.meta.model is not None


def has_predictions(store: Store) -> bool:
    """Whether ``store`` holds a model's next-row predictions (log-probabilities or top-k)."""
    return bool(store.meta.has_logprob or store.k)


class _LRU:
    """A small thread-safe least-recently-used cache: ``get(key, make)``; errors are not cached."""

    def __init__(self, size: int):
        self.size, self._d, self._lock = size, OrderedDict(), threading.Lock()

    def holds(self, key) -> bool:
        with self._lock:
            return key in self._d

    def get(self, key, make: Callable):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        value = make()  # outside the lock: a slow make must not block other keys
        with self._lock:
            self._d[key] = value
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return value


class StoreSet:
    """An ordered, fixed list of opened stores with unique display names (the directory's name)."""

    def __init__(self, paths: Sequence[str | Path], regex_timeout: float = REGEX_TIMEOUT):
        if not paths:
            raise RnnvizError("give at least one store to serve")
        self.stores: list[Store] = [open_store(p) for p in paths]
        for s in self.stores:
            s.stats  # noqa: B018  malformed statistics fail here, at start-up, not in a callback
        self.names: list[str] = []
        for s in self.stores:
            name, n = s.path.resolve().name or "store", 2
            while name in self.names:  # two stores called "run" become "run" and "run-2"
                name, n = f"{s.path.resolve().name}-{n}", n + 1
            self.names.append(name)
        self.regex_timeout = regex_timeout
        self._features = _LRU(12)  # (T,) float32 each: 4 MB per feature on a 1M-character store (a regex: 2)
        self._models = _LRU(4)
        self._results = _LRU(32)

    def __len__(self) -> int:
        return len(self.stores)

    def __getitem__(self, i: int) -> Store:
        return self.stores[i]

    def resolve(self, key) -> int | None:
        """A store's index from its name or its index (as int or text); None if there is no such store."""
        if key is None:
            return None
        key = str(key)
        if key in self.names:
            return self.names.index(key)
        if key.isascii() and key.isdigit() and len(key) < 10 and int(key) < len(self.stores):  # not "²"
            return int(key)
        return None

    def feature(self, i: int, spec: str) -> np.ndarray:
        """Feature ``spec`` (a built-in name or ``re:PATTERN``) at each row of store ``i``: (T,) float32 (in a
        token store, each token's last character's value).

        A user's regex is checked (:func:`check_regex`) and runs with a deadline of ``regex_timeout``.
        """
        store = self.stores[i]

        def make() -> np.ndarray:
            if spec.startswith("re:"):
                return store.at_rows(self.char_feature(i, spec))
            if spec not in FEATURES:
                raise RnnvizError(f"unknown feature {spec!r}; choose one of {', '.join(FEATURES)}")
            # Beside the store too (featcache.NAME): the next server process starts without recomputing.
            return cached_feature(store, spec, lambda: store.at_rows(compute_feature(spec, store.text)))

        return self._features.get((i, spec), make)

    def char_feature(self, i: int, spec: str) -> np.ndarray:
        """A user's regex feature ``re:PATTERN`` over each character of store ``i``'s text, run once with a
        deadline (what a ranking is given as the feature: it reads the rows itself)."""
        if not spec.startswith("re:"):
            raise RnnvizError(f"not a regex feature: {spec!r}")
        text = self.stores[i].text
        return self._features.get((i, spec, "chars"),
                                  lambda: regex_feature(spec[3:], text, timeout=self.regex_timeout))

    def warm_columns(self, i: int, units: list[str]) -> None:
        """Start building, in the background, the column-major copies of the arrays that ``units`` are in
        (after a scan over the whole store: the next scan of any of their units reads T·2 bytes a unit)."""
        store = self.stores[i]
        for layer, kind in dict.fromkeys(store.locate(u)[:2] for u in units):
            store.colcache.build_async(layer, kind)

    def model(self, i: int):
        """Store ``i``'s checkpoint loaded on the CPU (cached), or None when it is not reachable."""
        path = self.stores[i].checkpoint_path
        if path is None:
            return None

        def make():
            from rnnviz.model.checkpoint import load_checkpoint

            return load_checkpoint(path, device="cpu")

        return self._models.get((i, str(path)), make)

    def cached(self, key, make: Callable):
        """Memoise a slow result (a ranking, a gradient-flow curve) under ``key``."""
        return self._results.get(key, make)

    def holds(self, key) -> bool:
        """Whether a result is cached under ``key`` (a panel shows what is already computed, unasked)."""
        return self._results.holds(key)
