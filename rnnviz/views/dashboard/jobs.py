"""Long work off the request thread, with progress: the unit card's ablation and the catalog's explain.

A callback starts a job (:meth:`Jobs.start`) and answers at once with its id; the page polls
(``dcc.Interval``) and each poll reads :meth:`Jobs.status`: how far it is, then its result or its one-line error.
So a minute of work never holds a request (or a server thread) open, and other users browse meanwhile.
The same work asked again (the same ``key``) is the same job: a second click while it runs follows it, a
click after it finished shows its result without running it again.

Jobs live in this server process, each in a daemon thread (a job running when the server stops never holds the
process open), at most ``workers`` at a time; a server of several processes would need a shared store for them
(Dash's background callbacks with a diskcache manager), which this dashboard does not have.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from rnnviz.errors import RnnvizError

log = logging.getLogger(__name__)
RUNNING, DONE, FAILED = "running", "done", "failed"


class Jobs:
    """Jobs by id: ``start(key, work)`` runs ``work(progress)`` (``progress(done, total)`` as the library's
    functions call it) on a worker thread; ``status(id)`` is a dict ``{state, done, total, result, error}``.
    The last ``keep`` jobs are remembered (a finished one is its result's cache)."""

    def __init__(self, workers: int = 1, keep: int = 32):
        self._slots = threading.Semaphore(workers)
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, dict] = OrderedDict()
        self._by_key: dict[Hashable, str] = {}
        self._ids = itertools.count(1)
        self.keep = keep

    def start(self, key: Hashable, work: Callable[[Callable[[int, int], None]], object]) -> str:
        """The id of the job doing ``key``: a new one running ``work``, or the one already running or done (a
        failed one is started again)."""
        with self._lock:
            old = self._by_key.get(key)
            if old in self._jobs and self._jobs[old]["state"] != FAILED:
                return old
            job_id = str(next(self._ids))
            job = {"state": RUNNING, "done": 0, "total": 0, "result": None, "error": ""}
            self._jobs[job_id], self._by_key[key] = job, job_id
            while len(self._jobs) > self.keep:
                gone, _ = self._jobs.popitem(last=False)
                self._by_key = {k: v for k, v in self._by_key.items() if v != gone}
        threading.Thread(target=self._run, args=(job, work), name=f"rnnviz job {key}", daemon=True).start()
        return job_id

    def status(self, job_id) -> dict | None:
        """A copy of the job's state, or None for an id that is not (or no longer) one (any JSON may come from
        the browser)."""
        with self._lock:
            job = self._jobs.get(job_id) if isinstance(job_id, str) else None
            return dict(job) if job is not None else None

    def of(self, key: Hashable) -> dict | None:
        """The state of the job doing ``key`` (as :meth:`status`), or None when none was started."""
        with self._lock:
            job_id = self._by_key.get(key)
        return self.status(job_id)

    def _run(self, job: dict, work: Callable) -> None:
        def progress(done: int, total: int) -> None:
            job["done"], job["total"] = int(done), int(total)  # two ints: a reader sees one or the other

        with self._slots:
            try:
                result = work(progress)
            except RnnvizError as e:
                job.update(state=FAILED, error=str(e))
            except Exception as e:  # noqa: BLE001  shown in the page, logged with its traceback here
                log.exception("dashboard job failed")
                job.update(state=FAILED, error=f"{type(e).__name__}: {e}".splitlines()[0])
            else:
                job.update(result=result, state=DONE)
