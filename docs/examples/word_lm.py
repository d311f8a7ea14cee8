"""Your own word-level LSTM language model, looked inside with rnnviz.

The model has the layout of PyTorch's examples/word_language_model (an embedding, a 2-layer LSTM, a decoder)
and is trained here for a few minutes on War and Peace with plain PyTorch: rnnviz never sees the training.
The part a user writes to look inside it is the block marked "rnnviz" (under 15 lines). Run from the
repository's root, with the corpora in ../shared/data:

    python docs/examples/word_lm.py                   # 5 minutes of training, then the dashboard
    python docs/examples/word_lm.py --seconds 60 --no-serve
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch
import torch.nn.functional as F
from torch import nn


class RNNModel(nn.Module):
    """examples/word_language_model's RNNModel, LSTM only: input (T, B) ids, time first."""

    def __init__(self, ntoken: int, ninp: int = 200, nhid: int = 200, nlayers: int = 2, dropout: float = 0.2):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)

    def forward(self, input, hidden=None):
        output, hidden = self.rnn(self.drop(self.encoder(input)), hidden)
        return self.decoder(self.drop(output)), hidden


def train(model: RNNModel, ids: torch.Tensor, seconds: float, bptt: int = 35, batch: int = 32) -> float:
    """Truncated BPTT over ``batch`` contiguous streams for ``seconds``; returns the last loss (nats/word)."""
    n = len(ids) // batch
    data = ids[: n * batch].view(batch, n).t().contiguous()  # (n, B)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    hidden, t0, i, loss = None, time.time(), 0, torch.tensor(float("nan"))
    while time.time() - t0 < seconds:
        if i + bptt + 1 > n:
            i, hidden = 0, None
        x, y = data[i : i + bptt], data[i + 1 : i + 1 + bptt]
        hidden = None if hidden is None else tuple(h.detach() for h in hidden)
        logits, hidden = model(x, hidden)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
        i += bptt
    return float(loss.detach())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", default="../shared/data/war_and_peace.txt")
    ap.add_argument("--seconds", type=float, default=300, help="Training time (plain PyTorch).")
    ap.add_argument("--words", type=int, default=10_000, help="Vocabulary: the most frequent words (+ <unk>).")
    ap.add_argument("--test-words", type=int, default=20_000, help="Words recorded, from the end of the text.")
    ap.add_argument("--out", default="stores/wordlm")
    ap.add_argument("--no-serve", action="store_true", help="Stop after the page instead of serving the dashboard.")
    args = ap.parse_args()
    torch.manual_seed(0)

    words = open(args.text, encoding="utf-8").read().split()  # the text as words, punctuation kept on them
    itos = ["<unk>"] + [w for w, _ in Counter(words).most_common(args.words)]
    stoi = {w: i for i, w in enumerate(itos)}
    ids = torch.tensor([stoi.get(w, 0) for w in words])
    train_ids, test_words = ids[: -args.test_words], words[-args.test_words :]
    model = RNNModel(len(itos))
    print(f"trained {args.seconds:g} s: loss {train(model, train_ids, args.seconds):.2f} nats/word")

    # --- rnnviz: record every cell over unseen text, find and explain the quote cells, look at them ---
    import rnnviz

    store = rnnviz.record(model, ids[-args.test_words :], out=args.out, tokens=test_words, vocab=itos,
                          kinds="all", overwrite=True)
    cells = rnnviz.find_cells(store, "in_quote", top=5)        # features read at each word's last character
    print(cells[["unit", "score", "control_score", "selectivity"]].to_string(index=False))
    catalog = rnnviz.explain(store, units=list(cells["unit"]))
    print(catalog[["unit", "explanation", "score"]].to_string(index=False))
    rnnviz.export_html(store, list(cells["unit"][:3]), "wordlm_quote_cells.html")
    if not args.no_serve:
        rnnviz.serve(store)                                     # http://127.0.0.1:8050, Ctrl-C stops
    # --- end rnnviz ---


if __name__ == "__main__":
    main()
