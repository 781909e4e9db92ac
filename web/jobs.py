"""Background jobs: a long write (an upload, a rebuild) answered at once with 202 and a job to poll.

One worker thread runs the jobs in turn, so there is one writer at a time (NewsIndex serialises writes anyway);
each job says how far it is (``done`` of ``total`` passages embedded) and ends ``done`` with the result the
synchronous request would have answered, or ``failed`` with the error's ``detail`` and the ``status`` code that
request would have had. The registry keeps the latest ``keep`` jobs in memory; ids are random, not guessable.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from qa.errors import QAError

log = logging.getLogger("qa.web")

# work(progress) -> (status, result); progress(done, total) as NewsIndex calls it
Work = Callable[[Callable[[int, int], None]], tuple[int, dict]]


@dataclass
class Job:
    id: str
    kind: str
    state: str = "queued"  # queued | running | done | failed
    done: int = 0
    total: int = 0
    status: int | None = None
    result: dict | None = None
    work: Work | None = field(default=None, repr=False)

    @property
    def detail(self) -> str:
        """What the job is doing, in words (the page shows it beside its progress bar)."""
        if self.state == "queued":
            return "Waiting for the writes before it"
        if self.state == "running":
            if self.total:
                return f"Embedding {self.done:,} of {self.total:,} passages"
            return "Chunking" if self.kind == "add" else "Reading the stored articles"
        if self.state == "failed":
            return (self.result or {}).get("detail", "failed")
        return "Done"

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "state": self.state, "done": self.done, "total": self.total,
                "detail": self.detail, "status": self.status, "result": self.result}


class Jobs:
    """The app's jobs, run one at a time by a daemon thread started on the first one."""

    def __init__(self, keep: int = 100):
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._unfinished = 0  # accepted and not yet ended (queued or running)
        self._ended = threading.Condition(self._lock)

    def submit(self, kind: str, work: Work) -> Job:
        job = Job(id=uuid.uuid4().hex, kind=kind, work=work)
        with self._lock:
            self._jobs[job.id] = job
            self._unfinished += 1
            finished = [j for j in self._jobs.values() if j.state in ("done", "failed")]
            for old in finished[:max(0, len(self._jobs) - self.keep)]:
                del self._jobs[old.id]
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="qa-jobs", daemon=True)
                self._worker.start()
        self._queue.put(job)
        return job

    @property
    def unfinished(self) -> int:
        """Jobs accepted and not yet ended."""
        with self._lock:
            return self._unfinished

    def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for every accepted job to end (a stopping server); returns how many
        have not."""
        with self._ended:
            self._ended.wait_for(lambda: self._unfinished == 0, timeout)
            return self._unfinished

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            job.state = "running"

            def progress(done: int, total: int, job=job) -> None:
                job.done, job.total = done, total

            try:
                job.status, job.result = job.work(progress)
                job.state = "done"
            except QAError as e:
                job.status, job.result, job.state = e.status, {"detail": str(e)}, "failed"
            except Exception:  # noqa: BLE001 - the job reports it; the server goes on
                log.exception("job %s (%s) failed", job.id, job.kind)
                job.status, job.result = 500, {"detail": "internal error: the server log has the details"}
                job.state = "failed"
            finally:
                job.work = None
                with self._ended:
                    self._unfinished -= 1
                    self._ended.notify_all()
