"""Training: truncated BPTT over contiguous streams, with the hidden state carried across batches.

A run directory holds ``best/`` (lowest validation loss) and ``last/`` checkpoints (``last/`` also has
the optimizer state, the carried hidden state, the data position and the RNG states, so that
``resume=True`` continues exactly), ``log.jsonl`` (one line per logged step) and ``samples.txt``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
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
from rnnviz.model.charrnn import CharRNN, eval_mode
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
from rnnviz.model.settings import (  # noqa: F401 (TrainConfig and its names: the trainer's public face)
    AMP_MODES,
    DEVICES,
    OPTIMIZERS,
    SCHEDULES,
    STOPS,
    WSD_DECAY,
    TrainConfig,
    auto_warmup,
    load_train_config,
)
from rnnviz.model.snapshots import SNAPSHOT_DIR, prune_snapshots, save_snapshot, snapshot_path
from rnnviz.model.vocab import Vocab
from rnnviz.threads import choose_threads, step_gemm_flops, step_loop

LR_JUMP = 2.0  # a resume that raises the learning rate more than this many times over warns


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
def unigram_loss(train_ids: np.ndarray, val_ids: np.ndarray, vocab_size: int) -> float:
    """Nats/char on ``val_ids`` of the training split's character frequencies (add-one smoothed): what a
    model that learned nothing but how often each character occurs would score."""
    counts = np.bincount(train_ids, minlength=vocab_size) + 1.0
    return float(-np.log(counts[val_ids] / counts.sum()).mean())


def evaluate(model: CharRNN, ids: np.ndarray, streams: int = 1, chunk: int = 2048, threads: int | None = None) -> float:
    """Mean cross-entropy of predicting ``ids[t+1]`` from ``ids[:t+1]``, in nats/char.

    ``streams=1`` reads the whole text as one stream with the state carried throughout (exact).
    ``streams=S`` cuts it into S contiguous pieces read in parallel, each from a zero state (faster;
    the few characters after each cut are predicted with less context, and < S trailing chars are dropped).
    ``threads``: torch intra-op threads (None: :func:`rnnviz.threads.choose_threads` picks).
    """
    n = (len(ids) - 1) // streams
    if n < 1:
        raise RnnvizError(f"text too short to evaluate: {len(ids)} characters")
    dev = model.device
    x = torch.as_tensor(ids[: n * streams].reshape(streams, n), device=dev)  # (S, n)
    y = torch.as_tensor(ids[1 : n * streams + 1].reshape(streams, n), device=dev)  # (S, n)
    total, state = torch.zeros((), dtype=torch.float64, device=dev), None
    cfg = model.config
    threads = choose_threads(step_gemm_flops(cfg.cell, cfg.hidden, streams), threads)
    with eval_mode(model), torch.no_grad(), step_loop(threads):  # no graph: it would grow over the text
        for a in range(0, n, chunk):
            logits, state = model(x[:, a : a + chunk], state)  # (S, t, V)
            total += F.cross_entropy(logits.flatten(0, 1).float(), y[:, a : a + chunk].flatten(), reduction="sum")
    return float(total) / (n * streams)


def _lr_at(cfg: TrainConfig, step: int, progress: float, warmup: int) -> float:
    """The learning rate of step ``step`` (0-based) at ``progress`` in [0, 1]: constant (no warm-up), or a linear
    warm-up over ``warmup`` steps, then either a cosine from ``lr`` down to ``lr * min_lr_frac`` at the run's end
    or, for ``wsd`` (warm-up, stable, decay), ``lr`` until the last :data:`WSD_DECAY` of the run and a linear
    decay to ``lr * min_lr_frac`` over it."""
    if cfg.schedule == "constant":
        return cfg.lr
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    lo, progress = cfg.lr * cfg.min_lr_frac, min(progress, 1.0)
    if cfg.schedule == "wsd":
        return cfg.lr - (cfg.lr - lo) * max(0.0, progress - (1 - WSD_DECAY)) / WSD_DECAY
    return lo + 0.5 * (cfg.lr - lo) * (1 + math.cos(math.pi * progress))


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
    threads: int | None = None,
) -> dict:
    """Train a CharRNN on ``text_path`` (90% train / 5% validation) into the run directory ``out``.

    ``callback(event)`` is called every ``log_every`` steps (``event["type"] == "step"``: step, epoch,
    loss in nats/char, lr, chars/s, progress in [0, 1]), at each validation (``"eval"``), and once with a
    ``"message"`` (``"warning"``) when a resume's new stop setting raises the learning rate over 2x.
    With ``resume=True`` the run continues from ``out/last`` with its saved configuration, updated by
    ``overrides`` (e.g. ``{"max_steps": 2000}`` to train longer; ``cfg`` is ignored). ``threads``: torch
    intra-op threads (None: :func:`rnnviz.threads.choose_threads` picks from this process's share of the
    batch and the machine's load; validation runs on the same count).
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
    rows = max(1, cfg.batch // distributed.world_size())  # this process's streams: the step GEMM's rows
    with step_loop(choose_threads(step_gemm_flops(cfg.cell, cfg.hidden, rows), threads)):
        if distributed.rank() > 0:  # rank 0 holds the run for the whole job
            return _train(text_path, text, out, cfg, resume, callback)
        with exclusive(out / RUN_LOCK, f"{out} is being trained", "rnnviz train"):  # in the run's folder
            return _train(text_path, text, out, cfg, resume, callback)


def _train(text_path, text: str, out: Path, cfg: TrainConfig, resume: bool, callback) -> dict:
    if resume:  # the files a resumed run appends to are its own, never links out of it: checked before any work
        check_appended(out)
    if cfg.snapshot_every and os.path.lexists(out / SNAPSHOT_DIR):
        writable_dir(out, SNAPSHOT_DIR)
    run = _Run.start(text_path, text, out, cfg, resume, callback)
    if not resume and run.group.is_main:
        _fresh_start(out)
    with flush_denormal(run.group.device):
        run.loop()
    return run.summary()


def denormals_flushed() -> bool:
    """Whether this thread's CPU flushes denormal floats to zero (torch has a setter, no getter)."""
    return float(torch.tensor([1e-39]).mul(1.0)[0]) == 0.0


@contextmanager
def flush_denormal(device: torch.device) -> Iterator[None]:
    """On the CPU, flush denormals to zero inside (a saturated model's tiny gradients ran 3.9x slower
    without it); the previous setting is restored after."""
    if device.type != "cpu":
        yield
        return
    before = denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


RUN_LOCK = ".run.lock"  # held by the process training a run: a second train of the same run is refused




def _run_config(out: Path, cfg: TrainConfig | None, resume: bool, force: bool, overrides: dict | None) -> TrainConfig:
    """The settings of a new run (refusing to overwrite one without ``force``) or of the run to resume."""
    if resume:
        if not (out / "last" / "train_state.json").exists():
            raise RnnvizError(f"{out}: nothing to resume (no last/ checkpoint)")
        saved = read_config(out / "last").get("train")
        if isinstance(saved, dict) and any(k in STOPS for k in overrides or {}):
            saved = {**saved, **dict.fromkeys(STOPS)}  # a stop option given replaces the saved ones, all of them
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
    warmup: int | None = None  # the warm-up steps: --warmup, or the auto choice (None: waiting for the pace)
    elapsed: float = 0.0  # seconds since the run began, validations included (what a time budget counts)
    unigram: float = math.nan  # nats/char on the validation split of the training split's character frequencies
    eval_seconds: float | None = None  # how long the last validation took (the final one is budgeted so)
    pace_from: tuple[int, float] | None = None  # (step, time) the pace is measured from; None once told
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
        train_ids = vocab.encode(split(text, "train"))
        stream = BatchStream(train_ids, cfg.batch, cfg.seq_len)
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
                  callback=callback if group.is_main else None, total_steps=total,
                  unigram=unigram_loss(train_ids, val_ids, len(vocab)))
        if cfg.warmup is not None or not cfg.time_budget:  # else chosen once the pace is known (_check_pace)
            run.warmup = cfg.warmup if cfg.warmup is not None else auto_warmup(total)
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
        if self.cfg.warmup is None and info.get("warmup") is not None:  # the auto choice stays (exact resume)
            self.warmup = info["warmup"]
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
        now = self.lr()
        if before and now > LR_JUMP * before and self.callback:
            self.callback({"type": "warning", "message": (
                f"resuming raises the learning rate from {before:.2e} to {now:.2e} (the schedule follows the new "
                f"stop setting); to train on from these weights at a low rate, start a new run with "
                f"--init-from {self.out} and a small --lr")})

    def done(self) -> bool:
        """At the step limit, or where the final validation would end past the time budget."""
        return ((self.total_steps is not None and self.step >= self.total_steps)
                or bool(self.cfg.time_budget and self.elapsed + self.final_eval_estimate() >= self.cfg.time_budget))

    def final_eval_estimate(self) -> float:
        """Seconds the final validation (and sample) will take: as long as the last one; before any, the
        validation text at a third of the training's time per character (a forward pass, no backward)."""
        if self.eval_seconds is not None:
            return self.eval_seconds
        if not self.step:
            return 0.0
        return len(self.val_ids) * self.elapsed / (self.step * self.stream.chars_per_step) / 3

    def lr(self) -> float:
        """The learning rate of the next step. Until an auto warm-up under a time budget is chosen, the ramp
        is that of the longest auto warm-up: it only steepens once chosen (the rate never drops in it)."""
        return _lr_at(self.cfg, self.step, self.progress(), auto_warmup(None) if self.warmup is None else self.warmup)

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
                info = {"step": self.step, "elapsed": self.elapsed, "best_val": self.best_val, "warmup": self.warmup,
                        "val_loss": self.last_val, "world_size": self.group.world, "appended": appended,
                        "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None}
                save_train_state(tmp, self.opt, hidden, info)

    def validate(self, row: dict | None = None) -> None:
        """Every rank takes part (the carried state is gathered); rank 0 validates and saves."""
        t0 = time.perf_counter()
        hidden = _gather_state(self.group, self.state, self.cfg.batch)
        if self.group.is_main:
            self._validate_and_save(row, hidden)
            self.eval_seconds = time.perf_counter() - t0
        self.last_val, self.best_val, self.eval_seconds = self.group.broadcast_object(
            (self.last_val, self.best_val, self.eval_seconds))  # every rank stops at the same step
        _reseed_ranks(self.group)

    def _validate_and_save(self, row: dict | None, hidden) -> None:
        self.last_val = evaluate(self.model, self.val_ids, streams=self.val_streams, threads=torch.get_num_threads())
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
                      evaluate(self.model, self.val_ids, streams=self.val_streams, threads=torch.get_num_threads()))

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
        paced = False
        try:
            stop = self.done()
            while not stop:
                lr = self.lr()
                log.add(self.train_step(lr))
                self.elapsed = time.perf_counter() - t_start
                if cfg.time_budget and self.group.world > 1:  # the lr schedule and the stop follow rank 0's clock
                    self.elapsed = self.group.broadcast_object(self.elapsed)
                paced = paced or self._check_pace()
                stop = self.done()  # decided once: the final validation must not move a time budget's end
                is_eval = self.step % cfg.eval_every == 0 or stop
                if self.step % cfg.log_every == 0 or is_eval:
                    self._log(lr, log, is_eval)
                if cfg.snapshot_every and self.step % cfg.snapshot_every == 0 and not is_eval and self.group.is_main:
                    t0 = time.perf_counter()
                    self.snapshot()
                    log.t_mark += time.perf_counter() - t0  # the snapshot's validation is not in the chars/s
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

    def _check_pace(self) -> bool:
        """Early in a run (2 s or 20 steps after its first step, whose one-time costs are left out): the pace,
        from the run's clock (rank 0's under torchrun: every rank decides alike). Under a time budget it
        estimates the steps the budget allows, chooses an auto warm-up from them, and warns when they end
        inside an explicit warm-up (on a busy machine 120 s made 11 steps and a model that had learned
        nothing). Returns whether the pace is known."""
        if self.pace_from is None:
            self.pace_from = (self.step, self.elapsed)
            return False
        steps, seconds = self.step - self.pace_from[0], self.elapsed - self.pace_from[1]
        if steps < 2 or (seconds < 2 and steps < 20):
            return False
        steps_per_s = steps / max(seconds, 1e-9)
        pace = f"{steps_per_s:.2f} steps/s, {steps_per_s * self.stream.chars_per_step / 1e3:.1f}k chars/s"
        b = self.cfg.time_budget
        if not b:
            self._tell("message", f"pace: {pace}")
            return True
        steps = self.step + int(max(b - self.elapsed - self.final_eval_estimate(), 0) * steps_per_s)
        if self.total_steps is not None:
            steps = min(steps, self.total_steps)
        if self.warmup is None:
            self.warmup = auto_warmup(steps)
        msg = f"pace: {pace}; the time budget of {b:g} s allows about {steps:,} steps"
        if self.cfg.warmup is not None and steps < 2 * self.warmup:
            self._tell("warning", f"{msg}, {'inside' if steps < self.warmup else 'barely past'} the {self.warmup} "
                                  "warm-up steps: the model will learn little; give a larger --time-budget (or a "
                                  "smaller --warmup)")
        else:
            self._tell("message", msg + (f", warm-up {self.warmup} steps" if self.cfg.warmup is None else ""))
        return True

    def _tell(self, kind: str, message: str) -> None:
        if self.callback:
            self.callback({"type": kind, "message": message})

    def summary(self) -> dict:
        return {"steps": self.step, "epochs": self.step / self.stream.steps_per_epoch, "train_loss": self.train_loss,
                "val_loss": self.last_val, "best_val_loss": self.best_val, "seconds": self.elapsed,
                "unigram_loss": self.unigram,
                "warmup": auto_warmup(None) if self.warmup is None else self.warmup,  # None: the ramp it had
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
