"""Checkpoints: a directory with ``model.safetensors`` and ``config.json``. Loading never unpickles.

``config.json`` holds the model config, the vocabulary, the training config, metrics and provenance
(device, torch version, time) and the SHA-256 of the weights file, which loading verifies.
A training run directory holds ``best/`` and ``last/`` checkpoints; :func:`load_checkpoint` accepts
either a checkpoint directory or a run directory (and then takes ``best/``, else ``last/``).
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import time
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rnnviz.errors import RnnvizError
from rnnviz.fsutil import UMASK, atomic_dir, member, read_format_json, recover_dir, write_json
from rnnviz.model.charrnn import CharRNN, ModelConfig
from rnnviz.model.vocab import Vocab

FORMAT = "rnnviz-checkpoint"
MAX_HEADER_BYTES = 1 << 20  # a safetensors header (tensor names, dtypes, shapes) is a few kB
VERSION = 1
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors' ``save_file``, with its error on a full disk (SafetensorError) made one clear line."""
    try:
        save_file(tensors, str(path))
    except SafetensorError as e:
        raise RnnvizError(f"cannot write {path}: {e}") from None


def write_checkpoint_files(
    model: CharRNN, directory: Path, extra: dict | None = None, dtype: torch.dtype = torch.float32
) -> dict:
    """Write weights and config into an existing (temporary) directory. Returns the config dict."""
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    save_tensors(tensors, directory / WEIGHTS)
    os.chmod(directory / WEIGHTS, 0o666 & ~UMASK)  # safetensors writes 0600
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": model.config.to_dict(),
        "vocab": model.vocab.to_json(),
        "dtype": str(dtype).removeprefix("torch."),
        "weights_sha256": sha256_file(directory / WEIGHTS),
        "params": model.num_params(),
        "torch": torch.__version__,
        "host": platform.node(),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }
    write_json(directory / CONFIG, meta)
    return meta


def save_checkpoint(
    model: CharRNN, path: str | Path, extra: dict | None = None, dtype: torch.dtype = torch.float32
) -> Path:
    """Atomically write (or replace) the checkpoint directory ``path``."""
    path = Path(path)
    with atomic_dir(path, overwrite=True) as tmp:
        write_checkpoint_files(model, tmp, extra, dtype)
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint dir, or a run dir containing ``best/`` or ``last/`` -> the checkpoint dir."""
    path = Path(path)
    for sub in ("best", "last"):
        recover_dir(path / sub)
    if not path.exists():
        raise RnnvizError(f"{path}: no such checkpoint directory")
    if not path.is_dir():
        raise RnnvizError(f"{path}: a checkpoint is a directory with {CONFIG} and {WEIGHTS}")
    if (path / CONFIG).exists() or (path / WEIGHTS).exists():
        return path
    for sub in ("best", "last"):
        if (path / sub / CONFIG).exists():
            return path / sub
    raise RnnvizError(f"{path}: not a checkpoint ({CONFIG} missing)")


def read_config(path: str | Path) -> dict:
    """The parsed and checked ``config.json`` of a checkpoint (no weights are read)."""
    ckpt = resolve_checkpoint(path)
    cfg_path = ckpt / CONFIG
    if not cfg_path.exists():
        raise RnnvizError(f"{ckpt}: {CONFIG} is missing")
    meta = read_format_json(cfg_path, FORMAT, VERSION, "checkpoint config")
    if not isinstance(meta.get("model"), dict) or not isinstance(meta.get("vocab"), list):
        raise RnnvizError(f"{cfg_path}: 'model' or 'vocab' missing")
    if not isinstance(meta.get("weights_sha256"), (str, type(None))):
        raise RnnvizError(f"{cfg_path}: 'weights_sha256' is not a hex string")
    return meta


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every weight's name and shape in a model of ``config`` (nothing allocated)."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in CharRNN(config).state_dict().items()}


def read_weights(path: Path, expected: dict[str, tuple[int, ...]], model: str,
                 sha256: str | None = None) -> dict[str, torch.Tensor]:
    """The weights in the safetensors file ``path`` (a checkpoint's or a snapshot's), checked against the
    ``expected`` names and shapes of ``model`` (named in errors), the one rule for weights: the file is at most
    the float32 bytes of those weights plus a 1 MB header (refused before it is hashed or read), hashes to
    ``sha256`` when one is given, and holds exactly those tensors, floating point and finite (a diverged or
    tampered model: every loss and sample from it would be NaN)."""
    most = sum(4 * math.prod(shape) for shape in expected.values()) + MAX_HEADER_BYTES
    if path.stat().st_size > most:
        raise RnnvizError(f"{path}: {path.stat().st_size:,} bytes, more than {model} needs ({most:,})")
    if sha256 and sha256_file(path) != sha256:
        raise RnnvizError(f"{path}: contents do not match the hash in {CONFIG} (corrupt or replaced)")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise RnnvizError(f"{path}: not a readable safetensors file ({e})") from None
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if got != expected:
        missing = sorted(set(expected) - set(got))
        wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
        raise RnnvizError(
            f"{path}: weights do not fit {model} "
            f"(missing: {missing[:3]}, unexpected: {sorted(set(got) - set(expected))[:3]}, wrong shape: {wrong[:3]})"
        )
    for k, v in tensors.items():
        if not v.is_floating_point():
            raise RnnvizError(f"{path}: weights are not floating point ({k} is {str(v.dtype).removeprefix('torch.')})")
        if not torch.isfinite(v).all():
            raise RnnvizError(f"{path}: weights hold NaN or infinite values ({k}); this model cannot be used")
    return tensors


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> CharRNN:
    """Load a :class:`CharRNN` (float32, eval mode) with ``.vocab``, ``.config``, ``.meta`` (the parsed
    config.json) and ``.checkpoint_dir`` (the directory it was read from).

    Sizes are validated before anything is allocated; the weights are read with safetensors (never
    pickle); every tensor name and shape must match the config, and the file hash must match.
    """
    ckpt = resolve_checkpoint(path)
    meta = read_config(ckpt)
    config = ModelConfig.from_dict(meta["model"])
    vocab = Vocab.from_json(meta["vocab"])
    if len(vocab) != config.vocab_size:
        raise RnnvizError(f"{ckpt}: vocab has {len(vocab)} characters but the model expects {config.vocab_size}")
    wpath = member(ckpt, WEIGHTS)  # a regular file inside the checkpoint: no symlink, FIFO or device
    tensors = read_weights(wpath, expected_shapes(config), f"the model in {CONFIG}", meta.get("weights_sha256"))
    model = CharRNN(config, vocab)
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    model.meta = meta
    model.checkpoint_dir = ckpt
    return model.to(device).eval()
