"""Weight snapshots taken during training, for watching cells emerge (``rnnviz emergence``).

A run trained with ``snapshot_every=N`` keeps ``RUN/snapshots/step-00000500.safetensors``: the model's
weights in float16 (about half the size of a checkpoint) with the step, the seconds of training, the
validation loss (nats/char) and a stamp of the model's config and vocabulary in the file's own metadata. The
model config and vocabulary are the run's (``RUN/last/config.json``), the same for every snapshot: a snapshot
whose stamp differs (copied from another run) is refused. Each file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import math
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
    model_sha256: str | None = None  # the stamp of the model that made it (model_stamp; absent in older runs)


def save_snapshot(model: torch.nn.Module, run: Path, step: int, seconds: float, val_loss: float) -> Path:
    """Write the model's weights (float16) as ``run/snapshots/step-XXXXXXXX.safetensors``."""
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    meta = {"step": str(step), "seconds": f"{seconds:.3f}", "val_loss": repr(float(val_loss)),
            "model_sha256": model_stamp(model)}
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
    """A snapshot's step, seconds and validation loss, checked: the step is the one its name says, the
    seconds and the loss finite numbers >= 0."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        snap = Snapshot(int(meta["step"]), float(meta["seconds"]), float(meta["val_loss"]), path,
                        meta.get("model_sha256"))
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        why = f"damaged or truncated: {str(e).splitlines()[0][:80]}" if isinstance(e, SafetensorError) else ""
        raise RnnvizError(f"{path}: not a readable snapshot ({why or type(e).__name__})") from None
    named = int(_NAME.fullmatch(path.name).group(1))
    if snap.step != named:
        raise RnnvizError(f"{path}: not a readable snapshot (its metadata says step {snap.step}, its name {named})")
    for what, v in (("seconds", snap.seconds), ("val_loss", snap.val_loss)):
        if not (math.isfinite(v) and v >= 0):
            raise RnnvizError(f"{path}: not a readable snapshot ({what} is {v}, not a finite number >= 0)")
    return snap


def model_stamp(model: torch.nn.Module) -> str:
    """The SHA-256 of a model's config and vocabulary (what makes its weights mean what they do)."""
    doc = json.dumps({"model": model.config.to_dict(), "vocab": model.vocab.to_json()}, sort_keys=True)
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()


def read_snapshot_weights(model: torch.nn.Module, snap: Snapshot) -> dict[str, torch.Tensor]:
    """A snapshot's weights, checked against ``model`` (the run's, from ``RUN/last``): made by a model of its
    config and vocabulary (where the snapshot says), and as every weights file is (:func:`read_weights`: the
    file's size, the tensors' names and shapes, floating point and finite)."""
    from rnnviz.model.checkpoint import read_weights

    if snap.model_sha256 is not None and snap.model_sha256 != model_stamp(model):
        raise RnnvizError(f"{snap.path}: a snapshot of another model (its config or vocabulary differ from the "
                          f"run's last/config.json)")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return read_weights(snap.path, shapes, "the run's model")


def load_snapshot_weights(model: torch.nn.Module, snap: Snapshot) -> None:
    """Load a snapshot's weights into ``model`` (same config), as float32, checked by :func:`read_snapshot_weights`."""
    model.load_state_dict({k: v.float() for k, v in read_snapshot_weights(model, snap).items()})
