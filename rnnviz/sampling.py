"""Generating text: temperature, top-k, priming text, a seed, and cells clamped to a value."""

from __future__ import annotations

import torch

from .errors import RnnvizError
from .models import CharRNN, clamp_spec, eval_mode


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
    if not temperature > 0:  # also NaN, which would reach torch.multinomial as NaN probabilities
        raise RnnvizError(f"temperature must be > 0, got {temperature}")
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
            logits = logits[0].float() / temperature  # (V,)
            if top_k is not None:
                kth = torch.topk(logits, top_k).values[-1]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)  # (1,)
            out.append(int(nxt))
            logits, state = advance(nxt, state)
    return vocab.decode(out)
