"""Causal checks inside the model: ablating units (clamped in the recurrence) and gradient flow.

``ablate`` answers "what does the model lose without this cell?": the text is run once as is (torch's
fused kernel) and once with the units forced to a value at every step, inside the recurrence, through
:meth:`CharRNN.step` with ``clamp`` (so the clamp also changes every later state). The layers below
the lowest clamped one are not affected by the clamp, so they run in the fused kernel too; only the
clamped layer and those above step character by character. The text is cut into parallel streams, each
started from the clean state one sequential pass has ``burn_in`` characters before its part (corrected
as the recorder corrects its streams: :mod:`rnnviz.recording.starts`) and reading those characters, clamped too, before
the part it scores; where two clamped streams meet, their states are compared and the largest
difference reported (the clamp's effect from before a stream's burn-in is what it misses). The
same number of randomly drawn units of the same layer and kind, clamped the same way, is the baseline.

``gradient_flow`` measures how far back the loss reaches: the norm of d loss_t / d h_(t-k) against the
lag k, per layer (the vanilla RNN's gradient vanishes quickly, the LSTM's additive cell keeps it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from rnnviz.analysis.features import resolve
from rnnviz.errors import RnnvizError, check_seed
from rnnviz.model.cells import DEFAULT_KINDS, kind_width
from rnnviz.model.charrnn import (
    FLOAT32_MAX,
    WEIGHT_NAMES,
    CharRNN,
    ModelConfig,
    check_clamp_value,
    eval_mode,
    group_units,
    parse_unit,
)
from rnnviz.threads import torch_threads


class _Upper(CharRNN):
    """Layers ``lo..L-1`` of a model as a CharRNN whose input is layer lo-1's h (not a one-hot), so that
    :meth:`CharRNN.step` runs them with its clamp. Shares the model's weights and read-out."""

    def __init__(self, model: CharRNN, lo: int):
        c = model.config
        super().__init__(ModelConfig(vocab_size=c.hidden, cell=c.cell, layers=c.layers - lo, hidden=c.hidden))
        for j in range(c.layers - lo):
            for name, w in zip(WEIGHT_NAMES, model.layer_weights(lo + j), strict=True):
                setattr(self.rnn, f"{name}_l{j}", w)
        self.head = model.head
        self.to(model.device).eval()

    def onehot(self, x: torch.Tensor) -> torch.Tensor:
        return x  # already the lower layer's h: (B, H)


class _Lower:
    """Layers 0..lo-1 in torch's fused single-layer kernels (a clamp at layer lo cannot reach them)."""

    def __init__(self, model: CharRNN, lo: int):
        self.model, self.layers = model, [model.fused_layer(l) for l in range(lo)]

    def blocks(self, x: torch.Tensor, start, steps: int = 1024):
        """Yield (a, b, input of layer lo for steps a:b): (B, b-a) ids when lo = 0, else (B, b-a, H).
        ``start``: the model's state (L, B, H) tensors (h, or (h, c)) the streams start from."""
        states = [_layer_state(start, l) for l in range(len(self.layers))]
        for a in range(0, x.shape[1], steps):
            b = min(a + steps, x.shape[1])
            if not self.layers:
                yield a, b, x[:, a:b]
                continue
            inp = self.model.onehot(x[:, a:b])
            for l, layer in enumerate(self.layers):
                inp, states[l] = layer(inp, states[l])
            yield a, b, inp


MAX_RANDOM = 1000  # random-unit draws of one ablation: each is a pass over the text


def _windows(T: int, streams: int, burn_in: int):
    """Stream b predicts positions [s_b, e_b), s_b = b·C, and starts reading at w_b = s_b - min(burn_in, C)
    (0 for stream 0), from the state one sequential pass has there.

    Returns (starts w (B,), first counted position s (B,), end e (B,), steps S, chunk C, burn-in read)."""
    n = T - 1  # positions that have a next character
    C = math.ceil(n / max(1, min(streams, n)))
    B = math.ceil(n / C)
    s = np.arange(B) * C
    e = np.minimum(s + C, n)
    before = min(burn_in, C)
    w = np.maximum(s - before, 0)
    return w, s, e, int((e - w).max()), C, before


def _layer_state(state, l: int):
    """Layer l's part of a model state (h, or (h, c), each (L, B, H)) as a fused single layer takes it."""
    parts = tuple(t[l : l + 1].contiguous() for t in (state if isinstance(state, tuple) else (state,)))
    return parts if isinstance(state, tuple) else parts[0]


def _layers_from(state, lo: int):
    """Layers lo.. of a model state, as :class:`_Upper` takes it."""
    return tuple(t[lo:].clone() for t in state) if isinstance(state, tuple) else state[lo:].clone()


def _nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), targets, reduction="none")


@dataclass
class Ablation:
    """The result of :func:`ablate`. Losses are mean cross-entropy in nats/char."""

    units: list[str]
    mode: str
    values: dict[str, float]  # the value each unit was clamped to
    chars: int  # predictions scored (len(text) - 1)
    clean_loss: float
    ablated_loss: float
    delta: float  # ablated - clean, over every character
    feature: str | None
    feature_chars: int  # characters the feature predicts
    clean_loss_feature: float
    ablated_loss_feature: float
    delta_feature: float  # ablated - clean on those characters
    random: pd.DataFrame = field(repr=False)  # one row per random draw: draw, units, delta, delta_feature
    streams: int = 1
    burn_in: int = 0  # characters each stream reads (clamped) before the part it scores
    start_error: dict | None = None  # of the streams' clean start states (see .starts.StartError)
    clamp_boundary_residual: float | None = None  # max |state| disagreement where clamped streams meet

    def summary(self) -> dict:
        """A JSON-able dict, with the random baseline's mean, std and the draws that hurt as much."""
        d = {k: v for k, v in self.__dict__.items() if k != "random"}
        for col in ("delta", "delta_feature"):
            r = self.random[col].dropna() if len(self.random) else pd.Series(dtype=float)
            d[f"random_{col}_mean"] = float(r.mean()) if len(r) else None
            d[f"random_{col}_std"] = float(r.std(ddof=1)) if len(r) > 1 else None
            mine = getattr(self, col)
            d[f"random_{col}_at_least"] = int((r >= mine).sum()) if len(r) and not math.isnan(mine) else None
        d["random_draws"] = len(self.random)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def _feature_mask(feature, text: str) -> tuple[str | None, np.ndarray]:
    """The feature's name and the (T-1,) characters it predicts (all False without a feature)."""
    if feature is None:
        return None, np.zeros(len(text) - 1, dtype=bool)
    f, fv = resolve(feature, text)
    return f.name, f.targets(text, fv)[: len(text) - 1]


def _clamp_value(mode: str) -> float | None:
    if mode == "zero":
        return 0.0
    if mode == "mean":
        return None
    if mode.startswith("value="):
        try:
            return check_clamp_value(mode[6:], "mode value=V")
        except RnnvizError:
            pass
    raise RnnvizError(f"mode must be zero, mean or value=V (a finite number within ±{FLOAT32_MAX:.3g}), "
                      f"got {mode!r}")


class _Streams:
    """The text as B parallel windows of S steps (see :func:`_windows`), and the model run over them:
    clean (torch's fused kernel) or with a clamp (layers ``lo..`` step by step). Every window starts from
    the clean state one sequential pass has there (:func:`.recorder.stream_starts`); a clamped window then
    reads its burn-in clamped. Counts progress over ``runs`` passes."""

    def __init__(self, model: CharRNN, ids: np.ndarray, streams: int, burn_in: int, lo: int, runs: int,
                 progress: Callable[[int, int], None] | None):
        from rnnviz.recording.recorder import stream_starts

        T = len(ids)
        w, s, e, S, C, before = _windows(T, streams, burn_in)
        self.model, self.dev, self.T, self.B, self.S, self.lo = model, model.device, T, len(w), S, lo
        self.burn_in = before
        # Windows (B, S) of inputs and next-character targets; positions past a stream's end are masked.
        pos = w[:, None] + np.arange(S)[None, :]  # (B, S) text position read at each step
        self.valid = (pos >= s[:, None]) & (pos < e[:, None])
        self.x = torch.as_tensor(np.where(pos < T, ids[np.minimum(pos, T - 1)], 0), device=self.dev)
        self.y = torch.as_tensor(np.where(pos + 1 < T, ids[np.minimum(pos + 1, T - 1)], 0), device=self.dev)
        self.valid_t = torch.as_tensor(self.valid, device=self.dev)
        self.flat_pos = pos[self.valid]  # text position of each counted prediction, in mask order
        h, c, err = stream_starts(model, torch.as_tensor(ids[: T - 1], device=self.dev), C, before=before)
        self.start = h if c is None else (h, c)
        self.start_error = None if err is None else err.to_dict()
        # Where window b+1 has read up to s_(b+1) - 1 (the last step of its burn-in), window b has too (its
        # last counted step): their states there should agree.
        self.meet = (e[:-1] - 1 - w[:-1], s[1:] - 1 - w[1:]) if before and self.B > 1 else None
        self.upper = model if lo == 0 else _Upper(model, lo)
        self.lower = _Lower(model, lo)  # time blocks, so memory stays bounded on a long text
        self.done, self.total, self.progress = 0, runs * S, progress
        self.residual: float | None = None  # the largest clamped-run disagreement seen so far

    def _advance(self, steps: int) -> None:
        self.done += steps
        if self.progress:
            self.progress(self.done, self.total)

    def _per_position(self, nll: torch.Tensor) -> np.ndarray:
        """(B, S) losses -> (T-1,) per text position, in nats."""
        out = np.full(self.T - 1, np.nan)
        out[self.flat_pos] = nll[self.valid_t].cpu().double().numpy()
        return out

    def clean(self) -> np.ndarray:
        """Per-position loss of the unclamped model, through the fused kernel."""
        B, S, V = self.B, self.S, self.model.config.vocab_size
        nll, state = torch.empty(B, S, device=self.dev), self.start
        for a in range(0, S, 1024):
            logits, state = self.model(self.x[:, a : a + 1024], state)
            nll[:, a : a + 1024] = _nll(logits.reshape(-1, V), self.y[:, a : a + 1024].reshape(-1)).view(B, -1)
            self._advance(min(1024, S - a))
        return self._per_position(nll)

    def run(self, clamp: dict | None, collect: set | None = None) -> tuple[np.ndarray, dict]:
        """Step layers lo.. over the windows; returns per-position nll and, if asked, unit sums (H,)
        for each (layer, kind) in ``collect`` over the counted positions."""
        state = _layers_from(self.start, self.lo)
        nll = torch.empty(self.B, self.S, device=self.dev)
        hidden = self.model.config.hidden
        sums = {key: torch.zeros(hidden, dtype=torch.float64, device=self.dev) for key in collect or ()}
        meet = _Meeting(self.meet) if clamp and self.meet is not None else None
        for a, b, below in self.lower.blocks(self.x, self.start):
            with torch_threads(1):
                for j in range(b - a):
                    out = self.upper.step(below[:, j], state, clamp=clamp, internals=bool(collect))
                    logits, state = out[0], out[1]
                    nll[:, a + j] = _nll(logits, self.y[:, a + j])
                    for l, kind in collect or ():
                        sums[(l, kind)] += out[2][(l - self.lo, kind)][self.valid_t[:, a + j]].double().sum(0)
                    if meet is not None:
                        meet.see(a + j, state)
            self._advance(b - a)
        if meet is not None:
            r = meet.residual()
            self.residual = r if self.residual is None else max(self.residual, r)
        return self._per_position(nll), sums

    def means(self, keys: set) -> dict:
        """Each unit's mean over the counted positions of the clean text: {(layer, kind): (H,)}."""
        _, sums = self.run(None, keys)
        return {key: (v / int(self.valid.sum())).float() for key, v in sums.items()}


class _Meeting:
    """The states of clamped windows b and b+1 where they have both read up to s_(b+1) - 1."""

    def __init__(self, steps: tuple[np.ndarray, np.ndarray]):
        self.end_step, self.pre_step = steps  # (B-1,) each: the step of window b, and of window b+1
        self.end: dict[int, torch.Tensor] = {}
        self.pre: dict[int, torch.Tensor] = {}

    def see(self, j: int, state) -> None:
        """After step j: keep the layers' state (h, and c) of the windows that meet here."""
        parts = state if isinstance(state, tuple) else (state,)
        for b in np.flatnonzero(self.end_step == j):
            self.end[int(b)] = torch.stack([t[:, b] for t in parts])
        for b in np.flatnonzero(self.pre_step == j):
            self.pre[int(b)] = torch.stack([t[:, b + 1] for t in parts])

    def residual(self) -> float:
        return max(float((self.end[b] - self.pre[b]).abs().max()) for b in self.end)


def _clamp_for(triples, lo: int, fixed: float | None, means: dict | None, dev) -> tuple[dict, dict]:
    """Units (layer, kind, index) -> the ``clamp`` of :meth:`CharRNN.step` on layers lo.. (clamped to
    ``fixed``, or to their means) and {unit name: value}."""
    clamp, values = {}, {}
    for (l, k), (_, idx) in group_units(triples).items():
        val = torch.full((len(idx),), fixed, device=dev) if fixed is not None else means[(l, k)][idx]
        clamp[(l - lo, k)] = (torch.tensor(idx, device=dev), val)
        values.update({f"{l}:{k}:{i}": float(v) for i, v in zip(idx, val.tolist(), strict=True)})
    return clamp, values


def _random_units(parsed, cfg: ModelConfig, rng: np.random.Generator) -> list[tuple[int, str, int]]:
    """As many other units of each layer and kind as ``parsed`` has there, drawn without replacement."""
    triples = []
    for (l, k), (_, idx) in group_units(parsed).items():
        mine = set(idx)
        pool = np.array([i for i in range(kind_width(cfg.cell, cfg.hidden, k)) if i not in mine])
        if len(pool) < len(mine):
            raise RnnvizError(f"layer {l} kind {k} has too few other units for a random baseline")
        triples += [(l, k, int(i)) for i in rng.choice(pool, size=len(mine), replace=False)]
    return triples


def _ablation_streams(T: int, streams: int | None, random: int, burn_in: int) -> int:
    """The checked number of streams (default about one per 1,000 characters, at most 64)."""
    if T < 2:
        raise RnnvizError("the text needs at least 2 characters")
    if random < 0 or burn_in < 0:
        raise RnnvizError("random and burn_in must be >= 0")
    if random > MAX_RANDOM:
        raise RnnvizError(f"random draws are at most {MAX_RANDOM:,} (each is a whole pass over the text), "
                          f"got {random:,}")
    B = streams if streams is not None else int(np.clip(T // 1000, 1, 64))
    if B < 1:
        raise RnnvizError(f"streams must be >= 1, got {B}")
    return B


@torch.no_grad()
def ablate(
    model: CharRNN,
    text: str,
    units: list[str] | str,
    mode: str = "zero",
    feature=None,
    random: int = 10,
    seed: int = 0,
    streams: int | None = None,
    burn_in: int = 200,
    progress: Callable[[int, int], None] | None = None,
) -> Ablation:
    """Clamp ``units`` (``"1:c:42"`` or a list) inside the recurrence over ``text`` and measure the loss.

    ``mode``: ``"zero"``, ``"mean"`` (each unit's mean over the text, from the unclamped run) or
    ``"value=V"``. ``feature`` (a name, ``re:PATTERN`` or callable): also report the loss on the
    characters it predicts (the closing quote for in_quote, ...). ``random``: draws of as many random
    units of the same layers and kinds (seeded by ``seed``) clamped the same way. ``streams``: parallel
    pieces (default about one per 1,000 characters, at most 64; 1 = one exact pass); each starts from the
    clean state of one sequential pass and reads ``burn_in`` characters clamped before the part it scores.
    """
    units, parsed = _ablation_units(units, model.config)
    fixed = _clamp_value(mode)
    check_seed(seed)  # before the runs, not after them
    ids_np = model.vocab.encode(text)  # raises on characters outside the vocabulary
    B = _ablation_streams(len(ids_np), streams, random, burn_in)
    with eval_mode(model):
        n_runs = 2 + random + (fixed is None)  # clean, ablated, random draws, (means)
        if model.modern:
            from rnnviz.analysis.modern_ablation import ModernStreams

            runs = ModernStreams(model, ids_np, _windows(len(ids_np), B, burn_in), burn_in, n_runs, progress)
        else:
            runs = _Streams(model, ids_np, B, burn_in, min(l for l, _, _ in parsed), n_runs, progress)
        clean = runs.clean()
        means = runs.means({(l, k) for l, k, _ in parsed}) if fixed is None else None
        fname, fmask = _feature_mask(feature, text)
        clamp, values = _clamp_for(parsed, runs.lo, fixed, means, runs.dev)
        ablated = runs.run(clamp)[0]
        draws = _random_draws(runs, parsed, fixed, means, clean, fmask, random, seed)
    d = ablated - clean
    return Ablation(
        units=units, mode=mode, values={u: values[u] for u in units}, chars=len(ids_np) - 1,
        clean_loss=float(clean.mean()), ablated_loss=float(ablated.mean()), delta=float(d.mean()),
        feature=fname, feature_chars=int(fmask.sum()),
        clean_loss_feature=_masked_mean(clean, fmask), ablated_loss_feature=_masked_mean(ablated, fmask),
        delta_feature=_masked_mean(d, fmask),
        random=draws, streams=runs.B, burn_in=runs.burn_in, start_error=runs.start_error,
        clamp_boundary_residual=runs.residual,
    )


def _ablation_units(units: list[str] | str, cfg: ModelConfig) -> tuple[list[str], list[tuple[int, str, int]]]:
    """The units to clamp (each once, in the order given) as canonical names and (layer, kind, index)."""
    units = [units] if isinstance(units, str) else list(dict.fromkeys(units))
    if not units:
        raise RnnvizError("name at least one unit to ablate")
    parsed = [parse_unit(u, cfg) for u in units]
    return [f"{l}:{k}:{i}" for l, k, i in parsed], parsed


def _masked_mean(x: np.ndarray, mask: np.ndarray) -> float:
    """Mean of ``x`` (T-1,) over the positions in ``mask``; NaN when there are none (no feature, or it
    predicts no character of this text)."""
    return float(x[mask].mean()) if mask.any() else float("nan")


def _random_draws(runs: _Streams, parsed, fixed: float | None, means: dict | None, clean: np.ndarray,
                  fmask: np.ndarray, random: int, seed: int) -> pd.DataFrame:
    """The baseline: ``random`` seeded draws of as many other units of the same layers and kinds as
    ``parsed``, clamped the same way; one row per draw: draw, units, delta, delta_feature (nats/char)."""
    rng, draws = np.random.default_rng(seed), []
    for r in range(random):
        triples = _random_units(parsed, runs.model.config, rng)
        d = runs.run(_clamp_for(triples, runs.lo, fixed, means, runs.dev)[0])[0] - clean
        draws.append({"draw": r, "units": ",".join(f"{l}:{k}:{i}" for l, k, i in triples),
                      "delta": float(d.mean()), "delta_feature": _masked_mean(d, fmask)})
    return pd.DataFrame(draws, columns=["draw", "units", "delta", "delta_feature"])


def gradient_flow(
    model: CharRNN,
    text: str,
    max_lag: int = 200,
    positions: int = 32,
    burn_in: int = 100,
    kinds: tuple[str, ...] = ("h",),
    seed: int = 0,
) -> pd.DataFrame:
    """Mean norm of d loss_t / d state_(t-k) against the lag k = 1..max_lag, per layer (and kind).

    For ``positions`` positions t drawn from the text (seeded), the model reads ``burn_in`` characters
    (no gradient) and then text[t-max_lag .. t] step by step; loss_t is the cross-entropy of text[t+1].
    The gradient is the total derivative through every path (the recurrence and the layers above).
    ``kinds``: "h", and "c" for an LSTM. Returns a DataFrame with columns
    ``layer, kind, lag, grad`` (mean L2 norm over positions), ``grad_median``, ``positions``.
    """
    cfg = model.config
    bad = [k for k in kinds if k not in DEFAULT_KINDS.get(cfg.cell, ("h",))]
    if bad or not kinds:
        raise RnnvizError(f"gradient flow is measured on h (and c for an LSTM or sLSTM), not {bad or kinds}")
    if max_lag < 1 or positions < 1 or burn_in < 0:
        raise RnnvizError("max_lag and positions must be >= 1 and burn_in >= 0")
    ids_np = model.vocab.encode(text)
    T = len(ids_np)
    if T < max_lag + 2:
        raise RnnvizError(f"the text has {T} characters; gradient flow over {max_lag} lags needs {max_lag + 2}")
    first = max_lag + min(burn_in, T - max_lag - 2)  # earliest t with a full history and some warm-up
    cand = np.arange(first, T - 1)
    rng = np.random.default_rng(check_seed(seed))
    ts = np.sort(rng.choice(cand, size=min(positions, len(cand)), replace=False))
    B, dev = len(ts), model.device
    with eval_mode(model):
        ids = torch.as_tensor(ids_np, device=dev)
        start = ts - max_lag  # first step with gradient
        warm = int(min(burn_in, start.min()))
        state = model.init_state(B)
        if warm:
            with torch.no_grad():
                idx = torch.as_tensor(start[:, None] - warm + np.arange(warm)[None, :], device=dev)
                _, state = model(ids[idx], state)
        state = tuple(s.detach().requires_grad_(True) for s in state) if isinstance(state, tuple) else \
            state.detach().requires_grad_(True)
        steps = torch.as_tensor(start[:, None] + np.arange(max_lag + 1)[None, :], device=dev)  # (B, max_lag+1)
        keep: list[torch.Tensor] = []  # per step, per (layer, kind)
        keys = [(l, k) for l in range(cfg.layers) for k in kinds]
        with torch.enable_grad(), torch_threads(1):
            for j in range(max_lag + 1):
                logits, state, rec = model.step(ids[steps[:, j]], state, internals=True)
                keep += [rec[key] for key in keys]
            loss = F.cross_entropy(logits.float(), ids[torch.as_tensor(ts + 1, device=dev)], reduction="sum")
            grads = torch.autograd.grad(loss, keep, allow_unused=True)
    rows = []
    for j in range(max_lag):  # step j is lag max_lag - j; the last step (lag 0) is left out
        for q, (l, k) in enumerate(keys):
            g = grads[j * len(keys) + q]
            norms = g.norm(dim=1).double().cpu().numpy() if g is not None else np.zeros(B)
            rows.append((l, k, max_lag - j, float(norms.mean()), float(np.median(norms)), B))
    df = pd.DataFrame(rows, columns=["layer", "kind", "lag", "grad", "grad_median", "positions"])
    return df.sort_values(["layer", "kind", "lag"], ignore_index=True)
