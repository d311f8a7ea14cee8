"""One recurrent layer on the recording device, and the states-only passes the recorder makes with it.

:class:`Layer` runs torch's fused single-layer kernel for h and recomputes the gates (and an LSTM's c)
in batched matmuls. :func:`advance` runs streams through characters keeping only the state (the burn-in
and the passes of :mod:`.starts`); :class:`Carry` follows, alongside, how much of each unit's start state
its state still carries, which is the diagonal Jacobian those passes need.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnviz.model.charrnn import GATES, CharRNN, single_layer
from rnnviz.recording.lstm_steps import MIN_STREAMS, record_steps


class Layer:
    """One recurrent layer on the recording device: a fused single-layer module that gives h for every
    step, and the same weights transposed for recomputing the gates in batched matmuls.

    ``weights`` = (W_ih (G·H, D), W_hh (G·H, P), b_ih, b_hh (G·H,)[, W_hr (P, H)]) in torch's gate row order:
    one of our CharRNN's layers (:meth:`of_charrnn`) or of any ``nn.LSTM/GRU/RNN`` (W_hr: an LSTM's
    ``proj_size`` projection, h then P wide while c and the gates are H wide). ``onehot``: the vocabulary
    size when the layer reads ids as one-hot vectors (a CharRNN's layer 0), else None (it reads (B, S, D)).
    """

    def __init__(self, cell: str, weights: tuple[torch.Tensor, ...], device: torch.device,
                 onehot: int | None = None, nonlinearity: str = "tanh"):
        w_ih, w_hh, b_ih, b_hh = (w.detach().to(device, torch.float32) for w in weights[:4])
        self.fused = single_layer(cell, weights, device, torch.float32, nonlinearity)
        self.cell, self.onehot = cell, onehot
        self.w_ih_t, self.w_hh_t = w_ih.t().contiguous(), w_hh.t().contiguous()  # (D, G·H), (P, G·H)
        self.b_ih, self.b_hh = b_ih, b_hh
        # a one-hot layer's input projection is a row of this table (V, G·H): the same sums as w_ih_t[x] + b_ih
        self.x_table = self.w_ih_t + b_ih if onehot else None
        self.w_hr_t = weights[4].detach().to(device, torch.float32).t().contiguous() if len(weights) > 4 else None
        H = w_hh.shape[0] // max(1, len(GATES[cell]))
        if self.cell != "rnn":  # the gate that keeps a unit's own state: f of (i, f, g, o), z of (r, z, n)
            self.keep_weights = self._rows(slice(H, 2 * H))
        if self.cell == "lstm":
            self.out_weights = self._rows(slice(3 * H, 4 * H))

    @classmethod
    def of_charrnn(cls, model: CharRNN, layer: int, device: torch.device) -> Layer:
        """Layer ``layer`` of our CharRNN (layer 0 reads one-hot characters)."""
        cfg = model.config
        return cls(cfg.cell, model.layer_weights(layer), device, cfg.vocab_size if layer == 0 else None)

    def _rows(self, rows: slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One gate's input and recurrent weights (D, H), (H, H), contiguous, and its two biases summed (H,)."""
        return (self.w_ih_t[:, rows].contiguous(), self.w_hh_t[:, rows].contiguous(),
                self.b_ih[rows] + self.b_hh[rows])

    def input(self, x: torch.Tensor) -> torch.Tensor:
        """A one-hot layer takes ids (B, S) as (B, S, V); any other takes (B, S, D) as it is."""
        return F.one_hot(x, self.onehot).float() if self.onehot else x

    def _time_major(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, S[, D]) times w (D, N) (plus b), time-major (S, B, N) and contiguous: a one-hot layer's is a
        row lookup of its table w (its bias already in the table), any other layer's input is the kernel's
        output, time-major underneath (the fused kernel is batch-first only on the outside): no copy is made."""
        if self.onehot:
            return w[x.t()]
        S, B = x.shape[1], x.shape[0]
        x2 = x.transpose(0, 1).reshape(S * B, -1)
        return (x2 @ w if b is None else torch.addmm(b, x2, w)).view(S, B, -1)

    def _recurrent(self, pre: torch.Tensor, out: torch.Tensor, h0: torch.Tensor, w: torch.Tensor,
                   b: torch.Tensor) -> torch.Tensor:
        """pre (S, B, N) += W·h_{t-1} + b in place: step 0 reads h0 (B, P), step t the kernel's h_{t-1} from out
        (B, S, P). Every step's h is multiplied and the last dropped, so out is read as it lies."""
        S, B, P = out.shape[1], out.shape[0], out.shape[2]
        pre[0] += torch.addmm(b, h0, w)
        if S > 1:
            pre[1:] += torch.addmm(b, out.transpose(0, 1).reshape(S * B, P), w).view(S, B, -1)[:-1]
        return pre

    def keep(self, x: torch.Tensor, out: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Σ_t log f_t (LSTM) or log z_t (GRU) over a block (B, H): the gate that keeps each unit's own
        state, recomputed from the block's inputs x and outputs out (B, S, H), and the LSTM's o at the last
        step (B, H, zeros for a GRU). Two (B·S, H) x (H, H) matmuls: a quarter of the gates' work."""
        S = out.shape[1]
        w_x, w_h, b = self.keep_weights
        pre = self._recurrent(self._time_major(x, w_x), out, h0, w_h, b)  # (S, B, H)
        keep = F.logsigmoid(pre).sum(0)
        if self.cell != "lstm":
            return keep, torch.zeros_like(h0)
        w_xo, w_ho, b_o = self.out_weights
        h_last = out[:, -2] if S > 1 else h0
        xo = w_xo[x[:, -1]] if self.onehot else x[:, -1] @ w_xo
        return keep, torch.sigmoid(xo + torch.addmm(b_o, h_last, w_ho))

    def steps(self, streams: int) -> bool:
        """Whether :meth:`record` records this layer (a CPU LSTM without a projection, in a recording of
        ``streams`` streams in all, at least :data:`.lstm_steps.MIN_STREAMS`); else :meth:`run`."""
        return (self.cell == "lstm" and self.w_hr_t is None and self.w_hh_t.device.type == "cpu"
                and streams >= MIN_STREAMS)

    def record(self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, blk: torch.Tensor, kinds: list[str],
               check: bool):
        """A CPU LSTM's block through :func:`.lstm_steps.record_steps`: x ids (B, S) or (B, S, D), h0, c0
        (B, H); ``kinds`` written into ``blk`` (len(kinds), B, S, H) float16. ``check``: run the fused kernel
        on stream 0 too and give the largest |h| difference (else None).

        Returns out h (B, S, H) (a view of a time-major tensor), final (h, c), what :meth:`Carry.add` takes
        (Σ log f and the last o) and the check."""
        b_both = self.b_ih + self.b_hh
        table = self.w_ih_t + b_both if self.onehot else self.w_ih_t
        xp = self._time_major(x, table, b_both)  # (S, B, 4·H)
        hs, hT, cT, log_f, o = record_steps(xp, self.w_hh_t, h0, c0, blk, kinds)
        err = None
        if check:  # the same cell as torch's kernel? stream 0 of this block through the kernel, from the same start
            ref, _ = self.fused(self.input(x[:1]), (h0[None, :1], c0[None, :1]))
            err = (ref[0] - hs[:, 0]).abs().amax()
        return hs.transpose(0, 1), (hT, cT), {"log_keep": log_f, "o_last": o}, err

    def run(self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor | None, gates: bool,
            out: torch.Tensor | None = None):
        """x: ids (B, S) for a one-hot layer, else (B, S, D); h0 (B, P); c0 (B, H) for an LSTM, else None.
        ``out``: the layer's h (B, S, P) when it is known already (a user's module computed it): the fused
        kernel is skipped and only the gates (and c) are recomputed from it.

        Returns out h (B, S, P), final (h, c) (c: the kernel's, else the recomputed one, else None),
        {kind: (B, S, width)} and the max |h - h recomputed from the gates| (a 0-dim tensor, or None when
        ``gates`` is false or the cell has none). The kinds are views of time-major (S, B, width) tensors.
        """
        lstm, cT = self.cell == "lstm", None
        if out is None:
            out, st = self.fused(self.input(x), (h0[None], c0[None]) if lstm else h0[None])
            hT, cT = (st[0][0], st[1][0]) if lstm else (st[0], None)
        else:
            hT = out[:, -1]
        if not gates or self.cell == "rnn":
            return out, (hT, cT), {"h": out}, None
        xp = self._time_major(x, self.x_table if self.onehot else self.w_ih_t, self.b_ih)  # (S, B, G·H)
        out_t = out.transpose(0, 1)  # (S, B, P)
        if lstm:
            rec = _lstm_gates(self._recurrent(xp, out, h0, self.w_hh_t, self.b_hh), c0)  # time-major
            h = torch.tanh(rec["c"]).mul_(rec["o"])
            h = h if self.w_hr_t is None else h @ self.w_hr_t  # (S, B, H) -> (S, B, P)
            cT = rec["c"][-1] if cT is None else cT
            err = h.sub_(out_t).abs_().amax()
            return out, (hT, cT), {"h": out, **{k: v.transpose(0, 1) for k, v in rec.items()}}, err
        h_prev = torch.cat([h0[None], out_t[:-1]])  # (S, B, P): the h each step read (the check needs it too)
        S, B, P = h_prev.shape
        # (S, B, 3·H): apart from the input's, as n needs r·(W_hn·h_{t-1} + b_hn)
        hp = torch.addmm(self.b_hh, h_prev.reshape(S * B, P), self.w_hh_t).view(S, B, -1)
        ir, iz, in_ = xp.chunk(3, -1)
        hr, hz, hn = hp.chunk(3, -1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(in_ + r * hn)
        err = ((1 - z) * n + z * h_prev - out_t).abs().amax()
        return out, (hT, cT), {"h": out, "r": r.transpose(0, 1), "z": z.transpose(0, 1), "n": n.transpose(0, 1)}, err


def _lstm_gates(pre: torch.Tensor, c0: torch.Tensor) -> dict[str, torch.Tensor]:
    """An LSTM's gates and c for a block from its gate pre-activations (S, B, 4·H), time-major and
    overwritten, and start c0 (B, H): {kind: (S, B, H)}, the gates views of ``pre``. c_t = f_t·c_{t-1} +
    i_t·g_t is the one loop over steps: elementwise and cheap, the matmuls are all done."""
    i, f, g, o = pre.chunk(4, -1)  # views of pre, activated in place: pre is the caller's scratch
    i.sigmoid_(), f.sigmoid_(), g.tanh_(), o.sigmoid_()
    c = i * g  # (S, B, H): i·g, then c in place, step by step (out=: no copy per step)
    prev = c0
    for t in range(c.shape[0]):
        prev = torch.addcmul(c[t], f[t], prev, out=c[t])
    return {"c": c, "i": i, "f": f, "g": g, "o": o}


def advance(layers: list[Layer], ids: torch.Tensor, h, c, steps: int, carry: bool = False):
    """Run ids (B, N) through every layer, ``steps`` at a time, recording nothing.

    Returns the end states h, c (L, B, H) (c None unless an LSTM) and, with ``carry``, the diagonal of
    d(end)/d(start) (K, K, L, B, H) from :class:`Carry`."""
    h, c = h.clone(), (c.clone() if c is not None else None)
    track = Carry(layers, h) if carry else None
    for s0 in range(0, ids.shape[1], steps):
        inp = ids[:, s0 : s0 + steps].long()
        for l, layer in enumerate(layers):
            h0 = h[l].clone()  # h[l] is overwritten below
            out, (h[l], cl), _, _ = layer.run(inp, h0, None if c is None else c[l], gates=False)
            if c is not None:
                c[l] = cl
            if track is not None:
                track.add(l, inp, out, h0)
            inp = out
    return (h, c, track.matrix(c)) if carry else (h, c)


class Carry:
    """How much of each unit's start state its state still carries after the blocks seen so far: the
    diagonal of d(state)/d(start) through the unit's own recurrence, for :func:`.starts.sweep`.

    LSTM: c carries Π f_t of its start, and h = o·tanh(c) that times o_T·(1 - tanh² c_T); GRU: h carries
    Π z_t. A vanilla RNN's h mixes every unit, so it carries nothing on the diagonal. Paths through other
    units are left out: the next pass measures what they do."""

    def __init__(self, layers: list[Layer], h: torch.Tensor):
        self.layers, self.cell = layers, layers[0].cell
        self.log_keep = torch.zeros_like(h)  # (L, B, H): Σ log f (LSTM) or log z (GRU) so far
        self.o_last = torch.zeros_like(h)  # (L, B, H): the LSTM's o at the last step

    def add(self, l: int, x: torch.Tensor, out: torch.Tensor, h0: torch.Tensor, gates: dict | None = None) -> None:
        """Layer l's block: its input x, output out (B, S, H) and start h0 (B, H); ``gates``: the block's
        recomputed gates when the recording has them (saves recomputing f or z)."""
        if self.cell == "rnn":
            return
        if gates is not None and "log_keep" in gates:  # the step loop summed log f itself
            self.log_keep[l] += gates["log_keep"]
            self.o_last[l] = gates["o_last"]
        elif gates is not None and "f" in gates:
            self.log_keep[l] += gates["f"].log().sum(1)
            self.o_last[l] = gates["o"][:, -1]
        elif gates is not None and "z" in gates:
            self.log_keep[l] += gates["z"].log().sum(1)
        else:
            keep, o = self.layers[l].keep(x, out, h0)
            self.log_keep[l] += keep
            self.o_last[l] = o

    def matrix(self, c: torch.Tensor | None) -> torch.Tensor:
        """(K, K, L, B, H): entry [k_end, k_start] over the state's kinds (h; h, c for an LSTM); c (L, B, H)
        is the LSTM's current c."""
        K = 1 if c is None else 2
        D = torch.zeros(K, K, *self.log_keep.shape, device=self.log_keep.device)
        if self.cell == "lstm":
            D[1, 1] = self.log_keep.exp()
            D[0, 1] = D[1, 1] * self.o_last * (1 - torch.tanh(c) ** 2)
        elif self.cell == "gru":
            D[0, 0] = self.log_keep.exp()
        return D


def warm_start(layers: list[Layer], ids: torch.Tensor, streams: range, C: int, burn_in: int, h, c, steps: int) -> None:
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
        hb, cb = advance(layers, seq, torch.zeros_like(h), None if c is None else torch.zeros_like(c), steps)
        full = [b - b0 for b in streams if b * C >= burn_in]
        h[:, full] = hb[:, full]
        if c is not None:
            c[:, full] = cb[:, full]
    if short:  # these chunks start so near the beginning that their exact state is cheap: one pass
        hs, cs = torch.zeros_like(h[:, :1]), (None if c is None else torch.zeros_like(c[:, :1]))
        for k in range(1, max(short) + 1):
            hs, cs = advance(layers, ids[None, (k - 1) * C : k * C].long(), hs, cs, steps)
            if k in short:
                h[:, k - b0] = hs[:, 0]
                if c is not None:
                    c[:, k - b0] = cs[:, 0]
