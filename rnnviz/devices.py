"""Choosing the torch device: one rule for every command ("auto" = CUDA when there is one, else CPU)."""

from __future__ import annotations

import torch

from rnnviz.errors import RnnvizError


def resolve_device(device: str | torch.device | None, model=None) -> torch.device:
    """The device to run on. None -> the model's device (CPU without a model); "auto" -> CUDA when
    available, else CPU; "cpu", "cuda", "cuda:1" as given, where they exist (a one-line error if not)."""
    if device is None:
        return model.device if model is not None else torch.device("cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise RnnvizError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RnnvizError("device cuda asked for, but CUDA is not available on this machine")
    return dev
