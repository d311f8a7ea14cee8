"""The n-gram baseline (rnnviz.model.ngram) against a naive per-character modified Kneser-Ney written from the
definition, on small texts: the same probability for every character, and distributions that sum to 1."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np
import pytest
from click.testing import CliRunner

from rnnviz.cli import main
from rnnviz.errors import RnnvizError
from rnnviz.model.ngram import ngram_logprobs, ngram_loss


def naive_discounts(counts) -> list[float]:
    n = Counter(counts)
    n1, n2, n3, n4 = n[1], n[2], n[3], n[4]
    if min(n1, n2, n3) == 0:
        return [0.0, 0.5, 1.0, 1.5]
    y = n1 / (n1 + 2 * n2)
    d = [0.0, 1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3]
    return [min(max(v, 0.0), float(c)) for c, v in enumerate(d)]


def naive_model(train: str, order: int):
    """levels[k]: {context of k characters: Counter(next char -> count)}; raw counts at the top order,
    the number of distinct characters before (context + char) below it."""
    levels = []
    for k in range(order):
        table: dict[str, Counter] = defaultdict(Counter)
        if k == order - 1:
            for i in range(k, len(train)):
                table[train[i - k : i]][train[i]] += 1
        else:
            seen = {(train[i - k - 1], train[i - k : i], train[i]) for i in range(k + 1, len(train))}
            for _, ctx, ch in seen:
                table[ctx][ch] += 1
        levels.append((table, naive_discounts([c for t in table.values() for c in t.values()])))
    return levels


def naive_prob(levels, history: str, ch: str, vocab_size: int) -> float:
    p = 1.0 / vocab_size
    for k, (table, d) in enumerate(levels):
        if len(history) < k or (k and history[-k:] not in table) or (not k and "" not in table):
            continue
        counts = table[history[-k:] if k else ""]
        total = sum(counts.values())
        gamma = sum(d[min(c, 3)] for c in counts.values()) / total
        c = counts.get(ch, 0)
        p = max(c - d[min(c, 3)], 0) / total + gamma * p
    return p


def codes(s: str, chars: str) -> np.ndarray:
    return np.array([chars.index(c) for c in s], dtype=np.int64)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_matches_naive_modified_kneser_ney(order):
    rng = np.random.default_rng(order)
    words = ["the ", "then ", "than ", "hen ", "a ", "an ", "tea ", "ten "]
    train = "".join(rng.choice(words, 400))
    held = "".join(rng.choice(words + ["neat "], 60))  # "neat": contexts never counted
    chars = "".join(sorted(set(train + held)))
    got = ngram_logprobs(codes(train, chars), codes(held, chars), len(chars), order)
    levels = naive_model(train, order)
    want = [math.log(naive_prob(levels, held[max(0, i - order + 1) : i], held[i], len(chars)))
            for i in range(len(held))]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def test_every_distribution_sums_to_one():
    rng = np.random.default_rng(0)
    train = "".join(rng.choice(list("abcab "), 3000))
    chars = "abc xy"  # x and y never occur in training: they still get probability
    history = "cab ab"
    for n in range(len(history) + 1):
        ctx = history[len(history) - n :]
        held = [codes(ctx + ch, chars) for ch in chars]
        probs = [math.exp(ngram_logprobs(codes(train, chars), h, len(chars), 4)[-1]) for h in held]
        assert sum(probs) == pytest.approx(1.0, abs=1e-12)
        assert min(probs) > 0


def naive_split_loss(text: str, order: int, part: slice) -> float:
    n = len(text)
    train, held = text[: int(n * 0.9)], text[part]
    levels = naive_model(train, order)
    vocab = len(set(train) | set(held))
    return -sum(math.log(naive_prob(levels, held[max(0, i - order + 1) : i], held[i], vocab))
                for i in range(len(held))) / len(held)


def test_cli_scores_the_split_like_the_definition(tmp_path):
    rng = np.random.default_rng(3)
    text = "".join(rng.choice(["int x;\n", "if (x) {\n", "}\n", "\treturn 0;\n", "/* a */\n"], 600))
    path = tmp_path / "c.txt"
    path.write_text(text)
    n = len(text)
    want = naive_split_loss(text, 4, slice(int(n * 0.95), n))
    r = CliRunner().invoke(main, ["ngram", str(path), "--order", "4", "--json"])
    assert r.exit_code == 0, r.output
    assert '"order": 4' in r.output and f'"chars": {n - int(n * 0.95)}' in r.output
    got = float(r.output.split('"nats_per_char": ')[1].split(",")[0])
    assert got == pytest.approx(want, rel=1e-12)
    r = CliRunner().invoke(main, ["ngram", str(path), "--order", "4", "--split", "val"])
    val = naive_split_loss(text, 4, slice(int(n * 0.9), int(n * 0.95)))
    assert r.output == (f"{val:.4f} nats/char = {val / math.log(2):.4f} bits/char over "
                        f"{int(n * 0.95) - int(n * 0.9)} characters (val, 4-gram)\n")


@pytest.mark.parametrize("args, message", [
    (["--order", "0"], "Invalid value for '--order'"),
    (["--split", "train"], "Invalid value for '--split'"),
])
def test_cli_bad_options(tmp_path, args, message):
    path = tmp_path / "t.txt"
    path.write_text("abc" * 20)
    r = CliRunner().invoke(main, ["ngram", str(path), *args])
    assert r.exit_code == 2 and message in r.output


def test_too_short_text_is_one_line_error(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("ab")
    r = CliRunner().invoke(main, ["ngram", str(path)])
    assert r.exit_code == 1
    assert r.output == "Error: the text has 2 characters; an n-gram baseline on its 90/5/5 split needs at least 20\n"
    with pytest.raises(RnnvizError, match="order must be >= 1"):
        ngram_loss("x" * 40, order=0)
