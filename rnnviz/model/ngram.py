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
corpora. Counting a 6M-character corpus at order 20 takes about a minute and 1-2 GB.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rnnviz.errors import RnnvizError

ORDER = 20  # characters: the paper's 20-gram (19 characters of context and the one predicted)
MIN_CHARS = 20  # the shortest text whose 5% parts hold a character each
_MULT = 0x9E3779B97F4A7C15  # odd 64-bit multipliers: a context's hash, and a (context, character) key's
_KEY = np.uint64(0xC2B2AE3D27D4EB4F)
_MASK = (1 << 64) - 1


def _context_hashes(codes: np.ndarray, order: int):
    """Yield (k, H) for k = 0 .. order - 1: H (n,) uint64, the hash of the k characters before each
    position, sum over j = 1..k of (codes[i - j] + 1) · MULT^j mod 2^64; a character before the start
    counts as 0, so a short context never equals a full one that was counted."""
    x = codes.astype(np.uint64) + np.uint64(1)
    h = np.zeros(len(x), dtype=np.uint64)
    power = 1
    yield 0, h
    for k in range(1, order):
        power = power * _MULT & _MASK
        shifted = np.zeros_like(h)
        shifted[k:] = x[:-k]
        h = h + shifted * np.uint64(power)  # wraps mod 2^64 by design
        yield k, h


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
    """One order's counts: each (context, character) key's count, each context's total and its number
    of characters seen once, twice and 3+ times; looked up by binary search over the sorted keys."""

    def __init__(self, ctx: np.ndarray, chars: np.ndarray):
        keys, first, self.count = np.unique(ctx * _KEY + chars, return_index=True, return_counts=True)
        self.keys = keys
        self.ctx, inv = np.unique(ctx[first], return_inverse=True)
        self.total = np.bincount(inv, weights=self.count)
        self.n = [np.bincount(inv, weights=self.count == 1), np.bincount(inv, weights=self.count == 2),
                  np.bincount(inv, weights=self.count >= 3)]
        self.d = _discounts(self.count)

    @staticmethod
    def _look(sorted_keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
        i = np.minimum(np.searchsorted(sorted_keys, query), len(sorted_keys) - 1)
        return np.where(sorted_keys[i] == query, values[i], 0)

    def interpolate(self, ctx: np.ndarray, chars: np.ndarray, lower: np.ndarray) -> np.ndarray:
        """P(char | context) at this order over the lower order's ``lower``; unseen contexts keep it."""
        c = self._look(self.keys, self.count, ctx * _KEY + chars)
        total = self._look(self.ctx, self.total, ctx)
        seen = total > 0
        total = np.maximum(total, 1)
        gamma = sum(self.d[j + 1] * self._look(self.ctx, self.n[j], ctx) for j in range(3)) / total
        p = np.maximum(c - self.d[np.minimum(c, 3)], 0) / total + gamma * lower
        return np.where(seen, p, lower)


def ngram_logprobs(train: np.ndarray, text: np.ndarray, vocab_size: int, order: int = ORDER,
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(n,) float64 natural-log probability of each character of ``text`` given the (at most order - 1)
    characters before it *in text*, under the model counted on ``train``. Both are (n,) integer codes
    below ``vocab_size``; ``progress(k, order)`` is called after each order."""
    if order < 1:
        raise RnnvizError(f"the n-gram order must be >= 1, got {order}")
    if len(train) < 2:
        raise RnnvizError("the training text is too short for an n-gram model (fewer than 2 characters)")
    p = np.full(len(text), 1.0 / vocab_size)
    positions = np.arange(len(train))
    train_hashes, text_hashes = _context_hashes(train, order + 1), _context_hashes(text, order)
    _, h_next = next(train_hashes)
    for k, h_text in text_hashes:
        h = h_next
        if k == order - 1:  # the highest order: raw counts of the contexts that fit in the text
            level = _Level(h[k:], train[k:].astype(np.uint64))
        else:  # lower orders: in how many distinct contexts one character longer each key was seen
            _, h_next = next(train_hashes)
            at = positions[k + 1 :]
            _, first = np.unique(h_next[at] * _KEY + train[at].astype(np.uint64), return_index=True)
            rep = at[first]
            level = _Level(h[rep], train[rep].astype(np.uint64))
        p = level.interpolate(h_text, text.astype(np.uint64), p)
        if progress:
            progress(k + 1, order)
    return np.log(p)


def ngram_loss(text: str, part: str = "test", order: int = ORDER,
               progress: Callable[[int, int], None] | None = None) -> tuple[float, int]:
    """(nats/char, characters) of the n-gram baseline counted on ``text``'s training split (90%) over
    its ``part`` ("val" or "test"), as the paper compares: each character given the ones before it in
    that part, like ``rnnviz eval`` with one stream."""
    from rnnviz.model.data import split

    if part not in ("val", "test"):
        raise RnnvizError(f"score the n-gram on the val or the test split, got {part!r}")
    if len(text) < MIN_CHARS:
        raise RnnvizError(f"the text has {len(text)} characters; an n-gram baseline on its 90/5/5 split needs "
                          f"at least {MIN_CHARS}")
    train, held = split(text, "train"), split(text, part)
    points = np.frombuffer((train + held).encode("utf-32-le"), dtype=np.uint32)  # one code point a character
    chars, codes = np.unique(points, return_inverse=True)
    logp = ngram_logprobs(codes[: len(train)], codes[len(train) :], len(chars), order, progress)
    return float(-logp.mean()), len(held)
