"""What the benchmarks share: the corpora and one synthetic-store writer.

The benchmarks import ``rnnviz`` as an installed package (``make`` installs it with ``pip install -e .``)
and this module as their sibling (Python puts a script's folder first on ``sys.path``):
``.venv/bin/python bench/NAME.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from rnnviz.model.charrnn import ModelConfig
from rnnviz.model.vocab import Vocab
from rnnviz.store.writer import StoreWriter
from rnnviz.threads import torch_threads

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"  # the corpora (never committed): /work/shared/data
Columns = Callable[[int, int], dict[tuple[int, str], np.ndarray]]  # (start, n) -> {(layer, kind): (n, H)}


def corpus_text(name: str, length: int, fallback: str) -> str:
    """The corpus ``DATA/name`` (``fallback`` where it is missing) repeated and cut to ``length`` characters."""
    path = DATA / name
    base = path.read_text(encoding="utf-8") if path.exists() else fallback
    return (base * (length // len(base) + 1))[:length]


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, as printed beside every figure."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@contextmanager
def competing_process(settle: float) -> Iterator[None]:
    """One busy process (a Python spin loop) competing for the CPU inside the block, started ``settle``
    seconds before it (the load average trails a new process by about a minute); killed after."""
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(settle)
        yield
    finally:
        spin.kill()
        spin.wait()


def baseline_tree(rev: str, into: Path) -> Path:
    """The package at git revision ``rev`` (this repository's, e.g. ``main`` before a change), unpacked under
    ``into``: a child run with ``PYTHONPATH=into`` imports that rnnviz."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "rnnviz"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar, check=True)
    return into


def synthetic_store(path: Path, text: str, layers: int = 2, hidden: int = 128, kinds: Sequence[str] = ("h", "c"),
                    columns: Columns | None = None, predictions: bool = True, seed: int = 0,
                    rows: int = 65536) -> Path:
    """An LSTM store of ``text`` written ``rows`` characters at a time, so memory stays at one block
    whatever the length. ``columns(start, n)`` gives each block's activations; the default is tanh of
    seeded normals (h, c in [-1, 1]). ``predictions``: seeded log-probs (nats) and top-5 predictions too."""
    vocab = Vocab.from_text(text)
    T, K = len(text), min(5, len(vocab))
    cfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=layers, hidden=hidden)
    rng = np.random.default_rng(seed)

    def normals(start: int, n: int) -> dict[tuple[int, str], np.ndarray]:
        return {(l, k): np.tanh(rng.standard_normal((n, hidden), dtype=np.float32)).astype(np.float16)
                for l in range(layers) for k in kinds}

    columns = columns or normals
    # the statistics' small ops: on a busy machine more threads only wait for each other
    with torch_threads(1), StoreWriter(path, text, layers=list(range(layers)), kinds=list(kinds), model_config=cfg,
                                       vocab=vocab, topk=K if predictions else 0) as w:
        for s in range(0, T, rows):
            n = min(rows, T - s)
            block = {key: torch.from_numpy(np.ascontiguousarray(a)) for key, a in columns(s, n).items()}
            extra = {}
            if predictions:
                lp = np.log(rng.uniform(0.01, 1.0, n)).astype(np.float32)
                if s + n == T:
                    lp[-1] = np.nan  # the last character predicts nothing
                ids = np.argsort(rng.random((n, len(vocab))), axis=1)[:, :K].astype(np.uint16)
                p = np.sort(rng.dirichlet(np.ones(K + 3), n)[:, :K], axis=1)[:, ::-1].astype(np.float16)
                extra = {"logprob": lp, "topk_ids": ids, "topk_p": p}
            w.observe(block)
            w.write(s, block, **extra)
    return path
