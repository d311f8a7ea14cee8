"""Causal checks inside the model: ablating units (clamped in the recurrence) and gradient flow.

``ablate`` answers "what does the model lose without this cell?": the text is run once as is (torch's
fused kernel) and once with the units forced to a value at every step, inside the recurrence, through
:meth:`CharRNN.step` with ``clamp`` (so the clamp also changes every later state), in parallel streams
(:mod:`rnnviz.analysis.clamped`); where two clamped streams meet, their states are compared and the largest
difference reported (the clamp's effect from before a stream's burn-in is what it misses).

The control is the same clamp on randomly drawn units of the same layers and kinds (``random`` draws, run
through the model side by side). The units' loss change is set against the draws' as an exact permutation
p-value (:func:`.statistics.permutation_p`: the draws that hurt at least as much, plus one, over the draws plus
one; under the hypothesis that the units are no more harmful than units drawn at random) and an effect size
(the change minus the draws' mean, in the draws' standard deviations); the change itself carries a
block-bootstrap interval over text positions (:func:`.statistics.bootstrap_interval`).

One LSTM unit zeroed is one intervention whether its ``c`` or its ``h`` is named: c = 0 makes
h = o·tanh(0) = 0 exactly, and with h at 0 the unit's c reaches nothing but itself (every other unit, and the
read-out, sees the unit only through h). So both are clamped as h and named ``L:c+h:i``. Clamped to anything
else they differ (c at v ≠ 0 leaves h = o·tanh(v) moving with the output gate) and keep their names.

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

from rnnviz.analysis.clamped import Streams, clamp_for, row_clamp, windows
from rnnviz.analysis.features import resolve
from rnnviz.analysis.statistics import bootstrap_interval, permutation_p
from rnnviz.errors import RnnvizError, check_seed
from rnnviz.model.cells import DEFAULT_KINDS, kind_width
from rnnviz.model.charrnn import (
    FLOAT32_MAX,
    CharRNN,
    ModelConfig,
    check_clamp_value,
    eval_mode,
    group_units,
    parse_unit,
)
from rnnviz.threads import torch_threads

MAX_RANDOM = 1000  # random-unit draws of one ablation: each is a pass over the text
DRAW_ROWS = 4096  # rows (draws x streams) stepped side by side: bounds the memory of one batch of draws
MERGED = "c+h"  # the kind an LSTM unit zeroed is named by (its c and h zeroed are one intervention)


@dataclass
class Ablation:
    """The result of :func:`ablate`. Losses are mean cross-entropy in nats/char; ``*_lo``, ``*_hi``: the 95%
    block-bootstrap interval of the change over text positions (NaN under 10 blocks of 1,000 characters)."""

    units: list[str]
    mode: str
    values: dict[str, float]  # the value each unit was clamped to
    chars: int  # predictions scored (len(text) - 1)
    clean_loss: float
    ablated_loss: float
    delta: float  # ablated - clean, over every character
    delta_lo: float
    delta_hi: float
    feature: str | None
    feature_chars: int  # characters the feature predicts
    clean_loss_feature: float
    ablated_loss_feature: float
    delta_feature: float  # ablated - clean on those characters
    delta_feature_lo: float
    delta_feature_hi: float
    random: pd.DataFrame = field(repr=False)  # one row per random draw: draw, units, delta, delta_feature
    streams: int = 1
    burn_in: int = 0  # characters each stream reads (clamped) before the part it scores
    start_error: dict | None = None  # of the streams' clean start states (see .starts.StartError)
    clamp_boundary_residual: float | None = None  # max |state| disagreement where clamped streams meet

    def summary(self) -> dict:
        """A JSON-able dict with, for delta and delta_feature, the random draws' mean, std (ddof 1), how many
        hurt at least as much, the permutation p-value ``p`` / ``p_feature`` and the effect size
        ``effect_size`` / ``effect_size_feature`` ((change - mean) / std); None where undefined."""
        d = {k: v for k, v in self.__dict__.items() if k != "random"}
        for col, suffix in (("delta", ""), ("delta_feature", "_feature")):
            r = self.random[col].dropna().to_numpy() if len(self.random) else np.zeros(0)
            mine = getattr(self, col)
            mean = float(r.mean()) if len(r) else None
            sd = float(r.std(ddof=1)) if len(r) > 1 else None
            d[f"random_{col}_mean"], d[f"random_{col}_std"] = mean, sd
            known = len(r) and not math.isnan(mine)
            d[f"random_{col}_at_least"] = int((r >= mine).sum()) if known else None
            d[f"p{suffix}"] = permutation_p(mine, r) if known else None
            d[f"effect_size{suffix}"] = (mine - mean) / sd if known and sd else None
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


def _random_units(parsed, cfg: ModelConfig, rng: np.random.Generator, times: int = 1) -> list[tuple[int, str, int]]:
    """``times`` as many other units of each layer and kind as ``parsed`` has there (fewer when the layer has
    fewer), all distinct: drawn without replacement."""
    triples = []
    for (l, k), (_, idx) in group_units(parsed).items():
        mine = set(idx)
        pool = np.array([i for i in range(kind_width(cfg.cell, cfg.hidden, k)) if i not in mine])
        if len(pool) < len(mine):
            raise RnnvizError(f"layer {l} kind {k} has too few other units for a random baseline")
        triples += [(l, k, int(i)) for i in rng.choice(pool, size=min(len(mine) * times, len(pool)), replace=False)]
    return triples


def draw_units(parsed, cfg: ModelConfig, rng: np.random.Generator, random: int) -> list[list[tuple[int, str, int]]]:
    """``random`` seeded draws of as many other units of the same layers and kinds as ``parsed``. One unit: the
    draws are distinct units (every other unit of its layer and kind once when ``random`` reaches their number:
    the permutation test is then exhaustive); several: independent draws."""
    if len(parsed) == 1 and random:
        return [[t] for t in _random_units(parsed, cfg, rng, times=random)]
    return [_random_units(parsed, cfg, rng) for _ in range(random)]


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
    random: int = 100,
    seed: int = 0,
    streams: int | None = None,
    burn_in: int = 200,
    progress: Callable[[int, int], None] | None = None,
) -> Ablation:
    """Clamp ``units`` (``"1:c:42"`` or a list) inside the recurrence over ``text`` and measure the loss.

    ``mode``: ``"zero"``, ``"mean"`` (each unit's mean over the text, from the unclamped run) or
    ``"value=V"``; a zeroed LSTM unit is named ``L:c+h:i`` (see the module). ``feature`` (a name,
    ``re:PATTERN`` or callable): also report the loss on the characters it predicts (the closing quote for
    in_quote, ...). ``random``: draws of as many random units of the same layers and kinds (seeded by
    ``seed``) clamped the same way, the control of the p-value and effect size of :meth:`Ablation.summary`.
    ``streams``: parallel pieces (default about one per 1,000 characters, at most 64; 1 = one exact pass);
    each starts from the clean state of one sequential pass and reads ``burn_in`` characters clamped before
    the part it scores.
    """
    fixed = _clamp_value(mode)
    units, parsed = _ablation_units(units, model.config, fixed)
    check_seed(seed)  # before the runs, not after them
    ids_np = model.vocab.encode(text)  # raises on characters outside the vocabulary
    B = _ablation_streams(len(ids_np), streams, random, burn_in)
    drawn = draw_units(parsed, model.config, np.random.default_rng(seed), random)
    win = windows(len(ids_np), B, burn_in)
    per = 1 if model.modern else max(1, DRAW_ROWS // len(win[0]))  # draws side by side (a modern stack: one)
    passes = 2 + (fixed is None) + -(-len(drawn) // per)  # clean, ablated, (means), the draws' batches
    with eval_mode(model):
        if model.modern:
            from rnnviz.analysis.modern_ablation import ModernStreams

            runs = ModernStreams(model, ids_np, win, passes, progress)
        else:
            runs = Streams(model, ids_np, B, burn_in, min(l for l, _, _ in parsed), passes, progress)
        clean = runs.clean()
        means = runs.means({(l, k) for l, k, _ in parsed}) if fixed is None else None
        fname, fmask = _feature_mask(feature, text)
        clamp = clamp_for(parsed, runs.lo, fixed, means, runs.dev)
        ablated = runs.run(clamp)[0].reshape(-1)  # (T-1,): one copy of the windows
        draws = _random_draws(runs, drawn, per, fixed, means, clean, fmask, model.config)
    every = np.ones(len(clean), dtype=bool)
    loss, loss_f = _change(clean, ablated, every, seed), _change(clean, ablated, fmask, seed)
    return Ablation(
        units=units, mode=mode, values=_values(units, parsed, fixed, means), chars=len(ids_np) - 1,
        clean_loss=loss[0], ablated_loss=loss[1], delta=loss[2], delta_lo=loss[3], delta_hi=loss[4],
        feature=fname, feature_chars=int(fmask.sum()),
        clean_loss_feature=loss_f[0], ablated_loss_feature=loss_f[1], delta_feature=loss_f[2],
        delta_feature_lo=loss_f[3], delta_feature_hi=loss_f[4],
        random=draws, streams=runs.B, burn_in=runs.burn_in, start_error=runs.start_error,
        clamp_boundary_residual=runs.residual,
    )


def _ablation_units(units: list[str] | str, cfg: ModelConfig,
                    fixed: float | None) -> tuple[list[str], list[tuple[int, str, int]]]:
    """The units to clamp (each once, in the order given) as canonical names and (layer, kind, index): a zeroed
    LSTM unit, named by its c, its h or ``L:c+h:i``, is clamped as h and named ``L:c+h:i``."""
    units = [units] if isinstance(units, str) else list(units)
    if not units:
        raise RnnvizError("name at least one unit to ablate")
    merged = _merges(cfg, fixed)
    parsed = []
    for u in units:
        if f":{MERGED}:" in u and cfg.cell == "lstm" and not merged:
            raise RnnvizError(f"unit {u!r}: {MERGED} names an LSTM unit zeroed (its c and h are then one "
                              f"intervention); clamped to another value, name its h or its c")
        l, k, i = parse_unit(u.replace(f":{MERGED}:", ":h:") if merged else u, cfg)
        parsed.append((l, "h" if merged and k == "c" else k, i))
    parsed = list(dict.fromkeys(parsed))
    return [unit_name(t, merged) for t in parsed], parsed


def _merges(cfg: ModelConfig, fixed: float | None) -> bool:
    """Whether c and h of one unit are the same intervention: an LSTM's, zeroed."""
    return cfg.cell == "lstm" and fixed == 0.0


def unit_name(unit: tuple[int, str, int], merged: bool) -> str:
    l, k, i = unit
    return f"{l}:{MERGED if merged and k == 'h' else k}:{i}"


def _values(units: list[str], parsed, fixed: float | None, means: dict | None) -> dict[str, float]:
    """{unit name: the value it is clamped to}, as the model holds it (float32)."""
    return {u: float(np.float32(fixed)) if fixed is not None else float(means[(l, k)][i])
            for u, (l, k, i) in zip(units, parsed, strict=True)}


def _masked_mean(x: np.ndarray, mask: np.ndarray) -> float:
    """Mean of ``x`` (T-1,) over the positions in ``mask``; NaN when there are none (no feature, or it
    predicts no character of this text)."""
    return float(x[mask].mean()) if mask.any() else float("nan")


def _change(clean: np.ndarray, ablated: np.ndarray, mask: np.ndarray, seed: int) -> tuple[float, ...]:
    """Over the positions in ``mask`` (T-1,): the mean clean and ablated loss, their difference and its 95%
    block-bootstrap interval (positions resampled in blocks of :data:`.statistics.BOOT_BLOCK`), NaN where
    undefined."""
    if not mask.any():
        return (math.nan,) * 5
    d = ablated - clean
    dm, m = np.where(mask, d, 0.0), mask.astype(np.float64)
    lo, hi = bootstrap_interval(lambda w: (w @ dm) / (w @ m) if w @ m > 0 else math.nan, len(d), seed=seed)
    return _masked_mean(clean, mask), _masked_mean(ablated, mask), _masked_mean(d, mask), lo, hi


def _random_draws(runs: Streams, drawn: list, per: int, fixed: float | None, means: dict | None, clean: np.ndarray,
                  fmask: np.ndarray, cfg: ModelConfig) -> pd.DataFrame:
    """The baseline: the ``drawn`` sets of units clamped the same way, ``per`` at a time side by side; one row per
    draw: draw, units, delta, delta_feature (nats/char)."""
    merged, rows = _merges(cfg, fixed), []
    for a in range(0, len(drawn), per):
        batch = drawn[a : a + per]
        if per == 1:  # one pass, one index clamp (what a modern stack's parallel form takes)
            losses = runs.run(clamp_for(batch[0], runs.lo, fixed, means, runs.dev))[0].reshape(1, -1)
        else:
            clamp = row_clamp(batch, runs.B, cfg.hidden, runs.lo, fixed, means, runs.dev)
            losses = runs.run(clamp, copies=len(batch))[0]  # (K, T-1)
        for r, (triples, d) in enumerate(zip(batch, losses - clean, strict=True)):
            rows.append({"draw": a + r, "units": ",".join(unit_name(t, merged) for t in triples),
                         "delta": float(d.mean()), "delta_feature": _masked_mean(d, fmask)})
    return pd.DataFrame(rows, columns=["draw", "units", "delta", "delta_feature"])


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
