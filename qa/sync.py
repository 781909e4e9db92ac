"""Keeping the index in step with a folder: `qa index DIR --sync` (articles whose files are gone are removed) and
`qa watch DIR` (files added, changed and deleted are applied as they happen, a batch at a time)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .errors import Conflict, InvalidInput, NotFound, QAError, TooLarge, UnsupportedFile
from .ingest import SUPPORTED, Collected, IgnoreRules, collect, read_file, safe_doc_id
from .records import AddReport

log = logging.getLogger("qa.watch")


def _stored_file(path: str) -> Path | None:
    """The file an article was read from, or None when its stored path cannot name one: pasted articles have
    none, and an upload's is a bare file name (a path with no folder is ambiguous, so it is never synced)."""
    if not path or ("/" not in path and "\\" not in path and not Path(path).is_absolute()):
        return None
    return Path(path).resolve()


def _offered(file: Path, root: Path, rules: IgnoreRules) -> bool:
    """Does the folder ``root`` offer ``file`` as an article (not hidden, not listed in its .qaignore)?"""
    rel = file.relative_to(root).as_posix()
    return not any(part.startswith(".") for part in rel.split("/")) and not rules.ignores(rel)


def stale_articles(stored: dict[str, str], folders: Iterable[Path], found: Iterable) -> list[str]:
    """Stored articles read from files under ``folders`` that are gone: their file no longer exists (or is now
    hidden or listed in the folder's .qaignore), or it was read again (``found``) and no longer holds them (a record
    dropped from a collection). A file that exists but could not be read this time keeps its articles."""
    roots = {Path(f).resolve(): None for f in folders if Path(f).is_dir()}
    rules = {root: IgnoreRules.of(root) for root in roots}
    found = list(found)
    found_ids = {a.doc_id for a in found}
    read = {Path(a.path).resolve() for a in found if a.path}
    gone = []
    for doc_id, path in stored.items():
        file = _stored_file(path)
        root = next((r for r in roots if file is not None and file.is_relative_to(r)), None)
        if doc_id in found_ids or root is None:
            continue
        if not file.exists() or file in read or not _offered(file, root, rules[root]):
            gone.append(doc_id)
    return sorted(gone)


def sync(index, paths: list[Path], *, date: str = "", ids: str = "stem",
         show_progress: bool = False) -> tuple[Collected, AddReport, list[str]]:
    """Add the new and changed articles under ``paths`` and remove the stored ones whose files are gone from the
    folders among them. Paths are made absolute, so the stored paths name their files from anywhere."""
    paths = [Path(p).resolve() for p in paths]
    found = collect(paths, max_bytes=index.settings.max_article_bytes, date=date, ids=ids)
    report = index.add(found.articles, show_progress=show_progress) if found.articles else AddReport()
    report.skipped = found.skipped
    report.notes = [f"{a.doc_id}: {a.note}" for a in found.articles if a.note]
    removed = index.remove_many(stale_articles(index.document_paths(), paths, found.articles)) \
        if index.exists() else []
    return found, report, removed


@dataclass
class Action:
    """One thing a watch did: ``verb`` is added, updated, removed, skipped or failed."""

    verb: str
    what: str  # a doc id, or a file for skipped and failed
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.verb} {self.what}{': ' + self.detail if self.detail else ''}"


@dataclass
class Watcher:
    """Applies a folder's file changes to the index: a changed or new file is read again (its articles added or
    updated, those it no longer holds removed), a deleted file's (or folder's) articles are removed, and a changed
    ``.qaignore`` means the whole folder is synced again."""

    index: object
    folder: Path
    ids: str = "stem"
    date: str = ""
    report: Callable[[Action], None] = field(default=lambda action: log.info("%s", action))

    def __post_init__(self):
        self.folder = Path(self.folder).resolve()

    def start(self) -> list[Action]:
        """Bring the index in step with the folder (as `qa index DIR --sync`)."""
        return self._sync()

    def _sync(self) -> list[Action]:
        _, report, removed = sync(self.index, [self.folder], date=self.date, ids=self.ids)
        actions = [Action("added", d) for d in report.added] + [Action("updated", d) for d in report.updated]
        actions += [Action("removed", d, "its file is gone") for d in removed]
        actions += [Action("skipped", reason) for reason in report.skipped]
        for action in actions:
            self.report(action)
        return actions

    def _wanted(self, path: Path) -> bool:
        return path.suffix.lower() in SUPPORTED and _offered(path, self.folder, IgnoreRules.of(self.folder))

    def apply(self, changed: Iterable[str | Path]) -> list[Action]:
        """Apply one batch of changed paths (added, modified or deleted: each is looked at as it is now)."""
        paths = sorted({Path(p).resolve() for p in changed})
        paths = [p for p in paths if p == self.folder or p.is_relative_to(self.folder)]
        if any(p.name == ".qaignore" for p in paths):
            return self._sync()
        actions: list[Action] = []
        stored = self.index.document_paths() if self.index.exists() else {}
        by_file: dict[Path, list[str]] = {}
        for doc_id, path in stored.items():
            file = _stored_file(path)
            if file is not None:
                by_file.setdefault(file, []).append(doc_id)
        articles, remove = [], []
        for path in paths:
            if path.is_file():
                before = by_file.get(path, [])
                if not self._wanted(path):
                    remove += before
                    continue
                doc_id = ""
                if self.ids == "path":
                    doc_id = safe_doc_id(str(path.relative_to(self.folder).with_suffix("")).replace("/", "-"))
                try:
                    read = read_file(path, max_bytes=self.index.settings.max_article_bytes, date=self.date,
                                     doc_id=doc_id)
                except (UnsupportedFile, TooLarge, InvalidInput, NotFound, Conflict, OSError) as e:
                    actions.append(Action("skipped", str(path), str(e)))
                    continue
                articles += read
                now = {a.doc_id for a in read}
                remove += [d for d in before if d not in now]
            elif not path.exists():  # a deleted file, or a deleted folder and everything in it
                remove += [d for file, ids in by_file.items() if file == path or file.is_relative_to(path)
                           for d in ids]
        if articles:
            try:
                report = self.index.add(articles)
                actions += [Action("added", d) for d in report.added] + [Action("updated", d) for d in report.updated]
            except QAError as e:
                actions.append(Action("failed", ", ".join(a.doc_id for a in articles), str(e)))
        if remove:
            actions += [Action("removed", d, "its file is gone") for d in self.index.remove_many(remove)]
        for action in actions:
            self.report(action)
        return actions

    def run(self, *, debounce_ms: int = 1000, stop_event=None, on_ready: Callable[[], None] | None = None) -> None:
        """Watch the folder until interrupted (or ``stop_event`` is set), applying each debounced batch. The folder
        is synced once the watch is in place (so nothing changed meanwhile is missed), then ``on_ready`` is
        called."""
        from watchfiles import watch

        ready = False
        for changes in watch(self.folder, debounce=debounce_ms, step=50, stop_event=stop_event,
                             raise_interrupt=False, yield_on_timeout=True, rust_timeout=300):
            if not ready:
                ready = True
                self.start()
                if on_ready is not None:
                    on_ready()
            if changes:
                began = time.perf_counter()
                self.apply(path for _, path in changes)
                log.debug("batch of %d changes applied in %.2f s", len(changes), time.perf_counter() - began)


class BackgroundWatch:
    """A Watcher running in a daemon thread beside something else (`qa serve --watch DIR`): ``start()`` begins
    watching, ``ready`` is set once the folder has been synced, ``stop()`` ends the watch after the batch under way
    (an index write is never cut off by it) and waits for the thread."""

    def __init__(self, watcher: Watcher, *, debounce_ms: int = 1000):
        self.watcher = watcher
        self.debounce_ms = debounce_ms
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qa-watch", daemon=True)

    def _run(self) -> None:
        try:
            self.watcher.run(debounce_ms=self.debounce_ms, stop_event=self._stop, on_ready=self.ready.set)
        except Exception as e:  # noqa: BLE001 -- the server goes on without the watch; say why once
            log.error("the watch of %s stopped: %s", self.watcher.folder, e)
            self.watcher.report(Action("failed", str(self.watcher.folder), f"the watch stopped: {e}"))
        finally:
            self.ready.set()  # nobody waits for a watch that ended

    def start(self) -> "BackgroundWatch":
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop watching; True when the thread ended within ``timeout`` seconds."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()
