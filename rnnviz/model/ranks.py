"""Which process of a torchrun job this is, from the environment torchrun sets: no torch import, so a
command that never trains or records (``find``, ``--help``) learns it is not a worker without paying for
torch (:mod:`rnnviz.model.distributed` re-exports both)."""

from __future__ import annotations

import os


def world_size() -> int:
    """Processes in the job torchrun started (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def under_torchrun() -> bool:
    """Whether torchrun started this process: a worker, even in a job of one process (``--nproc 1``), and
    as such it dies with its launcher and stops quietly (:mod:`rnnviz.model.distributed`)."""
    return "TORCHELASTIC_RUN_ID" in os.environ
