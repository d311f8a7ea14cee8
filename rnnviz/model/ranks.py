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
