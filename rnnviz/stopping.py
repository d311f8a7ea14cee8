"""How a command is stopped: the signals that end it as Ctrl-C does, installed in one place.

SIGTERM (``kill``, a service manager, a CI timeout) and SIGHUP (the terminal closed) end a command as
Ctrl-C does: the command's own handling of the interrupt runs (``train`` saves ``last/``, temp files and
folders are removed) and the exit status is 130. A SIGHUP that was ignored when the command started (as
``nohup`` starts it) stays ignored. The command line (``rnnviz.cli``) installs a handler that raises
KeyboardInterrupt; a torchrun worker installs :func:`rnnviz.model.distributed.stop_worker` instead, for
Ctrl-C too (see there).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
STOPPED = 130  # the exit status of a command stopped by Ctrl-C, SIGTERM or SIGHUP

Handler = Callable[[int, FrameType | None], object]


def set_stop_handler(handler: Handler, signals: tuple[int, ...] = STOP_SIGNALS) -> dict[int, object]:
    """Install ``handler`` for each of ``signals`` that is not ignored (in the main thread only: Python takes
    signals nowhere else). Returns the handlers it replaced, for :func:`restore_handlers`."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for signum in signals:
        if signal.getsignal(signum) is signal.SIG_IGN:  # nohup: the user asked for it to be ignored
            continue
        previous[signum] = signal.signal(signum, handler)
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
