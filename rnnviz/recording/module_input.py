"""What a recording of a user's module reads besides the module: its ids, their tokens, its vocabulary size.

The vocabulary size V is that of the module's first ``nn.Embedding`` (module order), or the length of the
``vocab`` given; when both are there they must agree. Ids are checked against V before the module runs,
so an id out of range is one line naming it, not an index error from inside the user's code.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rnnviz.errors import RnnvizError
from rnnviz.model.vocab import TokenVocab
from rnnviz.store.tokens import Tokens, token_spans


def vocab_size(module: nn.Module, vocab: TokenVocab | None) -> int | None:
    """V: the first embedding's number of entries, else ``len(vocab)``, else None (unknown)."""
    emb = next(((n, m) for n, m in module.named_modules() if isinstance(m, nn.Embedding)), None)
    if emb is not None and vocab is not None and len(vocab) != emb[1].num_embeddings:
        raise RnnvizError(f"the vocabulary has {len(vocab):,} tokens, the module's embedding {emb[0]} "
                          f"{emb[1].num_embeddings:,}: give one token string per id")
    if emb is not None:
        return emb[1].num_embeddings
    return None if vocab is None else len(vocab)


def check_ids(ids, V: int | None) -> torch.Tensor:
    """``ids`` (a 1-D tensor, array or list of whole numbers) as a (T,) int64 CPU tensor, each in 0..V-1."""
    try:
        t = torch.as_tensor(np.asarray(ids) if not isinstance(ids, torch.Tensor) else ids).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise RnnvizError("ids must be a 1-D sequence of whole-number token ids") from None
    if t.dim() != 1 or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise RnnvizError(f"ids must be a 1-D sequence of whole-number token ids, got shape {tuple(t.shape)} of "
                          f"{t.dtype}")
    if not len(t):
        raise RnnvizError("nothing to record: no ids")
    t = t.long()
    bad = (t < 0) if V is None else (t < 0) | (t >= V)
    if bool(bad.any()):
        p = int(bad.nonzero()[0])
        vocab = "negative" if V is None else f"outside the module's vocabulary of {V:,} (0 to {V - 1:,})"
        raise RnnvizError(f"id {int(t[p]):,} at position {p:,} is {vocab}")
    return t


def token_rows(ids: torch.Tensor, tokens: Tokens | None, text: str | None,
               vocab: TokenVocab | None) -> tuple[str, np.ndarray]:
    """The store's text and one (start, end) span per id (:func:`rnnviz.store.tokens.token_spans`); without
    ``tokens``, each id's vocabulary string, or its decimal number, joined with spaces."""
    if tokens is None:
        if text is not None:
            raise RnnvizError("token_text= needs tokens=: the token strings found in it, their spans, or a tokenizer")
        names = vocab.chars if vocab is not None else None
        tokens = [names[i] for i in ids.tolist()] if names is not None else [str(i) for i in ids.tolist()]
    full, spans = token_spans(tokens, text)
    if len(spans) != len(ids):
        raise RnnvizError(f"{len(spans):,} tokens for {len(ids):,} ids: give one token per id")
    return full, spans
