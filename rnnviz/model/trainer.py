"""Training: truncated BPTT over contiguous streams, with the hidden state carried across batches.

A run directory holds ``best/`` (lowest validation loss) and ``last/`` checkpoints (``last/`` also has
the optimizer state, the carried hidden state, the data position and the RNG states, so that
``resume=True`` continues exactly), ``log.jsonl`` (one line per logged step) and ``samples.txt``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rnnviz.devices import resolve_device
from rnnviz.errors import RnnvizError
from rnnviz.fsutil import (
    atomic_dir,
    check_replaceable,
    exclusive,
    recover_dir,
    writable_dir,
)
from rnnviz.model import distributed
from rnnviz.model.charrnn import CELLS, MAX_HIDDEN, MAX_LAYERS, CharRNN, ModelConfig, eval_mode
from rnnviz.model.checkpoint import load_checkpoint, read_config, write_checkpoint_files
from rnnviz.model.data import BatchStream, read_text, split
from rnnviz.model.resume import (
    APPENDED,
    append,
    append_log,
    appended_sizes,
    check_appended,
    last_logged_lr,
    load_train_state,
    rewind,
    save_train_state,
)
from rnnviz.model.sampling import sample
from rnnviz.model.snapshots import SNAPSHOT_DIR, prune_snapshots, save_snapshot, snapshot_path
from rnnviz.model.vocab import Vocab

OPTIMIZERS = ("adamw", "adagrad", "rmsprop")
SCHEDULES = ("cosine", "constant")
LR_JUMP = 2.0  # a resume that raises the learning rate more than this many times over warns
AMP_MODES = ("auto", "off", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


def _setting(default, help: str, choices: tuple[str, ...] | None = None, cli: bool = True):
    """A :class:`TrainConfig` field with its help text and choices: `rnnviz train` makes its options from
    these (``cli=False``: a setting of the Python API only)."""
    return field(default=default, metadata={"help": help, "choices": choices, "cli": cli})


@dataclass
class TrainConfig:
    """Every training setting, with its default and help text in one place (`rnnviz train --help`)."""

    cell: str = _setting("lstm", "Recurrent cell: lstm, gru or rnn (tanh).", ("lstm", "gru", "rnn"))
    layers: int = _setting(2, "Stacked recurrent layers.")
    hidden: int = _setting(128, "Units per layer.")
    dropout: float = _setting(0.0, "Dropout between layers and before the read-out.")
    seq_len: int = _setting(100, "Truncated-BPTT window: characters per training sequence (T).")
    batch: int = _setting(64, "Parallel contiguous streams (B).")
    optimizer: str = _setting("adamw", "Optimizer.", OPTIMIZERS)
    lr: float = _setting(2e-3, "Peak learning rate.")
    weight_decay: float = _setting(0.0, "AdamW's decoupled weight decay.")
    schedule: str = _setting("cosine", "Learning-rate schedule: cosine decay after the warm-up, or constant.",
                             SCHEDULES)
    warmup: int = _setting(100, "Warm-up steps (cosine).")
    min_lr_frac: float = _setting(0.1, "The cosine schedule's final learning rate, as a fraction of lr.", cli=False)
    clip: float = _setting(5.0, "Max gradient norm (0 = off).")
    epochs: float | None = _setting(None, "Stop after this many passes over the training split.")
    max_steps: int | None = _setting(None, "Stop after this many optimizer steps.")
    time_budget: float | None = _setting(None, "Stop after this many seconds of training.")  # none of 3: 10 epochs
    eval_every: int = _setting(500, "Steps between validations (each also saves a checkpoint and a sample).")
    snapshot_every: int = _setting(0, "Steps between float16 weight snapshots, for `rnnviz emergence` (0 = none).")
    log_every: int = _setting(10, "Steps between log lines.")
    sample_chars: int = _setting(300, "Characters written to samples.txt at each validation (0 = none).", cli=False)
    device: str = _setting("auto", "Where to run: auto (CUDA when available, else the CPU), cpu or cuda.", DEVICES)
    amp: str = _setting("auto", "Mixed precision: auto (bf16 on CUDA, off on the CPU), off, bf16 or fp16.",
                        AMP_MODES)
    seed: int = _setting(0, "Seed of the weights, the dropout and the samples.")
    init_from: str | None = _setting(None, "Start from this checkpoint's weights, with its cell, layers, hidden and "
                                           "vocabulary, and a new optimizer and schedule (fine-tuning).")

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise RnnvizError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise RnnvizError(f"unknown schedule {self.schedule!r}; choose cosine or constant")
        if self.amp not in AMP_MODES:
            raise RnnvizError(f"unknown amp mode {self.amp!r}; choose auto, off, bf16 or fp16")
        if self.device not in DEVICES:
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
    loss in nats/char, lr, chars/s, progress in [0, 1]), at each validation (``"eval"``), and once with a
    ``"message"`` (``"warning"``) when a resume's new stop setting raises the learning rate over 2x.
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
    cfg = _run_config(out, cfg, resume, force, overrides)
    if distributed.rank() > 0:  # rank 0 holds the run for the whole job
        return _train(text_path, text, out, cfg, resume, callback)
    with exclusive(out / RUN_LOCK, f"{out} is being trained", "rnnviz train"):  # in the run's folder, made here
        return _train(text_path, text, out, cfg, resume, callback)


def _train(text_path, text: str, out: Path, cfg: TrainConfig, resume: bool, callback) -> dict:
    if resume:  # the files a resumed run appends to are its own, never links out of it: checked before any work
        check_appended(out)
    if cfg.snapshot_every and os.path.lexists(out / SNAPSHOT_DIR):
        writable_dir(out, SNAPSHOT_DIR)
    run = _Run.start(text_path, text, out, cfg, resume, callback)
    if not resume and run.group.is_main:
        _fresh_start(out)
    run.loop()
    return run.summary()


RUN_LOCK = ".run.lock"  # held by the process training a run: a second train of the same run is refused


def _run_config(out: Path, cfg: TrainConfig | None, resume: bool, force: bool, overrides: dict | None) -> TrainConfig:
    """The settings of a new run (refusing to overwrite one without ``force``) or of the run to resume."""
    if resume:
        if not (out / "last" / "train_state.json").exists():
            raise RnnvizError(f"{out}: nothing to resume (no last/ checkpoint)")
        saved = read_config(out / "last").get("train")
        return load_train_config({**saved, **(overrides or {})} if isinstance(saved, dict) else saved)
    if ((out / "last").exists() or (out / "best").exists()) and not force:
        raise RnnvizError(f"{out} already holds a run: use --resume to continue it or --force to start over")
    if force:
        check_replaceable(out, _is_run, "a training run")
    return cfg or TrainConfig()


def _is_run(out: Path) -> bool:
    """A run directory: its checkpoints, log, samples, snapshots or lock are there."""
    markers = ("last", "best", *APPENDED, SNAPSHOT_DIR, RUN_LOCK)
    return not out.is_symlink() and out.is_dir() and any(os.path.lexists(out / m) for m in markers)


def _fresh_start(out: Path) -> None:
    """A new run's logs start empty and the snapshots of the run it replaces go (a crash before the first
    checkpoint, or --force): done once everything was checked, so that a refused run has removed nothing.
    Links are removed as links."""
    for f in APPENDED:
        (out / f).unlink(missing_ok=True)
    prune_snapshots(out, -1)


def _init_from(cfg: TrainConfig, device: torch.device) -> tuple[TrainConfig, CharRNN]:
    """A new run's model with the weights of ``cfg.init_from``: its architecture and vocabulary, this run's
    dropout; ``cfg`` with the checkpoint's cell, layers and hidden, so the run's config.json says what it trains."""
    init = load_checkpoint(cfg.init_from, device)
    arch = init.config
    cfg = replace(cfg, cell=arch.cell, layers=arch.layers, hidden=arch.hidden)
    torch.manual_seed(cfg.seed)
    model = CharRNN(cfg.model_config(arch.vocab_size), init.vocab).to(device)
    model.load_state_dict(init.state_dict())
    return cfg, model


@dataclass
class _Run:
    """One run's moving parts and counters: what the loop, validation and the checkpoints share."""

    cfg: TrainConfig
    out: Path
    group: distributed.Group
    model: CharRNN
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp: torch.dtype | None
    stream: BatchStream
    val_ids: np.ndarray
    meta: dict  # what every checkpoint's config.json says about the run
    callback: Callable[[dict], None] | None
    total_steps: int | None
    step: int = 0
    elapsed: float = 0.0  # seconds of training (validation and snapshots excluded)
    best_val: float = math.inf
    last_val: float | None = None
    train_loss: float | None = None
    state: object = None  # the hidden state carried between batches: this rank's streams, (L, B, H) [x2]

    @classmethod
    def start(cls, text_path, text: str, out: Path, cfg: TrainConfig, resume: bool, callback) -> _Run:
        """Build the model (or load ``out/last``), the optimizer and the data; restore a resumed state."""
        group = distributed.setup(resolve_device(cfg.device))
        device = group.device
        amp = pick_amp(cfg.amp, device)
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if resume:
            model = load_checkpoint(out / "last", device)
        elif cfg.init_from:
            cfg, model = _init_from(cfg, device)
        else:
            torch.manual_seed(cfg.seed)
            vocab = Vocab.from_text(text)
            model = CharRNN(cfg.model_config(len(vocab)), vocab).to(device)
        vocab = model.vocab
        text = vocab.prepare(text, "error")  # a checkpoint's vocabulary must cover the text (a new one does)
        val_ids = vocab.encode(split(text, "val"))
        if len(val_ids) < 2:
            raise RnnvizError(f"{text_path}: text too short for a validation split ({len(text)} characters)")
        stream = BatchStream(vocab.encode(split(text, "train")), cfg.batch, cfg.seq_len)
        total = cfg.max_steps
        if cfg.epochs is not None:
            ep_steps = math.ceil(cfg.epochs * stream.steps_per_epoch)
            total = ep_steps if total is None else min(total, ep_steps)
        meta = {"train": asdict(cfg), "data": {"path": str(text_path), "chars": len(text), "split": "90/5/5",
                "newlines": "kept as in the file (CRLF not translated), BOM kept"},
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "amp": str(amp).removeprefix("torch.") if amp else "off"}
        run = cls(cfg=cfg, out=out, group=group, model=model,
                  net=model if group.world == 1 else torch.nn.parallel.DistributedDataParallel(model),
                  opt=_make_optimizer(cfg, model), scaler=torch.amp.GradScaler("cuda", enabled=amp is torch.float16),
                  amp=amp, stream=stream, val_ids=val_ids, meta=meta,
                  callback=callback if group.is_main else None, total_steps=total)
        if resume:
            run._restore()
        _reseed_ranks(group)
        out.mkdir(parents=True, exist_ok=True)
        if resume and cfg.snapshot_every:  # the snapshots match an uninterrupted run (a Ctrl-C checkpoint has none)
            prune_snapshots(out, run.step)
            if run.step and run.step % cfg.snapshot_every == 0 and not snapshot_path(out, run.step).exists():
                run.snapshot()
        return run

    @property
    def streams(self) -> tuple[int, int]:
        return self.group.share(self.cfg.batch)  # this rank's streams of the global batch

    @property
    def val_streams(self) -> int:
        return max(1, min(self.cfg.batch, len(self.val_ids) // 2000))  # >= 2000 chars of context per stream

    def _restore(self) -> None:
        """Continue from ``out/last``: optimizer, RNG, carried state, counters; the logs cut back to match."""
        state, info = load_train_state(self.out / "last", self.opt, self.model, self.cfg.batch,
                                       self.group.device)
        self.state = _rows(state, *self.streams)
        self.step, self.elapsed, self.best_val, self.last_val = (
            info["step"], info["elapsed"], info["best_val"], info["val_loss"])
        if info.get("scaler"):
            self.scaler.load_state_dict(info["scaler"])
        if self.done():
            at_steps = self.total_steps is not None and self.step >= self.total_steps
            goal = f"step {self.total_steps}" if at_steps else f"its time budget of {self.cfg.time_budget:g} s"
            raise RnnvizError(f"{self.out} is already at step {self.step}, past {goal}: nothing to train; "
                              "give a larger --max-steps, --epochs or --time-budget to continue")
        if self.group.is_main:
            rewind(self.out, info["appended"])
            self._warn_lr_jump(last_logged_lr(self.out))

    def _warn_lr_jump(self, before: float | None) -> None:
        """Warn (an event) when the resumed schedule starts far above where the run left it: a longer stop
        setting stretches the cosine back up (a War and Peace run went from 3e-4 back to 1.7e-3 and diverged)."""
        now = _lr_at(self.cfg, self.step, self.progress())
        if before and now > LR_JUMP * before and self.callback:
            self.callback({"type": "warning", "message": (
                f"resuming raises the learning rate from {before:.2e} to {now:.2e} (the schedule follows the new "
                f"stop setting); to train on from these weights at a low rate, start a new run with "
                f"--init-from {self.out} and a small --lr")})

    def done(self) -> bool:
        return ((self.total_steps is not None and self.step >= self.total_steps)
                or bool(self.cfg.time_budget and self.elapsed >= self.cfg.time_budget))

    def progress(self) -> float:
        """How far the run is, in [0, 1]: by steps, or by time under a time budget (whichever is further)."""
        p = self.step / self.total_steps if self.total_steps else 0.0
        return max(p, self.elapsed / self.cfg.time_budget) if self.cfg.time_budget else p

    def save(self, which: str, hidden=None) -> None:
        """Write ``out/best`` or ``out/last`` (with the resumable state) atomically."""
        metrics = {"step": self.step, "epoch": self.step / self.stream.steps_per_epoch, "train_loss": self.train_loss,
                   "val_loss": self.last_val, "best_val_loss": self.best_val, "train_seconds": round(self.elapsed, 3)}
        with atomic_dir(self.out / which, overwrite=True) as tmp:
            write_checkpoint_files(self.model, tmp, {**self.meta, "metrics": metrics})
            if which == "last":
                appended = appended_sizes(self.out)
                info = {"step": self.step, "elapsed": self.elapsed, "best_val": self.best_val,
                        "val_loss": self.last_val, "world_size": self.group.world, "appended": appended,
                        "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None}
                save_train_state(tmp, self.opt, hidden, info)

    def validate(self, row: dict | None = None) -> None:
        """Every rank takes part (the carried state is gathered); rank 0 validates and saves."""
        hidden = _gather_state(self.group, self.state, self.cfg.batch)
        if self.group.is_main:
            self._validate_and_save(row, hidden)
        self.last_val, self.best_val = self.group.broadcast_object((self.last_val, self.best_val))
        _reseed_ranks(self.group)

    def _validate_and_save(self, row: dict | None, hidden) -> None:
        self.last_val = evaluate(self.model, self.val_ids, streams=self.val_streams)
        # The step's log line and sample are written before its last/ checkpoint, which records the files'
        # sizes: a crash in between resumes from the previous checkpoint and cuts them back (rewind), so
        # each line is written exactly once whenever the run is killed.
        if row is not None:
            row["val_loss"] = round(self.last_val, 5)
            append_log(self.out / "log.jsonl", row)
        if self.cfg.sample_chars:
            # A fixed seed per step: the text changes only because the model did (the lecture's slides).
            s = sample(self.model, self.cfg.sample_chars, temperature=0.8, seed=self.cfg.seed + self.step)
            head = f"=== step {self.step}, val loss {self.last_val:.4f} nats/char ==="
            append(self.out / "samples.txt", f"{head}\n{s}\n\n")
        if self.last_val < self.best_val:
            self.best_val = self.last_val
            self.save("best")
        self.save("last", hidden)
        if self.cfg.snapshot_every:  # every checkpoint is also a snapshot
            save_snapshot(self.model, self.out, self.step, self.elapsed, self.last_val)
        if self.callback:
            self.callback({"type": "eval", "step": self.step, "val_loss": self.last_val,
                           "best_val_loss": self.best_val})

    def snapshot(self) -> None:
        save_snapshot(self.model, self.out, self.step, self.elapsed,
                      evaluate(self.model, self.val_ids, streams=self.val_streams))

    def train_step(self, lr: float) -> torch.Tensor:
        """One optimizer step on the next batch; returns this rank's share of the batch's mean loss (nats)."""
        lo, hi = self.streams
        device = self.group.device
        pos = self.step % self.stream.steps_per_epoch
        if pos == 0:
            self.state = None  # the streams restart at the beginning of the text: no carried context
        for g in self.opt.param_groups:
            g["lr"] = lr
        x, y = (torch.as_tensor(a[lo:hi], device=device, dtype=torch.long) for a in self.stream.get(pos))
        with torch.autocast(device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            logits, state = self.net(x, self.state)  # (B, T, V); B = hi - lo streams on this rank
            loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        self.opt.zero_grad(set_to_none=True)
        frac = (hi - lo) / self.cfg.batch  # this rank's part of the global mean loss
        # DDP averages the ranks' gradients: scaled so, they are those of the global batch's mean loss.
        self.scaler.scale(loss * (frac * self.group.world)).backward()
        if self.cfg.clip > 0:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        self.step += 1
        return loss.detach() * frac

    def loop(self) -> None:
        """Train until a stop condition; log every ``log_every`` steps, validate and save every ``eval_every``.
        Ctrl-C saves ``last/`` (one process) and re-raises; a full disk is a one-line error."""
        cfg = self.cfg
        self.model.train()
        log = _LogInterval(torch.zeros((), device=self.group.device), time.perf_counter())
        t_start = time.perf_counter() - self.elapsed
        try:
            while not self.done():
                lr = _lr_at(cfg, self.step, self.progress())
                log.add(self.train_step(lr))
                self.elapsed = time.perf_counter() - t_start
                if cfg.time_budget and self.group.world > 1:  # the lr schedule and the stop follow rank 0's clock
                    self.elapsed = self.group.broadcast_object(self.elapsed)
                is_eval = self.step % cfg.eval_every == 0 or self.done()
                if self.step % cfg.log_every == 0 or is_eval:
                    self._log(lr, log, is_eval)
                    if is_eval:
                        t_start = time.perf_counter() - self.elapsed  # validation time is not training time
                if cfg.snapshot_every and self.step % cfg.snapshot_every == 0 and not is_eval and self.group.is_main:
                    t0 = time.perf_counter()
                    self.snapshot()
                    t_start += time.perf_counter() - t0  # the snapshot's validation is not training time
                    log.t_mark += time.perf_counter() - t0  # ... nor in the chars/s
            if self.last_val is None:  # nothing to train (e.g. resumed at the end): still report a validation loss
                self.validate()
        except KeyboardInterrupt:
            if self.group.world == 1:  # under torchrun the other ranks may be gone: keep the last eval's checkpoint
                self.save("last", self.state)  # a usable checkpoint at the last completed step
            raise
        except OSError as e:  # a full disk while appending to the log or the samples; last/ stays as it was
            raise RnnvizError(f"cannot write {e.filename or self.out}: {e.strerror or e} (stopped at step "
                              f"{self.step}; {self.out}/last holds the last checkpoint)") from None

    def _log(self, lr: float, log: _LogInterval, is_eval: bool) -> None:
        """Close a log interval: its mean loss (one device sync), its chars/s, a log line (and a validation)."""
        self.train_loss = float(self.group.all_reduce(log.loss_sum)) / log.n
        rate = log.n * self.stream.chars_per_step / max(time.perf_counter() - log.t_mark, 1e-9)
        row = {"step": self.step, "epoch": round(self.step / self.stream.steps_per_epoch, 4),
               "time": round(self.elapsed, 3), "train_loss": round(self.train_loss, 5), "val_loss": None,
               "lr": lr, "chars_per_s": round(rate)}
        if is_eval:
            self.validate(row)  # appends the row
        elif self.group.is_main:
            append_log(self.out / "log.jsonl", row)
        if self.callback:
            self.callback({"type": "step", **row, "progress": self.progress()})
        log.reset()

    def summary(self) -> dict:
        return {"steps": self.step, "epochs": self.step / self.stream.steps_per_epoch, "train_loss": self.train_loss,
                "val_loss": self.last_val, "best_val_loss": self.best_val, "seconds": self.elapsed,
                "chars_per_s": self.step * self.stream.chars_per_step / max(self.elapsed, 1e-9), "out": str(self.out)}


@dataclass
class _LogInterval:
    """The steps since the last log line: their summed loss (kept on the device), count and start time."""

    loss_sum: torch.Tensor
    t_mark: float
    n: int = 0

    def add(self, loss: torch.Tensor) -> None:
        self.loss_sum += loss
        self.n += 1

    def reset(self) -> None:
        self.loss_sum.zero_()
        self.n, self.t_mark = 0, time.perf_counter()


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


def load_train_config(d: dict) -> TrainConfig:
    """A TrainConfig from a saved dict, ignoring keys this version does not know."""
    if not isinstance(d, dict):
        raise RnnvizError(f"the saved training settings are not a JSON object: {str(d)[:40]}")
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in d.items() if k in known})
