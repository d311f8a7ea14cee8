"""A user's model for ``rnnviz record --module``: their own code, their weights, their ids.

``--module SPEC`` names a factory that builds the module: ``path/to/model.py:build`` (the file is imported,
with its folder first on ``sys.path`` so that it can import its neighbours) or ``package.module:build``
(imported from the current folder or the environment). The factory is called with no arguments. Weights
are a ``state_dict``: safetensors, or a torch file read with ``torch.load(weights_only=True)``, so no code
is ever unpickled from them. Ids are whole numbers separated by whitespace; vocabularies and token lists are
one entry per line.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import stat
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rnnviz.errors import RnnvizError
from rnnviz.model.data import read_text

MAX_HEADER_BYTES = 16 << 20  # a weights file's names, shapes and archive records beyond the tensors' bytes


def _one_line(e: BaseException) -> str:
    why = " ".join(str(e).split())
    return f"{type(e).__name__}: {why if len(why) <= 300 else why[:297] + '...'}"


def load_object(spec: str, what: str = "--module"):
    """The object ``spec`` names: ``FILE.py:NAME`` or ``package.module:NAME`` (NAME may be dotted)."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name or not all(p.isidentifier() for p in name.split(".")):
        raise RnnvizError(f"{what} {spec!r}: expected FILE.py:NAME or package.module:NAME, e.g. model.py:build")
    try:
        if where.endswith(".py") or "/" in where:
            path = Path(where)
            if not path.is_file():
                raise RnnvizError(f"{what} {spec!r}: {where}: no such file")
            sys.path.insert(0, str(path.resolve().parent))
            loaded = importlib.util.spec_from_file_location(f"rnnviz_user_{path.stem}", path)
            mod = importlib.util.module_from_spec(loaded)
            loaded.loader.exec_module(mod)
        else:
            if "" not in sys.path and "." not in sys.path:
                sys.path.insert(0, "")  # what ``python -m`` gives: the current folder
            mod = importlib.import_module(where)
    except RnnvizError:
        raise
    except BaseException as e:  # the user's code at import: a SystemExit or any error is theirs, in one line
        if isinstance(e, KeyboardInterrupt):
            raise
        raise RnnvizError(f"{what} {spec!r}: importing {where} failed: {_one_line(e)}") from None
    obj = mod
    for part in name.split("."):
        if not hasattr(obj, part):
            raise RnnvizError(f"{what} {spec!r}: {where} has no {name}")
        obj = getattr(obj, part)
    return obj


def build_module(spec: str, weights: str | Path) -> nn.Module:
    """The module ``spec``'s factory builds, with the state_dict in ``weights`` loaded into it (on the CPU)."""
    factory = load_object(spec)
    if not callable(factory):
        raise RnnvizError(f"--module {spec!r}: {type(factory).__name__} is not callable (name a function or class)")
    try:
        module = factory()
    except Exception as e:
        raise RnnvizError(f"--module {spec!r}: building the module failed: {_one_line(e)}") from None
    if not isinstance(module, nn.Module):
        raise RnnvizError(f"--module {spec!r} gave a {type(module).__name__}, not a torch.nn.Module")
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    state = read_state_dict(weights, sum(8 * math.prod(s) for s in expected.values()) + MAX_HEADER_BYTES)
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
        raise RnnvizError(f"{weights}: weights do not fit the module (missing: {missing[:3]}, unexpected: "
                          f"{extra[:3]}, wrong shape: {wrong[:3]})")
    module.load_state_dict(state)
    return module


def read_state_dict(path: str | Path, most: int) -> dict[str, torch.Tensor]:
    """A state_dict {name: tensor} from safetensors or a weights-only torch file of at most ``most`` bytes."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        raise RnnvizError(f"{path}: no such weights file") from None
    if not stat.S_ISREG(st.st_mode):
        raise RnnvizError(f"{path}: not a regular file (a directory, FIFO or device), expected a weights file")
    size = st.st_size
    if size > most:
        raise RnnvizError(f"{path}: {size:,} bytes, more than the module's weights need ({most:,})")
    with open(path, "rb") as f:
        head = f.read(9)
    try:
        if len(head) == 9 and head[8:9] == b"{":  # safetensors: an 8-byte header length, then JSON
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RnnvizError(f"{path}: not a safetensors file or a weights-only torch file (rnnviz never unpickles "
                          f"code; save model.state_dict()): {_one_line(e)}") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise RnnvizError(f"{path}: holds a {type(state).__name__}, not a state_dict (names -> tensors): save "
                          "model.state_dict()")
    return state


def read_ids(path: str | Path) -> np.ndarray:
    """(T,) int64: the whole numbers of a text file, separated by any whitespace."""
    words = read_text(path).split()
    if not words:
        raise RnnvizError(f"{path}: no ids in the file")
    try:
        return np.array(words, dtype=np.int64)
    except (ValueError, OverflowError):
        bad = next(i for i, w in enumerate(words) if not (w.lstrip("-").isascii() and w.lstrip("-").isdigit()))
        raise RnnvizError(f"{path}: id {bad:,} is {words[bad][:40]!r}, not a whole number") from None


def read_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 file, one entry each (a final newline ends the last line, it adds none)."""
    lines = read_text(path).split("\n")
    return lines[:-1] if lines[-1] == "" else lines
