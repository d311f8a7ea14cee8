"""Keep freed memory for reuse: the C allocator's setting for step loops on a CPU.

A recording or training block allocates and frees tensors of 1-50 MB many times a second. glibc's malloc
serves those with fresh ``mmap``s (or trims them off the heap's top) and hands them back to the kernel on
free, so every new tensor page-faults its pages in again: on the 2-core CPU this was 15-25% of a
recording's time, spent in the kernel (``bench/record_throughput.py``: h 34,000 -> 43,000 chars/s, every
kind 21,000 -> 26,000). Raising the mmap threshold to its ceiling and keeping up to ``TRIM`` freed bytes at
the heap's top makes those blocks reused instead. Peak memory is unchanged; a process keeps up to ``TRIM``
of what it freed until it exits.

Only glibc has ``mallopt``; elsewhere (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks up to 32 MB come from the heap, not fresh mmaps
TRIM = 512 << 20  # freed bytes at the heap's top kept for reuse before any is returned to the kernel
TOP_PAD = 64 << 20  # grow the heap in steps of at least this (fewer brk calls)


@functools.cache
def keep_freed_memory() -> bool:
    """Set the allocator to reuse freed blocks (once per process). True when glibc took the settings."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # no glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(p, v) == 1 for p, v in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM),
                                               (M_TOP_PAD, TOP_PAD)))
