"""The ``rnnviz`` command. Thin: every verb parses options, calls the library, and reports.

Rules every command keeps:

- Errors in the user's input (:class:`RnnvizError`, raised by the library or by an option's check) are
  one line, ``Error: ...``, and exit status 1, never a traceback. Only click's own parsing errors (an
  unknown option, a value of the wrong type, a choice not offered) exit 2 with the usage line.
  Ctrl-C, SIGTERM and SIGHUP exit with 130 (:mod:`rnnviz.stopping`; a SIGHUP ignored by nohup stays ignored).
- ``--start``/``--length`` pick a window of a text (:func:`rnnviz.model.data.check_window`): ``--start`` >= 0,
  ``--length`` >= 1 characters; a missing ``--length`` means the default its help shows ("to the end"
  where it shows that), 0 is an error, and a length past the end stops at the end.
- ``--device auto`` (the default everywhere) is CUDA when available, else the CPU.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import signal
import sys
import typing
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import click
from click.core import ParameterSource

from rnnviz.analysis.on_threshold import THETA
from rnnviz.errors import RnnvizError
from rnnviz.fsutil import check_replaceable, ensure_parent
from rnnviz.memory import MEMORY
from rnnviz.model.data import check_window
from rnnviz.model.settings import STOPS, TrainConfig
from rnnviz.recording import MAX_PASSES
from rnnviz.stopping import STOP_SIGNALS, STOPPED, set_stop_handler, stop_handler

_signalled: list[int] = []  # the signals that stopped this command


def _terminate(signum, frame):
    """SIGTERM (``kill``, a service manager, a CI timeout) and SIGHUP (the terminal closed) end a command as
    Ctrl-C does (:mod:`rnnviz.stopping`): the command's KeyboardInterrupt handling saves state (train) and
    removes temp files (record, export, emergence), and the exit status is 130."""
    _signalled.append(signum)
    raise KeyboardInterrupt


class _Group(click.Group):
    def invoke(self, ctx):
        from rnnviz.model.ranks import rank, under_torchrun

        worker = under_torchrun()  # dies with its launcher, stops quietly
        if worker:  # torch only here: a command that reads a store never imports it
            from rnnviz.model import distributed

            distributed.die_with_launcher()
            handler, signals = distributed.stop_worker, distributed.WORKER_STOP_SIGNALS
        else:
            handler, signals = _terminate, STOP_SIGNALS
        with stop_handler(handler, signals):
            try:
                return super().invoke(ctx)  # parses the command's options too: their checks raise in here
            except RnnvizError as e:
                where = f"rank {rank()}: " if worker else ""  # under torchrun, say which process
                raise click.ClickException(where + str(e)) from None
            except OSError as e:  # the file system said no (a full disk, --out under a file or in /proc)
                where = f"{e.filename}: " if e.filename else ""
                raise click.ClickException(f"{where}{e.strerror or e}") from None
            except KeyboardInterrupt:
                click.echo("\nInterrupted.", err=True)
                sys.exit(STOPPED)
            except Exception:
                if worker:  # stopped, or another rank failed first? then this one's error is an echo
                    distributed.wait_to_be_stopped()
                raise


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rnnviz")
def main() -> None:
    """Train character-level RNNs and find the cells inside them.

    \b
    rnnviz train text.txt --out runs/m       # train a char-RNN
    rnnviz record runs/m text.txt --out st   # record every cell over a text
    rnnviz find st --feature in_quote        # rank cells against a hypothesis
    rnnviz serve st                          # explore in the browser
    """


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


# --- shared options and helpers ---

_SETTINGS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_SETTING_TYPES = typing.get_type_hints(TrainConfig)


def _setting_option(name: str) -> Callable:
    """The option for a :class:`TrainConfig` field: its flag, type (or choices), default and help text."""
    f, kind = _SETTINGS[name], _SETTING_TYPES[name]
    kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)  # float | None -> float
    choices = f.metadata["choices"]
    return click.option("--" + name.replace("_", "-"), type=click.Choice(choices) if choices else kind,
                        default=f.default, show_default=f.default is not None, help=f.metadata["help"])


device_option = _setting_option("device")  # --device on every command: one default (auto), one help text


def _check_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    from rnnviz.threads import check_threads

    return value if value is None or ctx.resilient_parsing else check_threads(value)


threads_option = click.option(  # --threads on every command with a step loop (train, eval, record)
    "--threads", type=int, default=None, callback=_check_threads,
    help="Torch threads. Default: OMP_NUM_THREADS if set, else one per core no other process runs on when "
    "the step's matrices are large enough to gain, 1 on a busy machine.")


def _check_memory(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    from rnnviz.memory import parse_memory

    return value if ctx.resilient_parsing else parse_memory(value, "--memory")


memory_option = click.option(  # --memory on every command that reads a whole store (find, explain)
    "--memory", default=MEMORY, show_default=True, metavar="SIZE", callback=_check_memory,
    help="Resident memory the command may take, e.g. 2GB, 512MB or unlimited: the store is read in blocks that "
    "fit (the results are the same whatever it is).")


def train_options(f: Callable) -> Callable:
    """One option per :class:`TrainConfig` field marked ``cli``, in the dataclass's order."""
    for name in reversed([n for n, field in _SETTINGS.items() if field.metadata["cli"]]):
        f = _setting_option(name)(f)
    return f


def _check_window_option(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is None or ctx.resilient_parsing:
        return value
    if param.name == "start":
        check_window(value, None)
    else:
        check_window(0, value)
    return value


def window_options(default_length: int | None = None, of: str = "TEXT", split: str | None = None) -> Callable:
    """``--start`` and ``--length``, checked as they are parsed, by the one rule of
    :func:`rnnviz.model.data.check_window`. ``default_length=None``: a missing --length reads to the end.
    ``split``: the default of ``--split`` (which part of the 90/5/5 split the window is in); None: no
    --split (a store's text)."""

    def decorate(f: Callable) -> Callable:
        if split is not None:
            f = click.option("--split", "split_name", type=click.Choice(["all", "train", "val", "test"]),
                             default=split, show_default=True,
                             help="Part of TEXT's 90/5/5 split (train, val, test: the last 5%, never trained on) "
                             "that --start counts from.")(f)
        f = click.option("--length", type=int, default=default_length, callback=_check_window_option,
                         show_default=default_length is not None,
                         help="Characters to read from --start, >= 1 (a length past the end stops there)."
                         + (" Default: to the end." if default_length is None else ""))(f)
        return click.option("--start", type=int, default=0, show_default=True, callback=_check_window_option,
                            help=f"First character of {of} (0-based).")(f)

    return decorate


def output_format_option(formats: tuple[str, ...] = ("table", "csv", "json")) -> Callable:
    """``--format``: a table for people (the default), or CSV / JSON for programs. ``--json`` (hidden, what
    some commands took before) is the same as ``--format json``."""

    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def command(*args, json_alias: bool = False, **kwargs):
            if json_alias:
                kwargs["fmt"] = "json"
            return f(*args, **kwargs)

        command = click.option("--json", "json_alias", is_flag=True, hidden=True,
                               help="Same as --format json.")(command)
        return click.option("--format", "fmt", type=click.Choice(formats), default="table", show_default=True,
                            help="Output format.")(command)

    return decorate


def _split_units(ctx: click.Context, param: click.Parameter, value: str | tuple[str, ...] | None) -> list[str] | None:
    """--unit / --units values as unit names: comma-separated and/or repeated; None when none were given."""
    specs = [value] if isinstance(value, str) else list(value or ())
    if not any(specs):
        return None
    return [u.strip() for spec in specs for u in spec.split(",") if u.strip()]


def _parse_clamps(ctx: click.Context, param: click.Parameter, items: tuple[str, ...]) -> dict[str, float]:
    """--clamp UNIT=VALUE values as {unit: value}."""
    clamps = {}
    for item in items:
        unit, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            clamps[unit] = float(value)
        except ValueError:
            raise RnnvizError(f"--clamp wants UNIT=VALUE, e.g. 1:c:42=1.0, got {item!r}") from None
    return clamps


@contextmanager
def progress_bar(desc: str, unit: str, total: int = 1, **tqdm_options) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar on stderr, fed by a library call's ``progress(done, total)`` callback, closed however the
    call ends. It is drawn at its first update (so an error before any progress prints alone), only on a
    terminal unless ``disable`` says otherwise, and leaves nothing behind; ``tqdm_options`` go to tqdm."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, desc=desc, **{"leave": False, "disable": None, "delay": 1e-9, **tqdm_options})

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        bar.close()


# --- train, sample, eval (foundation) ---


@main.command()
@click.argument("text", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to write.")
@train_options
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--force", is_flag=True,
              help="Start over even if --out holds a run (only a run or an empty folder is replaced).")
@click.option("--nproc", type=int, help="Train data-parallel in N processes (runs torchrun; one per GPU on CUDA).")
@threads_option
def train(text, out, resume, force, nproc, threads, **opts):
    """Train a char-RNN on TEXT (90% train, 5% validation; the last 5% is left for testing).

    Writes OUT/best and OUT/last checkpoints, OUT/log.jsonl and OUT/samples.txt. Without a stop option
    it trains for 10 epochs. Ctrl-C saves OUT/last; --resume continues exactly where it stopped (the
    saved settings are kept; a stop option given with --resume replaces the saved one).

    \b
    Example:
      rnnviz train ../shared/data/tiny_shakespeare.txt --out runs/ts --cell lstm \\
          --layers 2 --hidden 128 --time-budget 120
      rnnviz train ../shared/data/tiny_shakespeare.txt --out runs/ts --resume --max-steps 5000
      rnnviz train ../shared/data/tiny_shakespeare.txt --out runs/ts-ft --init-from runs/ts --lr 5e-4 --max-steps 2000
      rnnviz train ../shared/data/tiny_shakespeare.txt --out runs/ts2 --batch 64 --nproc 2
      torchrun --nproc-per-node 2 -m rnnviz train ../shared/data/tiny_shakespeare.txt --out runs/ts2 --batch 64
    """
    from rnnviz.model.distributed import rank
    from rnnviz.model.trainer import train as run_training

    cfg, overrides = _train_settings(resume, opts)
    if nproc is not None:
        _check_train_launch(text, out, cfg, resume, force, nproc, opts["device"])
        sys.exit(_relaunch(click.get_current_context(), nproc))
    ensure_parent(out)  # --out under a file or in /proc: say so before the progress bar
    with _training_bar(out) as report:
        r = run_training(text, out, cfg, resume=resume, force=force, callback=report, overrides=overrides,
                         threads=threads)
    if rank() > 0:
        return
    click.echo(
        f"done: {r['steps']} steps ({r['epochs']:.2f} epochs) in {r['seconds']:.0f} s, "
        f"{r['chars_per_s'] / 1e3:.1f}k chars/s; "
        f"train loss {r['train_loss']:.4f}, val loss {r['val_loss']:.4f}, best val {r['best_val_loss']:.4f} nats/char "
        f"-> {out}/best"
    )
    if r["best_val_loss"] >= r["unigram_loss"] - NO_BETTER:
        click.echo(f"Warning: the best validation loss {r['best_val_loss']:.3f} nats/char is no better than counting "
                   f"characters (a unigram model scores {r['unigram_loss']:.3f}): after {r['steps']} steps (warm-up "
                   f"{r['warmup']}) the model has learned nothing to look inside; train longer "
                   "(--resume with a larger --max-steps or --time-budget)", err=True)


NO_BETTER = 0.05  # nats/char: a run that ends within this of the unigram loss has learned nothing to analyse


def _train_settings(resume: bool, opts: dict) -> tuple[TrainConfig | None, dict | None]:
    """(config, None) for a new run; (None, overrides) for --resume: the stop options given, and --device
    when it is not auto (the saved settings are kept otherwise)."""
    if resume:
        stops = {k: opts[k] for k in STOPS if opts[k] is not None}
        return None, {**stops, **({"device": opts["device"]} if opts["device"] != "auto" else {})}
    for name in ("layers", "hidden"):
        if opts[name] < 1:
            raise RnnvizError(f"--{name} must be >= 1, got {opts[name]}")
    return TrainConfig(**opts), None


@contextmanager
def _training_bar(out) -> Iterator[Callable[[dict], None]]:
    """The training progress bar (rank 0 reports for all under torchrun), fed by the trainer's events;
    Ctrl-C says what was saved and exits 130."""
    from tqdm import tqdm

    from rnnviz.model.distributed import rank, world_size

    bar = tqdm(total=1000, bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}", delay=1e-9,
               disable=True if rank() > 0 else None)  # None: drawn on a terminal only (not in a pipe or log)

    def report(ev: dict) -> None:
        if ev["type"] == "step":
            bar.n = int(1000 * min(ev["progress"], 1.0))
            bar.set_postfix_str(
                f"step {ev['step']} loss {ev['train_loss']:.3f} lr {ev['lr']:.2e} "
                f"{ev['chars_per_s'] / 1e3:.1f}k chars/s"
            )
        elif ev["type"] == "warning":
            bar.write(f"Warning: {ev['message']}", file=sys.stderr)
        elif ev["type"] == "message":
            bar.write(ev["message"])
        else:
            bar.write(f"step {ev['step']}: val loss {ev['val_loss']:.4f} nats/char (best {ev['best_val_loss']:.4f})")

    try:
        yield report
    except KeyboardInterrupt:
        bar.close()
        if world_size() == 1:
            click.echo(f"\nInterrupted: the last completed step is saved in {out}/last (continue with --resume).",
                       err=True)
        elif rank() == 0:  # under torchrun nothing is saved on the way out: the other ranks may be gone
            click.echo(f"\nInterrupted: {out}/last holds the last validation's checkpoint, if any (continue with "
                       "--resume).", err=True)
        sys.exit(STOPPED)
    finally:  # before an error's line, which must come last; a bar never drawn stays unwritten
        bar.disable = bar.disable or bar.n == 0 and not bar.postfix
        bar.close()


def _check_train_launch(text, out, cfg, resume, force, nproc, device) -> None:
    """What would make every rank fail, said once before torchrun starts any."""
    from pathlib import Path

    from rnnviz.model.checkpoint import read_config
    from rnnviz.model.data import read_text
    from rnnviz.model.distributed import check_nproc

    read_text(text)
    last = Path(out) / "last"
    if resume:
        if not (last / "train_state.json").exists():
            raise RnnvizError(f"{out}: nothing to resume (no last/ checkpoint)")
        saved = read_config(last)["train"]
        batch = saved.get("batch")
        if isinstance(batch, int) and nproc > batch:  # the run's batch is kept on resume
            raise RnnvizError(f"{out} was trained with --batch {batch}: it cannot be resumed in {nproc} processes "
                              f"(at most {batch})")
        device = device if device != "auto" else saved.get("device", "auto")
    else:
        if (last.exists() or (Path(out) / "best").exists()) and not force:
            raise RnnvizError(f"{out} already holds a run: use --resume to continue it or --force to start over")
        batch = cfg.batch
    check_nproc(nproc, batch, device, "--batch")


def _relaunch(ctx: click.Context, nproc: int) -> int:
    """Run this command again under torchrun in ``nproc`` processes, with the same arguments but --nproc."""
    from rnnviz.model.distributed import launch

    args, positional = [ctx.info_name], []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name == "nproc" or value is None or value is False:
            continue
        if isinstance(param, click.Argument):
            positional.append(str(value))
        elif param.is_flag:
            args.append(param.opts[0])
        else:
            args += [param.opts[0], str(value)]
    return launch(nproc, [*args, "--", *positional])


@main.command()
@click.argument("ckpt", type=click.Path())
@click.option("--prime", default="", help="Text the model reads before generating.")
@click.option("--length", type=int, default=500, show_default=True, help="Characters to generate.")
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--top-k", type=int, default=None, help="Sample only from the K most likely characters.")
@click.option("--seed", type=int, default=None, help="Make the output reproducible.")
@click.option("--clamp", multiple=True, metavar="UNIT=VALUE", callback=_parse_clamps,
              help="Hold a unit at a value, e.g. 1:c:42=1.0 (repeatable).")
@device_option
def sample(ckpt, prime, length, temperature, top_k, seed, clamp, device):
    """Generate text from a checkpoint (or a run directory: its best checkpoint).

    \b
    Example:
      rnnviz sample runs/ts --prime "ROMEO:" --length 300 --temperature 0.8 --seed 1
      rnnviz sample runs/ts --seed 1 --clamp 1:c:42=1.0
    """
    from rnnviz.devices import resolve_device
    from rnnviz.model.sampling import sample as run_sampling

    model = _load_model(ckpt, resolve_device(device))
    text = run_sampling(model, length, prime, temperature, top_k, seed, clamp)
    click.echo(prime + text)


@main.command(name="eval")
@click.argument("ckpt", type=click.Path())
@click.argument("text", type=click.Path(dir_okay=False))
@click.option("--split", "split_name", type=click.Choice(["all", "train", "val", "test"]), default="all",
              show_default=True, help="Evaluate on this part of the 90/5/5 split.")
@click.option("--streams", type=int, default=1, show_default=True,
              help="Parallel pieces (1 = one exact pass with the state carried through the whole text).")
@click.option("--unknown", default="error", show_default=True, help="Unknown characters: error, skip or replace:X.")
@device_option
@threads_option
@output_format_option()
def eval_cmd(ckpt, text, split_name, streams, unknown, device, threads, fmt):
    """Cross-entropy of a checkpoint on TEXT, in nats/char and bits/char.

    \b
    Example:
      rnnviz eval runs/ts ../shared/data/tiny_shakespeare.txt --split test --format json
    """
    import math

    from rnnviz.devices import resolve_device
    from rnnviz.model.data import read_text, split
    from rnnviz.model.trainer import evaluate

    if streams < 1:
        raise RnnvizError("--streams must be >= 1")
    model = _load_model(ckpt, resolve_device(device))
    content = read_text(text)
    part = content if split_name == "all" else split(content, split_name)
    part = model.vocab.prepare(part, unknown)
    nats = evaluate(model, model.vocab.encode(part), streams=streams, threads=threads)
    result = {"checkpoint": str(model.checkpoint_dir), "text": str(text), "split": split_name, "chars": len(part),
              "streams": streams, "nats_per_char": nats, "bits_per_char": nats / math.log(2)}
    if not _echo_record(result, fmt):
        bits = nats / math.log(2)
        click.echo(f"{nats:.4f} nats/char = {bits:.4f} bits/char over {len(part)} characters ({split_name})")


@main.command()
@click.argument("text", type=click.Path(dir_okay=False))
@click.option("--split", "split_name", type=click.Choice(["val", "test"]), default="test", show_default=True,
              help="Score on this part of the 90/5/5 split (the model is counted on the 90%).")
@click.option("--order", type=click.IntRange(1, 64), default=20, show_default=True,
              help="Characters in an n-gram: the context and the one predicted (the paper's 20).")
@click.option("--max-contexts", type=click.IntRange(min=1), default=None,
              help="Count at most this many distinct n-grams of one length (default: "
                   "rnnviz.model.ngram.MAX_CONTEXTS, 16,777,216): bounds the memory, about 100 bytes each.")
@output_format_option()
def ngram(text, split_name, order, max_contexts, fmt):
    """The paper's n-gram baseline on TEXT: cross-entropy in nats/char and bits/char.

    An interpolated modified Kneser-Ney character model counted on the training split, scored on the
    split named, as Karpathy et al. (2015) compare their LSTMs with a 20-gram (War and Peace 1.195,
    Linux 0.889 there). Put it beside `rnnviz eval` on the same split: how much better than counting a
    model is on this corpus.

    \b
    Example:
      rnnviz ngram ../shared/data/tiny_shakespeare.txt --split test --order 20
    """
    import math

    from rnnviz.model.data import read_text
    from rnnviz.model.ngram import ngram_loss

    with progress_bar("counting", "order") as progress:
        nats, chars = ngram_loss(read_text(text), split_name, order, progress, max_contexts)
    bits = nats / math.log(2)
    if not _echo_record({"text": str(text), "split": split_name, "order": order, "chars": chars,
                         "nats_per_char": nats, "bits_per_char": bits}, fmt):
        click.echo(f"{nats:.4f} nats/char = {bits:.4f} bits/char over {chars} characters ({split_name}, "
                   f"{order}-gram)")


# --- end train, sample, eval ---

# --- record (recorder) ---


MODULE_ONLY = ("weights", "forward_spec", "vocab_file", "tokens_file", "chunk")  # --module's recording only
CHECKPOINT_ONLY = ("split_name", "start", "length", "burn_in", "max_passes", "streams", "exact", "unknown", "nproc",
                   "threads")


@main.command()
@click.argument("ckpt", type=click.Path(), required=False, metavar="[CKPT|IDS]")
@click.argument("text", type=click.Path(dir_okay=False), required=False, metavar="[TEXT]")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Store directory to create.")
@click.option("--kinds", default=None, help="Comma-separated kinds (h,c,i,f,g,o; GRU h,r,z,n) or 'all'. "
              "Default: h, and c for an LSTM.")
@click.option("--layers", default=None, help="Comma-separated layers, e.g. 0,2. Default: all.")
@window_options(split="all")
@click.option("--burn-in", type=int, default=1000, show_default=True,
              help="Characters each parallel stream reads before its part, for a first guess of its start state; "
              "the first stream reads the characters before the window in the file (not from a zero state).")
@click.option("--max-passes", type=int, default=MAX_PASSES, show_default=True,
              help="States-only passes that correct the streams' start states until each starts where the one "
              "before it ended (0: keep the burn-in guess). The error left is measured and reported either way.")
@click.option("--streams", type=int, default=None, help="Parallel streams (default: chosen from the length).")
@click.option("--exact", is_flag=True, help="One sequential stream (no start states to correct; slower on a GPU).")
@click.option("--topk", type=int, default=5, show_default=True, help="Next-character predictions kept per position.")
@click.option("--unknown", default="error", show_default=True,
              help="Characters outside the vocabulary: error, skip or replace:X.")
@device_option
@click.option("--force", is_flag=True, help="Replace the store if it exists (only an rnnviz store or an empty folder).")
@click.option("--nproc", type=int, help="Record in N processes, a share of the streams each (runs torchrun).")
@threads_option
@click.option("--module", "module_spec", metavar="SPEC",
              help="Record your own PyTorch module instead of a checkpoint: FILE.py:FACTORY or package.module:FACTORY, "
              "a function that builds it (no arguments). The positional argument is then IDS.")
@click.option("--weights", type=click.Path(dir_okay=False),
              help="With --module: its state_dict, safetensors or a torch file (read with weights_only=True).")
@click.option("--forward", "forward_spec", metavar="SPEC",
              help="With --module: FILE.py:NAME of forward(module, ids) for a module whose forward needs more than "
              "the ids (e.g. a hidden state).")
@click.option("--vocab", "vocab_file", type=click.Path(dir_okay=False),
              help="With --module: the token string of each id, one per line (line 1 is id 0).")
@click.option("--tokens", "tokens_file", type=click.Path(dir_okay=False),
              help="With --module: the token string of each position, one per line (default: each id's --vocab "
              "string, or its number).")
@click.option("--chunk", type=int, help="With --module: tokens per forward (default: as many as fit 256 MB).")
def record(ckpt, text, out, kinds, layers, split_name, start, length, burn_in, max_passes, streams, exact, topk,
           unknown, device, force, nproc, threads, module_spec, **module_options):
    """Record every cell of a checkpoint over TEXT into an activation store; or, with --module, every
    recurrent layer of your own PyTorch module over a file of token ids (IDS: whole numbers separated
    by whitespace).

    \b
    Example:
      rnnviz record sample_models/shakespeare-lstm-2x128 ../shared/data/war_and_peace.txt \\
          --out stores/wp --start 3000000 --length 200000 --unknown skip
      rnnviz record runs/c mytext.c --out stores/c --kinds h,c,i,f,g,o --layers 0,2
      torchrun --nproc-per-node 2 -m rnnviz record runs/c big.c --out stores/big --streams 64
      rnnviz record runs/c big.c --out stores/big --streams 64 --nproc 2   # the same, torchrun started for you
      rnnviz record --module model.py:build --weights lm.safetensors test_ids.txt --vocab words.txt \\
          --forward model.py:run --kinds all --out stores/lm
    """
    import os

    if module_spec is not None:
        odd = ["a second positional argument"] * (text is not None) + _given_options(CHECKPOINT_ONLY)
        if odd:
            raise RnnvizError(f"{odd[0]}: not for --module, which records every id of IDS as one sequence")
        return _record_module(ckpt, out, kinds, layers, topk, device, force, module_spec, module_options)
    if _given_options(MODULE_ONLY):
        raise RnnvizError(f"{_given_options(MODULE_ONLY)[0]} goes with --module")
    if ckpt is None or text is None:
        raise click.UsageError(f"Missing argument '{'CKPT' if ckpt is None else 'TEXT'}'.")

    from rnnviz.devices import resolve_device
    from rnnviz.model.data import read_text, split_window
    from rnnviz.model.distributed import rank
    from rnnviz.model.units import parse_kinds, parse_layers
    from rnnviz.recording.recorder import record as run_record
    from rnnviz.recording.recorder import stream_layout
    from rnnviz.store.reader import is_store
    from rnnviz.store.writer import store_lock

    model = _load_model(ckpt)
    # Check the cheap options before reading a large text.
    parse_kinds(kinds, model.config.cell)
    parse_layers(layers, model.config.layers)
    dev = resolve_device(device, model)
    if os.path.exists(out) and not force:
        raise RnnvizError(f"{out} already exists (use --force to replace it)")
    check_replaceable(out, is_store)  # --force replaces a store, never a folder of the user's: checked first
    ensure_parent(out)
    with ExitStack() as held:  # the store is ours before the text is read (rank 0 writes it; a launcher only checks)
        if rank() == 0:
            held.enter_context(store_lock(out, "rnnviz record"))
        if nproc is not None:
            held.close()  # the launched rank 0 takes it
        content = read_text(text)
        part, offset = split_window(content, split_name, start, length, source=str(text))
        context = content[max(0, offset - burn_in) : offset]  # the first stream starts where the file had it
        del content
        if nproc is not None:
            from rnnviz.model.distributed import check_nproc

            T = max(1, len(model.vocab.prepare(part, unknown)))  # an empty text is the recorder's error to report
            check_nproc(nproc, stream_layout(T, burn_in, streams, exact, dev.type)[0], device, "--streams")
            sys.exit(_relaunch(click.get_current_context(), nproc))
        # Drawn by rank 0 on a terminal (under torchrun it reports for all), at the first update; not in a pipe.
        with progress_bar("recording", "char", len(part), unit_scale=True, dynamic_ncols=True,
                          disable=True if rank() > 0 else None) as progress:  # None: drawn on a terminal only
            store = run_record(model, part, out, kinds=kinds, layers=layers, burn_in=burn_in,
                               max_passes=max_passes, streams=streams, exact=exact, start=offset, topk=topk,
                               unknown=unknown, device=dev, overwrite=force, progress=progress, source=str(text),
                               context=context, threads=threads)
    if store is not None:  # None on a rank > 0 under torchrun: rank 0 committed the store and reports
        _keep_two_states(store)
        _echo_recorded(store, out, unknown)


def _keep_two_states(store) -> None:
    """Write the two-state split beside a store just recorded (:func:`rnnviz.analysis.two_state.two_states`:
    seconds for thousands of units), so that the dashboard's first select-to-find reads it instead. Here, not in the
    recorder: the scratch stores of emergence and of explain's control are never searched."""
    from rnnviz.analysis.two_state import two_states

    two_states(store)


def _echo_recorded(store, out, unknown: str) -> None:
    """What ``record`` of a checkpoint made: sizes, speed, the unknown characters, the checks."""
    r = store.meta.recorder
    size = sum(f.stat().st_size for f in store.path.iterdir())
    skipped = sum(r["unknown_chars"].values())
    check = r.get("gates_vs_kernel_max_abs_error")
    click.echo(
        f"Recorded {store.length:,} chars x {len(store.units):,} units (layers {','.join(map(str, store.layers))}; "
        f"kinds {','.join(store.kinds)}) into {out}: {size / 1e6:.1f} MB in {r['seconds']:.1f} s "
        f"({r['chars_per_s']:,.0f} chars/s, {r['streams']} stream(s) on {r['device']})"
        + (f"; {skipped} unknown char(s) handled by --unknown {unknown}" if skipped else "")
        + (f"; h from the gates vs the kernel's: max |diff| {check:.1e}" if check is not None else "")
    )
    _echo_boundaries(r)


def _given_options(names: tuple[str, ...]) -> list[str]:
    """The options among the parameter ``names`` that the command line gave, as their flags (--burn-in)."""
    ctx = click.get_current_context()
    return [p.opts[0] for p in ctx.command.params
            if p.name in names and ctx.get_parameter_source(p.name) != ParameterSource.DEFAULT]


def _record_module(ids_file, out, kinds, layers, topk, device, force, spec, options) -> None:
    """``record --module``: build the user's module, load its weights, record it over the ids in ``ids_file``."""
    import os

    from rnnviz.devices import resolve_device
    from rnnviz.recording.module import record_module
    from rnnviz.recording.user_code import build_module, load_object, read_ids, read_lines
    from rnnviz.store.reader import is_store

    if ids_file is None:
        raise click.UsageError("Missing argument 'IDS' (with --module, the file of token ids).")
    if options["weights"] is None:
        raise RnnvizError("--module needs --weights: the module's state_dict (safetensors or a torch file)")
    if os.path.exists(out) and not force:
        raise RnnvizError(f"{out} already exists (use --force to replace it)")
    check_replaceable(out, is_store)
    ensure_parent(out)
    dev = resolve_device(device)
    forward = None if options["forward_spec"] is None else load_object(options["forward_spec"], "--forward")
    module = build_module(spec, options["weights"]).to(dev)
    ids = read_ids(ids_file)
    vocab = None if options["vocab_file"] is None else read_lines(options["vocab_file"])
    tokens = None if options["tokens_file"] is None else read_lines(options["tokens_file"])
    with progress_bar("recording", "token", len(ids), unit_scale=True, dynamic_ncols=True) as progress:
        store = record_module(module, ids, out, kinds=kinds, layers=layers, tokens=tokens, vocab=vocab,
                              forward=forward, chunk=options["chunk"], topk=topk, overwrite=force, progress=progress,
                              source=str(ids_file))
    _keep_two_states(store)
    r, src = store.meta.recorder, store.meta.source
    size = sum(f.stat().st_size for f in store.path.iterdir())
    kept = (f"next-token log-probabilities and top-{store.k} predictions kept" if store.meta.has_logprob
            else "activations only (the forward returns no next-token logits)")
    click.echo(f"Recorded {store.length:,} tokens x {len(store.units):,} units (layers "
               f"{','.join(map(str, store.layers))}; kinds {','.join(store.kinds)}) of {src['class']} into {out}: "
               f"{size / 1e6:.1f} MB in {r['seconds']:.1f} s ({r['tokens_per_s']:,.0f} tokens/s on {r['device']}); "
               f"{kept}")
    click.echo("Layers: " + ", ".join(f"{e['layer']} = {e['module']}[{e['index']}] ({e['type']})"
                                      for e in src["layers"]))


def _echo_boundaries(r: dict) -> None:
    """The recorder's start-state correction and the error of the starts measured on the recording."""
    final, guess = r.get("start_error"), r.get("start_error_of_guess")
    if final is None:  # one stream: nothing to correct
        return
    tol = r["tolerance"]
    rule = f"|error| <= {tol['abs']:g} + {tol['rel']:g}·|value|"
    if guess is None:
        click.echo(f"Stream starts: {r['streams']} streams from the burn-in guess, uncorrected (--max-passes 0).")
    else:
        click.echo(f"Stream starts: {r['streams']} streams settled in {r['passes']} pass(es) and "
                   f"{r['recordings']} recording(s); the burn-in guess was off by {guess['error']:.3g} at "
                   f"{guess['unit']} ({guess['units_over']:,} of {guess['units']:,} units over tolerance).")
    worst = f"{final['unit']}, off by {final['error']:.2g} at value {final['value']:.4g}"
    if final["within"]:
        click.echo(f"Stream starts agree with one sequential pass within tolerance ({rule}): worst {worst}.")
    else:
        click.echo(f"Warning: stream starts over tolerance at {final['units_over']:,} of {final['units']:,} units "
                   f"(worst {worst}; tolerance {rule}): record with --exact, or raise --max-passes.", err=True)


# --- end record ---

# --- features, find, ablate, gradflow (discovery) ---


def _records(df) -> list[dict]:
    """DataFrame rows as JSON-able dicts (NaN -> null, numpy scalars -> Python)."""
    return json.loads(df.to_json(orient="records", double_precision=6))


def _echo_machine_format(df, fmt: str) -> bool:
    """Print ``df`` as JSON or CSV when ``fmt`` asks for it; False when a table is wanted instead."""
    if fmt == "json":
        _echo_json(_records(df))
    elif fmt == "csv":
        click.echo(df.to_csv(index=False, float_format="%.6g"), nl=False)
    return fmt in ("json", "csv")


def _echo_record(record: dict, fmt: str) -> bool:
    """Print one result (a flat dict) as JSON or as a one-row CSV when ``fmt`` asks; False for a table."""
    if fmt == "json":
        _echo_json(record)
    elif fmt == "csv":
        import pandas as pd

        click.echo(pd.DataFrame([{k: v for k, v in record.items() if not isinstance(v, (list, dict))}])
                   .to_csv(index=False, float_format="%.6g"), nl=False)
    return fmt != "table"


def _esc(s: str) -> str:
    """Text for one terminal line: line ends and tabs made visible."""
    return s.replace("\r", "\u240d").replace("\n", "\u21b5").replace("\t", "\u21e5")


def _load_model(ckpt, device="cpu"):
    """The checkpoint's model; given a run directory (which resolves to its best/ or last/), which one and
    from which step is said on stderr: best/ lags a resumed run until its next validation."""
    from pathlib import Path

    from rnnviz.model.checkpoint import load_checkpoint

    model = load_checkpoint(ckpt, device)
    if Path(model.checkpoint_dir) != Path(ckpt):
        m = model.meta.get("metrics") or {}
        val = f"{m['val_loss']:.4f} nats/char" if isinstance(m.get("val_loss"), (int, float)) else "not validated"
        click.echo(f"Using {model.checkpoint_dir} (step {m.get('step', '?')}, val loss {val})", err=True)
    return model


def _read_model_text(ckpt, text, split_name, start, length, unknown, device):
    """The checkpoint's model on ``device``, and the window of the text file's split it will read, prepared
    by ``unknown`` (error, skip or replace:X)."""
    from rnnviz.devices import resolve_device
    from rnnviz.model.data import read_text, split_window

    model = _load_model(ckpt, resolve_device(device))
    part, _ = split_window(read_text(text), split_name, start, length, source=str(text))
    return model, model.vocab.prepare(part, unknown)


@main.command()
@click.argument("name", required=False)
@output_format_option()
def features(name, fmt):
    """List the built-in hypothesis features, one line each: name, type, domain, exact definition.

    Every feature gives one value per character: the value at t describes the text after reading
    character t (so it lines up with row t of a store). With NAME, print that feature's definition.

    \b
    Example:
      rnnviz features
      rnnviz features in_quote
    """
    import textwrap

    from rnnviz.analysis.features import FEATURES

    if name is not None and name not in FEATURES:
        raise RnnvizError(f"unknown feature {name!r}; choose one of {', '.join(FEATURES)}")
    chosen = [FEATURES[name]] if name else list(FEATURES.values())
    rows = [{"name": f.name, "type": f.type, "domain": f.domain, "definition": f.summary} for f in chosen]
    if fmt != "table":
        import pandas as pd

        _echo_machine_format(pd.DataFrame(rows), fmt)
    elif name:
        f = chosen[0]
        click.echo(f"{f.name} ({f.type}, {f.domain})\n" + textwrap.fill(f.summary, 100, initial_indent="  ",
                                                                         subsequent_indent="  "))
    else:
        for f in chosen:
            click.echo(f"{f.name:15s} {f.type:8s} {f.domain:6s} {f.summary}")
        click.echo("User hypotheses: --regex PATTERN (1 inside matches) or, from Python, any callable str -> array.")


@main.command()
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--feature", "feature_names", multiple=True, metavar="NAME",
              help="A built-in feature (repeatable; default: all of them).")
@click.option("--regex", "regexes", multiple=True, metavar="PATTERN",
              help="Your own hypothesis: characters inside a match are 1 (repeatable; time-limited).")
@click.option("--top", type=int, default=10, show_default=True, help="Units shown per feature.")
@click.option("--units", default=None, callback=_split_units,
              help="Only these units, comma-separated (e.g. 1:c:0,1:c:5).")
@click.option("--snippets", type=int, default=0, show_default=True,
              help="With the table: each unit's N most activating snippets (lowest for sign -).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the control shuffle.")
@memory_option
@output_format_option()
def find(store, feature_names, regexes, top, units, snippets, seed, memory, fmt):
    """Rank every recorded unit against hypotheses: which cells track quotes, line length, if-blocks?

    Binary features are scored by AUROC (score = max(AUROC, 1-AUROC), sign +1 when the unit is
    higher inside), numeric ones by Pearson |r| (spearman alongside). The control is the same feature
    shuffled among positions holding the same character: units are ranked by selectivity = score -
    control_score, so a unit that only tracks which character it reads (say, any punctuation) does not
    win. score_lo..score_hi: the score's 95% block-bootstrap interval (left out on a store too short to
    give one). JSON: a list of {feature, unit, metric, score, score_lo,
    score_hi, sign, ap, effect_size, control_score, selectivity, selective, auroc, pearson, spearman, rank}.

    \b
    Example:
      rnnviz find stores/wp --feature in_quote --top 10
      rnnviz find stores/c --top 5 --format json
      rnnviz find stores/c --regex 'if \\(' --top 5
      rnnviz find stores/big --memory 1GB
    """
    from rnnviz.analysis.evidence import evidence
    from rnnviz.analysis.ranking import rank_features
    from rnnviz.store.reader import open_store
    from rnnviz.views.display import row_word

    if top < 1:
        raise RnnvizError(f"--top must be >= 1, got {top}")
    st = open_store(store)
    specs = list(feature_names) + [f"re:{p}" for p in regexes]
    with progress_bar("ranking", "row", 2 * st.length, unit_scale=True) as progress:
        df = rank_features(st, specs or None, top=top, units=units, seed=seed, progress=progress, memory=memory)
    if _echo_machine_format(df, fmt):
        return
    cols = ["rank", "unit", "score", "score_lo", "score_hi", "sign", "control_score", "selectivity", "effect_size",
            "ap", "spearman"]
    for name, part in df.groupby("feature", sort=False):
        kind = df.attrs["types"][name]
        click.echo(f"\n{name} ({kind}; score = {part['metric'].iloc[0]}{' folded' if kind == 'binary' else ' |r|'})")
        shown = part[[c for c in cols if part[c].notna().any()]].copy()
        shown["sign"] = shown["sign"].map({1: "+", -1: "-"})
        click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        for unit, sign in zip(part["unit"], part["sign"], strict=True) if snippets > 0 else []:
            ev = evidence(st, unit, None, k=snippets, context=25)
            for s in ev["top"] if sign > 0 else ev["bottom"]:  # where the unit says "feature on"
                snippet = f"{_esc(s['before'])}[{_esc(s['char'])}]{_esc(s['after'])}"
                click.echo(f"    {unit:>9s} {s['value']:+.2f}  {snippet}")
    if df.attrs["skipped"]:
        click.echo("\nskipped: " + "; ".join(f"{name} ({why})" for name, why in df.attrs["skipped"].items()))
    click.echo(f"\nRanked {df.attrs['n_units']:,} units x {len(df.attrs['types'])} feature(s) over "
               f"{df.attrs['length']:,} {row_word(st)} in {df.attrs['seconds']:.1f} s.")


@main.command()
@click.argument("ckpt", type=click.Path())
@click.argument("text", type=click.Path(dir_okay=False))
@click.option("--unit", "units", multiple=True, required=True, metavar="UNIT", callback=_split_units,
              help="A unit LAYER:KIND:INDEX to clamp (repeatable, or comma-separated).")
@click.option("--mode", default="zero", show_default=True, help="zero, mean (its mean over the text) or value=V.")
@click.option("--feature", default=None, help="Also report the loss on the characters this feature predicts "
              "(a built-in name or re:PATTERN).")
@click.option("--random", "n_random", type=int, default=100, show_default=True,
              help="Random-unit baseline draws (as many units, same layers and kinds): the control of the p-value "
              "and effect size.")
@click.option("--seed", type=int, default=0, show_default=True)
@window_options(default_length=20000, split="test")
@click.option("--streams", type=int, default=None, help="Parallel pieces (default ~1 per 1,000 chars; 1 = exact).")
@click.option("--burn-in", type=int, default=200, show_default=True, help="Characters each stream reads first.")
@click.option("--unknown", default="error", show_default=True, help="Unknown characters: error, skip or replace:X.")
@device_option
@output_format_option()
def ablate(ckpt, text, units, mode, feature, n_random, seed, split_name, start, length, streams, burn_in, unknown,
           device, fmt):
    """Clamp units inside the recurrence and report what the model loses, in nats/char.

    The loss change is reported over every character and over the characters the feature predicts
    (the closing quote for in_quote, the line end for to_line_end, the } or ; that ends an in_if), with a
    95% block-bootstrap interval over positions, next to the same clamp on randomly drawn units of the same
    layers and kinds: how many draws hurt as much, the permutation p-value ((that + 1) / (draws + 1)) and
    the effect size (the change minus the draws' mean, in their standard deviations). An LSTM unit zeroed
    is one intervention whether its c or its h is named (c = 0 makes h = 0): it is reported as L:c+h:I.

    \b
    Example:
      rnnviz ablate sample_models/shakespeare-lstm-2x128 text.txt --unit 1:c:42 --feature in_quote
      rnnviz ablate runs/c kernel.c --unit 2:c:417 --unit 2:c:9 --mode mean --feature in_if
    """
    from rnnviz.analysis.causal import ablate as run_ablate

    model, part = _read_model_text(ckpt, text, split_name, start, length, unknown, device)
    with progress_bar("ablating", "step") as progress:
        r = run_ablate(model, part, units, mode=mode, feature=feature, random=n_random, seed=seed,
                       streams=streams, burn_in=burn_in, progress=progress)
    s = r.summary()
    if fmt == "json":  # with every random draw; CSV: the summary's one row
        _echo_json({**s, "random": _records(r.random)})
        return
    if _echo_record(s, fmt):
        return
    vals = ", ".join(f"{u}={v:g}" for u, v in r.values.items())
    click.echo(f"Clamped {vals} ({mode}) over {r.chars:,} predictions ({r.streams} stream(s), burn-in {r.burn_in}).")
    if any(":c+h:" in u for u in r.units):
        click.echo("  c+h: an LSTM unit zeroed is one intervention, named by its c or its h (c = 0 makes h = 0)")
    click.echo(f"  all characters:   {r.clean_loss:.4f} -> {r.ablated_loss:.4f} nats/char  delta {r.delta:+.4f}"
               + _interval(s["delta_lo"], s["delta_hi"]))
    if r.feature:
        if r.feature_chars:
            click.echo(f"  {r.feature} ({r.feature_chars:,} predicted chars): {r.clean_loss_feature:.4f} -> "
                       f"{r.ablated_loss_feature:.4f}  delta {r.delta_feature:+.4f}"
                       + _interval(s["delta_feature_lo"], s["delta_feature_hi"]))
        else:
            click.echo(f"  {r.feature}: no character of this text is predicted by it")
    _echo_random_baseline(s, r.feature, every=len(r.units) == 1 and s["random_draws"] == model.config.hidden - 1)
    if r.start_error is not None:
        e = r.start_error
        click.echo(f"  stream starts: clean states within {e['error']:.2g} of one sequential pass (worst {e['unit']}"
                   + ("" if e["within"] else ", over tolerance: use --streams 1 for one exact pass")
                   + (f"); clamped streams meet within {r.clamp_boundary_residual:.2g}"
                      if r.clamp_boundary_residual is not None else ")"))


def _interval(lo: float | None, hi: float | None) -> str:
    """" (95% CI lo to hi)" of a loss change, or why there is none."""
    from rnnviz.analysis.statistics import BOOT_BLOCK, MIN_BLOCKS

    return f" (95% CI {lo:+.4f} to {hi:+.4f})" if lo is not None else \
        f" (no interval under {MIN_BLOCKS * BOOT_BLOCK:,} characters)"


def _echo_random_baseline(s: dict, feature: str | None, every: bool) -> None:
    """The random draws' lines of ``ablate``: their mean change +- sd, how many hurt as much, p, effect size.
    ``every``: the draws are every other unit of the layer and kind once (an exhaustive permutation test)."""
    draws = s["random_draws"]
    for suffix, label in (("", "all"), ("_feature", feature)):
        col = f"delta{suffix}"
        if not label or s[f"random_{col}_mean"] is None:
            continue
        sd, z = s[f"random_{col}_std"], s[f"effect_size{suffix}"]
        click.echo(f"  random units ({label}): delta {s[f'random_{col}_mean']:+.4f}"
                   + (f" +- {sd:.4f}" if sd is not None else "")
                   + f" over {draws} draws" + (" (every other unit of its layer and kind)" if every else "")
                   + f"; {s[f'random_{col}_at_least']} hurt as much: p = {s[f'p{suffix}']:.3g}"
                   + (f", effect size {z:+.2f} sd" if z is not None else ""))


@main.command()
@click.argument("ckpt", type=click.Path())
@click.argument("text", type=click.Path(dir_okay=False))
@click.option("--max-lag", type=int, default=200, show_default=True)
@click.option("--positions", type=int, default=32, show_default=True, help="Positions averaged over.")
@click.option("--burn-in", type=int, default=100, show_default=True)
@click.option("--kinds", default="h", show_default=True, help="h, or h,c for an LSTM's cell state too.")
@window_options(default_length=100000, split="test")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--unknown", default="skip", show_default=True, help="Unknown characters: error, skip or replace:X.")
@device_option
@output_format_option()
def gradflow(ckpt, text, max_lag, positions, burn_in, kinds, split_name, start, length, seed, unknown, device, fmt):
    """How far back the loss reaches: mean |d loss_t / d h_(t-k)| against the lag k, per layer.

    A vanilla RNN's gradient shrinks geometrically with k; an LSTM's additive cell state keeps it.

    \b
    Example:
      rnnviz gradflow sample_models/shakespeare-lstm-2x128 ../shared/data/tiny_shakespeare.txt
      rnnviz gradflow runs/rnn text.txt --max-lag 100 --format csv
    """
    from rnnviz.analysis.causal import gradient_flow

    model, part = _read_model_text(ckpt, text, split_name, start, length, unknown, device)
    kind_list = tuple(k.strip() for k in kinds.split(",") if k.strip())
    df = gradient_flow(model, part, max_lag=max_lag, positions=positions, burn_in=burn_in, kinds=kind_list,
                       seed=seed)
    if _echo_machine_format(df, fmt):
        return
    lags = sorted({k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, max_lag) if k <= max_lag})
    df = df.assign(col=[f"L{l} {k}" for l, k in zip(df["layer"], df["kind"], strict=True)])
    table = df[df["lag"].isin(lags)].pivot(index="lag", columns="col", values="grad")
    table.columns.name = None
    click.echo(f"mean |d loss_t / d state_(t-k)| over {int(df['positions'].iloc[0])} positions "
               f"({model.config.cell}, {model.config.layers}x{model.config.hidden}):")
    click.echo(table.to_string(float_format=lambda v: f"{v:.3e}"))


@main.command("explain")
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--units", default=None, callback=_split_units,
              help="Only these units, comma-separated (e.g. 1:c:0,1:c:5). Default: all.")
@click.option("--min-score", type=float, default=0.3, show_default=True,
              help="Floor: a unit whose best rule scores less is reported as unexplained.")
@click.option("--block", type=click.IntRange(min=0),
              help="The halves alternate in blocks of this many characters (default: rnnviz.analysis.explain.BLOCK, "
                   "4096; 0: the first half and the second).")
@click.option("--control", type=click.Choice(["init", "none"]),
              help="init: also explain the same architecture at initialisation, recorded on the same text (the "
                   "default when the store has its model config; the recording takes about as long as the store's "
                   "own); none: no control.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the control's initialisation.")
@click.option("--control-seeds", type=int, default=1, show_default=True,
              help="Initialisations recorded (seeds SEED, SEED+1, ...): learned units must beat the best of them all.")
@memory_option
@output_format_option()
def explain_cmd(store, units, min_score, block, control, seed, control_seeds, memory, fmt):
    """Explain every unit with a rule searched from the text, scored on text it was not chosen on.

    Rules: built-in features (lagged, onsets, offsets, fading over a span), the last 1-4 characters
    read (prev:"th"), character classes, "characters since X" counters, bracket depths, and two rules
    together where one is not enough. The rule is chosen on one half of the text (even blocks of --block characters)
    and scored on the other (odd blocks): score = its Pearson r with the unit there (signed by sign),
    auroc too for 0/1 rules; score_lo, score_hi: its block-bootstrap 95% interval (cells >= 0.5 and learned
    ones). role: cell, input detector (a rule about the character just read alone) or unexplained. The
    control: the same architecture at initialisation on the same text; learned: a cell scoring MARGIN
    (rnnviz.analysis.explain_control, 0.05) above the control's best cell of its layer and kind. JSON: a list
    of {unit, layer, kind, index, explanation, rule, score, sign, auroc, fit_score, explained, combo,
    single_score, best_rule, coef, role, learned, score_lo, score_hi}.

    \b
    Example:
      rnnviz explain stores/wp                          # every unit, a table, the fractions beside the control
      rnnviz explain stores/c --units 1:c:4,1:c:157 --format json
      rnnviz explain stores/wp --min-score 0.5 --control none --format csv > catalog.csv
      rnnviz explain stores/big --memory 1GB --control none
    """
    from rnnviz.analysis.explain import BLOCK, control_problem, explain
    from rnnviz.store.reader import open_store

    st = open_store(store)
    problem = control_problem(st)
    if control == "init" and problem:
        raise RnnvizError(f"--control init: {problem}")
    ctrl = None if control == "none" or problem else "init"
    with progress_bar("explaining", "value", unit_scale=True) as progress:
        df = explain(st, units=units, min_score=min_score, progress=progress, control=ctrl, seed=seed,
                     control_seeds=control_seeds, memory=memory,
                     block=BLOCK if block is None else block or None)  # 0: the first half / second half
    if _echo_machine_format(df, fmt):
        return
    _echo_explained(st, df, ctrl, problem if control is None else "")


def _echo_explained(st, df, ctrl: str | None, problem: str) -> None:
    """``explain``'s table: every unit, then the fractions beside the control and what they mean."""
    import pandas as pd

    from rnnviz.analysis.explain_control import INTERVAL_FROM, THRESHOLDS, explained_fractions, interval_units
    from rnnviz.views.display import row_word

    shown = df[["unit", "score", "score_lo", "score_hi", "sign", "auroc", "role", "learned", "explanation",
                "rule"]].copy()
    shown["sign"] = shown["sign"].map({1: "+", -1: "-"})
    shown["learned"] = shown["learned"].map(lambda v: "yes" if v is True else "")
    shown["explanation"] = shown["explanation"].map(_esc)
    if ctrl is None:
        shown = shown.drop(columns="learned")
    click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""))
    fr = explained_fractions(df)
    pair = lambda r, p: " / ".join(f"{r[f'{p}_{t:g}']:.1%}" for t in THRESHOLDS)  # noqa: E731
    table = {"group": fr["group"], "units": fr["units"],
             "cells": [pair(r, "cells") for _, r in fr.iterrows()],
             "input detectors": [pair(r, "inputs") for _, r in fr.iterrows()]}
    if ctrl is not None:
        table.update({"init cells": [pair(r, "init_cells") for _, r in fr.iterrows()],
                      "init input detectors": [pair(r, "init_inputs") for _, r in fr.iterrows()],
                      "init best cell": [f"{v:.3f}" for v in fr["init_best"]],
                      "learned": [f"{v:.1%}" for v in fr["learned"]]})
    thresholds = " / ".join(f">= {t:g}" for t in THRESHOLDS)
    click.echo(f"\nunits explained at score {thresholds}, per layer:kind:")
    click.echo(pd.DataFrame(table).to_string(index=False))
    if ctrl is not None:
        s, k = df.attrs["seed"], df.attrs["control_seeds"]
        seeds = f"seed {s}" if k == 1 else f"seeds {s}-{s + k - 1}, fractions averaged, the best cell of all"
        click.echo(f"init: the same architecture at initialisation ({seeds}), recorded on the same text and "
                   f"explained the same way ({df.attrs['control_seconds']:.1f} s); learned: a cell scoring >= the "
                   f"init best cell of its layer:kind + {df.attrs['margin']:g}.")
    else:
        click.echo("no control" + (f": {problem}" if problem else " (--control none)")
                   + "; an untrained model of the same shape explains about a quarter of its units >= 0.5 on prose, "
                   "mostly as input detectors.")
    n = int(interval_units(df).sum())
    click.echo(f"input detector: a rule about the character just read alone; intervals (score_lo, score_hi): "
               f"block bootstrap, 95%, for the {n:,} cells scoring >= {INTERVAL_FROM:g}"
               + (" or learned." if ctrl is not None else "."))
    halves = f"alternate blocks of {df.attrs['block']:,}" if df.attrs["block"] else "the first half"
    click.echo(f"{len(df):,} units, rules chosen on {df.attrs['fit_chars']:,} of {df.attrs['length']:,} {row_word(st)} "
               f"({halves}) and scored on the rest, {df.attrs['n_rules']:,} rules tried, {df.attrs['seconds']:.1f} s.")


@main.command()
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--start", type=int, required=True, help="First character of the selection.")
@click.option("--end", type=int, required=True, help="One past its last character.")
@click.option("--threshold", type=float, default=THETA, show_default=True, help="θ: on = this many σ from the mean.")
@click.option("--slack", type=int, default=None,
              help="Rows forgiven at each edge. Default: 2 characters, or 0 tokens in a token store.")
@click.option("--rule", type=click.Choice(["tolerant", "strict"]), default="tolerant", show_default=True,
              help="tolerant: mostly on inside (80%), slack at the edges; strict: LSTMVis's every-character rule.")
@click.option("--follow", type=int, default=None,
              help="Best cells the match search follows. Default: up to 3 two-state cells when the best is one, "
                   "else the best alone.")
@click.option("--top", type=int, default=20, show_default=True, help="Matches shown.")
@click.option("--feature", default=None, metavar="NAME",
              help="Score every match (not only those shown) against this binary feature (a built-in name or "
                   "re:PATTERN): precision, and recall of its rows and spans, with 95% intervals.")
@output_format_option()
def similar(store, start, end, threshold, slack, rule, follow, top, feature, fmt):
    """Select-to-find: the cells that mark the text START..END, and where else they switch on.
    START and END are rows: characters, or tokens in a token store.

    Two-state cells (whose values split into an off and an on state) come first, on past their split;
    then the others, on past θ σ, ranked by contrast (mean σ inside minus the low at the edges) x how
    consistently they stay on; matches are runs where the followed cells are on again, ranked by ours
    (score) and by LSTMVis's order (lstmvis_rank); weak ones (short, or fainter than the selection) are flagged.
    With --feature, every match is scored against it: precision (matches at least half in the feature), recall
    (its rows inside a match) and span recall (its spans a match touches), the selected span left out, with
    block-bootstrap 95% intervals. JSON: {"cells": [...], "matches": [...]} (and "quality": {"all": {...},
    "strong": {...}} with --feature).

    \b
    Example:
      rnnviz similar stores/wp --start 5299 --end 5338
      rnnviz similar stores/wp --start 5299 --end 5338 --feature in_quote
      rnnviz similar stores/c --start 14882 --end 14918 --rule strict --format json
    """
    from rnnviz.analysis.similar import find_similar
    from rnnviz.store.reader import open_store
    from rnnviz.views.display import row_word

    st = open_store(store)
    cells, matches = find_similar(st, start, end, threshold=threshold, slack=slack, rule=rule, follow=follow,
                                  top=top, feature=feature)
    quality = matches.attrs.get("quality")
    if fmt == "json":
        extra = {} if quality is None else {"quality": json.loads(quality.to_json(orient="index", double_precision=6))}
        _echo_json({"cells": _records(cells), "matches": _records(matches), **extra})
        return
    if fmt == "csv":
        click.echo(cells.to_csv(index=False, float_format="%.6g"), nl=False)
        return
    click.echo(f"selection {start:,}..{end:,}: {_esc(_rows_text(st, start, end)[:80])}")
    if cells.empty:
        click.echo(f"no cell marks it ({rule} rule, θ = {threshold:g} σ): lower --threshold or select a tighter range")
        _echo_quality(quality, matches.attrs.get("feature"), row_word(st))
        return
    shown = cells.head(10).copy()
    shown["sign"] = shown["sign"].map({1: "+", -1: "-"})
    click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    strong = int((~matches["weak"]).sum())
    click.echo(f"\nmatches ({strong} strong, {len(matches) - strong} weak):")
    for m in matches.itertuples(index=False):
        flag = " weak" if m.weak else ""
        click.echo(f"  #{m.rank:<3d} lstmvis #{m.lstmvis_rank:<3d} {m.start:>9,}..{m.stop:<9,} score {m.score:.2f}"
                   f"{flag}  {_esc(_rows_text(st, m.start, m.stop)[:60])}")
    _echo_quality(quality, matches.attrs.get("feature"), row_word(st))


def _echo_quality(quality, feature: str | None, rows: str) -> None:
    """The lines of ``rnnviz similar --feature``: precision and recall of every match (none without a feature)."""
    if quality is None:
        return

    def pct(q, name: str) -> str:
        if not math.isfinite(q[name]):
            return "-"
        ci = f" [{q[name + '_lo']:.1%}, {q[name + '_hi']:.1%}]" if math.isfinite(q[name + "_lo"]) else ""
        return f"{q[name]:.1%}{ci}"

    q0 = quality.loc["all"]
    click.echo(f"\nevery match against {_esc(feature)} ({int(q0['feature_rows']):,} {rows} in "
               f"{int(q0['feature_spans']):,} spans, the selected one left out; 95% intervals):")
    for name, q in quality.iterrows():
        click.echo(f"  {name:<6s} {int(q['matches']):>6,} matches: precision {pct(q, 'precision')}, "
                   f"{rows} covered {pct(q, 'recall')}, spans found {pct(q, 'span_recall')}")


def _rows_text(st, start: int, stop: int) -> str:
    """The text rows start:stop of a store read (characters, or the tokens' stretch of text)."""
    a, b = st.chars_of_rows(start, stop)
    return st.text[a : min(b, a + 200)]


# --- end discovery ---

# --- export (HTML) ---

# rnnviz.views.colours.RANGES, written here so that --help needs no torch (tests/test_cli.py pins the two equal)
COLOUR_RANGES = ("max", "p99", "minmax", "robust")


@main.command("export")
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--unit", "units", multiple=True, metavar="UNIT", callback=_split_units,
              help="A unit LAYER:KIND:INDEX (repeatable, or comma-separated).")
@click.option("--feature", help="Export the cells that best match this feature (as `rnnviz find` ranks them).")
@click.option("--top", type=int, default=3, show_default=True, help="How many cells with --feature.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@window_options(of="the store's text")
@click.option("--catalog", is_flag=True, help="Append every unit's explanation and score (rnnviz explain) as a table.")
@click.option("--colour-range", type=click.Choice(COLOUR_RANGES), default="robust", show_default=True,
              help="Colour scale: ±max|v|, ±99th percentile of |v|, the unit's own [min, max], or its own 1st-99th "
                   "percentile (a few extreme values do not wash out the rest).")
def export_cmd(store, units, feature, top, out, start, length, colour_range, catalog):
    """Write a self-contained HTML page: the text coloured by each unit, values on hover.

    One block per unit (blue-red for h and candidates, white-green for gates, c by its recorded
    range). The page needs no network; open it from disk or share it.

    \b
    Example:
      rnnviz export stores/wp --unit 2:c:417 --out quote_cell.html --start 1000 --length 5000
      rnnviz export stores/c --feature in_if --top 3 --out if_cells.html
      rnnviz export stores/c --unit 1:c:4 --catalog --out catalog.html
      rnnviz export stores/c --unit 1:c:5 --colour-range minmax --out brace.html
    """
    from rnnviz.store.reader import open_store
    from rnnviz.views.export import export_html, feature_start, titles_from_cells

    if (units is None) == (feature is None):
        raise RnnvizError("give either --unit (one or more) or --feature")
    st = open_store(store)
    titles = None
    if feature:
        if top < 1:
            raise RnnvizError(f"--top must be >= 1, got {top}")
        from rnnviz.analysis.ranking import find_cells

        cells = find_cells(st, feature, top=top, intervals=False)  # (the titles give no interval)
        if cells.empty:
            raise RnnvizError(f"no cells found for feature {feature!r}")
        units, titles = list(cells["unit"]), titles_from_cells(cells)
        if click.get_current_context().get_parameter_source("start") is click.core.ParameterSource.DEFAULT:
            start = feature_start(st, feature)  # the page opens where the feature first holds
    table = None
    if catalog:
        from rnnviz.analysis.explain import explain

        table = explain(st, intervals=False)  # the page shows no interval
    page = export_html(st, units, out, start=start, length=length, titles=titles, catalog=table,
                       colour_range=colour_range)
    size = len(page.html.encode("utf-8"))
    click.echo(
        f"Wrote {out}: {len(units)} unit(s) x {page.stop - page.start:,} {'tokens' if st.is_tokens else 'chars'} "
        f"({page.start:,}-{page.stop:,}), {size / 1e3:,.0f} kB"
    )
    for u in units:
        click.echo(f"  {u}" + (f"  {titles[u]}" if titles and u in titles else ""))


# --- end export ---

# --- LSTMVis's files (store) ---


def _parse_map(ctx: click.Context, param: click.Parameter, items: tuple[str, ...]) -> dict[str, str] | None:
    """--map NAME=LAYER:KIND values as {dataset: "LAYER:KIND"}; None when none were given."""
    from rnnviz.store.arrays import parse_array_name

    mapping: dict[str, str] = {}
    for item in items:
        name, sep, target = item.rpartition("=")
        if not sep or not name:
            raise RnnvizError(f"--map wants NAME=LAYER:KIND, e.g. states1=0:c, got {item!r}")
        if name in mapping:
            raise RnnvizError(f"--map names dataset {name!r} twice")
        parse_array_name(target)
        mapping[name] = target
    return mapping or None


@main.command("import-lstmvis")
@click.argument("states", metavar="STATES.h5", type=click.Path(dir_okay=False))
@click.argument("words", metavar="WORDS.h5", type=click.Path(dir_okay=False))
@click.argument("dictionary", metavar="WORDS.dict", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Store directory to create.")
@click.option("--map", "mapping", multiple=True, metavar="NAME=LAYER:KIND", callback=_parse_map,
              help="Import dataset NAME of STATES.h5 as LAYER:KIND, e.g. states1=0:c (repeatable; given, only the "
                   "datasets named are imported). Default: every dataset at its root, by LSTMVis's names.")
@click.option("--words-path", default=None,
              help="The dataset of word ids in WORDS.h5. Default: word_ids, words or target, or its only dataset.")
@click.option("--force", is_flag=True, help="Replace the store if it exists (only an rnnviz store or an empty folder).")
def import_lstmvis_cmd(states, words, dictionary, out, mapping, words_path, force):
    """Make a store from LSTMVis's files: STATES.h5 (one (T, H) dataset per layer and kind), WORDS.h5 (T word
    ids) and WORDS.dict (lines WORD ID). Rows are the words; the text is the words joined by spaces.

    Names: statesN is layer N-1's c, outputN its h, any other KIND+N layer N-1's KIND (forget1 -> 0:forget).
    Every file is checked before anything is written (SECURITY.md).

    \b
    Example:
      rnnviz import-lstmvis cbt/cbt_epoch10.h5 cbt/train.h5 cbt/words.dict --out stores/cbt
      rnnviz import-lstmvis states.hdf5 train.hdf5 words.dict --out stores/k --map states1=0:h --words-path words
    """
    import os

    from rnnviz.store.arrays import parse_array_name
    from rnnviz.store.lstmvis import import_lstmvis
    from rnnviz.store.reader import is_store

    if os.path.lexists(out) and not force:
        raise RnnvizError(f"{out} already exists (use --force to replace it)")
    check_replaceable(out, is_store)  # --force replaces a store, never a folder of the user's: checked first
    ensure_parent(out)
    with progress_bar("importing", "word", unit_scale=True) as progress:
        st = import_lstmvis(states, words, dictionary, out, mapping=mapping, words_path=words_path, overwrite=force,
                            progress=progress)
    click.echo(f"Imported {st.length:,} words x {len(st.units):,} units (cell {st.cell}; layers "
               f"{','.join(map(str, st.layers))}; kinds {','.join(st.kinds)}) into {out}:")
    for name, target in st.meta.recorder["datasets"].items():
        click.echo(f"  {name} -> {target}  ({st.length:,} x {st.width(*parse_array_name(target)):,})")


@main.command("export-lstmvis")
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="LSTMVis project folder to create.")
@click.option("--force", is_flag=True,
              help="Replace --out if it exists (only a folder export-lstmvis wrote, or an empty folder).")
def export_lstmvis_cmd(store, out, force):
    """Write STORE as an LSTMVis project: OUT/states.h5, OUT/words.h5, OUT/words.dict and OUT/lstm.yml.

    Layer L's c becomes states{L+1}, its h output{L+1}, any other kind K K{L+1}; rows become words (a
    char store's characters, whitespace written as visible symbols). Serve it with LSTMVis
    (python lstm_server.py -dir PARENT_OF_OUT), or import the three files again.

    \b
    Example:
      rnnviz export-lstmvis stores/wp --out lstmvis_data/wp
      rnnviz import-lstmvis lstmvis_data/wp/states.h5 lstmvis_data/wp/words.h5 lstmvis_data/wp/words.dict --out st2
    """
    from rnnviz.store.arrays import parse_array_name
    from rnnviz.store.lstmvis import export_lstmvis
    from rnnviz.store.reader import open_store

    st = open_store(store)
    with progress_bar("exporting", "row", unit_scale=True) as progress:
        r = export_lstmvis(st, out, overwrite=force, progress=progress)
    click.echo(f"Wrote {out} for LSTMVis: {r['tokens']:,} time steps, {r['words']:,} distinct words, "
               f"{len(r['datasets'])} dataset(s) in states.h5:")
    for name, target in r["datasets"].items():
        click.echo(f"  {target} -> {name}  ({st.length:,} x {st.width(*parse_array_name(target)):,})")


# --- end LSTMVis ---

# --- serve (dashboard) ---


@main.command()
@click.argument("stores", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback exposes your stores to the network.")
@click.option("--port", type=click.IntRange(1, 65535), default=8050, show_default=True)
@click.option("--log-requests", is_flag=True, help="Log a line per HTTP request.")
@click.option("--feature", default=None, metavar="NAME",
              help="Also give the address that opens the first store on its best cell for this feature.")
def serve(stores, host, port, log_requests, feature):
    """Explore STORES in the browser (the Dash dashboard): text coloured by a cell, ranked cells per
    hypothesis, select-to-find, plots, sampling with a cell clamped.

    \b
    Example:
      rnnviz serve stores/wp stores/linux        # then open http://127.0.0.1:8050
      rnnviz serve stores/wp --port 8060
      rnnviz serve stores/wp stores/linux --feature in_quote   # and where the quote cell is

    Only the stores named here can be opened from the browser. For a deployment use
    gunicorn 'apps.dashboard:server' with RNNVIZ_STORES=stores/wp:stores/linux.
    """
    from rnnviz.views.dashboard.app import create_app, is_loopback, run_quietly

    app = create_app(list(stores), hosts=[host], freeze_gc=True)  # a server process: see create_app
    if not is_loopback(host):
        click.echo(
            f"Warning: listening on {host}, not 127.0.0.1: anyone who can reach this machine on port {port} "
            "can read these stores and run the model.",
            err=True,
        )
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"Serving {', '.join(app.stores.names)} on http://{shown}:{port}/  (Ctrl-C stops)", err=True)
    if feature:
        unit, query = _best_cell_view(app.stores, feature)
        click.echo(f"The best {feature} cell of {app.stores.names[0]}, {unit}: http://{shown}:{port}/{query}",
                   err=True)
    set_stop_handler(_terminate, (signal.SIGINT,))  # Werkzeug swallows the interrupt: note that it came
    _signalled.clear()
    run_quietly(app, host, port, log_requests)
    if _signalled:  # stopped by Ctrl-C, SIGTERM or SIGHUP, not by the server's own end
        click.echo("\nStopped.", err=True)
        sys.exit(STOPPED)


def _best_cell_view(stores, feature: str) -> tuple[str, str]:
    """The first store's best unit for ``feature`` and the dashboard query that opens it where the feature
    first holds."""
    from rnnviz.analysis.ranking import find_cells
    from rnnviz.views.dashboard.state import View, to_query
    from rnnviz.views.export import feature_start

    store = stores[0]
    unit = str(find_cells(store, feature, top=1, intervals=False)["unit"].iloc[0])
    view = View.clean({"store": 0, "unit": unit, "feature": feature, "start": feature_start(store, feature)}, stores)
    return unit, to_query(view, stores)


# --- end serve ---

# --- emergence (weight snapshots) ---


@main.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.argument("text", type=click.Path(dir_okay=False))
@click.option("--feature", "feature_names", multiple=True, required=True, metavar="NAME",
              help="A built-in feature, or re:PATTERN (repeatable).")
@window_options(default_length=100_000, split="test")
@click.option("--kinds", default=None, help="Kinds to record and rank (default: h, and c for an LSTM; "
              "h alone needs no gate recomputation and is about twice as fast).")
@click.option("--burn-in", type=int, default=250, show_default=True,
              help="Characters each parallel stream of the recorder reads before its part.")
@click.option("--unknown", default="error", show_default=True,
              help="Characters outside the vocabulary: error, skip or replace:X.")
@device_option
@output_format_option()
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Also write the figure as a self-contained HTML file (works offline).")
def emergence(run, text, feature_names, split_name, start, length, kinds, burn_in, unknown, device, fmt, out):
    """When does each cell appear? For every weight snapshot of RUN (trained with --snapshot-every N),
    record TEXT, rank the units against each feature, and show the best unit's score and selectivity,
    whether it is the final model's best unit, and that final unit's score, beside the validation loss.

    The cell "appears" at the first snapshot from which the final unit's score stays at or above 90% of
    its final distance from chance (AUROC 0.5, |r| 0).

    \b
    Example:
      rnnviz train ../shared/data/tiny_shakespeare.txt --out runs/ts --hidden 64 --max-steps 2000 \\
          --snapshot-every 100
      rnnviz emergence runs/ts ../shared/data/tiny_shakespeare.txt --feature column --feature word_pos \\
          --length 50000 --out emergence.html
    """
    import os

    from rnnviz.analysis.emergence import appearance_sentences, write_emergence_html
    from rnnviz.analysis.emergence import emergence as run_emergence
    from rnnviz.model.data import read_text, split_window
    from rnnviz.model.snapshots import list_snapshots

    if out is not None and not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise RnnvizError(f"cannot write {out}: its directory does not exist")
    n = len(list_snapshots(run))  # no snapshots: the error comes before the text is read
    part, _ = split_window(read_text(text), split_name, start, length, source=str(text))
    with progress_bar("snapshots", "snapshot", n) as progress:
        df = run_emergence(run, part, feature_names, kinds=kinds, burn_in=burn_in, device=device, unknown=unknown,
                           progress=progress)
    if out is not None:
        write_emergence_html(df, out)
    sentences = appearance_sentences(df)
    if fmt == "json":
        _echo_json({"run": str(run), "final_step": df.attrs["final_step"], "appears_at": df.attrs["appears_at"],
                    "rule": df.attrs["rule"], "snapshots": _records(df)})
        return
    if _echo_machine_format(df, fmt):  # csv: one row per feature and snapshot
        return
    for name, part in df.groupby("feature", sort=False):
        metric = "AUROC folded" if part["metric"].iloc[0] == "auroc" else "|r|"
        click.echo(f"\n{name} (score = {metric}; final unit {part['final_unit'].iloc[0]})")
        shown = part[["step", "val_loss", "best_unit", "score", "selectivity", "same_as_final", "final_score"]].copy()
        shown["same_as_final"] = shown["same_as_final"].map({True: "yes", False: ""})
        shown = shown.rename(columns={"same_as_final": "same", "final_score": "final_unit_score"})
        click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    click.echo("")
    for s in sentences:
        click.echo(s[0].upper() + s[1:] + ".")
    click.echo(f"({len(df.attrs['appears_at'])} feature(s) x {df['step'].nunique()} snapshots over "
               f"{df.attrs['length']:,} characters" + (f"; figure in {out})" if out else ")"))


# --- end emergence ---
