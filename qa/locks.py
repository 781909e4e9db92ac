"""Locks: readers share, writers exclude (in process); one writer at a time across processes (flock)."""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager
from pathlib import Path


class ReadWriteLock:
    """Many concurrent readers or one writer. Writers are preferred so a stream of reads cannot starve them."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0
        self._when_idle: list = []

    def call_when_idle(self, fn) -> None:
        """Run ``fn`` as soon as no reader or writer holds the lock (now, if none does), excluding both while it
        runs: how a replaced generation's connections are closed once no read can still be using them."""
        with self._cond:
            if self._readers or self._writer:
                self._when_idle.append(fn)
                return
        # Idle now: run it as a writer would, so no reader starts meanwhile.
        with self.write():
            fn()

    def _run_when_idle(self) -> None:
        """With ``_cond`` held and the lock free: the deferred calls (a failing one does not stop the rest)."""
        calls, self._when_idle = self._when_idle, []
        for fn in calls:
            try:
                fn()
            except Exception:  # noqa: BLE001 -- closing a connection must not break the read that ends here
                pass

    @contextmanager
    def read(self):
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    if self._when_idle and not self._writer:
                        self._run_when_idle()
                    self._cond.notify_all()

    @contextmanager
    def write(self):
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                if self._when_idle:
                    self._run_when_idle()
                self._cond.notify_all()


@contextmanager
def process_lock(path: Path):
    """Exclusive lock on a file shared by every process writing the same index; released on exit or crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
