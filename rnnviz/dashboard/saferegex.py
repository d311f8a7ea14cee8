"""Regular expressions typed into the browser, run so that they cannot hang the server.

Python's ``re`` cannot be interrupted, and a pattern like ``(a+)+$`` backtracks for ever on a long
text. So the pattern is size-limited and compiled here (syntax errors come back at once), then matched
in a forked child process that is killed when it runs past the time limit. The child inherits the
text (no copy through a pipe) and sends back one bit per character.
"""

from __future__ import annotations

import multiprocessing as mp
import re
from collections.abc import Callable

import numpy as np

from ..errors import RnnvizError

MAX_PATTERN = 200  # characters
TIMEOUT = 2.0  # seconds


def compile_user_regex(pattern: str) -> re.Pattern:
    """Check a user's pattern: non-empty, at most ``MAX_PATTERN`` characters, valid syntax."""
    if not pattern:
        raise RnnvizError("type a regular expression")
    if len(pattern) > MAX_PATTERN:
        raise RnnvizError(f"the regular expression is {len(pattern)} characters; the limit is {MAX_PATTERN}")
    try:
        return re.compile(pattern)
    except re.error as e:
        raise RnnvizError(f"bad regular expression {pattern!r}: {e}") from None


def _span_mask(regex: re.Pattern, text: str) -> np.ndarray:
    """(T,) bool: True inside every match (empty matches mark nothing)."""
    # Mark starts +1 and ends -1, then a running sum: no Python loop over characters.
    delta = np.zeros(len(text) + 1, dtype=np.int32)
    for m in regex.finditer(text):
        if m.end() > m.start():
            delta[m.start()] += 1
            delta[m.end()] -= 1
    return np.cumsum(delta[:-1]) > 0


def _child(conn, fn: Callable, args: tuple) -> None:
    try:
        conn.send((True, fn(*args)))
    except BaseException as e:  # report anything, the parent decides
        conn.send((False, f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def run_limited(fn: Callable, *args, timeout: float = TIMEOUT, what: str = "the regular expression"):
    """``fn(*args)`` in a child process, killed after ``timeout`` seconds (raises :class:`RnnvizError`).

    ``fn`` and its result must be picklable; with the ``fork`` start method (Linux, macOS) the
    arguments are inherited, not copied.
    """
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args), daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(timeout):
            raise RnnvizError(f"{what} took longer than {timeout:g} s and was stopped; make it simpler")
        try:
            ok, result = recv.recv()
        except EOFError:
            raise RnnvizError(f"{what} failed: the worker process died") from None
    finally:
        recv.close()
        if proc.is_alive():
            proc.kill()
        proc.join()
    if not ok:
        raise RnnvizError(f"{what} failed: {result}")
    return result


def _packed_mask(pattern: str, text: str) -> tuple[bytes, int]:
    return np.packbits(_span_mask(re.compile(pattern), text)).tobytes(), len(text)


def regex_feature(pattern: str, text: str, timeout: float = TIMEOUT) -> np.ndarray:
    """The feature ``re:PATTERN`` over ``text``: (T,) float32, 1 inside a match, 0 elsewhere.

    Raises :class:`RnnvizError` for a bad or too-long pattern, or one that runs past ``timeout`` seconds.
    """
    compile_user_regex(pattern)
    packed, n = run_limited(_packed_mask, pattern, text, timeout=timeout)
    bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=n)
    return bits.astype(np.float32)
