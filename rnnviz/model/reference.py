"""Karpathy's min-char-rnn, written afresh in NumPy float64: the ground truth, and part of what rnnviz
teaches (the whole of a char-RNN, training included, in the fewest lines; read it next to models.py).

A vanilla RNN over one-hot characters, as in the lecture:

    h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h)        # (H,)
    y_t = W_hy h_t + b_y                             # (V,) unnormalised log-probabilities
    loss = sum_t -log softmax(y_t)[target_t]         # nats, summed over the sequence (and batch)

with backpropagation through time, gradients clipped elementwise to [-5, 5], Adagrad and sampling.
Every function also takes a batch: ids (B, T) and h (B, H); a 1-D (T,) sequence with h (H,) is
min-char-rnn's own case. ``params_from_torch`` / ``params_to_torch`` move the same weights to and
from a ``CharRNN(cell="rnn", layers=1)``, so the torch model's gradients can be checked against these.

Two differences from torch to keep in mind (both documented where they matter):
- torch's ``nn.RNN`` has two biases, ``bias_ih`` and ``bias_hh``, that always add up; here there is one,
  ``b_h``. Each torch bias gets the gradient of ``b_h``, so under any optimizer their sum moves twice as
  far as ``b_h`` does here.
- min-char-rnn's Adagrad puts eps inside the square root, ``g / sqrt(G + eps)``; ``torch.optim.Adagrad``
  adds it outside, ``g / (sqrt(G) + eps)``. ``adagrad_update(..., eps_inside_sqrt=False)`` is torch's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

from rnnviz.errors import RnnvizError

if TYPE_CHECKING:  # torch is imported only by the two conversions, never by the reference itself
    from rnnviz.model.charrnn import CharRNN

CLIP = 5.0  # min-char-rnn clips every gradient entry to [-CLIP, CLIP] against exploding gradients


@dataclass
class Params:
    """The weights of a one-layer vanilla RNN (or gradients / Adagrad memories of the same shapes)."""

    W_xh: np.ndarray  # (H, V) input -> hidden; column c is character c's input weight
    W_hh: np.ndarray  # (H, H) hidden -> hidden
    b_h: np.ndarray  # (H,)
    W_hy: np.ndarray  # (V, H) hidden -> output logits
    b_y: np.ndarray  # (V,)

    @classmethod
    def init(cls, vocab_size: int, hidden: int, rng: np.random.Generator, scale: float = 0.01) -> Params:
        """min-char-rnn's initialisation: weights N(0, scale²), biases zero, float64."""
        V, H = vocab_size, hidden
        return cls(
            W_xh=rng.standard_normal((H, V)) * scale,
            W_hh=rng.standard_normal((H, H)) * scale,
            b_h=np.zeros(H),
            W_hy=rng.standard_normal((V, H)) * scale,
            b_y=np.zeros(V),
        )

    def items(self) -> list[tuple[str, np.ndarray]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> Params:
        """A new Params with ``fn`` applied to every array (e.g. ``np.copy``, ``np.zeros_like``)."""
        return Params(**{name: fn(a) for name, a in self.items()})

    @property
    def vocab_size(self) -> int:
        return self.W_xh.shape[1]

    @property
    def hidden(self) -> int:
        return self.W_xh.shape[0]


@dataclass
class Cache:
    """What the backward pass needs from the forward pass (time-major)."""

    inputs: np.ndarray  # (B, T) int ids
    targets: np.ndarray  # (B, T) int ids
    hs: np.ndarray  # (T+1, B, H): hs[0] is the initial state, hs[t+1] the state after input t
    ps: np.ndarray  # (T, B, V) softmax probabilities of the next character
    single: bool  # the caller passed one (T,) sequence and an (H,) state: give (H,) back


def forward(
    params: Params, inputs: np.ndarray, targets: np.ndarray, h0: np.ndarray
) -> tuple[float, Cache]:
    """Run the RNN over ``inputs`` (T,) or (B, T) from state ``h0`` (H,) or (B, H).

    Returns the cross-entropy of ``targets`` summed over every position (nats) and the cache.
    """
    inputs, targets = np.atleast_2d(inputs), np.atleast_2d(targets)
    V, H = params.vocab_size, params.hidden
    if inputs.shape != targets.shape or inputs.shape[1] == 0:
        raise RnnvizError(f"inputs {inputs.shape} and targets {targets.shape} must have one non-empty shape")
    for name, ids in (("inputs", inputs), ("targets", targets)):
        if ids.min() < 0 or ids.max() >= V:
            raise RnnvizError(f"{name} hold ids outside the vocabulary 0..{V - 1}")
    B, T = inputs.shape
    hs = np.empty((T + 1, B, H))
    hs[0] = h0  # broadcasts an (H,) state over the batch
    for t in range(T):
        # W_xh @ onehot(x) is column x of W_xh: gather instead of multiplying by a one-hot vector.
        hs[t + 1] = np.tanh(params.W_xh[:, inputs[:, t]].T + hs[t] @ params.W_hh.T + params.b_h)
    logits = hs[1:] @ params.W_hy.T + params.b_y  # (T, B, V)
    logits -= logits.max(axis=-1, keepdims=True)  # softmax is shift-invariant; this avoids overflow
    logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    loss = -logp[np.arange(T)[:, None], np.arange(B), targets.T].sum()
    single = np.ndim(h0) == 1 and B == 1
    return float(loss), Cache(inputs, targets, hs, np.exp(logp), single)


def backward(params: Params, cache: Cache) -> tuple[Params, np.ndarray]:
    """Backpropagation through time: gradients of the summed loss (unclipped) and the last state.

    The last state, (H,) or (B, H) like ``h0``, is what min-char-rnn carries into the next sequence.
    """
    hs, inputs = cache.hs, cache.inputs
    B, T = inputs.shape
    dy = cache.ps.copy()  # d loss / d logits = softmax - onehot(target)
    dy[np.arange(T)[:, None], np.arange(B), cache.targets.T] -= 1.0
    dh_out = dy @ params.W_hy  # (T, B, H): what each h_t gets from its own output
    draw = np.empty_like(dh_out)  # gradient at the tanh's input, per step
    dh_next = np.zeros_like(hs[0])  # what h_t gets from h_{t+1}
    for t in reversed(range(T)):
        draw[t] = (1.0 - hs[t + 1] ** 2) * (dh_out[t] + dh_next)
        dh_next = draw[t] @ params.W_hh
    dW_xh_T = np.zeros((params.vocab_size, params.hidden))
    np.add.at(dW_xh_T, inputs.T, draw)  # each step adds to its input character's column only
    grads = Params(
        W_xh=dW_xh_T.T.copy(),
        W_hh=np.einsum("tbh,tbk->hk", draw, hs[:-1]),
        b_h=draw.sum(axis=(0, 1)),
        W_hy=np.einsum("tbv,tbh->vh", dy, hs[1:]),
        b_y=dy.sum(axis=(0, 1)),
    )
    return grads, hs[-1, 0].copy() if cache.single else hs[-1].copy()


def clip(grads: Params, limit: float = CLIP) -> Params:
    """Every gradient entry clipped to [-limit, limit] (a new Params; ``grads`` is left as it is)."""
    return grads.map(lambda g: np.clip(g, -limit, limit))


def loss_fun(
    params: Params, inputs: np.ndarray, targets: np.ndarray, hprev: np.ndarray
) -> tuple[float, Params, np.ndarray]:
    """min-char-rnn's ``lossFun``: summed loss (nats), clipped gradients, last hidden state."""
    loss, cache = forward(params, inputs, targets, hprev)
    grads, h = backward(params, cache)
    return loss, clip(grads), h


def adagrad_update(
    params: Params,
    grads: Params,
    memory: Params,
    lr: float = 0.1,
    eps: float = 1e-8,
    eps_inside_sqrt: bool = True,
) -> None:
    """One Adagrad step in place: ``memory += g²; param -= lr · g / sqrt(memory + eps)``.

    That is min-char-rnn's form. ``eps_inside_sqrt=False`` gives torch.optim.Adagrad's
    ``g / (sqrt(memory) + eps)`` instead (with its defaults: no lr decay, zero initial memory).
    The two differ noticeably only where |g| is near sqrt(eps) = 1e-4 or smaller.
    """
    for (_, p), (_, g), (_, m) in zip(params.items(), grads.items(), memory.items(), strict=True):
        m += g * g
        p -= lr * g / (np.sqrt(m + eps) if eps_inside_sqrt else np.sqrt(m) + eps)


def sample(
    params: Params, h: np.ndarray, seed_ix: int, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Sample ``n`` character ids (int64, (n,)), starting from state ``h`` (H,) after feeding ``seed_ix``.

    Like min-char-rnn, ``seed_ix`` is fed first and is not part of the result.
    """
    V = params.vocab_size
    if not 0 <= seed_ix < V:
        raise RnnvizError(f"seed id {seed_ix} is outside the vocabulary 0..{V - 1}")
    out = np.empty(n, dtype=np.int64)
    ix = seed_ix
    for t in range(n):
        h = np.tanh(params.W_xh[:, ix] + params.W_hh @ h + params.b_h)
        y = params.W_hy @ h + params.b_y
        p = np.exp(y - y.max())
        ix = out[t] = rng.choice(V, p=p / p.sum())
    return out


def numerical_gradient_check(
    params: Params,
    inputs: np.ndarray,
    targets: np.ndarray,
    h0: np.ndarray,
    rng: np.random.Generator,
    checks: int = 10,
    delta: float = 1e-5,
) -> dict[str, float]:
    """Compare ``backward`` with central differences on ``checks`` random entries of every parameter.

    Returns the largest relative error |a - n| / (|a| + |n|) per parameter (0 where both are exactly 0,
    e.g. the column of a character that does not occur). ``params`` is not changed.
    """
    _, cache = forward(params, inputs, targets, h0)
    grads, _ = backward(params, cache)
    params = params.map(np.copy)  # perturbed in place below
    worst = {}
    for (name, p), (_, g) in zip(params.items(), grads.items(), strict=True):
        errs = []
        for i in rng.integers(p.size, size=checks):
            old = p.flat[i]
            p.flat[i] = old + delta
            plus, _ = forward(params, inputs, targets, h0)
            p.flat[i] = old - delta
            minus, _ = forward(params, inputs, targets, h0)
            p.flat[i] = old
            num, ana = (plus - minus) / (2 * delta), g.flat[i]
            denom = abs(ana) + abs(num)
            errs.append(abs(ana - num) / denom if denom > 0 else 0.0)
        worst[name] = max(errs)
    return worst


def train(
    data: np.ndarray,
    vocab_size: int,
    hidden: int = 100,
    seq_len: int = 25,
    lr: float = 0.1,
    steps: int = 1000,
    rng: np.random.Generator | None = None,
) -> tuple[Params, np.ndarray]:
    """min-char-rnn's main loop over ``data`` (ids, (N,)): returns the params and per-step losses.

    Consecutive ``seq_len`` windows, the hidden state carried from one to the next and reset at each
    pass over the data, clipped gradients, Adagrad. Losses are nats per character of each window.
    """
    data = np.asarray(data)
    if len(data) < seq_len + 2:
        raise RnnvizError(f"data of {len(data)} ids is too short for seq_len {seq_len}")
    rng = rng if rng is not None else np.random.default_rng(0)
    params = Params.init(vocab_size, hidden, rng)
    memory = params.map(np.zeros_like)
    losses = np.empty(steps)
    p, h = 0, np.zeros(hidden)
    for n in range(steps):
        if p + seq_len + 1 >= len(data):
            p, h = 0, np.zeros(hidden)  # start a new pass from a blank memory, as min-char-rnn does
        loss, grads, h = loss_fun(params, data[p : p + seq_len], data[p + 1 : p + seq_len + 1], h)
        adagrad_update(params, grads, memory, lr)
        losses[n] = loss / seq_len
        p += seq_len
    return params, losses


def _check_rnn(model: CharRNN) -> None:
    c = model.config
    if c.cell != "rnn" or c.layers != 1:
        raise RnnvizError(f"the reference is a 1-layer vanilla RNN; the model is {c.layers}-layer {c.cell}")


def params_from_torch(model: CharRNN) -> Params:
    """The weights of a ``CharRNN(cell="rnn", layers=1)`` as float64 Params (torch's two biases summed)."""
    _check_rnn(model)
    w_ih, w_hh, b_ih, b_hh = model.layer_weights(0)

    def np64(t):
        return t.detach().cpu().double().numpy().copy()

    return Params(
        W_xh=np64(w_ih), W_hh=np64(w_hh), b_h=np64(b_ih) + np64(b_hh),
        W_hy=np64(model.head.weight), b_y=np64(model.head.bias),
    )


def params_to_torch(params: Params, model: CharRNN) -> CharRNN:
    """Copy Params into a ``CharRNN(cell="rnn", layers=1)`` (in its dtype/device); returns the model.

    All of ``b_h`` goes into ``bias_ih``; ``bias_hh`` is set to zero, so their sum is ``b_h``.
    """
    import torch

    _check_rnn(model)
    w_ih, w_hh, b_ih, b_hh = model.layer_weights(0)
    dest = {"W_xh": w_ih, "W_hh": w_hh, "b_h": b_ih, "W_hy": model.head.weight, "b_y": model.head.bias}
    for name, a in params.items():
        if tuple(dest[name].shape) != a.shape:
            raise RnnvizError(f"{name} has shape {a.shape}, the model needs {tuple(dest[name].shape)}")
    with torch.no_grad():
        for name, a in params.items():
            dest[name].copy_(torch.from_numpy(a))
        b_hh.zero_()
    return model
