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

    def keep(self, x: torch.Tensor, out: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Σ_t log f_t (LSTM) or log z_t (GRU) over a block (B, H): the gate that keeps each unit's own
        state, recomputed from the block's inputs x and outputs out (B, S, H), and the LSTM's o at the last
        step (B, H, zeros for a GRU). Two (B·S, H) x (H, H) matmuls: a quarter of the gates' work."""
        B, S, H = out.shape
        w_x, w_h, b = self.keep_weights
        pre = w_x[x] if self.onehot else (x.reshape(B * S, -1) @ w_x).view(B, S, H)  # (B, S, H)
        pre[:, 0] += h0 @ w_h + b
        if S > 1:
            pre[:, 1:] += (out[:, :-1].reshape(B * (S - 1), H) @ w_h).view(B, S - 1, H) + b
        keep = F.logsigmoid(pre).sum(1)
        if self.cell != "lstm":
            return keep, torch.zeros_like(h0)
        w_xo, w_ho, b_o = self.out_weights
        h_last = out[:, -2] if S > 1 else h0
        xo = w_xo[x[:, -1]] if self.onehot else x[:, -1] @ w_xo
        return keep, torch.sigmoid(xo + torch.addmm(b_o, h_last, w_ho))

    def run(self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor | None, gates: bool,
            out: torch.Tensor | None = None):
        """x: ids (B, S) for a one-hot layer, else (B, S, D); h0 (B, P); c0 (B, H) for an LSTM, else None.
        ``out``: the layer's h (B, S, P) when it is known already (a user's module computed it): the fused
        kernel is skipped and only the gates (and c) are recomputed from it.

        Returns out h (B, S, P), final (h, c) (c: the kernel's, else the recomputed one, else None),
        {kind: (B, S, width)} and the max |h - h recomputed from the gates| (a 0-dim tensor, or None when
        ``gates`` is false or the cell has none).
        """
        lstm, cT = self.cell == "lstm", None
        if out is None:
            out, st = self.fused(self.input(x), (h0[None], c0[None]) if lstm else h0[None])
            hT, cT = (st[0][0], st[1][0]) if lstm else (st[0], None)
        else:
            hT = out[:, -1]
        if not gates or self.cell == "rnn":
            return out, (hT, cT), {"h": out}, None
        B, S, P = out.shape
        h_prev = torch.cat([h0[:, None], out[:, :-1]], 1)  # (B, S, P): the h each step read
        if self.onehot:
            xp = self.x_table[x]  # one-hot input: the matmul is a row lookup
        else:
            xp = torch.addmm(self.b_ih, x.reshape(B * S, -1), self.w_ih_t).view(B, S, -1)
        hp = torch.addmm(self.b_hh, h_prev.reshape(B * S, P), self.w_hh_t).view(B, S, -1)  # (B, S, G·H)
        if lstm:
            rec = _lstm_gates(xp.add_(hp), c0)
            h = torch.tanh(rec["c"]).mul_(rec["o"])
            h = h if self.w_hr_t is None else h @ self.w_hr_t  # (B, S, H) -> (B, S, P)
            cT = rec["c"][:, -1] if cT is None else cT
            return out, (hT, cT), {"h": out, **rec}, h.sub_(out).abs_().amax()
        ir, iz, in_ = xp.chunk(3, -1)
        hr, hz, hn = hp.chunk(3, -1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(in_ + r * hn)
        err = ((1 - z) * n + z * h_prev - out).abs().amax()
        return out, (hT, cT), {"h": out, "r": r, "z": z, "n": n}, err


def _lstm_gates(pre: torch.Tensor, c0: torch.Tensor) -> dict[str, torch.Tensor]:
    """An LSTM's gates and c for a block from its gate pre-activations (B, S, 4·H) and start c0 (B, H):
    {kind: (B, S, H)}. c_t = f_t·c_{t-1} + i_t·g_t is the one loop over steps: elementwise and cheap, the
    matmuls are all done."""
    i, f, g, o = pre.chunk(4, -1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = i * g  # (B, S, H): i·g, then c in place, step by step (out=: no copy per step)
    prev = c0
    for t in range(c.shape[1]):
        prev = torch.addcmul(c[:, t], f[:, t], prev, out=c[:, t])
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
        if gates is not None and "f" in gates:
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
