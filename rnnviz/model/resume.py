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
from rnnviz.model.cells import state_shapes
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


def load_train_state(directory: Path, opt: torch.optim.Optimizer, model: torch.nn.Module, batch: int, device):
    """Restore the optimizer and RNG from ``directory``; returns (carried hidden state, info dict).

    The whole state is read and checked first (:func:`check_train_state`, one place), then applied: a damaged
    or hand-edited state (truncated safetensors, broken JSON, a tensor or setting that does not fit this run)
    is a clear :class:`RnnvizError` naming the file, with nothing restored, never a traceback.
    """
    path = directory / "train_state.safetensors"
    try:
        tensors = load_file(str(member(directory, path.name)))
        path = directory / "train_state.json"
        info = loads_json(read_member(directory, path.name, MAX_JSON_BYTES), path)
        check_train_info(info, opt)
        path = directory / "train_state.safetensors"
        state, hidden, cuda_rng = check_train_tensors(tensors, info, opt, model, batch)
    except (SafetensorError, OSError, ValueError, KeyError, RnnvizError) as e:  # what a damaged file raises
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RnnvizError(f"{path}: damaged, cannot resume from it ({detail}); start again with --force") from None
    groups = [{**fresh, **saved} for fresh, saved in zip(opt.state_dict()["param_groups"], info["param_groups"],
                                                          strict=True)]  # a flag an older torch lacked: its default
    opt.load_state_dict({"state": state, "param_groups": groups})  # moments moved to the parameters' device
    torch.set_rng_state(tensors["rng.cpu"])
    if cuda_rng:
        torch.cuda.set_rng_state_all(cuda_rng)
    hidden = tuple(h.to(device, torch.float32) for h in hidden)
    if not hidden:
        return None, info
    return (hidden if getattr(model, "modern", False) or len(hidden) > 1 else hidden[0]), info


# Optimizer state that must be >= 0: the second moments, of which a square root is taken.
NONNEGATIVE = {"exp_avg_sq", "max_exp_avg_sq", "sum", "square_avg"}
_SCALER = {"scale": (0, False), "growth_factor": (1, False), "backoff_factor": (0, True), "growth_interval": (1, True),
           "_growth_tracker": (0, True)}  # GradScaler's state: name -> (lower bound, a whole number)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_counts(info: dict) -> None:
    """world_size, where present, a count >= 1; warmup absent, null (an auto choice not made yet) or >= 0."""
    for key, lo, nullable in (("world_size", 1, False), ("warmup", 0, True)):
        if key in info and not ((info[key] is None and nullable) or (type(info[key]) is int and info[key] >= lo)):
            raise ValueError(f"{key} is {info[key]!r}")


def check_train_info(info, opt: torch.optim.Optimizer) -> None:
    """``train_state.json`` has what a run writes (ValueError naming the first thing that is not):

    step a whole count >= 0, elapsed seconds finite >= 0, best_val a number (Infinity before the first
    validation), val_loss finite or null, world_size a count >= 1, warmup (the steps the run chose) absent, null
    or a count >= 0, appended byte sizes >= 0 of the files a run
    appends to, scaler null or GradScaler's five numbers in range; param_groups the groups of ``opt`` (the
    optimizer the run's checked settings make) with every setting equal to it but the learning rate (which the
    schedule sets at every step; it must still be a number >= 0), a flag an older torch did not save taken
    from it; opt_scalars {"<index>.<name>": number} (torch keeps its state in tensors: normally empty)."""
    if not isinstance(info, dict):
        raise ValueError("not a JSON object")
    if type(info.get("step")) is not int or info["step"] < 0:
        raise ValueError(f"step is {info.get('step')!r}")
    if not (_num(info.get("elapsed")) and 0 <= info["elapsed"] < math.inf):
        raise ValueError(f"elapsed is {info.get('elapsed')!r}")
    for key, finite, optional in (("best_val", False, False), ("val_loss", True, True)):
        v = info.get(key)
        if not ((v is None and optional) or (_num(v) and v == v and (not finite or math.isfinite(v)))):
            raise ValueError(f"{key} is {v!r}")
    _check_counts(info)
    sizes = info.get("appended")
    if not isinstance(sizes, dict) or not all(k in APPENDED and type(v) is int and v >= 0 for k, v in sizes.items()):
        raise ValueError(f"appended is {str(sizes)[:60]}")
    scaler = info.get("scaler")
    if scaler is not None and not (
            isinstance(scaler, dict) and set(scaler) == set(_SCALER)
            and all(_num(scaler[k]) and math.isfinite(scaler[k]) and scaler[k] >= lo and (not whole or type(scaler[k])
                    is int) for k, (lo, whole) in _SCALER.items())
            and scaler["scale"] > 0 and scaler["growth_factor"] > 1 and 0 < scaler["backoff_factor"] < 1):
        raise ValueError(f"scaler is {str(scaler)[:60]}")
    _check_param_groups(info.get("param_groups"), opt)
    scalars = info.get("opt_scalars")
    if not (isinstance(scalars, dict) and all(isinstance(k, str) and "." in k and k.split(".")[0].isdigit()
                                              and _num(v) and math.isfinite(v) for k, v in scalars.items())):
        raise ValueError(f"opt_scalars is {str(scalars)[:60]}")


def _check_param_groups(groups, opt: torch.optim.Optimizer) -> None:
    fresh = opt.state_dict()["param_groups"]
    if not (isinstance(groups, list) and all(isinstance(g, dict) for g in groups)):
        raise ValueError(f"param_groups is {str(groups)[:60]}")
    if len(groups) != len(fresh):
        raise ValueError(f"param_groups has {len(groups)} groups, the optimizer {len(fresh)}")
    for i, (saved, want) in enumerate(zip(groups, fresh, strict=True)):
        extra = sorted(set(saved) - set(want))
        if extra:
            raise ValueError(f"param_groups[{i}] has {str(extra[0])[:40]!r}, which this torch's "
                             f"{type(opt).__name__} does not")
        for key, value in want.items():
            _check_setting(f"param_groups[{i}]", key, saved, value)


def _check_setting(where: str, key: str, saved: dict, value) -> None:
    """One setting of a saved parameter group against the fresh optimizer's ``value``."""
    if key not in saved:
        if not (isinstance(value, bool) or value is None):  # a flag an older torch did not write: its default
            raise ValueError(f"{where} lacks {key!r}")
    elif key == "lr":
        if not (_num(saved[key]) and 0 <= saved[key] < math.inf):
            raise ValueError(f"{where}.lr is {str(saved[key])[:40]}, not a learning rate >= 0")
    elif not _same(saved[key], value):
        raise ValueError(f"{where}.{key} is {repr(saved[key])[:40]}, the run's settings make {_plain(value)!r}")


def _plain(v):
    """A setting as JSON holds it (tuples as lists)."""
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def _same(a, b) -> bool:
    """Equal as JSON values of the same kind: True is not 1, nor "0.1" 0.1; a list equals a tuple."""
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b)
                and all(_same(x, y) for x, y in zip(a, b, strict=True)))
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    if _num(a) and _num(b):
        return a == b
    return type(a) is type(b) and a == b


def _optimizer_layout(opt: torch.optim.Optimizer) -> dict[str, tuple[bool, torch.dtype | type]]:
    """What one step of ``opt``'s kind, with its settings, keeps per parameter: {name: (shaped like the
    parameter, dtype; or False, the Python type of a non-tensor)}, found by stepping a copy on a probe."""
    probe = torch.zeros(2, requires_grad=True)
    twin = type(opt)([probe])
    twin.param_groups[0].update({k: v for k, v in opt.param_groups[0].items() if k != "params"})
    probe.grad = torch.zeros(2)
    twin.step()
    return {k: ((tuple(v.shape) == (2,), v.dtype) if torch.is_tensor(v) else (False, type(v)))
            for k, v in twin.state[probe].items()}


def check_train_tensors(tensors: dict, info: dict, opt: torch.optim.Optimizer, model: torch.nn.Module, batch: int):
    """``train_state.safetensors`` holds what this run writes, and nothing else (ValueError naming the first thing
    that does not): for every parameter of ``opt`` either no state (no step taken) or exactly the tensors one step
    of this optimizer keeps, of its dtype and the parameter's shape, finite, the second moments >= 0, each ``step``
    a whole number from 0 to the run's step; the carried hidden state none or one tensor per state of the cell,
    shaped as :func:`.cells.state_shapes` says (two for an LSTM), float, finite; ``rng.cpu`` a state the CPU
    generator takes (tried on a spare generator); ``rng.cuda.N`` states a CUDA generator takes (where there is
    CUDA). Returns (the optimizer state to load, the hidden tensors, the CUDA RNG states to set or None)."""
    layout = _optimizer_layout(opt)
    params = [p for g in opt.param_groups for p in g["params"]]
    cfg = model.config
    stepped = {int(k.split(".")[1]) for k in tensors if k.startswith("opt.") and k.split(".")[1].isdigit()}
    stepped |= {int(k.split(".")[0]) for k in info["opt_scalars"]}
    hidden = sorted(k for k in tensors if k.startswith("hidden."))
    shapes = state_shapes(cfg.cell, cfg.layers, batch, cfg.hidden)
    _check_names(set(tensors), layout, len(params), len(shapes), bool(stepped), bool(hidden))
    state = {i: _param_state(tensors, info, layout, i, params[i]) for i in sorted(stepped)}
    unknown = sorted(set(info["opt_scalars"]) - {f"{i}.{k}" for i in state for k in layout})
    if unknown:
        raise ValueError(f"opt_scalars has {unknown[0][:40]!r}, which this optimizer does not keep")
    floats = (torch.float32, torch.bfloat16, torch.float16)
    carried = [_tensor(tensors, f"hidden.{i}", floats, shape) for i, shape in enumerate(shapes)] if hidden else []
    return state, carried, _check_rng(tensors)


def _check_names(names: set[str], layout: dict, n_params: int, kinds: int, stepped: bool, carried: bool) -> None:
    """The tensor names are this run's: every optimizer tensor of every parameter (none before a first step),
    the cell's ``kinds`` hidden states (or none), ``rng.cpu`` and ``rng.cuda.N``; nothing else."""
    opt_names = {f"opt.{i}.{k}" for i in range(n_params) for k, (_, t) in layout.items() if isinstance(t, torch.dtype)}
    hidden = {f"hidden.{i}" for i in range(kinds)}
    want = {"rng.cpu"} | (opt_names if stepped else set()) | (hidden if carried else set())
    cuda = {k for k in names if k.startswith("rng.cuda.") and k[9:].isdigit()}
    missing, unexpected = sorted(want - names), sorted(names - want - cuda)
    if missing or unexpected:
        raise ValueError("the tensors are not this run's: " + ", ".join(
            f"{what}: {ks[:3]}" for what, ks in (("missing", missing), ("unexpected", unexpected)) if ks))


def _param_state(tensors: dict, info: dict, layout: dict, i: int, param: torch.Tensor) -> dict:
    """Parameter ``i``'s optimizer state, checked: each entry of ``layout`` of its dtype and shape, finite,
    the second moments >= 0, ``step`` a whole number from 0 to the run's step."""
    state = {}
    for k, (shaped, dtype) in layout.items():
        if isinstance(dtype, torch.dtype):
            v = state[k] = _tensor(tensors, f"opt.{i}.{k}", dtype, tuple(param.shape) if shaped else ())
        else:  # a number torch keeps outside a tensor (none does today)
            v = state[k] = info["opt_scalars"].get(f"{i}.{k}")
            if type(v) is not dtype:
                raise ValueError(f"opt_scalars[{i}.{k}] is {v!r}, expected a {dtype.__name__}")
        if k == "step" and not (float(v) == int(v) and 0 <= float(v) <= info["step"]):
            raise ValueError(f"opt.{i}.step is {float(v)}, not a whole number of steps from 0 to {info['step']}")
        if k in NONNEGATIVE and torch.is_tensor(v) and (v < 0).any():
            raise ValueError(f"opt.{i}.{k} holds negative values")
    return state


def _check_rng(tensors: dict) -> list[torch.Tensor] | None:
    """``rng.cpu`` is a state the CPU generator takes, tried on a spare generator (the global one is set only
    once all is checked); ``rng.cuda.N``, where this machine has as many GPUs, states theirs take. Returns
    the CUDA states to set, or None (none saved, or another machine's GPUs: theirs are left as they are)."""
    _tensor(tensors, "rng.cpu", torch.uint8, tuple(torch.get_rng_state().shape))
    try:
        torch.Generator().set_state(tensors["rng.cpu"])
    except RuntimeError:
        raise ValueError("rng.cpu is not a random generator's state") from None
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k[9:]))
    if not (cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count()):
        return None
    for i, k in enumerate(cuda):
        try:
            torch.Generator(device=f"cuda:{i}").set_state(_tensor(tensors, k, torch.uint8, None))
        except RuntimeError:
            raise ValueError(f"{k} is not a random generator's state") from None
    return [tensors[k] for k in cuda]


def _tensor(tensors: dict, name: str, dtype, shape: tuple | None) -> torch.Tensor:
    """``tensors[name]``, of ``dtype`` (or one of them) and ``shape`` (None: any 1-D), finite if floating."""
    v = tensors[name]
    dtypes = dtype if isinstance(dtype, tuple) else (dtype,)
    if v.dtype not in dtypes or (tuple(v.shape) != shape if shape is not None else v.dim() != 1):
        want = "/".join(str(d).removeprefix("torch.") for d in dtypes)
        raise ValueError(f"{name} is {str(v.dtype).removeprefix('torch.')} {tuple(v.shape)}, expected {want} "
                         f"{shape if shape is not None else '(n,)'}")
    if v.is_floating_point() and not torch.isfinite(v).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return v


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
