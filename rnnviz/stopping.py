"""How a command is stopped: the signals that end it as Ctrl-C does, installed in one place.

SIGTERM (``kill``, a service manager, a CI timeout) and SIGHUP (the terminal closed) end a command as
Ctrl-C does: the command's own handling of the interrupt runs (``train`` saves ``last/``, temp files and
folders are removed) and the exit status is 130. A SIGHUP that was ignored when the command started (as
``nohup`` starts it) stays ignored. The command line (``rnnviz.cli``) installs a handler that raises
KeyboardInterrupt; a torchrun worker installs :func:`rnnviz.model.distributed.stop_worker` instead, for
Ctrl-C too (see there).

A handler raises wherever Python is, and an atomic write (:mod:`rnnviz.fsutil`) has moments when its temp
file or folder exists but nothing is yet armed to remove it: inside ``mkdtemp`` just after the ``mkdir``, or
after a context manager yielded it and before the caller's ``with`` or ``ExitStack`` took charge of it. So:

- a handler installed here waits while the main thread is in a :func:`deferred` block, and runs as the
  block ends;
- such a block makes the temp and puts it on this process's list (:func:`track`); :func:`settle` takes it off
  once it is in place or removed;
- what is still on the list when the process ends is removed (:func:`remove_leftovers`): at exit, and by a
  torchrun worker before it leaves with ``os._exit`` (:func:`rnnviz.model.distributed._teardown`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
STOPPED = 130  # the exit status of a command stopped by Ctrl-C, SIGTERM or SIGHUP

Handler = Callable[[int, FrameType | None], object]

_deferring = 0  # how many deferred() blocks the main thread is in
_waiting: list[tuple[Handler, int]] = []  # the signals that came in them, with their handlers
_leftovers: dict[Path, int] = {}  # temp paths not yet in place or removed -> the process that made them
_leftovers_lock = threading.Lock()  # a cache builder's thread writes atomically too


def _deferrable(handler: Handler) -> Handler:
    def handle(signum: int, frame: FrameType | None) -> object:
        if _deferring:
            _waiting.append((handler, signum))
            return None
        return handler(signum, frame)

    return handle


@contextmanager
def deferred() -> Iterator[None]:
    """A block that a handler installed by :func:`set_stop_handler` does not interrupt: a signal that comes
    in it is handled as the block ends (the handler may raise there, the block's own error as its context).
    Nests. Outside the main thread (where Python takes no signals) it holds nothing back."""
    global _deferring
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _waiting:
            handler, signum = _waiting[0]
            _waiting.clear()
            handler(signum, None)


def track(path: str | Path) -> Path:
    """Put a temp file or folder just made on the list that :func:`remove_leftovers` clears (call it in the
    :func:`deferred` block that made it). Returns it as a Path."""
    path = Path(path)
    with _leftovers_lock:
        _leftovers[path] = os.getpid()
    return path


def settle(path: Path) -> None:
    """Take ``path`` off the list: it is in place, or removed."""
    with _leftovers_lock:
        _leftovers.pop(path, None)


def remove_leftovers() -> list[Path]:
    """Remove the temp files and folders this process made and left (a fork's child leaves its parent's);
    returns them."""
    with _leftovers_lock:
        mine = [p for p, pid in _leftovers.items() if pid == os.getpid()]
        for p in mine:
            del _leftovers[p]
    for p in mine:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return mine


atexit.register(remove_leftovers)


def set_stop_handler(handler: Handler, signals: tuple[int, ...] = STOP_SIGNALS) -> dict[int, object]:
    """Install ``handler`` for each of ``signals`` that is not ignored (in the main thread only: Python takes
    signals nowhere else), held back in a :func:`deferred` block. Returns the handlers it replaced, for
    :func:`restore_handlers`."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for signum in signals:
        if signal.getsignal(signum) is signal.SIG_IGN:  # nohup: the user asked for it to be ignored
            continue
        previous[signum] = signal.signal(signum, _deferrable(handler))
    return previous


def restore_handlers(previous: dict[int, object]) -> None:
    """Put back the handlers :func:`set_stop_handler` replaced (the default where there was none)."""
    for signum, old in previous.items():
        signal.signal(signum, signal.SIG_DFL if old is None else old)


@contextmanager
def stop_handler(handler: Handler, signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """:func:`set_stop_handler` for the block, the previous handlers restored after it."""
    previous = set_stop_handler(handler, signals)
    try:
        yield
    finally:
        restore_handlers(previous)
