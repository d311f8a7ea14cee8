"""The recorder: every layer's h, c and gates for every character of a text, into a store.

The activation at position t is the state after reading character t, from a zero state at text[0].

Fast path: the text is cut into B contiguous chunks of C characters,
recorded side by side as B parallel streams. Stream b starts from the state it would have at
position b·C, approximated by reading the ``burn_in`` characters before it from a zero state (the
streams whose chunk starts within ``burn_in`` of the text's start get their exact state from one
sequential pass instead). Inside a block of S steps, each layer runs torch's fused single-layer
kernel (cuDNN on GPU) for h; the gates are recomputed from (x_t, h_{t-1}) in two batched matmuls
for the whole block, and c follows from its elementwise recurrence c_t = f_t·c_{t-1} + i_t·g_t,
restarted every block from the kernel's own final c. ``o·tanh(c)`` (LSTM) or ``(1-z)·n + z·h_{t-1}``
(GRU) is compared with the kernel's h; the largest difference goes into the manifest.

``exact=True`` records one sequential stream (no burn-in approximation).

Under torchrun each rank records a contiguous share of the B streams (with their burn-in) into the same
preallocated store, at their own rows; the per-stream statistics are combined and rank 0 commits the
store, which is the one a single process would write with the same streams (see README for the caveat).

Memory is bounded: blocks of at most ~128 MB of float16 rows go to a writer thread that writes
them into preallocated files while the next block is computed; per-unit statistics are folded in
on the recording device.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from . import distributed
from .devices import resolve_device
from .errors import RnnvizError
from .models import CharRNN, parse_kinds, parse_layers
from .store import Store
from .storewriter import StoreWriter

HOST_BLOCK_BYTES = 128 << 20  # float16 rows per block handed to the writer (x PENDING in flight)
DEVICE_BLOCK_BYTES = 256 << 20  # float32 working set per block on the device
MAX_STEPS = 512  # steps per block: longer blocks gain nothing and delay the progress bar
STREAM_CAP = {"cuda": 256, "cpu": 64}  # enough streams to fill the matmuls; more only adds burn-in
PENDING = 2  # blocks queued for the writer thread


def stream_layout(T: int, burn_in: int, streams: int | None, exact: bool, device_type: str) -> tuple[int, int]:
    """(B streams, C characters per stream) for a text of T characters; streams=None picks B."""
    if exact:
        B = 1
    else:
        worth = T // (4 * burn_in) if burn_in else T  # keep burn-in work under ~25% of the total
        B = max(1, min(streams or min(STREAM_CAP.get(device_type, 64), worth), T))
    C = math.ceil(T / B)
    return math.ceil(T / C), C  # no empty streams


class _Layer:
    """One recurrent layer on the recording device: a fused single-layer module that gives h for every
    step, and the same weights transposed for recomputing the gates in batched matmuls."""

    def __init__(self, model: CharRNN, layer: int, device: torch.device):
        cfg = model.config
        w_ih, w_hh, b_ih, b_hh = (w.detach().to(device, torch.float32) for w in model.layer_weights(layer))
        self.fused = model.fused_layer(layer, device, torch.float32)
        self.cell, self.layer, self.vocab_size = cfg.cell, layer, cfg.vocab_size
        self.w_ih_t, self.w_hh_t = w_ih.t().contiguous(), w_hh.t().contiguous()  # (D, G·H), (H, G·H)
        self.b_ih, self.b_hh = b_ih, b_hh

    def input(self, x: torch.Tensor) -> torch.Tensor:
        """Layer 0 takes ids (B, S) as one-hot (B, S, V); deeper layers take (B, S, H) as they are."""
        return F.one_hot(x, self.vocab_size).float() if self.layer == 0 else x

    def run(self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor | None, gates: bool):
        """x: ids (B, S) for layer 0, else (B, S, H); h0, c0: (B, H).

        Returns out h (B, S, H), final (h, c), {kind: (B, S, H)} and the max |h_kernel - h_recomputed|
        (a 0-dim tensor, or None when ``gates`` is false and nothing was recomputed).
        """
        lstm = self.cell == "lstm"
        out, st = self.fused(self.input(x), (h0[None], c0[None]) if lstm else h0[None])
        hT, cT = (st[0][0], st[1][0]) if lstm else (st[0], None)
        if not gates or self.cell == "rnn":
            return out, (hT, cT), {"h": out}, None
        B, S, H = out.shape
        h_prev = torch.cat([h0[:, None], out[:, :-1]], 1)  # (B, S, H): the h each step read
        if self.layer == 0:
            xp = self.w_ih_t[x] + self.b_ih  # one-hot input: the matmul is a row lookup
        else:
            xp = torch.addmm(self.b_ih, x.reshape(B * S, -1), self.w_ih_t).view(B, S, -1)
        hp = torch.addmm(self.b_hh, h_prev.reshape(B * S, H), self.w_hh_t).view(B, S, -1)  # (B, S, G·H)
        if lstm:
            i, f, g, o = xp.add_(hp).chunk(4, -1)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            u = i * g
            c = torch.empty_like(u)
            prev = c0
            for t in range(S):  # the cheap elementwise recurrence; the matmuls are all done above
                prev = c[:, t] = torch.addcmul(u[:, t], f[:, t], prev)
            err = (o * torch.tanh(c) - out).abs().amax()
            return out, (hT, cT), {"h": out, "c": c, "i": i, "f": f, "g": g, "o": o}, err
        ir, iz, in_ = xp.chunk(3, -1)
        hr, hz, hn = hp.chunk(3, -1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(in_ + r * hn)
        err = ((1 - z) * n + z * h_prev - out).abs().amax()
        return out, (hT, cT), {"h": out, "r": r, "z": z, "n": n}, err


def _advance(layers: list[_Layer], ids: torch.Tensor, h, c, steps: int):
    """Run ids (B, N) through every layer, ``steps`` at a time, recording nothing; returns (h, c) (L, B, H)."""
    h, c = h.clone(), (c.clone() if c is not None else None)
    for s0 in range(0, ids.shape[1], steps):
        inp = ids[:, s0 : s0 + steps]
        for l, layer in enumerate(layers):
            inp, (h[l], cl), _, _ = layer.run(inp, h[l], None if c is None else c[l], gates=False)
            if c is not None:
                c[l] = cl
    return h, c


def _warm_start(layers, ids, streams: range, C, burn_in, h, c, steps):
    """Initial states of ``streams`` (stream b starts at text position b·C) into h, c (L, len(streams), H).

    The burn-in runs for every stream of the range in one batch (stream 0 and the short ones included,
    their results then replaced): a rank's batch is then the same shape as in its main loop, which keeps
    the float rounding of each stream independent of how streams are shared among processes.
    """
    b0 = streams.start
    short = [b for b in streams if 0 < b * C < burn_in]
    if burn_in > 0 and any(b * C >= burn_in for b in streams):
        starts = torch.tensor([max(b * C - burn_in, 0) for b in streams], device=ids.device)
        seq = ids[starts[:, None] + torch.arange(burn_in, device=ids.device)].long()  # (n, burn_in)
        hb, cb = _advance(layers, seq, torch.zeros_like(h), None if c is None else torch.zeros_like(c), steps)
        full = [b - b0 for b in streams if b * C >= burn_in]
        h[:, full] = hb[:, full]
        if c is not None:
            c[:, full] = cb[:, full]
    if short:  # these chunks start so near the beginning that their exact state is cheap: one pass
        hs, cs = torch.zeros_like(h[:, :1]), (None if c is None else torch.zeros_like(c[:, :1]))
        for k in range(1, max(short) + 1):
            hs, cs = _advance(layers, ids[None, (k - 1) * C : k * C].long(), hs, cs, steps)
            if k in short:
                h[:, k - b0] = hs[:, 0]
                if c is not None:
                    c[:, k - b0] = cs[:, 0]


def _to_host(t: torch.Tensor) -> torch.Tensor:
    if t.device.type != "cuda":
        return t
    dst = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    return dst.copy_(t, non_blocking=True)


@dataclass(frozen=True)
class _Plan:
    """What one recording reads and keeps, and how the text is cut: B streams of C characters (this rank
    records streams b0..b1-1), S steps per block, each stream warmed up on ``burn_in`` characters."""

    layers: list[int]
    kinds: list[str]
    topk: int  # K next-character predictions kept per position
    B: int
    b0: int
    b1: int
    C: int
    S: int
    burn_in: int
    device: torch.device

    @classmethod
    def make(cls, cfg, T: int, layers, kinds, topk, burn_in, streams, exact, group) -> _Plan:
        B, C = stream_layout(T, burn_in, streams, exact, group.device.type)
        b0, b1 = group.share(B)  # this rank's streams (all of them in one process)
        host_row = len(layers) * len(kinds) * cfg.hidden * 2 + 4 + topk * 4
        dev_row = (cfg.layers * 10 * cfg.hidden + 3 * cfg.vocab_size) * 4
        rows = max(1, min(HOST_BLOCK_BYTES // host_row, DEVICE_BLOCK_BYTES // dev_row))
        S = max(1, min(MAX_STEPS, C, rows // B))
        return cls(layers, kinds, topk, B, b0, b1, C, S, burn_in, group.device)


def record(
    model: CharRNN,
    text: str,
    out: str | Path,
    kinds: str | Iterable[str] | None = None,
    layers: str | Iterable[int] | None = None,
    burn_in: int = 1000,
    streams: int | None = None,
    exact: bool = False,
    start: int = 0,
    topk: int = 5,
    unknown: str = "error",
    device: str | torch.device | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    source: str | None = None,
) -> Store:
    """Record ``kinds`` of ``layers`` for every character of ``text`` into the store directory ``out``.

    kinds: None (h, and c for an LSTM), "all", "h,c,i" or a list. layers: None (all) or e.g. [0, 2].
    burn_in: characters each parallel stream reads before its chunk. streams: parallel streams
    (None: as many as the text and device make worthwhile). exact: one sequential stream.
    start / source: where ``text`` comes from, recorded in the manifest. topk: next-char predictions
    kept per position. unknown: "error", "skip" or "replace:X" for characters outside the vocabulary.
    device: None (the model's), "auto", "cpu", "cuda". progress: called as progress(chars_done, total).
    Returns the opened :class:`Store`. Nothing appears at ``out`` unless the whole recording succeeds.
    """
    cfg, vocab = model.config, model.vocab
    kinds, layers = parse_kinds(kinds, cfg.cell), parse_layers(layers, cfg.layers)
    _check_options(burn_in, streams, topk, cfg.vocab_size, text)
    bad = vocab.unknown_chars(text)
    text = vocab.prepare(text, unknown)
    if not text:
        raise RnnvizError("nothing to record: no character of the text is in the model's vocabulary")
    group = distributed.setup(resolve_device(device, model))
    plan = _Plan.make(cfg, len(text), layers, kinds, topk, burn_in, streams, exact, group)
    settings = {
        "source": source, "start": start, "length": len(text), "unknown": unknown,
        "unknown_chars": {ch: n for ch, (n, _) in bad.items()}, "exact": exact, "streams": plan.B,
        "chunk": plan.C, "burn_in": burn_in if plan.B > 1 else 0, "block_steps": plan.S,
        "device": str(plan.device), "processes": group.world, "torch": torch.__version__,
    }
    checkpoint = None if model.checkpoint_dir is None else {
        "path": str(model.checkpoint_dir.resolve()), "sha256": (model.meta or {}).get("weights_sha256")}
    writer = StoreWriter(
        out, text, layers=layers, kinds=kinds, model_config=cfg, vocab=vocab, topk=topk,
        checkpoint=checkpoint, recorder=settings, overwrite=overwrite, streams=plan.B, group=group,
    )
    t0 = time.perf_counter()
    # cuDNN may use TF32 for RNNs by default; the recording must be float32 to pass the h check.
    with writer, torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        with ThreadPoolExecutor(1, thread_name_prefix="rnnviz-write") as pool:
            max_err = _record_blocks(model, text, writer, pool, plan, progress)
        if max_err is not None:
            max_err = float(group.all_reduce(torch.tensor(max_err, dtype=torch.float64, device=plan.device), "max"))
        writer.join()
        seconds = time.perf_counter() - t0
        writer.recorder.update(check_max_abs_error=max_err, seconds=round(seconds, 3),
                               chars_per_s=round(len(text) / max(seconds, 1e-9)))
    return writer.store  # None on ranks > 0


def _check_options(burn_in, streams, topk: int, vocab_size: int, text: str) -> None:
    if not isinstance(burn_in, int) or burn_in < 0:
        raise RnnvizError(f"burn-in must be a whole number >= 0, got {burn_in!r}")
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


def _record_blocks(model: CharRNN, text: str, writer: StoreWriter, pool, plan: _Plan, progress) -> float | None:
    """Record this rank's streams into ``writer``, S steps at a time; returns the h check's max error."""
    B, b0, b1, C, dev = plan.B, plan.b0, plan.b1, plan.C, plan.device
    cfg, T = model.config, len(text)
    ids = _stream_ids(model, text, plan)
    x = ids[: B * C].view(B, C)[b0:b1]  # (n, C): stream b reads text[b·C : (b+1)·C]
    nxt = ids[1:].view(B, C)[b0:b1]  # the character each position predicts
    net = [_Layer(model, l, dev) for l in range(cfg.layers)]
    h = torch.zeros(cfg.layers, b1 - b0, cfg.hidden, device=dev)  # (L, n, H)
    c = torch.zeros_like(h) if cfg.cell == "lstm" else None
    _warm_start(net, ids, range(b0, b1), C, plan.burn_in, h, c, plan.S)
    head = [p.detach().to(dev, torch.float32) for p in (model.head.weight, model.head.bias)]
    max_err, pending, done = None, deque(), 0
    for s0 in range(0, C, plan.S):
        recs, logp, err = _run_block(net, x[:, s0 : s0 + plan.S].long(), h, c, head, plan)
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
    return None if max_err is None else float(max_err)


def _run_block(net: list[_Layer], xb: torch.Tensor, h, c, head, plan: _Plan):
    """One block of S steps through every layer, carrying h, c (L, n, H) in place. Returns the recorded
    kinds {layer: (len(kinds), n, S, H) float16}, the log-probabilities (n, S, V) and the h check's error."""
    gates = set(plan.kinds) != {"h"}
    inp, recs, max_err = xb, {}, None
    for l, layer in enumerate(net):
        inp, (h[l], cl), rec, err = layer.run(inp, h[l], None if c is None else c[l], gates and l in plan.layers)
        if c is not None:
            c[l] = cl
        if err is not None:
            max_err = err if max_err is None else torch.maximum(max_err, err)
        if l in plan.layers:  # float16 as stored: each stream's rows of a kind are contiguous, so the
            # writer hands them to pwrite without another copy
            blk = recs[l] = torch.empty(len(plan.kinds), *inp.shape[:2], h.shape[-1], dtype=torch.float16,
                                        device=plan.device)
            for j, k in enumerate(plan.kinds):
                blk[j] = rec[k]
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
