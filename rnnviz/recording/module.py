"""Recording a user's own PyTorch module: every recurrent layer's h, c and gates at every token, into a store.

>>> rnnviz.record(model, ids, out="store/", kinds="all", vocab=words, forward=lambda m, x: m(x, m.init_hidden(1)))

The module runs its own forward over the ids, a chunk of ``chunk`` tokens at a time, as one sequence
(ids shaped (1, n) when its first recurrent submodule is ``batch_first``, else (n, 1)), in eval mode (no
dropout). Hooks (:mod:`.capture`) take each recurrent submodule's input and output and carry its state into
the next chunk, so chunks give what one forward over the whole text gives. Each layer is then recomputed
with the recorder's fast path (:class:`.recurrence.Layer`): every layer's h is the submodule's own (a
multi-layer ``nn.LSTM`` runs layer by layer while recorded, :mod:`.capture`; a subclass with its own forward
runs as it is and the layers under its top one are recomputed from its input); the gates of every layer come
from batched matmuls over (x_t, h_{t-1}) and an LSTM's c from its elementwise recurrence. No Python loop
runs per token except that of c (as in the recorder).

Row t is the state after reading ids[t], from the state the module's forward starts from (zeros unless it
passes another). Layers are numbered over every recurrent layer in module order (:mod:`.submodules`); the
store's ``source`` table maps each to its submodule. When the forward returns next-token logits (its first
output, one row of ``vocab size`` values per id), the store keeps log p(ids[t+1]) in nats and the top-k
predictions; otherwise activations only. Tokens: ``tokens`` strings (joined with spaces into the text),
strings found in ``token_text``, (start, end) spans of it, or a tokenizer ``tokens(token_text)``; by default each
id's ``vocab`` string, or its decimal number without a vocabulary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import torch
from torch import nn

from rnnviz.errors import RnnvizError
from rnnviz.model.charrnn import MAX_VOCAB, eval_mode, parse_kinds, parse_layers
from rnnviz.model.vocab import TokenVocab
from rnnviz.recording.capture import Capture, Seen, runs_layerwise
from rnnviz.recording.module_input import check_ids, token_rows, vocab_size
from rnnviz.recording.recurrence import Layer
from rnnviz.recording.submodules import RecurrentLayer, recurrent_layers
from rnnviz.store.reader import Store
from rnnviz.store.tokens import Tokens
from rnnviz.store.writer import StoreWriter

CHUNK_BYTES = 256 << 20  # float32 working set of one chunk: the logits, gates and inputs of every layer
MAX_CHUNK = 4096  # tokens per forward: longer chunks gain nothing and delay the progress bar

Forward = Callable[[nn.Module, torch.Tensor], object]


@dataclass(frozen=True)
class ModulePlan:
    """What one recording of a module computes and keeps. ``net``: every recurrent layer; ``run``: the
    inner layers whose h the fused kernel recomputes (the rest give their h themselves, or are not needed);
    ``vocab_size``: V of the logits looked for (None: none); ``chunk``: tokens per forward."""

    net: list[RecurrentLayer]
    layers: list[int]
    kinds: list[str]
    run: frozenset[int]
    vocab_size: int | None
    topk: int
    chunk: int

    @property
    def cell(self) -> str:
        return self.net[0].cell

    @property
    def gates(self) -> bool:
        return set(self.kinds) != {"h"}

    @classmethod
    def make(cls, net: list[RecurrentLayer], kinds, layers, V: int | None, topk: int, chunk: int | None) -> ModulePlan:
        kinds, layers = parse_kinds(kinds, net[0].cell), parse_layers(layers, len(net))
        if type(topk) is not int or topk < 0 or (V is not None and topk > V):
            raise RnnvizError(f"topk must be a whole number from 0 to the vocabulary size{'' if V is None else f' {V}'}"
                              f", got {topk!r}")
        if V is not None and V > MAX_VOCAB and topk:
            raise RnnvizError(f"a store keeps top-k predictions of at most {MAX_VOCAB:,} tokens; this module predicts "
                              f"{V:,}: record with topk=0 (log-probabilities are kept)")
        if chunk is not None and (type(chunk) is not int or chunk < 1):
            raise RnnvizError(f"chunk must be a whole number of tokens >= 1, got {chunk!r}")
        row = 8 * (V or 0) + sum(4 * (l.inputs + 2 * l.width + 10 * l.hidden) for l in net)  # bytes per token
        chunk = chunk or max(64, min(MAX_CHUNK, CHUNK_BYTES // row))
        return cls(net, layers, kinds, _layers_to_run(net, set(layers), set(kinds) != {"h"}), V, topk, chunk)


def _layers_to_run(net: list[RecurrentLayer], recorded: set[int], gates: bool) -> frozenset[int]:
    """The inner layers (not their submodule's top one) whose h is needed, where their submodule does not run
    layer by layer (:mod:`.capture`): recorded, or read by a layer above that recomputes its gates or is
    itself run."""
    run: set[int] = set()
    for layer in reversed(net):
        above = net[layer.number + 1] if not layer.last else None  # the layer that reads this one's h
        needed = above is not None and ((above.number in recorded and gates) or above.number in run)
        if not layer.last and (layer.number in recorded or needed):
            run.add(layer.number)
    return frozenset(run)


@dataclass
class _Chunk:
    """One chunk's rows a..b: {(layer, kind): (n, width) float16 on the CPU}, the logits (n, V) or None."""

    a: int
    b: int
    arrays: dict[tuple[int, str], torch.Tensor]
    logits: torch.Tensor | None


def record_module(
    module: nn.Module,
    ids,
    out: str | Path,
    *,
    kinds: str | Sequence[str] | None = None,
    layers: str | Sequence[int] | None = None,
    tokens: Tokens | None = None,
    token_text: str | None = None,
    vocab: Sequence[str] | TokenVocab | None = None,
    forward: Forward | None = None,
    chunk: int | None = None,
    topk: int = 5,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    source: str | None = None,
) -> Store:
    """Record ``kinds`` of ``layers`` of ``module`` over ``ids`` (T,) into the store directory ``out``.

    kinds: None (h, and c for an LSTM), "all", "h,c,i" or a list; layers: None (all) or numbers over every
    recurrent layer in module order. tokens, token_text: the rows' tokens (see the module's docstring and
    :func:`rnnviz.store.tokens.token_spans`). vocab: each id's token string (the store shows them; default: the ids'
    decimal numbers); its size must be the module's embedding's. forward: ``forward(module, x)`` for a module
    whose forward needs more than the ids x (e.g. a hidden state). chunk: tokens per forward (default: as
    many as fit 256 MB, at most 4,096). topk: next-token predictions kept when the module returns logits.
    source: where the ids come from, kept in the manifest. progress: called as progress(tokens_done, T).
    Runs on the module's device. Returns the opened :class:`Store`; nothing appears at ``out`` unless the
    whole recording succeeds.
    """
    net = recurrent_layers(module)
    vocab = None if vocab is None else vocab if isinstance(vocab, TokenVocab) else TokenVocab(vocab)
    V = vocab_size(module, vocab)
    plan = ModulePlan.make(net, kinds, layers, V, topk, chunk)
    ids = check_ids(ids, V)
    full, spans = token_rows(ids, tokens, token_text, vocab)
    device = net[0].module.weight_hh_l0.device
    runners = {l.number: Layer(l.cell, l.weights(), device, None, l.nonlinearity) for l in net}
    subs = list(dict.fromkeys((l.name, l.module) for l in net))
    layerwise = {i: [runners[l.number] for l in net if l.module is m] for i, (_, m) in enumerate(subs)
                 if runs_layerwise(m)}
    settings = {"source": source, "module": _qualname(type(module)), "forward": None if forward is None
                else _qualname(forward), "chunk": plan.chunk, "device": str(device), "torch": torch.__version__}
    t0, checks = time.perf_counter(), {"gates": None, "inner": None}
    with eval_mode(module), torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False), \
            Capture(subs, layerwise) as cap:
        chunks = _chunks(module, forward, ids, cap, runners, plan, checks)
        first = next(chunks)  # the first forward tells whether the module returns logits
        K = plan.topk if first.logits is not None else 0
        shown = vocab if vocab is not None else TokenVocab([str(i) for i in range(V)] if K else [])
        writer = StoreWriter(out, full, layers=plan.layers, kinds=plan.kinds, vocab=shown, topk=K,
                             has_logprob=first.logits is not None, recorder=settings, overwrite=overwrite,
                             cell=plan.cell, widths=_widths(plan), spans=spans, source=_source(module, plan))
        with writer:
            for ch in chain([first], chunks):
                _write(writer, ch, ids, first.logits is not None)
                if progress is not None:
                    progress(ch.b, len(ids))
            seconds = time.perf_counter() - t0
            writer.recorder.update(gates_vs_kernel_max_abs_error=checks["gates"],
                                   inner_layers_vs_module_max_abs_error=checks["inner"], seconds=round(seconds, 3),
                                   tokens_per_s=round(len(ids) / max(seconds, 1e-9)))
    return writer.store


def _qualname(obj) -> str:
    return f"{getattr(obj, '__module__', None) or '?'}.{getattr(obj, '__qualname__', type(obj).__name__)}"[:1000]


def _widths(plan: ModulePlan) -> dict[tuple[int, str], int]:
    return {(l.number, k): w for l in plan.net if l.number in plan.layers for k, w in l.widths(plan.kinds).items()}


def _source(module: nn.Module, plan: ModulePlan) -> dict:
    """The store's ``source`` table: the module's class and, per recorded layer, where it came from."""
    return {"class": _qualname(type(module)), "layers": [l.describe() for l in plan.net if l.number in plan.layers]}


def _call(module: nn.Module, forward: Forward | None, x: torch.Tensor, a: int, b: int):
    """The module's forward on ids x; any failure of the user's code as one line naming the tokens."""
    try:
        return module(x) if forward is None else forward(module, x)
    except RnnvizError:
        raise
    except Exception as e:  # the user's code: any exception is theirs to read, in one line
        why = " ".join(str(e).split())
        why = why if len(why) <= 300 else why[:297] + "..."
        raise RnnvizError(f"the module's forward failed on tokens {a:,} to {b - 1:,}: {type(e).__name__}: {why}") \
            from None


def _chunks(module, forward, ids: torch.Tensor, cap: Capture, runners: dict[int, Layer], plan: ModulePlan,
            checks: dict) -> Iterator[_Chunk]:
    """The module's forward over ``ids`` (T,) a chunk at a time; yields each chunk's recorded rows."""
    T, first = len(ids), plan.net[0].module
    device = first.weight_hh_l0.device
    for a in range(0, T, plan.chunk):
        b = min(T, a + plan.chunk)
        x = ids[a:b].to(device)
        cap.start(b - a)
        output = _call(module, forward, x[None] if first.batch_first else x[:, None], a, b)
        seen = cap.seen()
        arrays = _layers(seen, runners, plan, checks)
        logits = _logits(output, b - a, plan.vocab_size)
        yield _Chunk(a, b, arrays, logits)


def _layers(seen: list[Seen], runners: dict[int, Layer], plan: ModulePlan, checks: dict) -> dict:
    """Every recorded layer's kinds for one chunk, {(layer, kind): (n, width) float16 on the CPU}, from what
    the submodules read and returned; ``checks`` keeps the largest differences found on the way."""
    arrays, subs, inp = {}, list(dict.fromkeys(l.module for l in plan.net)), None
    for layer in plan.net:
        s = seen[subs.index(layer.module)]
        k, keep = layer.index, layer.number in plan.layers
        inp = s.x if k == 0 else inp
        known = s.layers[k] if s.layers is not None else s.out if layer.last else None  # the layer's own h
        if known is None and layer.number not in plan.run:
            inp = None  # nothing at or above this layer of its submodule needs it
            continue
        c0 = None if s.c0 is None else s.c0[k]
        out, (hT, _), rec, err = runners[layer.number].run(inp, s.h0[k], c0, plan.gates and keep, out=known)
        if known is None:
            checks["inner"] = _worst(checks["inner"], (hT - s.hn[k]).abs().amax())
        if err is not None:
            checks["gates"] = _worst(checks["gates"], err)
        if keep:
            arrays.update({(layer.number, kind): rec[kind][0].half().cpu() for kind in plan.kinds})
        inp = out
    return arrays


def _worst(prev: float | None, err: torch.Tensor) -> float:
    return max(prev or 0.0, float(err))


def _logits(output, n: int, V: int | None) -> torch.Tensor | None:
    """The forward's output as next-token logits (n, V), if it is one row of V values per token: the output
    itself, its first element (a tuple such as (logits, hidden)) or its "logits" (a dict)."""
    t = output
    if isinstance(output, dict):
        t = output.get("logits")
    elif isinstance(output, (tuple, list)) and output:
        t = output[0]
    if V is None or not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dim() < 2 \
            or t.shape[-1] != V or t.numel() != n * V:
        return None
    return t.reshape(n, V)


def _write(writer: StoreWriter, ch: _Chunk, ids: torch.Tensor, logits: bool) -> None:
    """One chunk's rows into the store: the arrays, and from logits (n, V) log p(next id) in nats (NaN after
    the last token) and the top-K predictions."""
    if logits and ch.logits is None:
        raise RnnvizError(f"the module's forward returned logits for the first chunk but not for tokens "
                          f"{ch.a:,} to {ch.b - 1:,}")
    writer.observe(ch.arrays)
    if not logits:
        writer.write(ch.a, ch.arrays)
        return
    writer.write_logits(ch.a, ch.arrays, ch.logits, ids)
