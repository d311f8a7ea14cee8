"""How a character is shown beside the model's numbers: its visible form and its loss.

The one definition for the dashboard's text view and tooltips, the exported page's tooltips
(:mod:`rnnviz.views.export` sends :func:`shown`'s symbols to its script) and one-line snippets in tables.
Whitespace and control characters become symbols so that each has a width to colour and a name to read.
"""

from __future__ import annotations

import numpy as np

# How a tooltip names whitespace. U+240D (the control picture of CR) is drawn by no font the
# dashboard or the page can count on, so a CR is named "CR".
_NAMES = {" ": "\u2423", "\n": "\u21b5", "\t": "\u21e5", "\r": "CR"}


def visible(ch: str, after: str = "", before: str = "") -> str:
    """How a character is drawn (``after``: the next character): a line end as ↵ then the line break,
    a CRLF as ↵ on the CR and the break on the LF (one line end, as the export shows it), other control
    characters as their Unicode control pictures (so each has a width to colour; no font here has
    U+240D, so a CR is never one), everything else as itself. ``before``: the previous character."""
    if ch == "\n":
        return "\n" if before == "\r" else "\u21b5\n"
    if ch == "\r":
        return "\u21b5" if after == "\n" else "\u21b5\n"
    if ch == "\t":
        return "\t"
    o = ord(ch)
    if o < 32:
        return chr(0x2400 + o)
    if o == 127:
        return "\u2421"
    return ch


def shown(ch: str) -> str:
    """A character named in a tooltip: whitespace and control characters as symbols."""
    return _NAMES.get(ch) or visible(ch)


def visible_line(s: str) -> str:
    """Text on one line: whitespace and control characters as symbols (for snippets in tables)."""
    return "".join(shown(c) for c in s)


def char_loss(store, start: int, stop: int) -> np.ndarray:
    """(stop - start,) float32 nats: the loss of each character of ``store.text[start:stop]``,
    -log p(text[t] | text[:t]) = ``-store.logprob[t - 1]``; NaN at t = 0 (nothing predicts the first
    character) and wherever the store has no log-probabilities."""
    lp = np.asarray(store.logprob[max(start - 1, 0) : stop - 1], dtype=np.float32)
    return -np.concatenate([[np.nan], lp]).astype(np.float32) if start == 0 else -lp
