"""Generating text: temperature, top-k, priming text, a seed, and cells clamped to a value."""

from __future__ import annotations

import math

import torch

from rnnviz.errors import RnnvizError
from rnnviz.model.charrnn import CharRNN, clamp_spec, eval_mode


@torch.no_grad()
def sample(
    model: CharRNN,
    length: int = 500,
    prime: str = "",
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    clamp: dict[str, float] | None = None,
) -> str:
    """Generate ``length`` characters after ``prime`` (the prime is not included in the result).

    ``temperature`` divides the logits (< 1 sharper, > 1 flatter); ``top_k`` keeps only the k most likely
    characters; ``seed`` makes the output reproducible on a given device. ``clamp`` = {"1:c:42": 1.0}
    forces those units to the values at every step, inside the recurrence (via :meth:`CharRNN.step`).
    Without a prime the first character is drawn from the model's prediction after a newline (or the
    first character of the vocabulary if the vocabulary has no newline).
    """
    if length < 0:
        raise RnnvizError("length must be >= 0")
    if not (isinstance(temperature, (int, float)) and 0 < temperature < math.inf):  # NaN fails too
        raise RnnvizError(f"temperature must be > 0 and finite, got {temperature}")
    if seed is not None and not (isinstance(seed, int) and 0 <= seed < 2**64):  # torch's seed is 64 bits
        raise RnnvizError(f"seed must be an integer from 0 to 2**64-1, got {str(seed)[:30]}")
    vocab = model.vocab
    if top_k is not None and not 1 <= top_k <= len(vocab):
        raise RnnvizError(f"top-k must be from 1 to {len(vocab)}")
    prime = prime or ("\n" if "\n" in vocab else vocab.chars[0])
    ids = torch.as_tensor(vocab.encode(prime), device=model.device)  # raises on unknown chars
    spec = clamp_spec(clamp, model.config, model.device) if clamp else None
    gen = torch.Generator(device=model.device)
    gen.manual_seed(seed if seed is not None else torch.seed())

    def advance(x_t, state):
        if spec:
            return model.step(x_t, state, clamp=spec)
        logits, state = model(x_t[:, None], state)  # fused kernel, one step
        return logits[:, -1], state

    with eval_mode(model):
        state = model.init_state(1)
        if spec:  # the clamp must act while the prime is read too
            for t in range(len(ids)):
                logits, state = advance(ids[t : t + 1], state)
        else:
            logits, state = model(ids[None], state)
            logits = logits[:, -1]
        out = []
        for _ in range(length):
            nxt = _draw(logits[0].float(), temperature, top_k, gen)  # (1,)
            out.append(int(nxt))
            logits, state = advance(nxt, state)
    return vocab.decode(out)


def _draw(logits: torch.Tensor, temperature: float, top_k: int | None, gen: torch.Generator) -> torch.Tensor:
    """One character id (shape (1,)) drawn from logits (V,) at ``temperature``, among the ``top_k`` best."""
    # Shift the best to 0 before dividing: a tiny temperature then sends the others to -inf (never
    # probability), where dividing first would overflow every logit to inf and softmax to NaN.
    logits = (logits - logits.max()) / temperature
    if top_k is not None:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
