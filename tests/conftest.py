"""Shared fixtures. Everything random is seeded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rnnviz.model.charrnn import CharRNN, ModelConfig
from rnnviz.model.checkpoint import save_checkpoint
from rnnviz.model.vocab import Vocab
from rnnviz.threads import torch_threads

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
SAMPLE_MODEL = ROOT / "sample_models" / "shakespeare-lstm-2x128"
# The machine's Chromium, never a downloaded one; flags that keep it off the (closed) network.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\"Speak, speak,\" they said (all).\n"
WORDS = ("the ", "cat ", "sat ", "on ", "a ", "mat", ".\n", '"hi" ', "said ", "she ")  # quotes and line ends among them
# A one-layer RNN that trains in seconds with a snapshot every 5 of its 20 steps (the emergence tests).
SNAPSHOT_RNN = dict(cell="rnn", layers=1, hidden=8, batch=4, seq_len=16, eval_every=10, log_every=5, sample_chars=0,
                    snapshot_every=5, max_steps=20, lr=1e-2)


def words_text(words=WORDS, n: int = 3000, seed: int = 0) -> str:
    """``n`` seeded random draws from ``words``, joined: a text with a few repeating structures."""
    return "".join(np.random.default_rng(seed).choice(list(words), size=n))


def train_snapshot_rnn(text_path: Path, out: Path, **overrides) -> Path:
    """Trains :data:`SNAPSHOT_RNN` (with ``overrides``) on ``text_path`` into ``out``, on one torch thread."""
    from rnnviz.model.trainer import TrainConfig, train

    with torch_threads(1):
        train(text_path, out, TrainConfig(**{**SNAPSHOT_RNN, **overrides}))
    return out


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs CUDA")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture
def make_model():
    def make(cell: str = "lstm", layers: int = 2, hidden: int = 16, text: str = TEXT, seed: int = 0) -> CharRNN:
        torch.manual_seed(seed)
        vocab = Vocab.from_text(text)
        return CharRNN(ModelConfig(vocab_size=len(vocab), cell=cell, layers=layers, hidden=hidden), vocab).eval()

    return make


@pytest.fixture
def tiny_ckpt(tmp_path, make_model) -> Path:
    path = tmp_path / "tiny_ckpt"
    save_checkpoint(make_model(), path)
    return path


@pytest.fixture
def sample_model() -> Path:
    if not (SAMPLE_MODEL / "config.json").exists():
        pytest.skip("the bundled sample model is not there yet")
    return SAMPLE_MODEL


@pytest.fixture
def one_thread():
    """Tiny models on a busy 2-core machine: one torch thread is as fast, and immune to contention."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def browser():
    """A headless system Chromium driven by Playwright, shared by a test module."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no system Chromium at {CHROMIUM}")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def text_file(tmp_path) -> Path:
    """3,000 seeded random :data:`WORDS` in a file: enough for a few training steps."""
    p = tmp_path / "text.txt"
    p.write_text(words_text(), encoding="utf-8")
    return p


@pytest.fixture
def train_until_ctrl_c():
    """``(text_file, out, cfg, step)``: trains with ``cfg`` into ``out`` and presses Ctrl-C (a KeyboardInterrupt
    from the step callback) once step ``step`` is logged, before its checkpoint or snapshot: what a user's
    interrupt leaves behind."""
    from rnnviz.model.trainer import train

    def run(text_file: Path, out: Path, cfg, step: int) -> None:
        def stop(ev):
            if ev["type"] == "step" and ev["step"] == step:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            train(text_file, out, cfg, callback=stop)

    return run


@pytest.fixture
def run_dir(tmp_path) -> tuple[Path, Path]:
    """A small training run with a resumable last/ checkpoint: (its text file, the run directory)."""
    from rnnviz.model.trainer import TrainConfig, train

    rng = np.random.default_rng(0)
    text = "".join(rng.choice(["the ", "cat ", "sat. ", '"hi" ', "(on) ", "mat\n"], size=400))
    src = tmp_path / "t.txt"
    src.write_text(text, encoding="utf-8")
    cfg = TrainConfig(layers=1, hidden=8, batch=2, seq_len=16, max_steps=4, eval_every=2, log_every=2, sample_chars=0)
    train(src, tmp_path / "run", cfg)
    return src, tmp_path / "run"
