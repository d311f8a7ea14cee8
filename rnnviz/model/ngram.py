"""The paper's n-gram baseline: an interpolated modified Kneser-Ney character n-gram model.

Karpathy et al. (2015) compare their LSTMs with a 20-gram model on the same split (test: War and Peace
1.195, Linux 0.889 nats/char, against their best LSTM's 1.077 and 0.84). A model card that states only
the LSTM's loss cannot say whether a corpus is hard or a model weak; the n-gram's loss on the *same*
split can. This module counts the model on the training split and scores any text.

Smoothing: interpolated Kneser-Ney with Chen & Goodman's (1998) three discounts per order (D1, D2, D3+
from that order's counts of counts), raw counts at the highest order and continuation counts (how many
distinct characters precede) below it, down to a uniform distribution over the vocabulary. A context is
a 64-bit hash of its characters (numpy, no Python loop over characters): with n distinct contexts the
chance of any collision is about n²/2⁶⁵, under 10⁻⁴ for the 120M distinct 20-gram contexts of these
corpora.

Memory is bounded. One order is counted at a time, a chunk of :data:`CHUNK` positions at a time, into a
sorted table of the distinct n-grams seen so far; a table is at most ``max_contexts`` n-grams
(:data:`MAX_CONTEXTS`, about 100 bytes of memory each at its peak): a text with more distinct n-grams of some
length is one clear error naming the cap, the length, and the order that fits (every shorter length was
counted within it). The text is held as one code of 1, 2 or 4 bytes a character. Counting a 6M-character
corpus at order 20 takes about a minute and under 1 GB.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rnnviz.errors import RnnvizError

ORDER = 20  # characters: the paper's 20-gram (19 characters of context and the one predicted)
MIN_CHARS = 20  # the shortest text whose 5% parts hold a character each
MAX_CONTEXTS = 1 << 24  # distinct n-grams of one length counted at most: bounds the memory (see the module doc)
CHUNK = 1 << 21  # positions hashed and counted at a time
_MULT = 0x9E3779B97F4A7C15  # odd 64-bit multipliers: a context's hash, and a (context, character) key's
_KEY = np.uint64(0xC2B2AE3D27D4EB4F)
_MASK = (1 << 64) - 1


class _TooMany(Exception):
    """A table of distinct n-grams would grow past its cap."""


def _hashes(codes: np.ndarray, lengths: tuple[int, ...], lo: int, hi: int) -> list[np.ndarray]:
    """For each k of ``lengths`` (ascending), an (hi - lo,) uint64 array: the hash of the k characters before
    each position i in [lo, hi), sum over j = 1..k of (codes[i - j] + 1) · MULT^j mod 2^64; a character before
    the start counts as 0, so a short context never equals a full one that was counted."""
    h = np.zeros(hi - lo, dtype=np.uint64)
    out = [h.copy()] if lengths[0] == 0 else []
    power = 1
    for j in range(1, lengths[-1] + 1):
        power = power * _MULT & _MASK
        a = max(lo, j)  # the first position with a character j before it
        if a < hi:
            x = codes[a - j : hi - j].astype(np.uint64)
            x += np.uint64(1)
            x *= np.uint64(power)  # wraps mod 2^64 by design
            h[a - lo :] += x
        if j in lengths:
            out.append(h.copy() if j != lengths[-1] else h)
    return out


class _Table:
    """The distinct 64-bit keys seen so far (sorted), with a count and payload arrays per key, merged a chunk
    at a time; more than ``cap`` keys raise :class:`_TooMany` before they are stored."""

    def __init__(self, cap: int, payloads: int):
        self.cap = cap
        self.keys = np.zeros(0, dtype=np.uint64)
        self.count = np.zeros(0, dtype=np.int64)
        self.payload = [np.zeros(0, dtype=np.uint64) for _ in range(payloads)]

    def add(self, keys: np.ndarray, counts: np.ndarray, *payload: np.ndarray) -> None:
        """Merge ``keys`` (sorted, distinct) seen ``counts`` times each; a new key keeps its ``payload``."""
        i = np.searchsorted(self.keys, keys)
        seen = np.zeros(len(keys), dtype=bool)
        inside = i < len(self.keys)
        seen[inside] = self.keys[i[inside]] == keys[inside]
        self.count[i[seen]] += counts[seen]
        new = ~seen
        if len(self.keys) + int(new.sum()) > self.cap:
            raise _TooMany
        at = i[new]  # sorted: the new keys land in order
        self.keys = np.insert(self.keys, at, keys[new])
        self.count = np.insert(self.count, at, counts[new])
        self.payload = [np.insert(p, at, v[new]) for p, v in zip(self.payload, payload, strict=True)]


def _raw_counts(codes: np.ndarray, k: int, cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The highest order: (sorted distinct (context of k, character) keys, their counts, their contexts)."""
    table = _Table(cap, 1)
    for lo in range(k, len(codes), CHUNK):
        hi = min(len(codes), lo + CHUNK)
        (h,) = _hashes(codes, (k,), lo, hi)
        keys, first, counts = np.unique(h * _KEY + codes[lo:hi].astype(np.uint64), return_index=True,
                                        return_counts=True)
        table.add(keys, counts, h[first])
    return table.keys, table.count, table.payload[0]


def _continuation_counts(codes: np.ndarray, k: int, cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A lower order: (sorted distinct (context of k, character) keys, in how many distinct contexts one
    character longer each was seen, their contexts)."""
    table = _Table(cap, 2)
    for lo in range(k + 1, len(codes), CHUNK):
        hi = min(len(codes), lo + CHUNK)
        h, longer = _hashes(codes, (k, k + 1), lo, hi)
        chars = codes[lo:hi].astype(np.uint64)
        keys, first = np.unique(longer * _KEY + chars, return_index=True)
        table.add(keys, np.ones(len(keys), dtype=np.int64), h[first] * _KEY + chars[first], h[first])
    short, ctx = table.payload
    del table
    keys, first, counts = np.unique(short, return_index=True, return_counts=True)
    return keys, counts, ctx[first]


def _discounts(counts: np.ndarray) -> np.ndarray:
    """[0, D1, D2, D3+] from the counts of counts n1..n4 (Chen & Goodman), each D_c clipped to [0, c];
    a level without singletons and doubletons (the unigram's continuation counts) gets 0.5, 1, 1.5."""
    n1, n2, n3, n4 = (int((counts == c).sum()) for c in (1, 2, 3, 4))
    if min(n1, n2, n3) == 0:
        return np.array([0.0, 0.5, 1.0, 1.5])
    y = n1 / (n1 + 2 * n2)
    d = np.array([0.0, 1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3])
    return np.clip(d, 0, [0, 1, 2, 3])


class _Level:
    """One order's counts: each (context, character) key's count, each context's total and the numerator of
    its back-off weight (D1, D2, D3+ times its number of characters seen once, twice and 3+ times); looked up
    by binary search over the sorted keys."""

    def __init__(self, keys: np.ndarray, count: np.ndarray, ctx: np.ndarray):
        self.keys, self.count = keys, count  # keys sorted
        self.ctx, inv = np.unique(ctx, return_inverse=True)
        self.total = np.bincount(inv, weights=count)
        self.d = d = _discounts(count)
        self.gamma = sum(d[j] * np.bincount(inv, weights=sel) for j, sel in
                         ((1, count == 1), (2, count == 2), (3, count >= 3)))

    @staticmethod
    def _look(sorted_keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
        if not len(sorted_keys):
            return np.zeros(len(query), dtype=values.dtype)
        i = np.minimum(np.searchsorted(sorted_keys, query), len(sorted_keys) - 1)
        return np.where(sorted_keys[i] == query, values[i], 0)

    def interpolate(self, ctx: np.ndarray, chars: np.ndarray, lower: np.ndarray) -> np.ndarray:
        """P(char | context) at this order over the lower order's ``lower``; unseen contexts keep it."""
        c = self._look(self.keys, self.count, ctx * _KEY + chars)
        total = self._look(self.ctx, self.total, ctx)
        seen = total > 0
        total = np.maximum(total, 1)
        gamma = self._look(self.ctx, self.gamma, ctx) / total
        p = np.maximum(c - self.d[np.minimum(c, 3)], 0) / total + gamma * lower
        return np.where(seen, p, lower)


def ngram_logprobs(train: np.ndarray, text: np.ndarray, vocab_size: int, order: int = ORDER,
                   progress: Callable[[int, int], None] | None = None,
                   max_contexts: int | None = None) -> np.ndarray:
    """(n,) float64 natural-log probability of each character of ``text`` given the (at most order - 1)
    characters before it *in text*, under the model counted on ``train``. Both are (n,) integer codes
    below ``vocab_size``; ``progress(k, order)`` is called after each order. More than ``max_contexts``
    (None: :data:`MAX_CONTEXTS`) distinct n-grams of one length in ``train`` is an :class:`RnnvizError`
    (the memory bound)."""
    if order < 1:
        raise RnnvizError(f"the n-gram order must be >= 1, got {order}")
    if len(train) < 2:
        raise RnnvizError("the training text is too short for an n-gram model (fewer than 2 characters)")
    max_contexts = MAX_CONTEXTS if max_contexts is None else max_contexts
    if isinstance(max_contexts, bool) or not isinstance(max_contexts, int) or max_contexts < 1:
        raise RnnvizError(f"max contexts must be a whole number >= 1, got {max_contexts!r}")
    p = np.full(len(text), 1.0 / vocab_size)
    for k in range(order):
        top = k == order - 1  # the highest order: raw counts; lower: continuation counts (one character longer)
        try:
            counted = (_raw_counts if top else _continuation_counts)(train, k, max_contexts)
        except _TooMany:
            n = k + 1 if top else k + 2  # the length of the n-grams that overflowed: every shorter one fitted
            raise RnnvizError(
                f"the training text has more than {max_contexts:,} distinct {n}-character n-grams, the most the "
                f"n-gram baseline counts (--max-contexts, about 100 bytes of memory each): use --order {n - 1} "
                f"or lower, or a higher --max-contexts") from None
        level = _Level(*counted)
        del counted
        for lo in range(0, len(text), CHUNK):
            hi = min(len(text), lo + CHUNK)
            (h,) = _hashes(text, (k,), lo, hi)
            p[lo:hi] = level.interpolate(h, text[lo:hi].astype(np.uint64), p[lo:hi])
        del level
        if progress:
            progress(k + 1, order)
    return np.log(p)


def _codes(text: str, parts: list[tuple[int, int]]) -> tuple[list[np.ndarray], int]:
    """Each part [a, b) of ``text`` as integer codes (uint8, uint16 or uint32, as few bytes as the
    characters need), numbering the distinct characters of the parts together; and their number. Encoded a
    chunk at a time: about 4 bytes a character more than the codes are never held."""
    chunks = [(max(a, i), min(b, i + CHUNK)) for a, b in parts for i in range(a, b, CHUNK)]
    points = lambda a, b: np.frombuffer(text[a:b].encode("utf-32-le"), dtype=np.uint32)  # noqa: E731
    chars = np.unique(np.concatenate([np.unique(points(a, b)) for a, b in chunks]))
    dtype = np.uint8 if len(chars) <= 1 << 8 else np.uint16 if len(chars) <= 1 << 16 else np.uint32
    out = []
    for a, b in parts:
        codes = np.empty(b - a, dtype=dtype)
        for i in range(a, b, CHUNK):
            codes[i - a : min(b, i + CHUNK) - a] = np.searchsorted(chars, points(i, min(b, i + CHUNK)))
        out.append(codes)
    return out, len(chars)


def ngram_loss(text: str, part: str = "test", order: int = ORDER,
               progress: Callable[[int, int], None] | None = None,
               max_contexts: int | None = None) -> tuple[float, int]:
    """(nats/char, characters) of the n-gram baseline counted on ``text``'s training split (90%) over
    its ``part`` ("val" or "test"), as the paper compares: each character given the ones before it in
    that part, like ``rnnviz eval`` with one stream. ``max_contexts``: see :func:`ngram_logprobs`."""
    from rnnviz.model.data import split_bounds

    if part not in ("val", "test"):
        raise RnnvizError(f"score the n-gram on the val or the test split, got {part!r}")
    if len(text) < MIN_CHARS:
        raise RnnvizError(f"the text has {len(text)} characters; an n-gram baseline on its 90/5/5 split needs "
                          f"at least {MIN_CHARS}")
    (train, held), vocab_size = _codes(text, [split_bounds(len(text), "train"), split_bounds(len(text), part)])
    logp = ngram_logprobs(train, held, vocab_size, order, progress, max_contexts)
    return float(-logp.mean()), len(held)
