"""Colour scales: a unit's values -> ``N_BINS`` colour steps, shared by the HTML export and the dashboard.

Diverging (blue <-> white <-> red) for tanh-range states and cell states, sequential (white -> green) for
sigmoid gates. Three ranges (:data:`RANGES`), because a fixed one washes out an asymmetric cell (a brace
cell mostly in -1..0 on a ±5.5 scale is barely tinted):

- ``max``: the kind's natural range (±1, 0..1) and, for ``c``, ±max|v| of the recording (the default);
- ``p99``: ±the 99th percentile of |v| (0..p99 for a gate): a few extreme values no longer set the scale;
- ``minmax``: the unit's own [min, max]; a diverging scale keeps 0 white and stretches each side to its
  own end (blue = min, red = max), so the sign still reads;
- ``robust``: the unit's own 1st to 99th percentile, stretched as ``minmax`` is: a spike at the first
  characters (a zero start state) or a few long lines no longer wash out a line-length cell that mostly
  lives in -1..2 of its ±9.6 (the export's default).

States recorded elsewhere (a store whose cell is "external": kinds are any names, their ranges unknown) are
scaled as a cell state is, by their recorded range (:func:`scale_kind`).
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rnnviz.errors import RnnvizError
from rnnviz.model.cells import CLASSIC, KINDS, MODERN, SIGMOID_KINDS
from rnnviz.model.units import parse_unit
from rnnviz.store.manifest import EXTERNAL

N_BINS = 33  # colour steps per scale; odd so that 0 is its own (white) step on the diverging scale
RANGES = {"max": "±max|v|", "p99": "99th percentile", "minmax": "per-unit [min, max]",
          "robust": "per-unit 1st-99th percentile"}
ROBUST_Q = (1.0, 99.0)  # the percentiles of the robust range
FEATURE_RGB = (230, 110, 0)  # the feature's colour: its bar under the text, its histogram group

# Every unit kind (h c i f g o r z n) and the sigmoid gates among them (rnnviz.model.charrnn, the one place): a
# gate runs white -> green over [0, 1]; every other kind (h, c and the tanh candidates g, n) diverges.
_ALL_KINDS = tuple(dict.fromkeys(k for cell in ("lstm", "gru", "rnn") for k in KINDS[cell]))
_GATES = frozenset(k for cell in CLASSIC for k in SIGMOID_KINDS[cell])
KIND_NAMES = {
    "h": "hidden state", "c": "cell state", "i": "input gate", "f": "forget gate", "g": "candidate",
    "o": "output gate", "r": "reset gate", "z": "update gate", "n": "candidate",
}


# The modern cells name some kinds as their papers do (rnnviz.model.cells): their own words first.
MODERN_KIND_NAMES = {
    "mingru": {"n": "candidate"},
    "mamba": {"h": "block output", "x": "channel input", "dt": "step size Δ", "y": "scan output",
              "sn": "state norm", "s": "state"},
    "slstm": {"h": "output", "n": "normaliser", "m": "stabiliser", "i": "input gate (exp)",
              "f": "forget gate (exp)", "z": "cell input"},
}


def kind_name(kind: str, cell: str = "") -> str:
    """What a kind is, in words: "cell state"; a kind of states recorded elsewhere is an "external state"."""
    return MODERN_KIND_NAMES.get(cell, {}).get(kind) or KIND_NAMES.get(kind, "external state")


def scale_kind(cell: str, kind: str) -> str:
    """The kind whose colour scale a unit of ``kind`` in a ``cell`` store takes: its own, or ``c`` (diverging
    over its recorded range) for states recorded elsewhere, whose range nothing tells."""
    if cell in MODERN:  # a kind letter means another thing here (an sLSTM's z is tanh): its cell's gates decide
        return "f" if kind in SIGMOID_KINDS[cell] else "c"
    return "c" if cell == EXTERNAL else kind


def _hsl(hue: float, sat: float, light: float) -> str:
    r, g, b = colorsys.hls_to_rgb(hue / 360, light, sat)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def _palette(name: str) -> list[str]:
    """``N_BINS`` CSS colours, lowest value first.

    Diverging is the paper's (Karpathy's visualisation code): hue 225 (blue) below 0, hue 0 (red) above,
    60% saturation, lightness from 100% at 0 down to 60% at the ends, so black text stays readable.
    """
    half = (N_BINS - 1) // 2
    if name == "diverging":
        return [_hsl(225 if b < half else 0, 0.6, 1 - 0.4 * abs(b - half) / half) for b in range(N_BINS)]
    if name == "sequential":
        return [_hsl(140, 0.55, 1 - 0.45 * b / (N_BINS - 1)) for b in range(N_BINS)]
    raise RnnvizError(f"unknown colour scale {name!r}; choose diverging or sequential")


PALETTES = {name: _palette(name) for name in ("diverging", "sequential")}


def _compare_palette(name: str) -> list[str]:
    """The compare unit's ``N_BINS`` colours (its bar over each character, its line in the trace): purple (hue
    285) below the middle, green (hue 120) above for a diverging scale, white -> purple for a sequential one;
    darker at the ends than the text's (lightness down to 35%) so that a thin bar reads. Neither the text's blue
    and red nor the feature's orange, so a bar never reads as the text's scale."""
    half = (N_BINS - 1) // 2
    if name == "diverging":
        return [_hsl(285 if b < half else 120, 0.6, 1 - 0.65 * abs(b - half) / half) for b in range(N_BINS)]
    return [_hsl(285, 0.6, 1 - 0.65 * b / (N_BINS - 1)) for b in range(N_BINS)]


COMPARE_PALETTES = {name: _compare_palette(name) for name in PALETTES}
COMPARE_WORDS = {"diverging": ("purple", "green"), "sequential": ("white", "purple")}  # (low end, high end)


@dataclass(frozen=True)
class ColourScale:
    """A value range mapped onto ``N_BINS`` colours: ``name`` is "diverging" or "sequential".

    ``mid``: when given (lo < mid < hi), [lo, mid] maps onto the lower half of the steps and [mid, hi]
    onto the upper half, each linearly (the ``minmax`` range of a diverging scale, mid = 0)."""

    name: str
    lo: float
    hi: float
    mid: float | None = None

    def __post_init__(self) -> None:
        if self.name not in PALETTES:
            raise RnnvizError(f"unknown colour scale {self.name!r}; choose diverging or sequential")
        if not self.lo < self.hi:  # also rejects NaN
            raise RnnvizError(f"a colour scale needs lo < hi, got {self.lo} and {self.hi}")
        if self.mid is not None and not self.lo < self.mid < self.hi:
            raise RnnvizError(f"a colour scale's mid must lie inside ({self.lo}, {self.hi}), got {self.mid}")

    @property
    def palette(self) -> list[str]:
        return PALETTES[self.name]

    def bins(self, values) -> np.ndarray:
        """Values (any shape) -> colour step 0..N_BINS-1 (int16, same shape); NaN -> -1; clipped."""
        v = np.asarray(values, dtype=np.float64)
        if self.mid is None:
            t = (v - self.lo) / (self.hi - self.lo)
        else:  # each side of mid stretched to its own end
            t = np.where(v < self.mid, (v - self.lo) / (self.mid - self.lo) / 2,
                         0.5 + (v - self.mid) / (self.hi - self.mid) / 2)
        with np.errstate(invalid="ignore"):
            b = np.rint(np.clip(t * (N_BINS - 1), 0, N_BINS - 1))
        return np.where(np.isnan(b), -1, b).astype(np.int16)

    def colours(self, values) -> list[str]:
        """Values (1-D) -> CSS colours ("transparent" for NaN)."""
        pal = self.palette + ["transparent"]
        return [pal[b] for b in self.bins(values).ravel().tolist()]

    def plotly(self) -> list[list]:
        """The same steps as a Plotly colorscale; use with ``zmin=lo, zmax=hi`` (linear scales only)."""
        return [[b / (N_BINS - 1), c] for b, c in enumerate(self.palette)]

    def ends(self) -> tuple[str, str, str]:
        """What the scale's two ends and its middle mean, as short text: ("-1", "0", "1")."""
        mid = (self.lo + self.hi) / 2 if self.mid is None else self.mid
        return f"{self.lo:.3g}", f"{mid:.3g}", f"{self.hi:.3g}"


def check_range_mode(mode) -> str:
    """``mode`` if it names a colour range, else a one-line error."""
    if not (isinstance(mode, str) and mode in RANGES):
        raise RnnvizError(f"unknown colour range {mode!r}; choose one of {', '.join(RANGES)}")
    return mode


def colour_scale(kind: str, stats: Mapping | None = None, mode: str = "max", p99: float | None = None,
                 robust: tuple[float, float] | None = None) -> ColourScale:
    """The scale for one unit kind over the colour range ``mode`` (see :data:`RANGES`).

    ``max``: h, g, n diverge over [-1, 1]; gates i f o r z run 0 -> 1; ``c`` diverges over [-m, m],
    m = max(|min|, |max|) of its recording (``stats``: a mapping or a ``store.stats`` row with ``min`` and
    ``max``), so 0 stays white and the sign stays readable. ``p99``: needs ``p99`` (the 99th percentile
    of |v|); ``minmax``: needs ``stats``; ``robust``: needs ``robust`` (the 1st and 99th percentiles). A
    degenerate range (a dead unit) falls back to the kind's own.
    """
    check_range_mode(mode)
    if kind not in _ALL_KINDS:
        raise RnnvizError(f"unknown unit kind {kind!r}; expected one of {' '.join(_ALL_KINDS)}")
    name = "sequential" if kind in _GATES else "diverging"
    natural = (0.0, 1.0) if kind in _GATES else (-1.0, 1.0)
    if mode == "max" and kind != "c":
        return ColourScale(name, *natural)
    lo, hi = _bounds(mode, name, stats, p99, robust)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):  # a dead unit
        return ColourScale(name, *natural)
    if mode in ("minmax", "robust") and name == "diverging" and lo < 0 < hi:
        return ColourScale(name, lo, hi, mid=0.0)
    return ColourScale(name, lo, hi)


_NEEDS = {"max": "its recorded min and max", "minmax": "its recorded min and max",
          "p99": "the unit's 99th percentile of |v|", "robust": "the unit's 1st and 99th percentiles"}


def _bounds(mode: str, name: str, stats, p99, robust) -> tuple[float, float]:
    """[lo, hi] of the colour range ``mode`` from what it is computed from (a one-line error when missing)."""
    given = {"max": stats, "minmax": stats, "p99": p99, "robust": robust}[mode]
    if given is None:
        raise RnnvizError(f"the {mode} colour range of a unit needs {_NEEDS[mode]}")
    if mode == "max":  # a cell state: ±max|v|
        m = max(abs(float(stats["min"])), abs(float(stats["max"])))
        return -m, m
    if mode == "p99":
        p = float(p99)
        return (0.0, p) if name == "sequential" else (-p, p)
    lo, hi = (stats["min"], stats["max"]) if mode == "minmax" else robust
    return float(lo), float(hi)


def colours(values, kind: str, lo: float, hi: float) -> list[str]:
    """Values -> CSS colours on the ``kind`` ("diverging" | "sequential") scale over [lo, hi]."""
    return ColourScale(kind, float(lo), float(hi)).colours(values)


def percentiles(store, unit: str, qs: tuple[float, ...], absolute: bool = False) -> tuple[float, ...]:
    """The ``qs`` percentiles of ``unit``'s finite values (of |v| with ``absolute``) over the store's bounded
    sample (``store.read(sample=True)``); NaN for a unit with no finite value."""
    return tuple(float(v) for v in sample_percentiles(store.read([unit], sample=True), qs, absolute)[:, 0])


def sample_percentiles(x: np.ndarray, qs: tuple[float, ...], absolute: bool = False) -> np.ndarray:
    """(len(qs), U) percentiles of each column of x (n, U) over its finite values (NaN where it has none):
    the columns without a NaN or an infinity in one call."""
    x = np.abs(x) if absolute else x
    finite = np.isfinite(x)
    out = np.full((len(qs), x.shape[1]), np.nan)
    whole = finite.all(0)
    if whole.any():  # unit-major: numpy partitions a contiguous row ~3x faster than a strided column
        out[:, whole] = np.percentile(np.ascontiguousarray(x[:, whole].T), qs, axis=1)
    for j in np.flatnonzero(~whole):
        v = x[finite[:, j], j]
        if v.size:
            out[:, j] = np.percentile(v, qs)
    return out


_SAMPLED = {"p99": ((99.0,), True), "robust": (ROBUST_Q, False)}  # the range modes read from the sample


def unit_scale(store, unit: str, mode: str = "max") -> ColourScale:
    """The colour scale of ``unit`` of ``store`` over the colour range ``mode``."""
    return unit_scales(store, [unit], mode)[0]


def unit_scales(store, units: list[str], mode: str = "max") -> list[ColourScale]:
    """:func:`unit_scale` of each of ``units``, the store's sample read once for all of them (a store is read a
    block of rows at a time: one unit costs as much as a row of its array)."""
    check_range_mode(mode)
    qs = None
    if mode in _SAMPLED and units:
        qs = sample_percentiles(store.read(list(units), sample=True), *_SAMPLED[mode])
    scales = []
    for j, unit in enumerate(units):
        _, kind, _ = parse_unit(unit)
        kind = scale_kind(store.cell, kind)
        stats = store.stats.loc[unit] if (kind == "c" or mode == "minmax") else None
        p99 = float(qs[0, j]) if mode == "p99" else None
        robust = tuple(float(v) for v in qs[:, j]) if mode == "robust" else None
        scales.append(colour_scale(kind, stats, mode, p99, robust))
    return scales
