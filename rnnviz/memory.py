"""The memory setting of the commands that read a whole store (``explain``, ``find``), and the one place that
turns it into block sizes.

A pass over a store never maps the store: it reads row blocks into a buffer (:meth:`Store.blocks`), so the
OS page cache holds what was read and the process only its block. What a command keeps across the whole
text (a text's rule values, each feature and its control) is read in blocks too, from memory or from a
scratch file beside the store when it does not fit its share (:mod:`rnnviz.store.scratch`); a bootstrap's
per-block histograms are taken a range of codes at a time. The setting is the resident memory a command may
take, the interpreter included: ``--memory 2GB`` keeps it under 2 GB plus what grows with the number of units
(their sums and histograms) and the text's per-character arrays while one feature or rule is computed.
``unlimited`` (None) keeps every column in memory and every unit's histograms at once: the memory of before,
less the store (never mapped).

Every buffer a pass holds is sized here: :func:`fit`, how many items of a given size (a unit's histograms, a
column) fit in a share of the setting once :data:`FLOOR` is set aside, and :func:`block_rows`, the rows of a
block (never more than BLOCK_BYTES, even unlimited). Block sizes never change results: sums run over fixed tiles
whatever the block, and the rest is exact (counts, histograms).
"""

from __future__ import annotations

import re
import sys

from rnnviz.errors import RnnvizError

MEMORY = "2GB"  # the default setting of explain and find (commands and library)
FLOOR = 400 * 10**6  # bytes: the interpreter with numpy, torch and pandas loaded (~260 MB) and its headroom
MIN_MEMORY = 500 * 10**6  # the smallest setting: FLOOR and 100 MB of blocks
BLOCK_BYTES = 64 << 20  # the most a block of rows takes: a larger read runs no faster, and costs page faults
# How a pass divides the budget (the setting less FLOOR): the text's columns kept in memory (a Scratch; past its
# share they go to a file), and each of the WORKERS threads that read arrays at once. Within its share a worker
# holds blocks of rows, or the columns of the units it scores (half) and their bootstrap's arrays (BOOT_SHARE
# each for its two pieces). A quarter is left for what is not counted: the text's per-character arrays while
# a feature or rule is computed (one at a time), the per-unit sums.
SCRATCH_SHARE = 1 / 4
WORKERS = 2
WORKER_SHARE = 1 / 4
BOOT_SHARE = WORKER_SHARE / 4
UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9, "T": 10**12,
         "TB": 10**12, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}
UNLIMITED = ("unlimited", "none")
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)")


def parse_memory(value: str | int | float | None, label: str = "memory") -> int | None:
    """The setting as bytes (None: unlimited): a number of bytes, or a size such as ``2GB``, ``1.5G``,
    ``512MB``, ``4GiB`` (decimal units, KiB MiB GiB TiB binary), or ``unlimited``. One-line error naming
    ``label`` (the option) below :data:`MIN_MEMORY` or for anything else."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in UNLIMITED:
        return None
    n = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str):
        m = _SIZE.fullmatch(value.strip())
        if m and m[2].upper() in UNITS:
            n = float(m[1]) * UNITS[m[2].upper()]
    if n is None or not n == n or n == float("inf"):  # NaN, infinity
        raise RnnvizError(f"{label} must be a size such as 2GB, 512MB or 4GiB, or unlimited; got {value!r}")
    if n < MIN_MEMORY:
        raise RnnvizError(f"{label} must be at least {MIN_MEMORY // 10**6}MB ({FLOOR // 10**6}MB of it are the "
                          f"interpreter's and its libraries'), got {value!r}")
    return int(n)


def describe(memory: int | None) -> str:
    """The setting as a person reads it: ``2.0 GB`` or ``unlimited``."""
    return "unlimited" if memory is None else f"{memory / 1e9:.1f} GB"


def budget(memory: int | None) -> int:
    """Bytes a command may hold in blocks and scratch arrays under ``memory`` (bytes, None: no limit)."""
    return sys.maxsize if memory is None else max(memory - FLOOR, 0)


def limit(memory: int | None, share: float) -> int | None:
    """Bytes of ``share`` of the budget (None: no limit), e.g. what a :class:`~rnnviz.store.scratch.Scratch` may
    keep in memory."""
    return None if memory is None else int(budget(memory) * share)


def block_rows(row_bytes: float, memory: int | None, share: float = 1.0, at_least: int = 1) -> int:
    """Rows a pass reads at once, ``row_bytes`` each: as many as :func:`fit` allows, at most BLOCK_BYTES of
    them, at least ``at_least``."""
    return max(int(at_least), min(fit(row_bytes, memory, share), int(BLOCK_BYTES // max(row_bytes, 1))))


def fit(item_bytes: float, memory: int | None, share: float = 1.0, at_least: int = 1) -> int:
    """How many items of ``item_bytes`` (a row of a block, a unit's histograms, ...) fit in ``share`` of
    :func:`budget`; at least ``at_least`` (a pass must progress), a huge number when unlimited."""
    if memory is None:
        return sys.maxsize
    return max(int(at_least), int(budget(memory) * share // max(float(item_bytes), 1.0)))
