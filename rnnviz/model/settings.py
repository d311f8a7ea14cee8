"""Every training setting in one dataclass, with its default and help text (`rnnviz train --help` is built
from it): torch-free, so that the CLI starts without importing torch."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from rnnviz.errors import RnnvizError
from rnnviz.model.cells import CELLS, MAX_HIDDEN, MAX_LAYERS

STOPS = ("epochs", "max_steps", "time_budget")  # the settings that say when a run ends
OPTIMIZERS = ("adamw", "adagrad", "rmsprop")
SCHEDULES = ("wsd", "cosine", "constant")
WSD_DECAY = 0.2  # the wsd schedule decays over this last fraction of the run (stable before it)
AMP_MODES = ("auto", "off", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


AUTO_WARMUP_FRAC = 0.02  # the auto warm-up: this fraction of the steps a run is expected to make ...
AUTO_WARMUP_MAX = 100  # ... and at most this many (a long run's warm-up; also the ramp until a budget's pace is known)


def auto_warmup(expected_steps: int | None) -> int:
    """The warm-up (steps) chosen when ``--warmup`` is not given, for a run expected to make ``expected_steps``
    steps (None: not known yet). A fixed 100 steps was a quarter of a 120 s budget on a 2-core CPU."""
    if expected_steps is None:
        return AUTO_WARMUP_MAX
    return max(1, min(AUTO_WARMUP_MAX, round(AUTO_WARMUP_FRAC * expected_steps)))


def _setting(default, help: str, choices: tuple[str, ...] | None = None, cli: bool = True):
    """A :class:`TrainConfig` field with its help text and choices: `rnnviz train` makes its options from
    these (``cli=False``: a setting of the Python API only)."""
    return field(default=default, metadata={"help": help, "choices": choices, "cli": cli})


@dataclass
class TrainConfig:
    """Every training setting, with its default and help text in one place (`rnnviz train --help`)."""

    cell: str = _setting("lstm", "Recurrent cell: lstm, gru, rnn (tanh); or a modern one: mingru, mamba, slstm "
                         "(docs/modern.md).", ("lstm", "gru", "rnn", "mingru", "mamba", "slstm"))
    layers: int = _setting(2, "Stacked recurrent layers.")
    hidden: int = _setting(128, "Units per layer.")
    dropout: float = _setting(0.0, "Dropout between layers and before the read-out.")
    seq_len: int = _setting(100, "Truncated-BPTT window: characters per training sequence (T).")
    batch: int = _setting(64, "Parallel contiguous streams (B).")
    optimizer: str = _setting("adamw", "Optimizer.", OPTIMIZERS)
    lr: float = _setting(2e-3, "Peak learning rate.")
    weight_decay: float = _setting(0.0, "AdamW's decoupled weight decay.")
    # wsd by default: at equal steps it ended 0.14-0.15 nats/char below the cosine on tiny Shakespeare (2x128 LSTM,
    # 1,300 steps, the README quick start's 120 s; at lr 2e-3 and at 4e-3), and matches it on long runs in the
    # literature (Hägele et al. 2024). The bundled models were trained with the cosine (their cards say so).
    schedule: str = _setting("wsd", "Learning-rate schedule after the warm-up: wsd (stable, then a linear decay over "
                                    "the last 20%), cosine decay to the end, or constant (no warm-up).", SCHEDULES)
    warmup: int | None = _setting(None, "Warm-up steps (wsd, cosine); default: auto, 2% of the steps the run is "
                                        "expected to make (by its stop setting, or under a time budget by the pace "
                                        "measured in its first seconds), from 1 to 100.")
    min_lr_frac: float = _setting(0.1, "The wsd and cosine schedules' final learning rate, as a fraction of lr.",
                                  cli=False)
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
            raise RnnvizError(f"unknown schedule {self.schedule!r}; choose {', '.join(SCHEDULES)}")
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

    def model_config(self, vocab_size: int):
        """The :class:`rnnviz.model.charrnn.ModelConfig` of this run's model."""
        from rnnviz.model.units import ModelConfig

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


def load_train_config(d: dict) -> TrainConfig:
    """A TrainConfig from a saved dict, ignoring keys this version does not know."""
    if not isinstance(d, dict):
        raise RnnvizError(f"the saved training settings are not a JSON object: {str(d)[:40]}")
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in d.items() if k in known})
