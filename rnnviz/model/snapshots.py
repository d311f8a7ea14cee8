"""Weight snapshots taken during training, for watching cells emerge (``rnnviz emergence``).

A run trained with ``snapshot_every=N`` keeps ``RUN/snapshots/step-00000500.safetensors``: the model's
weights in float16 (about half the size of a checkpoint) with the step, the seconds of training and the
validation loss (nats/char) in the file's own metadata. The model config and vocabulary are the run's
(``RUN/last/config.json``), the same for every snapshot. Each file is written atomically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from rnnviz.errors import RnnvizError
from rnnviz.fsutil import atomic_file, writable_dir

SNAPSHOT_DIR = "snapshots"
_NAME = re.compile(r"step-(\d{8})\.safetensors")


@dataclass(frozen=True)
class Snapshot:
    step: int  # optimizer steps taken
    seconds: float  # seconds of training (validation excluded)
    val_loss: float  # validation loss, nats/char
    path: Path


def save_snapshot(model: torch.nn.Module, run: Path, step: int, seconds: float, val_loss: float) -> Path:
    """Write the model's weights (float16) as ``run/snapshots/step-XXXXXXXX.safetensors``."""
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    meta = {"step": str(step), "seconds": f"{seconds:.3f}", "val_loss": repr(float(val_loss))}
    writable_dir(run, SNAPSHOT_DIR)  # the run's own folder: never a link to one elsewhere
    path = snapshot_path(run, step)
    with atomic_file(path) as f:
        f.write(save(tensors, metadata=meta))
    return path


def snapshot_path(run: str | Path, step: int) -> Path:
    return Path(run) / SNAPSHOT_DIR / f"step-{step:08d}.safetensors"


def prune_snapshots(run: str | Path, after: int) -> list[Path]:
    """Delete the snapshots of steps > ``after``: on resume from a checkpoint at step ``after``, those came
    from the stopped run's future (written after its last checkpoint), which the resumed run rewrites or,
    with another stop option, never reaches. Returns the deleted paths."""
    directory = Path(run) / SNAPSHOT_DIR
    gone = []
    if directory.is_dir() and not directory.is_symlink():
        for p in directory.iterdir():
            m = _NAME.fullmatch(p.name)
            if m and int(m.group(1)) > after and (p.is_file() or p.is_symlink()):
                p.unlink()
                gone.append(p)
    return gone


def list_snapshots(run: str | Path) -> list[Snapshot]:
    """The run's snapshots in step order. Only regular files named ``step-XXXXXXXX.safetensors`` count;
    a run without any is an error that says how to make them."""
    directory = Path(run) / SNAPSHOT_DIR
    found = []
    if directory.is_dir() and not directory.is_symlink():
        for p in sorted(directory.iterdir()):
            if _NAME.fullmatch(p.name) and p.is_file() and not p.is_symlink():
                found.append(_read_meta(p))
    if not found:
        raise RnnvizError(f"{run}: no snapshots (train with --snapshot-every N to keep them)")
    return sorted(found, key=lambda s: s.step)


def _read_meta(path: Path) -> Snapshot:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return Snapshot(int(meta["step"]), float(meta["seconds"]), float(meta["val_loss"]), path)
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise RnnvizError(f"{path}: not a readable snapshot ({type(e).__name__})") from None


def load_snapshot_weights(model: torch.nn.Module, snap: Snapshot) -> None:
    """Load a snapshot's weights into ``model`` (same config), as float32; names and shapes must match."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(snap.path))
    except (SafetensorError, OSError) as e:
        raise RnnvizError(f"{snap.path}: not a readable snapshot ({e})") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if {k: tuple(v.shape) for k, v in tensors.items()} != expected:
        raise RnnvizError(f"{snap.path}: weights do not fit the run's model")
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
