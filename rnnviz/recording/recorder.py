"""The recorder: every layer's h, c and gates for every character of a text, into a store.

The activation at position t is the state after reading character t, from a zero state at text[0].

Fast path: the text is cut into B contiguous chunks of C characters,
recorded side by side as B parallel streams. Stream b starts from the state one sequential pass has at
position b·C: first guessed by reading the ``burn_in`` characters before it from a zero state (the
streams whose chunk starts within ``burn_in`` of the text's start get their exact state from one
sequential pass instead), then corrected by states-only passes until every stream's start agrees with its
predecessor's end (:mod:`.starts`). The recording gives every end state again, so the boundary error that
goes into the manifest is measured on the recording itself. Inside a block of S steps, each layer runs
torch's fused single-layer kernel (cuDNN on GPU) for h; the gates are recomputed from (x_t, h_{t-1}) in
two batched matmuls for the whole block, and c follows from its elementwise recurrence c_t = f_t·c_{t-1} + i_t·g_t,
restarted every block from the kernel's own final c. ``o·tanh(c)`` (LSTM) or ``(1-z)·n + z·h_{t-1}``
(GRU) is compared with the kernel's h; the largest difference goes into the manifest (a check of the
gate recomputation, not of the start states). On a CPU an LSTM's gates and c are recorded instead by a
step loop that writes every kind as it computes it (:mod:`.lstm_steps`, 1.25-1.7x faster at 39-64
streams); its check is stream 0 of the first block against the kernel. The states-only passes always run
the kernel.

``exact=True`` records one sequential stream (no burn-in approximation).

Under torchrun each rank records a contiguous share of the B streams (with their burn-in) into the same
preallocated store, at their own rows; the per-stream statistics are combined and rank 0 commits the
store, which is the one a single process would write with the same streams (see README for the caveat).

Memory is bounded: blocks of at most ~128 MB of float16 rows go to a writer thread that writes
them into preallocated files while the next block is computed; per-unit statistics are folded in
on the recording device.
"""

from __future__ import annotations

import inspect
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from rnnviz.devices import resolve_device
from rnnviz.errors import RnnvizError
from rnnviz.model import distributed
from rnnviz.model.charrnn import CharRNN, eval_mode, parse_kinds, parse_layers
from rnnviz.recording.recurrence import Carry, Layer, advance, warm_start
from rnnviz.recording.starts import MAX_PASSES, StartError, Tolerance, settle, start_error
from rnnviz.store.reader import Store
from rnnviz.store.writer import StoreWriter
from rnnviz.threads import choose_threads, step_gemm_flops, step_loop

HOST_BLOCK_BYTES = 128 << 20  # float16 rows per block handed to the writer (x PENDING in flight)
DEVICE_BLOCK_BYTES = 256 << 20  # float32 working set per block on the device
MAX_STEPS = 512  # steps per block: longer blocks gain nothing and delay the progress bar
STREAM_CAP = {"cuda": 256, "cpu": 64}  # enough streams to fill the matmuls; more only adds burn-in
PENDING = 2  # blocks queued for the writer thread
TOLERANCE = Tolerance()  # of the stream boundaries (see .starts)


def stream_layout(T: int, burn_in: int, streams: int | None, exact: bool, device_type: str) -> tuple[int, int]:
    """(B streams, C characters per stream) for a text of T characters; streams=None picks B."""
    if exact:
        B = 1
    else:
        worth = T // (4 * burn_in) if burn_in else T  # keep burn-in work under ~25% of the total
        B = max(1, min(streams or min(STREAM_CAP.get(device_type, 64), worth), T))
    C = math.ceil(T / B)
    return math.ceil(T / C), C  # no empty streams


def _to_host(t: torch.Tensor) -> torch.Tensor:
    if t.device.type != "cuda":
        return t
    dst = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    return dst.copy_(t, non_blocking=True)


@dataclass(frozen=True)
class _Plan:
    """What one recording reads and keeps, and how the text is cut: B streams of C characters (this rank
    records streams b0..b1-1), S steps per block, each stream's start guessed from ``burn_in`` characters
    and corrected by at most ``max_passes`` passes (:mod:`.starts`)."""

    layers: list[int]
    kinds: list[str]
    topk: int  # K next-character predictions kept per position
    B: int
    b0: int
    b1: int
    C: int
    S: int
    burn_in: int
    max_passes: int
    group: distributed.Group

    @property
    def device(self) -> torch.device:
        return self.group.device

    @classmethod
    def make(cls, cfg, T: int, layers, kinds, topk, burn_in, streams, exact, max_passes, group) -> _Plan:
        B, C = stream_layout(T, burn_in, streams, exact, group.device.type)
        b0, b1 = group.share(B)  # this rank's streams (all of them in one process)
        host_row = len(layers) * len(kinds) * cfg.hidden * 2 + 4 + topk * 4
        dev_row = (cfg.layers * 10 * cfg.hidden + 3 * cfg.vocab_size) * 4
        rows = max(1, min(HOST_BLOCK_BYTES // host_row, DEVICE_BLOCK_BYTES // dev_row))
        S = max(1, min(MAX_STEPS, C, rows // B))
        return cls(layers, kinds, topk, B, b0, b1, C, S, burn_in, max_passes, group)


def record(
    model: CharRNN,
    text: str,
    out: str | Path,
    kinds: str | Iterable[str] | None = None,
    layers: str | Iterable[int] | None = None,
    burn_in: int = 1000,
    streams: int | None = None,
    exact: bool = False,
    max_passes: int = MAX_PASSES,
    start: int = 0,
    topk: int = 5,
    unknown: str = "error",
    device: str | torch.device | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    source: str | None = None,
    context: str = "",
    threads: int | None = None,
    **module_options,
) -> Store:
    """Record ``kinds`` of ``layers`` for every character of ``text`` into the store directory ``out``.

    ``model`` may also be any ``torch.nn.Module`` with ``nn.LSTM/GRU/RNN`` layers: ``text`` is then its token
    ids and ``module_options`` (tokens, token_text, vocab, forward, chunk) go to
    :func:`rnnviz.recording.module.record_module`, with kinds, layers, topk, overwrite, progress and source.

    kinds: None (h, and c for an LSTM), "all", "h,c,i" or a list. layers: None (all) or e.g. [0, 2].
    burn_in: characters each parallel stream reads before its chunk, for the first guess of its start
    state; max_passes: states-only passes that correct the guesses until every stream starts where its
    predecessor ended (0: record from the guesses; the boundary error is measured either way).
    streams: parallel streams (None: as many as the text and device make worthwhile). exact: one
    sequential stream.
    context: text read just before ``text`` (e.g. the ``burn_in`` characters before it in its file) for the
    first stream's start state only, not recorded: row 0 is then not the state after a zero start (whose
    first values spike) but after reading what came before.
    threads: torch intra-op threads (None: :func:`rnnviz.threads.choose_threads` picks from the streams'
    GEMM size and the machine's load; the count used goes into the manifest).
    start / source: where ``text`` comes from, recorded in the manifest. topk: next-char predictions
    kept per position. unknown: "error", "skip" or "replace:X" for characters outside the vocabulary.
    device: None (the model's), "auto", "cpu", "cuda". progress: called as progress(chars_done, total).
    Returns the opened :class:`Store`. Nothing appears at ``out`` unless the whole recording succeeds.
    """
    if not isinstance(model, CharRNN) or module_options:
        return _record_module(model, text, out, locals(), module_options)
    cfg, vocab = model.config, model.vocab
    kinds, layers = parse_kinds(kinds, cfg.cell), parse_layers(layers, cfg.layers)
    _check_options(burn_in, streams, max_passes, topk, cfg.vocab_size, text)
    bad = vocab.unknown_chars(text)
    text = vocab.prepare(text, unknown)
    if not text:
        raise RnnvizError("nothing to record: no character of the text is in the model's vocabulary")
    context = vocab.prepare(context, "skip")  # only a start state: what the model cannot read is left out
    if model.modern:
        return _record_modern(model, text, out, locals())
    group = distributed.setup(resolve_device(device, model))
    plan = _Plan.make(cfg, len(text), layers, kinds, topk, burn_in, streams, exact, max_passes, group)
    threads = choose_threads(step_gemm_flops(cfg.cell, cfg.hidden, plan.b1 - plan.b0), threads)
    settings = {
        "source": source, "start": start, "length": len(text), "unknown": unknown,
        "unknown_chars": {ch: n for ch, (n, _) in bad.items()}, "exact": exact, "streams": plan.B,
        "chunk": plan.C, "burn_in": burn_in if plan.B > 1 else 0, "max_passes": max_passes if plan.B > 1 else 0,
        "tolerance": asdict(TOLERANCE), "block_steps": plan.S, "context": len(context),
        "device": str(plan.device), "processes": group.world, "threads": threads, "torch": torch.__version__,
    }
    writer = StoreWriter(
        out, text, layers=layers, kinds=kinds, model_config=cfg, vocab=vocab, topk=topk,
        checkpoint=_checkpoint_of(model), recorder=settings, overwrite=overwrite, streams=plan.B, group=group,
    )
    t0 = time.perf_counter()
    # cuDNN may use TF32 for RNNs by default; the recording must be float32 to pass the h check.
    with writer, torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False), step_loop(threads):
        with ThreadPoolExecutor(1, thread_name_prefix="rnnviz-write") as pool:
            checks = _record_blocks(model, text, writer, pool, plan, progress, context)
        writer.join()
        seconds = time.perf_counter() - t0
        writer.recorder.update(checks, seconds=round(seconds, 3), chars_per_s=round(len(text) / max(seconds, 1e-9)))
    return writer.store  # None on ranks > 0


def _checkpoint_of(model: CharRNN) -> dict | None:
    """The manifest's ``checkpoint``: where the model was loaded from and its weights' hash (None: built in memory)."""
    return None if model.checkpoint_dir is None else {
        "path": str(model.checkpoint_dir.resolve()), "sha256": (model.meta or {}).get("weights_sha256")}


def _record_modern(model: CharRNN, text: str, out, given: dict) -> Store:
    """:func:`record` of a minGRU, Mamba or sLSTM: one exact stream (:mod:`.modern`), on the model's device."""
    from rnnviz.recording.modern import record_modern

    device = resolve_device(given["device"], model)
    if device != model.device:
        model = model.to(device)
    threads = choose_threads(0, given["threads"])  # one stream: small matmuls, one thread unless asked
    settings = {"source": given["source"], "start": given["start"], "length": len(text), "unknown": given["unknown"],
                "unknown_chars": {ch: n for ch, (n, _) in given["bad"].items()}, "exact": True, "streams": 1,
                "context": len(given["context"]), "device": str(model.device), "processes": 1, "threads": threads,
                "torch": torch.__version__}
    writer = StoreWriter(out, text, layers=given["layers"], kinds=given["kinds"], model_config=model.config,
                         vocab=model.vocab, topk=given["topk"], checkpoint=_checkpoint_of(model), recorder=settings,
                         overwrite=given["overwrite"])
    with eval_mode(model), step_loop(threads):
        return record_modern(model, text, writer, given["context"], given["progress"])


CHARRNN_ONLY = ("burn_in", "streams", "exact", "max_passes", "start", "unknown", "device", "context", "threads")
MODULE_ONLY = ("tokens", "token_text", "vocab", "forward", "chunk")  # record_module's own options


def _record_module(model, ids, out, given: dict, module_options: dict) -> Store:
    """:func:`record` of a user's module; the options that only a CharRNN's recording has must be left as
    they are, and a CharRNN takes none of a module's."""
    from rnnviz.recording.module import record_module

    unknown = [k for k in module_options if k not in MODULE_ONLY]
    if unknown:
        raise TypeError(f"record() got an unexpected keyword argument {unknown[0]!r}")
    if isinstance(model, CharRNN):
        raise RnnvizError(f"{', '.join(module_options)}: options for recording a user's module, not a CharRNN "
                          "(which reads characters)")
    if not isinstance(model, torch.nn.Module):
        raise RnnvizError(f"record takes a CharRNN or a torch.nn.Module, got {type(model).__name__}")
    defaults = inspect.signature(record).parameters
    odd = [k for k in CHARRNN_ONLY if given[k] != defaults[k].default]
    if odd:
        raise RnnvizError(f"{odd[0]}= applies to recording a CharRNN; a module is recorded as one sequence, on its "
                          "own device")
    return record_module(model, ids, out, kinds=given["kinds"], layers=given["layers"], topk=given["topk"],
                         overwrite=given["overwrite"], progress=given["progress"], source=given["source"],
                         **module_options)


def _check_options(burn_in, streams, max_passes, topk: int, vocab_size: int, text: str) -> None:
    if not isinstance(burn_in, int) or burn_in < 0:
        raise RnnvizError(f"burn-in must be a whole number >= 0, got {burn_in!r}")
    if not isinstance(max_passes, int) or max_passes < 0:
        raise RnnvizError(f"max passes must be a whole number >= 0, got {max_passes!r}")
    if streams is not None and (not isinstance(streams, int) or streams < 1):
        raise RnnvizError(f"streams must be a whole number >= 1, got {streams!r}")
    if not 0 <= topk <= vocab_size:
        raise RnnvizError(f"topk must be from 0 to the vocabulary size {vocab_size}, got {topk}")
    if not text:
        raise RnnvizError("nothing to record: the text is empty")


def _stream_ids(model: CharRNN, text: str, plan: _Plan) -> torch.Tensor:
    """(B·C + 1,) int32 ids on the device, padded (pads are read only by the last stream, after the text's
    end, and dropped); encoded a piece at a time so that memory stays ~4 bytes per character of text."""
    ids = torch.zeros(plan.B * plan.C + 1, dtype=torch.int32)
    for i in range(0, len(text), 1 << 20):
        piece = model.vocab.encode(text[i : i + (1 << 20)])
        ids[i : i + len(piece)] = torch.from_numpy(piece)
    return ids.to(plan.device)


def _record_blocks(model: CharRNN, text: str, writer: StoreWriter, pool, plan: _Plan, progress,
                   context: str = "") -> dict:
    """Record this rank's streams into ``writer`` from corrected start states (:mod:`.starts`).

    Optimistic: one pass and a sweep give the starts, and the recording itself checks them (every stream's
    end against its successor's start). Should a boundary still be over the tolerance, checked passes
    correct the starts further and the text is recorded again. Returns the checks for the manifest."""
    ids = _stream_ids(model, text, plan)
    net, guess, kinds, run = _guess(model, ids, plan, context)
    first = settle(guess, run, kinds, TOLERANCE, min(1, plan.max_passes))
    starts, passes, recordings = first.starts, first.passes, 0
    while True:
        ends, carry, gate_err = _record_from(model, net, ids, starts, writer, pool, plan, progress)
        recordings += 1
        final = start_error(starts, ends, carry, kinds, TOLERANCE)
        if final is None or final.within or passes >= plan.max_passes:
            break
        more = settle(starts, run, kinds, TOLERANCE, plan.max_passes - passes)
        starts, passes = more.starts, passes + more.passes
        writer.rewind()
    if gate_err is not None:
        gate_err = float(plan.group.all_reduce(gate_err.double().reshape(1), "max"))
    residual = start_error(starts, ends, torch.zeros_like(carry), kinds, TOLERANCE)
    return {"passes": passes, "recordings": recordings, "start_error_of_guess": _as_dict(first.guess_error),
            "start_error": _as_dict(final), "boundary_residual": _as_dict(residual),
            "gates_vs_kernel_max_abs_error": gate_err}


def _record_from(model: CharRNN, net: list[Layer], ids: torch.Tensor, starts: torch.Tensor, writer: StoreWriter,
                 pool, plan: _Plan, progress):
    """Record this rank's streams, S steps at a time, from ``starts`` (K, L, B, H) into ``writer``.
    Returns every stream's end state (K, L, B, H) and carry (K, K, L, B, H) (see :class:`.recurrence.Carry`),
    and the gate recomputation's max error (a 0-dim tensor or None)."""
    B, b0, b1, C, dev, T = plan.B, plan.b0, plan.b1, plan.C, plan.device, len(writer.text)
    x = ids[: B * C].view(B, C)[b0:b1]  # (n, C): stream b reads text[b·C : (b+1)·C]
    nxt = ids[1:].view(B, C)[b0:b1]  # the character each position predicts
    h, c = _unstack(starts[:, :, b0:b1].clone())
    carry = Carry(net, h)
    head = [p.detach().to(dev, torch.float32) for p in (model.head.weight, model.head.bias)]
    max_err, pending, done = None, deque(), 0
    for s0 in range(0, C, plan.S):
        check = s0 == 0 and b0 == 0  # the step loop's check: stream 0's first block (the same under torchrun)
        recs, logp, err = _run_block(net, x[:, s0 : s0 + plan.S].long(), h, c, head, plan, carry, check)
        if err is not None:
            max_err = err if max_err is None else torch.maximum(max_err, err)
        n = logp.shape[1]
        p = torch.arange(b0, b1, device=dev)[:, None] * C + torch.arange(s0, s0 + n, device=dev)  # (n, S) positions
        lp = logp.gather(-1, nxt[:, s0 : s0 + n, None].long())[..., 0]
        lp = torch.where(p == T - 1, torch.nan, lp)  # the last character predicts nothing
        counts = [max(0, min(n, T - (b * C + s0))) for b in range(b0, b1)]  # rows of each stream inside the text
        for l, blk in recs.items():
            writer.observe_streams(l, blk, b0, counts)
        pending.append(_submit(pool, writer, recs, lp, logp, counts, s0, plan))
        while len(pending) > PENDING:
            pending.popleft().result()  # also re-raises a failed write (a full disk)
        done += sum(counts)
        if progress is not None:
            progress(done, min(b1 * C, T) - b0 * C)  # this rank's rows
    while pending:
        pending.popleft().result()
    return _gather(_stack(h, c), plan), _gather(carry.matrix(c), plan), max_err


def _guess(model: CharRNN, ids: torch.Tensor, plan: _Plan, context: str = ""):
    """The layers on the device, every stream's burn-in guess of its start (K, L, B, H), the state's kinds,
    and the pass of :func:`.starts.settle` over this rank's chunks of ``ids`` (B·C + 1,). The first stream
    starts after reading ``context`` (zeros without one); the passes never move its start."""
    cfg = model.config
    net = [Layer.of_charrnn(model, l, plan.device) for l in range(cfg.layers)]
    h = torch.zeros(cfg.layers, plan.b1 - plan.b0, cfg.hidden, device=plan.device)  # (L, n, H)
    c = torch.zeros_like(h) if cfg.cell == "lstm" else None
    warm_start(net, ids, range(plan.b0, plan.b1), plan.C, plan.burn_in, h, c, plan.S)
    if context and plan.b0 == 0:
        x = torch.from_numpy(model.vocab.encode(context)).to(plan.device)[None]  # (1, len(context))
        h0, c0 = advance(net, x, h[:, :1] * 0, None if c is None else c[:, :1] * 0, plan.S)
        h[:, :1] = h0
        if c is not None:
            c[:, :1] = c0
    x = ids[: plan.B * plan.C].view(plan.B, plan.C)[plan.b0 : plan.b1]  # (n, C): stream b reads its chunk
    return net, _gather(_stack(h, c), plan), _state_kinds(c), _pass(net, x, plan)


@torch.no_grad()
def stream_starts(model: CharRNN, ids: torch.Tensor, C: int, before: int = 0, burn_in: int = 1000,
                  max_passes: int = MAX_PASSES):
    """The states of one sequential pass over ``ids`` (T,) (on the model's device) just before positions
    b·C - ``before`` (0 for b = 0), b = 0 .. ceil(T / C) - 1, from streams corrected as the recorder
    corrects its own (:mod:`.starts`); 0 <= before <= C.

    Returns h, c (L, B, H) (c None unless an LSTM) and the :class:`.starts.StartError` of the states at b·C."""
    # float32 throughout, as in record(): cuDNN may use TF32 for RNNs by default
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        dev = model.device
        B = math.ceil(len(ids) / C)
        steps = max(1, min(MAX_STEPS, C))
        plan = _Plan([0], ["h"], 0, B, 0, B, C, steps, burn_in, max_passes, distributed.Group(device=dev))
        padded = torch.zeros(B * C + 1, dtype=torch.int32, device=dev)
        padded[: len(ids)] = ids
        net, guess, kinds, run = _guess(model, padded, plan)
        got = settle(guess, run, kinds, TOLERANCE, max_passes)
        error = got.error
        if error is None and B > 1:  # the last sweep's starts are unchecked: one more pass measures them
            error = start_error(got.starts, *run(got.starts), kinds, TOLERANCE)
        h, c = _unstack(got.starts)
        if before and B > 1:  # stream b-1 read on from its exact start, up to b·C - before
            seg = padded[: (B - 1) * C].view(B - 1, C)[:, : C - before]
            h, c = h.clone(), (None if c is None else c.clone())
            hb, cb = advance(net, seg, h[:, :-1], None if c is None else c[:, :-1], plan.S)
            h[:, 1:] = hb
            if c is not None:
                c[:, 1:] = cb
        return h, c, error


def _as_dict(e: StartError | None) -> dict | None:
    return None if e is None else e.to_dict()


def _stack(h: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """The recurrent state as one tensor (K, L, n, H): h, and c for an LSTM."""
    return h[None] if c is None else torch.stack([h, c])


def _unstack(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    return X[0], (X[1] if len(X) == 2 else None)


def _state_kinds(c: torch.Tensor | None) -> tuple[str, ...]:
    return ("h",) if c is None else ("h", "c")


def _gather(X: torch.Tensor, plan: _Plan) -> torch.Tensor:
    """This rank's streams (..., n, H) -> every stream's (..., B, H), on every rank: states (K, L, n, H) and
    carries (K, K, L, n, H) alike."""
    return plan.group.gather_streams(X.flatten(0, -3), plan.B).unflatten(0, X.shape[:-2])


def _pass(net: list[Layer], x: torch.Tensor, plan: _Plan):
    """The pass of :func:`.starts.settle`: this rank's streams through their chunks x (n, C) from the starts
    X (K, L, B, H), states only; every rank sees every stream's end (K, L, B, H) and carry (K, K, L, B, H)."""

    def run(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hy, cy, D = advance(net, x, *_unstack(X[:, :, plan.b0 : plan.b1]), plan.S, carry=True)
        return _gather(_stack(hy, cy), plan), _gather(D, plan)

    return run


def _run_block(net: list[Layer], xb: torch.Tensor, h, c, head, plan: _Plan, carry: Carry, check: bool):
    """One block of S steps through every layer, carrying h, c (L, n, H) and ``carry`` in place. Returns the
    recorded kinds {layer: (len(kinds), n, S, H) float16}, the log-probabilities (n, S, V) and the gate
    check's error (``check``: the step loop's is measured on stream 0 of the first block only; elsewhere it
    gives 0, so that every rank has one to reduce)."""
    gates = set(plan.kinds) != {"h"}
    inp, recs, max_err = xb, {}, None
    for l, layer in enumerate(net):
        h0 = h[l].clone()  # h[l] is overwritten below
        blk = None
        if l in plan.layers:  # float16 as stored: each stream's rows of a kind are contiguous, so the
            # writer hands them to pwrite without another copy
            blk = recs[l] = torch.empty(len(plan.kinds), *xb.shape[:2], h.shape[-1], dtype=torch.float16,
                                        device=plan.device)
        if blk is not None and gates and layer.steps(plan.B):  # the step loop writes the kinds as it goes
            out, (h[l], c[l]), rec, err = layer.record(inp, h0, c[l], blk, plan.kinds, check)
            err = torch.zeros(()) if err is None else err
        else:
            out, (h[l], cl), rec, err = layer.run(inp, h0, None if c is None else c[l], gates and blk is not None)
            if c is not None:
                c[l] = cl
            if blk is not None:
                for j, k in enumerate(plan.kinds):
                    blk[j] = rec[k]
        carry.add(l, inp, out, h0, rec)
        inp = out
        if err is not None:
            max_err = err if max_err is None else torch.maximum(max_err, err)
    return recs, F.linear(inp, *head).log_softmax(-1), max_err


def _submit(pool, writer: StoreWriter, recs: dict, lp, logp, counts: list[int], s0: int, plan: _Plan):
    """Copy a block to the host and queue its write (after the device's copy, on CUDA)."""
    K = plan.topk
    top_p, top_i = logp.topk(K, -1) if K else (None, None)
    host = {l: _to_host(v) for l, v in recs.items()}
    top_h = (_to_host(top_i.int()), _to_host(top_p.exp().half())) if K else (None, None)
    event = None
    if plan.device.type == "cuda":
        event = torch.cuda.Event()
        event.record()
    return pool.submit(_write_block, writer, event, host, plan.kinds, _to_host(lp), top_h, counts, plan.C, s0,
                       plan.b0)


def _write_block(writer: StoreWriter, event, host, kinds, lp, top, counts, C, s0, b0) -> None:
    """Writer thread: the rows of stream b (b0 + its index in the block) go to rows b·C + s0 onward.

    host: {layer: (len(kinds), B, S, H) float16}; lp (B, S); top: (ids, probs) each (B, S, K) or Nones.
    """
    if event is not None:
        event.synchronize()
    ids, probs = top
    for b, n in enumerate(counts):
        if n:
            writer.write(
                (b0 + b) * C + s0,
                {(l, k): v[j, b, :n] for l, v in host.items() for j, k in enumerate(kinds)},
                logprob=lp[b, :n],
                topk_ids=None if ids is None else ids[b, :n],
                topk_p=None if probs is None else probs[b, :n],
            )
