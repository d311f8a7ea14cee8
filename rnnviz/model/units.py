"""A model's shape (:class:`ModelConfig`) and the names of its units (``LAYER:KIND:INDEX``): torch-free,
so that the commands that only read a store (find, similar, explain, export) start without importing torch.
:mod:`rnnviz.model.charrnn` re-exports every name here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields

from rnnviz.errors import RnnvizError
from rnnviz.model.cells import CELLS, DEFAULT_KINDS, KINDS, MAX_HIDDEN, MAX_LAYERS, MAX_VOCAB, ON_REQUEST, kind_width


@dataclass
class ModelConfig:
    vocab_size: int  # V: characters in the vocabulary (= one-hot input size = output size)
    cell: str = "lstm"  # "rnn" (tanh), "gru" or "lstm"
    layers: int = 2  # stacked recurrent layers
    hidden: int = 128  # H: units per layer
    dropout: float = 0.0  # between layers and before the output layer, training only

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise RnnvizError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        for name, hi in (("vocab_size", MAX_VOCAB), ("layers", MAX_LAYERS), ("hidden", MAX_HIDDEN)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= hi:
                raise RnnvizError(f"{name} must be an integer from 1 to {hi}, got {v!r}")
        d = self.dropout
        if not isinstance(d, (int, float)) or isinstance(d, bool) or not 0.0 <= d < 1.0:  # NaN fails too
            raise RnnvizError(f"dropout must be a number in [0, 1), got {d!r}")

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        extra = set(d) - known
        if extra:
            raise RnnvizError(f"unknown model config keys: {', '.join(sorted(extra))}")
        if "vocab_size" not in d:
            raise RnnvizError("model config has no vocab_size")
        if not isinstance(d.get("cell", "lstm"), str):
            raise RnnvizError(f"unknown cell {d['cell']!r}; choose one of {', '.join(CELLS)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def kinds(self) -> tuple[str, ...]:
        return KINDS[self.cell]


def parse_unit(name: str, config: ModelConfig | None = None) -> tuple[int, str, int]:
    """``"2:c:417"`` -> ``(2, "c", 417)``, checked against ``config`` when given."""
    parts = name.split(":")
    # ASCII digits only: str.isdigit() also accepts "²" (which int() refuses) and other scripts' digits.
    # At most 64 digits: a number past any layer or index is still "not in this store"; 5,000 digits is no
    # number to parse (int() refuses more than 4,300).
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() and len(p) <= 64 for p in (parts[0], parts[2])):
        shown = name if len(name) <= 40 else f"{name[:40]}... ({len(name):,} characters)"
        raise RnnvizError(f"bad unit name {shown!r}: expected LAYER:KIND:INDEX, e.g. 1:c:42")
    layer, kind, index = int(parts[0]), parts[1], int(parts[2])
    if config is not None:
        if kind not in config.kinds:
            raise RnnvizError(f"unit {name!r}: {_no_kind(config.cell, kind)}")
        if layer >= config.layers:
            raise RnnvizError(f"unit {name!r}: {_n_layers(config.layers)}")
        width = kind_width(config.cell, config.hidden, kind)
        if index >= width:
            raise RnnvizError(f"unit {name!r}: layers have {width} units of kind {kind}, 0..{width - 1}")
    return layer, kind, index


def _no_kind(cell: str, kind: str) -> str:
    return f"a {cell} has no kind {kind!r} (it has {', '.join(KINDS[cell])})"


def _n_layers(n: int) -> str:
    return f"the model has {n} layer(s), 0..{n - 1}"


def parse_kinds(kinds: str | Iterable[str] | None, cell: str) -> list[str]:
    """``None`` -> h (and c for an LSTM or sLSTM); ``"all"`` -> every kind of the cell but those recorded on request
    only (Mamba's whole state ``s``); ``"h,c"`` or a list.

    Returns the kinds in the cell's canonical order (h, c, then gates); raises on a kind the cell lacks.
    """
    known = KINDS[cell]
    if kinds is None:
        return list(DEFAULT_KINDS.get(cell, ("h",)))
    if isinstance(kinds, str):
        every = [k for k in known if k not in ON_REQUEST.get(cell, ())]
        kinds = every if kinds.strip() == "all" else [k.strip() for k in kinds.split(",") if k.strip()]
    kinds = list(kinds)
    bad = [k for k in kinds if k not in known]
    if bad:
        raise RnnvizError(_no_kind(cell, bad[0]))
    if not kinds:
        raise RnnvizError("no kinds to record")
    return [k for k in known if k in kinds]


def parse_layers(layers: str | Iterable[int] | None, n_layers: int) -> list[int]:
    """``None`` -> every layer; ``"0,2"`` or a list of ints, checked against the model."""
    if layers is None:
        return list(range(n_layers))
    if isinstance(layers, str):
        try:
            layers = [int(x) for x in layers.split(",") if x.strip()]
        except ValueError:
            raise RnnvizError(f"layers must be comma-separated integers, got {layers!r}") from None
    layers = sorted(set(int(l) for l in layers))
    bad = [l for l in layers if not 0 <= l < n_layers]
    if bad:
        raise RnnvizError(f"layer {bad[0]} does not exist: {_n_layers(n_layers)}")
    if not layers:
        raise RnnvizError("no layers to record")
    return layers


def unit_names(layers: list[int], kinds: list[str], hidden: int) -> list[str]:
    """All unit names, ordered by layer, then kind (in the given order), then index."""
    return [f"{l}:{k}:{i}" for l in layers for k in kinds for i in range(hidden)]


def group_units(units: Iterable[tuple[int, str, int]]) -> dict[tuple[int, str], tuple[list[int], list[int]]]:
    """Parsed units ``(layer, kind, index)`` grouped by the array they live in, in first-seen order:
    ``{(layer, kind): (positions in units, indices in the array)}``; one read or clamp per group."""
    groups: dict[tuple[int, str], tuple[list[int], list[int]]] = {}
    for pos, (layer, kind, index) in enumerate(units):
        positions, indices = groups.setdefault((layer, kind), ([], []))
        positions.append(pos)
        indices.append(index)
    return groups
