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
from .ingest import (SUPPORTED, Collected, IgnoreRules, absolute_path, alias_in, collect, read_file,
                     safe_doc_id)
from .records import AddReport

log = logging.getLogger("qa.watch")


def _stored_file(path: str) -> Path | None:
    """The file an article was read from, or None when its stored path cannot name one: pasted articles have
    none, and an upload's is a bare file name (a path with no folder is ambiguous, so it is never synced)."""
    if not path or ("/" not in path and "\\" not in path and not Path(path).is_absolute()):
        return None
    return absolute_path(path)


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
    read = {absolute_path(a.path) for a in found if a.path}
    gone = []
    for doc_id, path in stored.items():
        file = _stored_file(path)
        root = next((r for r in roots if file is not None and file.is_relative_to(r)), None)
        if doc_id in found_ids or root is None:
            continue
        if not file.exists() or file in read or not _offered(file, root, rules[root]) \
                or alias_in(file, root, rules[root]):
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

    def apply(self, changed: Iterable[str | Path]) -> list[Action]:
        """Apply one batch of changed paths (added, modified, moved or deleted: each is looked at as it is now). A
        folder that appears (moved in, renamed) is read whole, since only the folder is reported; an article whose
        file moved within the batch is kept, under its new path; a file holding an article id that another file
        holds is skipped, as `qa index` refuses it (it replaced the other file's article)."""
        paths = sorted({absolute_path(p) for p in changed})
        paths = [p for p in paths if p == self.folder or p.is_relative_to(self.folder)]
        if any(p.name == ".qaignore" for p in paths):
            return self._sync()
        rules = IgnoreRules.of(self.folder)
        stored = self.index.document_paths() if self.index.exists() else {}
        by_file: dict[Path, list[str]] = {}
        for doc_id, path in stored.items():
            file = _stored_file(path)
            if file is not None:
                by_file.setdefault(file, []).append(doc_id)
        files: dict[Path, None] = {}
        gone: list[Path] = []
        for path in paths:
            if path.is_file():
                files[path] = None
            elif path.is_dir():
                files.update((f, None) for f in sorted(path.rglob("*")) if f.is_file())
            elif not path.exists():  # a deleted file, or a deleted folder and everything in it
                gone.append(path)
        actions: list[Action] = []
        remove: list[str] = [d for file, ids in by_file.items() for d in ids
                             if any(file == g or file.is_relative_to(g) for g in gone)]
        read: dict[Path, list] = {}
        for file in files:
            if not (file.suffix.lower() in SUPPORTED and _offered(file, self.folder, rules)) \
                    or alias_in(file, self.folder, rules):
                remove += by_file.get(file, [])
                continue
            doc_id = ""
            if self.ids == "path":
                doc_id = safe_doc_id(str(file.relative_to(self.folder).with_suffix("")).replace("/", "-"))
            try:
                read[file] = read_file(file, max_bytes=self.index.settings.max_article_bytes, date=self.date,
                                       doc_id=doc_id)
            except (UnsupportedFile, TooLarge, InvalidInput, NotFound, Conflict, OSError) as e:
                actions.append(Action("skipped", str(file), str(e)))
        articles = []
        owner: dict[str, Path] = {}
        for file, found in read.items():
            clash = next((f"document id {a.doc_id!r} is claimed by {other} and {file}; rename one file or use "
                          "--ids path" for a in found if (other := self._holder(a.doc_id, file, owner, stored, read))),
                         None)
            if clash:
                actions.append(Action("skipped", str(file), clash))
                continue
            owner.update((a.doc_id, file) for a in found)
            articles += found
            remove += [d for d in by_file.get(file, []) if d not in {a.doc_id for a in found}]
        if articles:
            try:
                report = self.index.add(articles)
                actions += [Action("added", d) for d in report.added] + [Action("updated", d) for d in report.updated]
            except QAError as e:
                actions.append(Action("failed", ", ".join(a.doc_id for a in articles), str(e)))
        remove = [d for d in dict.fromkeys(remove) if d not in owner]  # read again under a new path: moved, kept
        if remove:
            actions += [Action("removed", d, "its file is gone") for d in self.index.remove_many(remove)]
        for action in actions:
            self.report(action)
        return actions

    @staticmethod
    def _holder(doc_id: str, file: Path, owner: dict[str, Path], stored: dict[str, str],
                read: dict[Path, list]) -> Path | None:
        """Another file that holds ``doc_id``: one read earlier in this batch, or the stored article's file while
        it still exists and (when read in this batch) still holds it; None when ``file`` may take the id."""
        if doc_id in owner:
            return owner[doc_id]
        other = _stored_file(stored.get(doc_id, ""))
        if other is None or other == file or not other.is_file():
            return None
        if other in read and doc_id not in {a.doc_id for a in read[other]}:
            return None  # the record moved from that file to this one in the same save
        return other

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
                try:
                    self.apply(path for _, path in changes)
                except (QAError, OSError) as e:
                    # A .qaignore that is wrong (or half saved), a full disk: said, and the watch goes on, so that
                    # the next change (the .qaignore fixed) is applied; it ended the watch for good.
                    self.report(Action("failed", str(self.folder), str(e)))
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
