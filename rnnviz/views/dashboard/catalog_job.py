"""The catalog's explain as a background job of the server process, with its progress for the page to show.

Explaining every unit takes seconds to a minute the first time (:mod:`rnnviz.analysis.explain_cache` keeps it
beside the store after that). A callback that waited for it would leave the Catalog tab blank and hold a
server thread; instead "Explain every unit" starts one thread per store (a second click, from any browser tab,
joins the one running), the thread reports ``explain``'s progress here, and the tab polls it
(``dcc.Interval``) to draw a progress bar and then the rows. With several server processes (gunicorn
workers) a poll may reach another process: it finds the rows once the first has written its cache.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from rnnviz.errors import RnnvizError

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One store's explain in a thread: its progress (``done`` of ``total``, in explain's units: rows x units),
    then its result or the one-line reason it failed."""

    done: int = 0
    total: int = 0
    finished: bool = False
    error: str = ""
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def fraction(self) -> float:
        """The share done, 0..1 (0 before explain has counted its work)."""
        return min(1.0, self.done / self.total) if self.total else 0.0


class Jobs:
    """The running and finished jobs of one server process, by key (a store's index)."""

    def __init__(self):
        self._jobs: dict[object, Job] = {}
        self._lock = threading.Lock()

    def get(self, key) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def start(self, key, work: Callable[[Callable[[int, int], None]], object]) -> Job:
        """The job under ``key``: the one running, or a new one that runs ``work(progress)`` in a daemon thread
        (a finished or failed one is started again: the next click retries)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not job.finished:
                return job
            job = self._jobs[key] = Job()

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total  # two ints, read by the poll: a torn pair only shows a stale %

        def run() -> None:
            try:
                work(progress)
            except RnnvizError as e:
                job.error = str(e)
            except Exception as e:  # noqa: BLE001  a bug: said in the tab, logged with its traceback here
                log.exception("catalog job %r failed", key)
                job.error = f"explain failed: {type(e).__name__}: {e}"
            finally:
                job.finished = True

        job.thread = threading.Thread(target=run, name=f"rnnviz catalog {key}", daemon=True)
        job.thread.start()
        return job
