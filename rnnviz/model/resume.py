"""A run directory's resumable state: ``last/train_state.*`` (optimizer, carried hidden state, RNG states,
counters) and the files a run appends to (``log.jsonl``, ``samples.txt``), rewound on resume so every line is
written once however the run was stopped. Tensors go to safetensors and everything else to JSON: no pickle.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from rnnviz.errors import RnnvizError
from rnnviz.fsutil import MAX_JSON_BYTES, append_text, loads_json, member, read_member, truncate_member, writable_member
from rnnviz.model.checkpoint import save_tensors

APPENDED = ("log.jsonl", "samples.txt")  # grown as training goes, rewound on resume


def save_train_state(directory: Path, opt, state, info: dict) -> None:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    hs = state if isinstance(state, tuple) else (state,)
    for i, s in enumerate(hs if state is not None else ()):
        tensors[f"hidden.{i}"] = s.detach().cpu().contiguous()
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    save_tensors(tensors, directory / "train_state.safetensors")
    info = {**info, "param_groups": sd["param_groups"], "opt_scalars": scalars}
    (directory / "train_state.json").write_text(json.dumps(info, indent=2), encoding="utf-8")


def load_train_state(directory: Path, opt, device):
    """Restore the optimizer and RNG from ``directory``; returns (carried hidden state, info dict).

    A damaged state (truncated safetensors, broken JSON, a state that does not fit the optimizer) is a
    clear :class:`RnnvizError` naming the file, never a traceback.
    """
    path = directory / "train_state.safetensors"
    try:
        tensors = load_file(str(member(directory, path.name)))
        path = directory / "train_state.json"
        info = loads_json(read_member(directory, path.name, MAX_JSON_BYTES), path)
        check_train_state(info)
        state: dict[int, dict] = {}
        for key, v in tensors.items():
            if key.startswith("opt."):
                _, idx, k = key.split(".", 2)
                state.setdefault(int(idx), {})[k] = v.to(device) if k != "step" else v
        for key, v in info["opt_scalars"].items():
            idx, k = key.split(".", 1)
            state.setdefault(int(idx), {})[k] = v
        opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
        hidden = [tensors[f"hidden.{i}"].to(device) for i in range(2) if f"hidden.{i}" in tensors]
        rng = tensors["rng.cpu"]
        if rng.dtype != torch.uint8 or rng.shape != torch.get_rng_state().shape:
            raise ValueError(f"rng.cpu is {rng.dtype} {tuple(rng.shape)}")
        torch.set_rng_state(rng)
    except (SafetensorError, OSError, ValueError, KeyError, RnnvizError) as e:  # what a damaged file raises
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RnnvizError(f"{path}: damaged, cannot resume from it ({detail}); start again with --force") from None
    hidden = None if not hidden else (tuple(hidden) if len(hidden) == 2 else hidden[0])
    cuda_rng = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_rng and torch.cuda.is_available() and len(cuda_rng) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_rng)
    return hidden, info


def check_train_state(info) -> None:
    """The scalars of ``train_state.json`` have the types and ranges a run writes (ValueError if not):
    step a whole count >= 0, elapsed seconds finite >= 0, losses numbers (best_val may be Infinity
    before the first validation), appended byte sizes >= 0 of the files a run appends to, the optimizer's
    param_groups a list of {"params": [...], ...} and opt_scalars {"<index>.<name>": value}."""
    if not isinstance(info, dict):
        raise ValueError("not a JSON object")
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    if type(info.get("step")) is not int or info["step"] < 0:
        raise ValueError(f"step is {info.get('step')!r}")
    if not (num(info.get("elapsed")) and 0 <= info["elapsed"] < math.inf):
        raise ValueError(f"elapsed is {info.get('elapsed')!r}")
    for key, finite in (("best_val", False), ("val_loss", True)):
        v = info.get(key)
        if v is not None and not (num(v) and v == v and (not finite or math.isfinite(v))):
            raise ValueError(f"{key} is {v!r}")
    groups, scalars = info.get("param_groups"), info.get("opt_scalars")
    if not (isinstance(groups, list)
            and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)):
        raise ValueError(f"param_groups is {str(groups)[:60]}")
    if not (isinstance(scalars, dict) and all(isinstance(k, str) and "." in k and k.split(".")[0].isdigit()
                                              for k in scalars)):
        raise ValueError(f"opt_scalars is {str(scalars)[:60]}")
    sizes = info.get("appended")
    if not isinstance(sizes, dict) or not all(k in APPENDED and type(v) is int and v >= 0 for k, v in sizes.items()):
        raise ValueError(f"appended is {str(sizes)[:60]}")


def append_log(path: Path, row: dict) -> None:
    append(path, json.dumps(row) + "\n")


def append(path: Path, text: str) -> None:
    """Append to a run's log or samples: a regular file of the run's own, never through a link."""
    try:
        append_text(path, text)
    except OSError as e:  # a full disk: name the file in the error train() reports
        e.filename = e.filename or str(path)
        raise


def rewind(out: Path, sizes: dict) -> None:
    """On resume, cut log.jsonl and samples.txt back to their sizes when last/ was saved: whatever was
    appended after it (before a crash or Ctrl-C) is written again by the resumed run, once."""
    for name, size in sizes.items():
        if name in APPENDED and os.path.lexists(out / name):
            truncate_member(out / name, size)  # never through a link, only a regular file


def check_appended(out: Path) -> None:
    """Before a run writes anything: its log and samples, where they exist, are regular files of its own."""
    for name in APPENDED:
        writable_member(out, name)


def appended_sizes(out: Path) -> dict[str, int]:
    """The sizes of the run's log and samples now (0 when absent), for rewinding on resume."""
    sizes = {}
    for name in APPENDED:
        try:
            sizes[name] = os.lstat(out / name).st_size
        except FileNotFoundError:
            sizes[name] = 0
    return sizes


def last_logged_lr(out: Path) -> float | None:
    """The learning rate of the last line of ``out/log.jsonl`` (None when there is none to read)."""
    try:  # a regular file only (a FIFO would block), and only its last 64 KiB
        path = member(out, "log.jsonl")
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 65536))
            lines = f.read().splitlines()
        lr = json.loads(lines[-1])["lr"] if lines else None
    except (RnnvizError, OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return float(lr) if isinstance(lr, (int, float)) else None
