"""Training: truncated BPTT over contiguous streams, with the hidden state carried across batches.

A run directory holds ``best/`` (lowest validation loss) and ``last/`` checkpoints (``last/`` also has
the optimizer state, the carried hidden state, the data position and the RNG states, so that
``resume=True`` continues exactly), ``log.jsonl`` (one line per logged step) and ``samples.txt``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file

from . import distributed
from .checkpoint import load_checkpoint, read_config, save_tensors, write_checkpoint_files
from .data import BatchStream, read_text, split
from .devices import resolve_device
from .errors import RnnvizError
from .fsutil import MAX_JSON_BYTES, atomic_dir, loads_json, member, read_member, recover_dir
from .models import CELLS, MAX_HIDDEN, MAX_LAYERS, CharRNN, ModelConfig, eval_mode
from .sampling import sample
from .snapshots import prune_snapshots, save_snapshot, snapshot_path
from .vocab import Vocab

OPTIMIZERS = ("adamw", "adagrad", "rmsprop")
APPENDED = ("log.jsonl", "samples.txt")  # grown as training goes, rewound on resume


@dataclass
class TrainConfig:
    cell: str = "lstm"  # rnn (tanh) | gru | lstm
    layers: int = 2
    hidden: int = 128
    dropout: float = 0.0  # between layers and before the read-out
    seq_len: int = 100  # T: characters per truncated-BPTT window
    batch: int = 64  # B: contiguous streams trained in parallel
    optimizer: str = "adamw"  # adamw | adagrad | rmsprop
    lr: float = 2e-3  # peak learning rate
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    schedule: str = "cosine"  # cosine (to min_lr_frac·lr, after warmup) | constant
    warmup: int = 100  # steps of linear warm-up (cosine only)
    min_lr_frac: float = 0.1
    clip: float = 5.0  # max global gradient norm (0 = off)
    epochs: float | None = None  # stop after this many passes over the training split ...
    max_steps: int | None = None  # ... or this many optimizer steps ...
    time_budget: float | None = None  # ... or this many seconds of training; default: 10 epochs
    eval_every: int = 500  # steps between validation, checkpoint and sample
    snapshot_every: int = 0  # steps between float16 weight snapshots for `rnnviz emergence` (0 = none)
    log_every: int = 10  # steps between log lines / progress updates
    sample_chars: int = 300  # characters written to samples.txt at each eval (0 = none)
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | off | bf16 | fp16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise RnnvizError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in ("cosine", "constant"):
            raise RnnvizError(f"unknown schedule {self.schedule!r}; choose cosine or constant")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise RnnvizError(f"unknown amp mode {self.amp!r}; choose auto, off, bf16 or fp16")
        if self.device not in ("auto", "cpu", "cuda"):
            raise RnnvizError(f"unknown device {self.device!r}; choose auto, cpu or cuda")
        # Every number is checked for its type and range: a hand-edited last/config.json can hold "8",
        # NaN, Infinity or -1e6 (a negative step count would train a million steps backwards).
        for name, lo, hi in (("seq_len", 1, 1 << 20), ("batch", 1, 1 << 16), ("eval_every", 1, None),
                             ("log_every", 1, None), ("snapshot_every", 0, None), ("warmup", 0, None),
                             ("sample_chars", 0, 1 << 20), ("max_steps", 1, None), ("seed", 0, 2**63 - 1),
                             ("layers", 1, MAX_LAYERS), ("hidden", 1, MAX_HIDDEN)):
            _check_number(self, name, lo, hi, integer=True)
        for name, lo, hi, lo_open in (("lr", 0, None, True), ("weight_decay", 0, None, False),
                                      ("min_lr_frac", 0, 1, False), ("clip", 0, None, False),
                                      ("dropout", 0, 1, False), ("epochs", 0, None, True),
                                      ("time_budget", 0, None, True)):
            _check_number(self, name, lo, hi, integer=False, lo_open=lo_open)
        if self.cell not in CELLS:
            raise RnnvizError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        if self.epochs is None and self.max_steps is None and self.time_budget is None:
            self.epochs = 10

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(vocab_size, self.cell, self.layers, self.hidden, self.dropout)


def _check_number(cfg, name: str, lo, hi, integer: bool, lo_open: bool = False) -> None:
    """``cfg.name`` is None (where the default is) or a finite number in range, as the flag says it."""
    v = getattr(cfg, name)
    if v is None and TrainConfig.__dataclass_fields__[name].default is None:
        return
    flag = name.replace("_", "-")
    ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
    if not ok_type or isinstance(v, bool) or (isinstance(v, float) and not math.isfinite(v)):
        raise RnnvizError(f"{flag} must be {'an integer' if integer else 'a finite number'}, got {str(v)[:40]!r}")
    if (v <= lo if lo_open else v < lo) or (hi is not None and (v >= hi if name == "dropout" else v > hi)):
        top = "" if hi is None else (f" and < {hi}" if name == "dropout" else f" and <= {hi}")
        raise RnnvizError(f"{flag} must be {'>' if lo_open else '>='} {lo}{top}, got {v}")


def pick_amp(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype. ``auto``: bf16 on a CUDA device that supports it (stable without loss
    scaling, and as fast or faster than fp32/TF32 for these models), else no autocast."""
    if device.type != "cuda":
        if name in ("bf16", "fp16"):
            raise RnnvizError(f"--amp {name} needs CUDA")
        return None
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


@torch.no_grad()
def evaluate(model: CharRNN, ids: np.ndarray, streams: int = 1, chunk: int = 2048) -> float:
    """Mean cross-entropy of predicting ``ids[t+1]`` from ``ids[:t+1]``, in nats/char.

    ``streams=1`` reads the whole text as one stream with the state carried throughout (exact).
    ``streams=S`` cuts it into S contiguous pieces read in parallel, each from a zero state (faster;
    the few characters after each cut are predicted with less context, and < S trailing chars are dropped).
    """
    n = (len(ids) - 1) // streams
    if n < 1:
        raise RnnvizError(f"text too short to evaluate: {len(ids)} characters")
    dev = model.device
    x = torch.as_tensor(ids[: n * streams].reshape(streams, n), device=dev)  # (S, n)
    y = torch.as_tensor(ids[1 : n * streams + 1].reshape(streams, n), device=dev)  # (S, n)
    total, state = torch.zeros((), dtype=torch.float64, device=dev), None
    with eval_mode(model):
        for a in range(0, n, chunk):
            logits, state = model(x[:, a : a + chunk], state)  # (S, t, V)
            total += F.cross_entropy(logits.flatten(0, 1).float(), y[:, a : a + chunk].flatten(), reduction="sum")
    return float(total) / (n * streams)


def _lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    if cfg.schedule == "constant":
        return cfg.lr
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    lo = cfg.lr * cfg.min_lr_frac
    return lo + 0.5 * (cfg.lr - lo) * (1 + math.cos(math.pi * min(progress, 1.0)))


def _make_optimizer(cfg: TrainConfig, model: CharRNN) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(model.parameters(), lr=cfg.lr)
    return torch.optim.RMSprop(model.parameters(), lr=cfg.lr, alpha=0.95)


# --- the resumable training state: tensors in safetensors, everything else in JSON (no pickle) ---


def _save_train_state(directory: Path, opt, state, info: dict) -> None:
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


def _load_train_state(directory: Path, opt, device):
    """Restore the optimizer and RNG from ``directory``; returns (carried hidden state, info dict).

    A damaged state (truncated safetensors, broken JSON, a state that does not fit the optimizer) is a
    clear :class:`RnnvizError` naming the file, never a traceback.
    """
    path = directory / "train_state.safetensors"
    try:
        tensors = load_file(str(member(directory, path.name)))
        path = directory / "train_state.json"
        info = loads_json(read_member(directory, path.name, MAX_JSON_BYTES), path)
        _check_train_state(info)
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


def _check_train_state(info) -> None:
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


def train(
    text_path: str | Path,
    out: str | Path,
    cfg: TrainConfig | None = None,
    resume: bool = False,
    force: bool = False,
    callback: Callable[[dict], None] | None = None,
    overrides: dict | None = None,
) -> dict:
    """Train a CharRNN on ``text_path`` (90% train / 5% validation) into the run directory ``out``.

    ``callback(event)`` is called every ``log_every`` steps (``event["type"] == "step"``: step, epoch,
    loss in nats/char, lr, chars/s, progress in [0, 1]) and at each validation (``"eval"``).
    With ``resume=True`` the run continues from ``out/last`` with its saved configuration, updated by
    ``overrides`` (e.g. ``{"max_steps": 2000}`` to train longer; ``cfg`` is ignored).
    Ctrl-C saves ``out/last`` and re-raises (in one process; under torchrun it only stops).

    Launched by torchrun (``WORLD_SIZE`` > 1), each rank trains its contiguous share of the ``batch`` streams
    with DistributedDataParallel; rank 0 alone validates and writes. The result equals a one-process run
    up to float rounding, except for dropout masks, which each rank draws itself (see README).
    Returns a summary: steps, epochs, train/val loss (nats/char), best val loss, seconds, chars/s.
    """
    out = Path(out)
    text = read_text(text_path)
    for sub in ("best", "last"):
        recover_dir(out / sub)
    if resume:
        if not (out / "last" / "train_state.json").exists():
            raise RnnvizError(f"{out}: nothing to resume (no last/ checkpoint)")
        saved = read_config(out / "last").get("train")
        cfg = load_train_config({**saved, **(overrides or {})} if isinstance(saved, dict) else saved)
    else:
        cfg = cfg or TrainConfig()
        if ((out / "last").exists() or (out / "best").exists()) and not force:
            raise RnnvizError(f"{out} already holds a run: use --resume to continue it or --force to start over")
        for f in APPENDED:  # a fresh run's logs start empty, also after a crash before its first checkpoint
            (out / f).unlink(missing_ok=True)
    group = distributed.setup(resolve_device(cfg.device))
    device = group.device
    lo, hi = group.share(cfg.batch)  # this rank's streams of the global batch
    frac = (hi - lo) / cfg.batch  # its part of the global mean loss
    callback = callback if group.is_main else None
    amp = pick_amp(cfg.amp, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    if resume:
        model = load_checkpoint(out / "last", device)
        vocab = model.vocab
        text = vocab.prepare(text, "error")
    else:
        vocab = Vocab.from_text(text)
        torch.manual_seed(cfg.seed)
        model = CharRNN(cfg.model_config(len(vocab)), vocab).to(device)
    train_ids, val_ids = vocab.encode(split(text, "train")), vocab.encode(split(text, "val"))
    if len(val_ids) < 2:
        raise RnnvizError(f"{text_path}: text too short for a validation split ({len(text)} characters)")
    stream = BatchStream(train_ids, cfg.batch, cfg.seq_len)
    net = model if group.world == 1 else torch.nn.parallel.DistributedDataParallel(model)
    opt = _make_optimizer(cfg, model)
    scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)
    total_steps = cfg.max_steps
    if cfg.epochs is not None:
        ep_steps = math.ceil(cfg.epochs * stream.steps_per_epoch)
        total_steps = ep_steps if total_steps is None else min(total_steps, ep_steps)
    val_streams = max(1, min(cfg.batch, len(val_ids) // 2000))  # >= 2000 chars of context per stream

    step, elapsed, best_val, state, last_val = 0, 0.0, float("inf"), None, None
    if resume:
        state, info = _load_train_state(out / "last", opt, device)
        state = _rows(state, lo, hi)
        step, elapsed, best_val, last_val = info["step"], info["elapsed"], info["best_val"], info["val_loss"]
        if info.get("scaler"):
            scaler.load_state_dict(info["scaler"])
        if (total_steps is not None and step >= total_steps) or (cfg.time_budget and elapsed >= cfg.time_budget):
            goal = f"step {total_steps}" if total_steps is not None and step >= total_steps else \
                f"its time budget of {cfg.time_budget:g} s"
            raise RnnvizError(f"{out} is already at step {step}, past {goal}: nothing to train; "
                              "give a larger --max-steps, --epochs or --time-budget to continue")
        if group.is_main:
            _rewind(out, info["appended"])
    _reseed_ranks(group)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"train": asdict(cfg), "data": {"path": str(text_path), "chars": len(text), "split": "90/5/5",
            "newlines": "kept as in the file (CRLF not translated), BOM kept"},
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "amp": str(amp).removeprefix("torch.") if amp else "off"}

    def progress() -> float:
        p = step / total_steps if total_steps else 0.0
        return max(p, elapsed / cfg.time_budget) if cfg.time_budget else p

    def save(which: str, train_loss: float | None, hidden=None) -> None:
        metrics = {"step": step, "epoch": step / stream.steps_per_epoch, "train_loss": train_loss,
                   "val_loss": last_val, "best_val_loss": best_val, "train_seconds": round(elapsed, 3)}
        with atomic_dir(out / which, overwrite=True) as tmp:
            write_checkpoint_files(model, tmp, {**meta, "metrics": metrics})
            if which == "last":
                info = {"step": step, "elapsed": elapsed, "best_val": best_val, "val_loss": last_val,
                        "scaler": scaler.state_dict() if scaler.is_enabled() else None, "world_size": group.world,
                        "appended": {f: (out / f).stat().st_size if (out / f).exists() else 0 for f in APPENDED}}
                _save_train_state(tmp, opt, hidden, info)

    def validate(train_loss: float | None, row: dict | None = None) -> None:
        nonlocal best_val, last_val
        hidden = _gather_state(group, state, cfg.batch)  # every rank takes part; rank 0 saves
        if group.is_main:
            _validate_and_save(train_loss, row, hidden)
        last_val, best_val = group.broadcast_object((last_val, best_val))
        _reseed_ranks(group)

    def _validate_and_save(train_loss: float | None, row: dict | None, hidden) -> None:
        nonlocal best_val, last_val
        last_val = evaluate(model, val_ids, streams=val_streams)
        # The step's log line and sample are written before its last/ checkpoint, which records the files'
        # sizes: a crash in between resumes from the previous checkpoint and cuts them back (_rewind), so
        # each line is written exactly once whenever the run is killed.
        if row is not None:
            row["val_loss"] = round(last_val, 5)
            _append_log(out / "log.jsonl", row)
        if cfg.sample_chars:
            # A fixed seed per step: the text changes only because the model did (the lecture's slides).
            s = sample(model, cfg.sample_chars, temperature=0.8, seed=cfg.seed + step)
            _append(out / "samples.txt", f"=== step {step}, val loss {last_val:.4f} nats/char ===\n{s}\n\n")
        if last_val < best_val:
            best_val = last_val
            save("best", train_loss)
        save("last", train_loss, hidden)
        if cfg.snapshot_every:  # every checkpoint is also a snapshot
            save_snapshot(model, out, step, elapsed, last_val)
        if callback:
            callback({"type": "eval", "step": step, "val_loss": last_val, "best_val_loss": best_val})

    def snapshot() -> None:
        save_snapshot(model, out, step, elapsed, evaluate(model, val_ids, streams=val_streams))

    if resume and cfg.snapshot_every:  # the snapshots match an uninterrupted run (a Ctrl-C checkpoint has none)
        prune_snapshots(out, step)
        if step and step % cfg.snapshot_every == 0 and not snapshot_path(out, step).exists():
            snapshot()
    model.train()
    loss_sum = torch.zeros((), device=device)
    n_logged, t_mark, train_loss = 0, time.perf_counter(), None
    t_start = time.perf_counter() - elapsed
    try:
        while (total_steps is None or step < total_steps) and not (cfg.time_budget and elapsed >= cfg.time_budget):
            pos = step % stream.steps_per_epoch
            if pos == 0:
                state = None  # the streams restart at the beginning of the text: no carried context
            lr = _lr_at(cfg, step, progress())
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = (torch.as_tensor(a[lo:hi], device=device, dtype=torch.long) for a in stream.get(pos))
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                logits, state = net(x, state)  # (B, T, V); B = hi - lo streams on this rank
                loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
            opt.zero_grad(set_to_none=True)
            # DDP averages the ranks' gradients: scaled so, they are those of the global batch's mean loss.
            scaler.scale(loss * (frac * group.world)).backward()
            if cfg.clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            scaler.step(opt)
            scaler.update()
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            step += 1
            loss_sum += loss.detach() * frac
            n_logged += 1
            elapsed = time.perf_counter() - t_start
            if cfg.time_budget and group.world > 1:  # the lr schedule and the stop follow rank 0's clock
                elapsed = group.broadcast_object(elapsed)
            out_of_time = bool(cfg.time_budget) and elapsed >= cfg.time_budget
            is_eval = step % cfg.eval_every == 0 or step == total_steps or out_of_time
            if step % cfg.log_every == 0 or is_eval:
                train_loss = float(group.all_reduce(loss_sum)) / n_logged  # one device sync per log interval
                now = time.perf_counter()
                rate = n_logged * stream.chars_per_step / max(now - t_mark, 1e-9)
                row = {"step": step, "epoch": round(step / stream.steps_per_epoch, 4), "time": round(elapsed, 3),
                       "train_loss": round(train_loss, 5), "val_loss": None, "lr": lr, "chars_per_s": round(rate)}
                if is_eval:
                    validate(train_loss, row)  # appends the row
                    t_start = time.perf_counter() - elapsed  # validation time is not training time
                elif group.is_main:
                    _append_log(out / "log.jsonl", row)
                if callback:
                    callback({"type": "step", **row, "progress": progress()})
                loss_sum.zero_()
                n_logged, t_mark = 0, time.perf_counter()
            if cfg.snapshot_every and step % cfg.snapshot_every == 0 and not is_eval and group.is_main:
                t0 = time.perf_counter()
                snapshot()
                t_start += time.perf_counter() - t0  # the snapshot's validation is not training time
                t_mark += time.perf_counter() - t0  # ... nor in the chars/s
        if last_val is None:  # nothing to train (e.g. resumed at the end): still report a validation loss
            validate(train_loss)
    except KeyboardInterrupt:
        if group.world == 1:  # under torchrun the other ranks may be gone: keep the last eval's checkpoint
            save("last", train_loss, state)  # a usable checkpoint at the last completed step
        raise
    except OSError as e:  # a full disk while appending to the log or the samples; last/ stays as it was
        raise RnnvizError(f"cannot write {e.filename or out}: {e.strerror or e} (stopped at step {step}; "
                          f"{out}/last holds the last checkpoint)") from None
    return {"steps": step, "epochs": step / stream.steps_per_epoch, "train_loss": train_loss,
            "val_loss": last_val, "best_val_loss": best_val, "seconds": elapsed,
            "chars_per_s": step * stream.chars_per_step / max(elapsed, 1e-9), "out": str(out)}


def _rows(state, lo: int, hi: int):
    """Streams ``lo:hi`` of a carried state ((L, B, H), or a tuple of them for an LSTM)."""
    if state is None:
        return None
    return tuple(s[:, lo:hi].contiguous() for s in state) if isinstance(state, tuple) else state[:, lo:hi].contiguous()


def _gather_state(group: distributed.Group, state, batch: int):
    """Every rank's share of the carried state, joined into the global (L, batch, H) one."""
    if state is None or group.world == 1:
        return state
    if isinstance(state, tuple):
        return tuple(group.gather_streams(s.contiguous(), batch) for s in state)
    return group.gather_streams(state.contiguous(), batch)


def _reseed_ranks(group: distributed.Group) -> None:
    """Give ranks > 0 their own dropout RNG, drawn from rank 0's (the one saved in last/).

    Called at the start and after every checkpoint, so a resumed run with the same number of processes
    draws the same masks as the uninterrupted one. One process: nothing drawn, nothing changed.
    """
    if group.world == 1:
        return
    base = group.broadcast_object(int(torch.randint(1 << 62, ())) if group.is_main else None)
    if not group.is_main:
        torch.manual_seed(base + group.rank)


def _append_log(path: Path, row: dict) -> None:
    _append(path, json.dumps(row) + "\n")


def _append(path: Path, text: str) -> None:
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:  # a full disk: name the file in the error train() reports
        e.filename = e.filename or str(path)
        raise


def _rewind(out: Path, sizes: dict) -> None:
    """On resume, cut log.jsonl and samples.txt back to their sizes when last/ was saved: whatever was
    appended after it (before a crash or Ctrl-C) is written again by the resumed run, once."""
    for name, size in sizes.items():
        path = out / name
        if name in APPENDED and path.exists() and path.stat().st_size > size:
            os.truncate(path, size)


def load_train_config(d: dict) -> TrainConfig:
    """A TrainConfig from a saved dict, ignoring keys this version does not know."""
    if not isinstance(d, dict):
        raise RnnvizError(f"the saved training settings are not a JSON object: {str(d)[:40]}")
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in d.items() if k in known})
