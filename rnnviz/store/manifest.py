"""A store's manifest.json, checked, and the names of its files and units.

Two versions are read. Version 1 is a char store recorded from one of our CharRNNs: one row per
character, every array (T, hidden), the cell's own kinds. Version 2 (written only when a store needs it)
adds what any other recurrent model needs:

    tokens      {"chars": N}: rows are tokens, ``spans.i64`` (T, 2) holds each token's [start, end) in
                text.txt (N characters); absent: one row per character, as in version 1
    widths      {"LAYER:KIND": width} where an array is not ``hidden`` wide (an LSTM's h with proj_size)
    cell        "external" for states from elsewhere: kinds are then any short lower-case names
    source      {"class": ..., "layers": [{"layer": 0, "module": "rnn", "type": "LSTM", ...}]}: which
                submodule of a user's module each layer number was recorded from
    vocab       the vocabulary: characters, or any strings in a token store

Every field is checked against the others before a file is touched (SECURITY.md, promise 1).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rnnviz.errors import RnnvizError
from rnnviz.model.cells import CELLS, KINDS, MAX_HIDDEN, MAX_LAYERS
from rnnviz.model.units import ModelConfig
from rnnviz.model.vocab import TokenVocab, Vocab

FORMAT = "rnnviz-store"
VERSION = 1  # a char store of our own CharRNN: what older rnnviz reads too
VERSION_OPEN = 2  # tokens, widths, external states, a user's module
VERSIONS = (VERSION, VERSION_OPEN)
MANIFEST, TEXT, STATS = "manifest.json", "text.txt", "stats.json"
LOGPROB, TOPK_IDS, TOPK_P, SPANS = "logprob.f32", "topk_ids.u16", "topk_p.f16", "spans.i64"
STAT_COLUMNS = ("mean", "std", "min", "max", "sat_lo", "sat_hi")  # stats.json's columns, one value per unit
EXTERNAL = "external"  # the cell of states recorded elsewhere (arrays, LSTMVis): kinds are free names
KIND_NAME = re.compile(r"[a-z][a-z0-9_]{0,23}\Z")  # an external kind names a file: nothing else is allowed


def array_name(layer: int, kind: str) -> str:
    return f"L{layer}.{kind}.f16"


MAX_LENGTH = 1 << 31  # rows (characters or tokens) in a store; the arrays' real sizes are checked too


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _int_field(m: dict, key: str, lo: int, hi: int, bad, default=None) -> int:
    v = m.get(key, default)
    if type(v) is not int or not lo <= v <= hi:
        raise bad(f"{key} must be an integer from {lo} to {hi:,}, got {_short(v)}")
    return v


def kinds_ok(cell: str, kinds) -> bool:
    """Whether ``kinds`` are distinct kinds a ``cell`` store may hold (an external store: short names)."""
    own = (lambda k: KIND_NAME.match(k) is not None) if cell == EXTERNAL else (lambda k: k in KINDS[cell])
    return (isinstance(kinds, list) and bool(kinds) and all(isinstance(k, str) and own(k) for k in kinds)
            and len(set(kinds)) == len(kinds))


@dataclass(frozen=True)
class Manifest:
    """A store's manifest.json, checked (see :meth:`from_dict`): what :class:`Store` reads its files by.
    ``model`` is the recorded CharRNN's config (None for any other source), ``recorder`` the recording's
    settings and timings, ``checkpoint`` {"path", "sha256"} of the recorded checkpoint or None."""

    length: int  # T rows: characters, or tokens when ``chars`` is set
    hidden: int  # H units per layer and kind, unless ``widths`` says otherwise
    cell: str
    layers: list[int]
    kinds: list[str]
    topk: int  # K next-token predictions kept per row (0: none)
    vocab: Vocab | TokenVocab
    has_logprob: bool = True
    checkpoint: dict | None = None
    model: ModelConfig | None = None
    recorder: dict = field(default_factory=dict)
    created: str | None = None
    widths: dict = field(default_factory=dict)  # {(layer, kind): width} of every array
    chars: int | None = None  # N characters of text.txt in a token store; None: one row per character
    source: dict | None = None  # a user's module: which submodule each layer came from

    @classmethod
    def from_dict(cls, m: dict, mpath: Path) -> Manifest:
        """The manifest's sizes and names, checked against each other before any file is touched: sizes
        are integers within the caps (SECURITY.md), the cell is known, layers and kinds are distinct and
        valid (a kind names a file: only the cell's own kinds, or short lower-case names for external
        states, so no path can be built from one)."""
        bad = lambda why: RnnvizError(f"{mpath}: manifest field missing or malformed ({why})")  # noqa: E731
        T = _int_field(m, "length", 1, MAX_LENGTH, bad)
        H = _int_field(m, "hidden", 1, MAX_HIDDEN, bad)
        cell = m.get("cell")
        if cell not in (*CELLS, EXTERNAL):
            raise bad(f"cell must be one of {', '.join(CELLS)}, {EXTERNAL}, got {_short(cell)}")
        layers, kinds = m.get("layers"), m.get("kinds")
        if not (isinstance(layers, list) and layers and all(type(l) is int and 0 <= l < MAX_LAYERS for l in layers)
                and len(set(layers)) == len(layers)):
            raise bad(f"layers must be distinct integers from 0 to {MAX_LAYERS - 1}, got {_short(layers)}")
        if not kinds_ok(cell, kinds):
            what = "short lower-case names" if cell == EXTERNAL else f"kinds of a {cell} ({', '.join(KINDS[cell])})"
            raise bad(f"kinds must be distinct {what}, got {_short(kinds)}")
        chars = m.get("tokens")
        if chars is not None:
            if not isinstance(chars, dict):
                raise bad(f"tokens must be {{\"chars\": N}}, got {_short(chars)}")
            chars = _int_field(chars, "chars", 1, MAX_LENGTH, bad)
        if not isinstance(m.get("vocab"), list):
            raise bad("vocab must be a list of characters (or of token strings in a token store)")
        vocab = (TokenVocab if chars is not None else Vocab).from_json(m["vocab"])
        K = _int_field(m, "topk", 0, len(vocab), bad, default=0)
        if not isinstance(m.get("has_logprob", True), bool):
            raise bad(f"has_logprob must be true or false, got {_short(m['has_logprob'])}")
        ck = m.get("checkpoint")
        if ck is not None and not (isinstance(ck, dict) and all(isinstance(ck.get(k), (str, type(None)))
                                                                for k in ("path", "sha256"))):
            raise bad(f"checkpoint must be null or {{\"path\": ..., \"sha256\": ...}}, got {_short(ck)}")
        rec = m.get("recorder") or {}
        if not isinstance(rec, dict):
            raise bad(f"recorder must be an object, got {_short(rec)}")
        model = None if chars is not None else _manifest_model(m.get("model"), cell, H, layers, vocab, bad)
        return cls(T, H, cell, layers, kinds, K, vocab, m.get("has_logprob", True), ck, model, rec,
                   m.get("created") if isinstance(m.get("created"), str) else None,
                   _widths(m.get("widths"), layers, kinds, H, bad), chars, _source(m.get("source"), layers, bad))

    def width(self, layer: int, kind: str) -> int:
        return self.widths[(layer, kind)]


def _widths(w, layers: list[int], kinds: list[str], H: int, bad) -> dict:
    """Every array's width: ``hidden`` unless the manifest's ``widths`` {"LAYER:KIND": n} says otherwise."""
    out = {(l, k): H for l in layers for k in kinds}
    if w is None:
        return out
    if not isinstance(w, dict):
        raise bad(f"widths must be an object {{\"LAYER:KIND\": width}}, got {_short(w)}")
    names = {f"{l}:{k}": (l, k) for l, k in out}
    for key, n in w.items():
        if key not in names or type(n) is not int or not 1 <= n <= MAX_HIDDEN:
            raise bad(f"widths: {_short(key)} must be a recorded LAYER:KIND with a width 1 to {MAX_HIDDEN:,}, "
                      f"got {_short(n)}")
        out[names[key]] = n
    return out


def _source(src, layers: list[int], bad) -> dict | None:
    """Where each layer of a user's module was recorded from: strings only, one entry per layer."""
    if src is None:
        return None
    entries = src.get("layers") if isinstance(src, dict) else None
    if not (isinstance(entries, list) and isinstance(src.get("class"), str) and len(src["class"]) <= 1000
            and all(isinstance(e, dict) and type(e.get("layer")) is int
                    and all(isinstance(v, (str, int, bool)) and len(str(v)) <= 1000 for v in e.values())
                    for e in entries)):
        raise bad(f"source must be {{\"class\": ..., \"layers\": [{{\"layer\": n, \"module\": ...}}]}}, "
                  f"got {_short(src)}")
    if sorted(e["layer"] for e in entries) != sorted(layers):
        raise bad(f"source names layers {_short([e['layer'] for e in entries])}, the store has {_short(layers)}")
    return src


def _manifest_model(model, cell: str, H: int, layers: list[int], vocab: Vocab, bad) -> ModelConfig | None:
    """The recorded model's config, checked against the manifest's own sizes."""
    if model is None:
        return None
    if not isinstance(model, dict) or cell == EXTERNAL:
        raise bad(f"model must be a model config of the store's cell, got {_short(model)}")
    cfg = ModelConfig.from_dict(model)
    if (cfg.cell, cfg.hidden, cfg.vocab_size) != (cell, H, len(vocab)) or max(layers) >= cfg.layers:
        raise bad(f"the manifest ({cell}, hidden {H}, layers {_short(layers)}, {len(vocab)} characters) does "
                  f"not fit its model ({cfg.cell}, hidden {cfg.hidden}, {cfg.layers} layers, "
                  f"vocabulary {cfg.vocab_size})")
    return cfg


class UnitNames(Sequence):
    """The names ``LAYER:KIND:INDEX`` of every unit of a store, ordered by layer, kind, index, computed
    on demand: a store of 30 layers x 6 kinds x 16,384 units does not hold 3 million strings. ``widths``
    {(layer, kind): n} gives each array's own width (default ``hidden``)."""

    def __init__(self, layers: list[int], kinds: list[str], hidden: int, widths: dict | None = None):
        self.layers, self.kinds, self.hidden = tuple(layers), tuple(kinds), hidden
        self.widths = {(l, k): (widths or {}).get((l, k), hidden) for l in self.layers for k in self.kinds}
        self._arrays = list(self.widths)  # in unit order
        self._offsets, n = [], 0
        for key in self._arrays:
            self._offsets.append(n)
            n += self.widths[key]
        self._start = dict(zip(self._arrays, self._offsets, strict=True))
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        i = i + n if i < 0 else i
        if not 0 <= i < n:
            raise IndexError("unit index out of range")
        a = bisect.bisect_right(self._offsets, i) - 1
        (l, k), index = self._arrays[a], i - self._offsets[a]
        return f"{l}:{k}:{index}"

    def __iter__(self):
        return (f"{l}:{k}:{i}" for (l, k) in self._arrays for i in range(self.widths[(l, k)]))

    def index(self, name, start=0, stop=None) -> int:
        parts = name.split(":") if isinstance(name, str) else ()
        if len(parts) == 3 and parts[0].isascii() and parts[0].isdigit() and parts[2].isascii() \
                and parts[2].isdigit() and len(parts[0]) <= 64 and len(parts[2]) <= 64:
            key, i = (int(parts[0]), parts[1]), int(parts[2])
            if key in self._start and i < self.widths[key] and f"{key[0]}:{key[1]}:{i}" == name:
                pos = self._start[key] + i
                if start <= pos and (stop is None or pos < stop):
                    return pos
        raise ValueError(f"{name!r} is not a unit of this store")

    def __contains__(self, name) -> bool:
        try:
            self.index(name)
        except ValueError:
            return False
        return True

    def __eq__(self, other) -> bool:
        if isinstance(other, UnitNames):
            return (self.layers, self.kinds, self.widths) == (other.layers, other.kinds, other.widths)
        return isinstance(other, Sequence) and not isinstance(other, str) and len(other) == len(self) \
            and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # mutable-looking sequences are not hashable (as a list)

    def __repr__(self) -> str:
        return f"UnitNames(layers={list(self.layers)}, kinds={list(self.kinds)}, hidden={self.hidden})"
