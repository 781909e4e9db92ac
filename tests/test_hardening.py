"""Issue 8's hardening: a full disk, a damaged database, a rebuild in another process, batched writes.

Plumbing tests over the fake embedder: each simulates the failure (a write that raises, bytes overwritten in the
database, a generation removed under a reader) rather than waiting for it."""

from __future__ import annotations

import errno
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import qa.cli
import qa.index
import qa.store
from qa.errors import IndexCorrupt, StorageFull
from qa.index import NewsIndex
from qa.ingest import article_from_text
from qa.settings import Settings
from qa.store import DB_NAME
from qa.vectors import VectorIndex
from web.app import create_app

from conftest import FakeEmbedder

BASE = "http://localhost"


def _texts(n: int) -> dict[str, str]:
    return {f"doc{i:03d}": f"Story {i} about tariffs on item {i}. " + f"Port {i} saw ships {i} times. " * 30
            for i in range(n)}


def _build(folder: Path, n: int = 3) -> NewsIndex:
    index = NewsIndex(Settings.from_env(index_dir=folder), embedder=FakeEmbedder())
    index.rebuild([article_from_text(text, doc_id=doc_id) for doc_id, text in _texts(n).items()])
    return index


def _fresh(folder: Path) -> NewsIndex:
    """The index as a new process opens it (its once-per-process database checks forgotten)."""
    qa.index._CHECKED.clear()
    return NewsIndex(Settings.from_env(index_dir=folder), embedder=FakeEmbedder())


def _assert_intact(folder: Path, doc_ids: set[str]) -> None:
    index = _fresh(folder)
    assert {d.doc_id for d in index.documents()} == doc_ids
    live = index.live()
    assert live.store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert live.vectors.size == live.store.counts()[1]
    assert [p.name for p in folder.glob("gen-*")] == [live.gen_dir.name]
    index.close()


# --- 1. a full disk --------------------------------------------------------------------------------------------
def _fill_disk(monkeypatch, how: str) -> None:
    """The next write fails as on a full disk: SQLite's COMMIT (SQLITE_FULL), or a file write (ENOSPC)."""
    if how == "sqlite":
        original = qa.store._Transaction.__exit__

        def commit_fails(self, exc_type, exc, tb):
            if exc_type is None:
                self._rollback()
                raise sqlite3.OperationalError("database or disk is full")
            return original(self, exc_type, exc, tb)

        monkeypatch.setattr(qa.store._Transaction, "__exit__", commit_fails)
    else:
        def save_fails(self, *args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(VectorIndex, "save", save_fails)


@pytest.mark.parametrize("how", ["sqlite", "enospc"])
@pytest.mark.parametrize("op", ["add", "remove", "rebuild"])
def test_a_full_disk_is_storage_full_naming_the_index_and_changes_nothing(tmp_path, monkeypatch, how, op):
    folder = tmp_path / "index"
    index = _build(folder)
    before = {d.doc_id for d in index.documents()}
    _fill_disk(monkeypatch, how)
    with pytest.raises(StorageFull, match="full") as caught:
        if op == "add":
            index.add([article_from_text("Ferry workers went on strike over pay.", doc_id="ferry")])
        elif op == "remove":
            index.remove("doc000")
        else:
            index.rebuild([article_from_text("Ferry workers went on strike over pay.", doc_id="ferry")])
    assert str(folder) in str(caught.value)
    monkeypatch.undo()
    assert {d.doc_id for d in index.documents()} == before
    index.close()
    _assert_intact(folder, before)


def test_a_full_disk_is_one_line_from_the_cli_with_exit_code_2(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "index"
    _build(folder).close()
    monkeypatch.setattr(qa.cli, "_index", lambda settings: NewsIndex(settings, embedder=FakeEmbedder()))
    _fill_disk(monkeypatch, "sqlite")
    assert qa.cli.main(["--index-dir", str(folder), "remove", "doc001"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("qa: error:") and str(folder) in err and "Traceback" not in err
    monkeypatch.undo()
    _assert_intact(folder, set(_texts(3)))


def test_a_full_disk_is_507_with_the_path_over_http(tmp_path, monkeypatch):
    folder = tmp_path / "index"
    index = _build(folder)
    _fill_disk(monkeypatch, "sqlite")
    with TestClient(create_app(index.settings, index=index), base_url=BASE) as client:
        for response in (client.delete("/documents/doc001"),
                         client.post("/documents", json={"title": "Ferry", "text": "Ferry workers went on strike."})):
            assert response.status_code == 507
            assert str(folder) in response.json()["detail"]
    monkeypatch.undo()
    index.close()
    _assert_intact(folder, set(_texts(3)))


@pytest.mark.parametrize("free_bytes, expected", [(0, StorageFull), (1 << 30, IndexCorrupt)])
def test_a_database_sqlite_cannot_open_is_a_full_disk_when_there_is_no_room_else_damage(
        tmp_path, monkeypatch, free_bytes, expected):
    # On a full disk SQLite cannot make a WAL database's -shm file and says "disk I/O error": that is no damage
    # (and `qa doctor` would only write more), so the error says the disk is full.
    import os
    import types

    folder = tmp_path / "index"
    _build(folder).close()
    index = _fresh(folder)

    def cannot_open(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite3, "connect", cannot_open)
    monkeypatch.setattr(os, "statvfs", lambda path: types.SimpleNamespace(f_bavail=free_bytes // 4096, f_frsize=4096))
    with pytest.raises(expected) as caught:
        index.documents()
    assert str(folder) in str(caught.value)
    assert ("full" in str(caught.value)) == (expected is StorageFull)


# --- 2. a damaged database -------------------------------------------------------------------------------------
def _damage(folder: Path) -> Path:
    """Overwrite a page in the middle of the live generation's database with garbage; returns the database."""
    db = next(folder.glob("gen-*")) / DB_NAME
    assert not db.with_name(DB_NAME + "-wal").exists() or db.with_name(DB_NAME + "-wal").stat().st_size == 0
    size = db.stat().st_size
    page = 4096
    at = (size // page // 2) * page
    with open(db, "r+b") as f:
        f.seek(at)
        f.write(bytes((i * 37 + 11) % 256 for i in range(page)))
    return db


def test_a_damaged_database_is_index_corrupt_and_qa_doctor_recovers_the_readable_articles(tmp_path, monkeypatch,
                                                                                          capsys):
    folder = tmp_path / "index"
    texts = _texts(40)
    _build(folder, 40).close()
    _damage(folder)
    index = _fresh(folder)
    with pytest.raises(IndexCorrupt, match="qa doctor") as caught:
        index.documents()
    assert "qa index --rebuild PATHS" in str(caught.value) and str(folder) in str(caught.value)
    # The server starts and says so in JSON; it does not fall over.
    with TestClient(create_app(index.settings, index=index), base_url=BASE) as client:
        for response in (client.get("/documents"), client.post("/ask", json={"question": "tariffs?"})):
            assert response.status_code == 503 and "qa doctor" in response.json()["detail"]
        v1 = client.post("/v1/chat/completions", json={"model": "newsqa", "messages": [{"role": "user",
                                                                                        "content": "tariffs?"}]})
        assert v1.status_code == 503 and v1.json()["error"]["code"] == "index_corrupt"
    # The CLI: one line, exit code 2, for reads and for `qa index --rebuild` (which reads the stored articles).
    monkeypatch.setattr(qa.cli, "_index", lambda settings: NewsIndex(settings, embedder=FakeEmbedder()))
    for argv in (["docs"], ["index", "--rebuild"]):
        assert qa.cli.main(["--index-dir", str(folder), *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "qa doctor" in err
    # qa doctor reads what it can and rebuilds from it.
    assert qa.cli.main(["--index-dir", str(folder), "doctor"]) == 0
    out = capsys.readouterr().out
    assert "problem: the database is damaged" in out and "recovered " in out
    repaired = _fresh(folder)
    docs = {d.doc_id for d in repaired.documents()}
    assert 0 < len(docs) <= 40 and f"recovered {len(docs)} article" in out
    for doc_id in docs:
        assert repaired.document(doc_id)["text"] == texts[doc_id]
    repaired.close()
    _assert_intact(folder, docs)


def test_a_database_of_random_bytes_loses_no_rows_it_never_had(tmp_path):
    """Without a readable largest row id, qa doctor probes on until 5,000 misses: it counted each failed probe as
    a lost row ("5000 damaged rows lost" for an index of 3 articles)."""
    folder = tmp_path / "index"
    _build(folder).close()
    db = next(folder.glob("gen-*")) / DB_NAME
    db.write_bytes(bytes((i * 37 + 11) % 256 for i in range(64 * 1024)))
    index = _fresh(folder)
    report = index.doctor()
    assert report["recovered"] == 0 and report["lost"] == 0 and report["problems"]
    index.close()


def test_a_zero_length_database_is_not_written_to_and_qa_doctor_starts_afresh(tmp_path):
    folder = tmp_path / "index"
    _build(folder).close()
    db = next(folder.glob("gen-*")) / DB_NAME
    db.write_bytes(b"")
    index = _fresh(folder)
    for _ in range(2):
        with pytest.raises(IndexCorrupt, match="empty"):
            index.documents()
    assert db.stat().st_size == 0
    report = index.doctor()
    assert report["recovered"] == 0 and report["problems"]
    _assert_intact(folder, set())
    index.close()


def test_a_rebuild_from_paths_replaces_a_damaged_index(tmp_path):
    folder = tmp_path / "index"
    _build(folder, 40).close()
    _damage(folder)
    index = _fresh(folder)
    index.rebuild([article_from_text("Ferry workers went on strike over pay.", doc_id="ferry")])
    index.close()
    _assert_intact(folder, {"ferry"})


def test_qa_doctor_rebuilds_a_missing_vector_cache_and_passes_a_sound_index(tmp_path):
    folder = tmp_path / "index"
    _build(folder).close()
    index = _fresh(folder)
    assert index.doctor()["problems"] == []
    for cache in folder.glob("gen-*/vectors-*.faiss"):
        cache.unlink()
    report = _fresh(folder).doctor()
    assert "missing" in report["problems"][0] and "vector cache" in report["repaired"][0]
    assert list(folder.glob("gen-*/vectors-*.faiss"))
    assert _fresh(folder).doctor()["problems"] == []
    _assert_intact(folder, set(_texts(3)))


# --- 3. a rebuild in another process -----------------------------------------------------------------------------
def _next_generation(folder: Path) -> tuple[str, str]:
    """What another process's rebuild leaves: the live generation moved to a new name. Returns (old, new)."""
    old = next(folder.glob("gen-*"))
    new = old.with_name("gen-000009")
    old.rename(new)
    return old.name, new.name


def test_a_reader_waits_for_current_while_another_process_switches_generations(tmp_path):
    folder = tmp_path / "index"
    _build(folder).close()
    old, new = _next_generation(folder)
    (folder / "CURRENT").write_text(old + "\n")  # the reader reads CURRENT before the switch...
    switch = threading.Timer(0.1, lambda: qa.store.atomic_write_text(folder / "CURRENT", new + "\n"))
    switch.start()  # ...and the old generation is gone before the new CURRENT is written
    index = _fresh(folder)
    try:
        assert {d.doc_id for d in index.documents()} == set(_texts(3))
        assert index.live().gen_dir.name == new
    finally:
        switch.join()
        index.close()


def test_an_open_that_finds_the_generation_gone_reads_current_again(tmp_path, monkeypatch):
    folder = tmp_path / "index"
    _build(folder).close()
    check = qa.index.integrity_problem
    calls = []

    def rebuilt_meanwhile(db, **kwargs):
        if not calls:  # between reading CURRENT and opening it, another process switched and removed the old one
            old, new = _next_generation(folder)
            qa.store.atomic_write_text(folder / "CURRENT", new + "\n")
        calls.append(db)
        return check(db, **kwargs)

    monkeypatch.setattr(qa.index, "integrity_problem", rebuilt_meanwhile)
    index = _fresh(folder)
    assert {d.doc_id for d in index.documents()} == set(_texts(3))
    assert [db.parent.name for db in calls][-1] == "gen-000009"
    index.close()


def test_current_naming_a_generation_that_stays_gone_is_a_damaged_index_soon_and_nothing_overwrites_it(tmp_path):
    folder = tmp_path / "index"
    _build(folder).close()
    (folder / "CURRENT").write_text("gen-000042\n")
    began = time.monotonic()
    index = _fresh(folder)
    with pytest.raises(IndexCorrupt) as gone:
        index.documents()
    assert time.monotonic() - began < 3
    message = str(gone.value)
    assert "gen-000042" in message and "gen-000001" in message and "qa doctor" in message
    # Not "no index yet": an add or a rebuild from the stored articles would otherwise build over gen-000001.
    assert index.exists()
    with pytest.raises(IndexCorrupt):
        index.add([article_from_text("A new story about ports.", doc_id="new")])
    with pytest.raises(IndexCorrupt):
        index.rebuild()
    assert (folder / "gen-000001" / DB_NAME).exists() and (folder / "CURRENT").read_text() == "gen-000042\n"
    index.close()


def test_qa_doctor_rebuilds_from_an_intact_older_generation_when_current_names_a_gone_one(tmp_path):
    folder = tmp_path / "index"
    _build(folder).close()
    (folder / "CURRENT").write_text("gen-000042\n")
    report = _fresh(folder).doctor()
    assert report["recovered"] == 3 and report["lost"] == 0
    assert "gen-000042" in report["problems"][0] and "gen-000001" in report["repaired"][0]
    _assert_intact(folder, set(_texts(3)))
    # With no generation left to read, it says how to build the index again.
    shutil.rmtree(next(folder.glob("gen-*")))
    (folder / "CURRENT").write_text("gen-000042\n")
    with pytest.raises(IndexCorrupt, match=r"qa index --rebuild PATHS"):
        _fresh(folder).doctor()


# --- 6. big adds in batches --------------------------------------------------------------------------------------
class _Killed(Exception):
    pass


def _die_after_batches(monkeypatch, index: NewsIndex, batches: int) -> list[int]:
    """The write of batch ``batches + 1`` dies before it starts (as a crash or an out-of-memory kill would stop
    the run there); returns the article counts of the batches prepared."""
    write, prepare, sizes = index._write, index._prepare, []

    def counted_prepare(articles, *args, **kwargs):
        sizes.append(len(articles))
        return prepare(articles, *args, **kwargs)

    def dying_write(*args, **kwargs):
        if len(sizes) > batches:
            raise _Killed("killed after the second batch")
        return write(*args, **kwargs)

    monkeypatch.setattr(index, "_prepare", counted_prepare)
    monkeypatch.setattr(index, "_write", dying_write)
    return sizes


def _assert_each_once(index: NewsIndex, reference: NewsIndex, doc_ids: set[str]) -> None:
    """Every article in ``doc_ids`` present once, whole (the chunks a one-go build gives it), nothing else."""
    live = index.live()
    rows = live.store.db.execute("SELECT doc_id, count(*) FROM chunks GROUP BY doc_id").fetchall()
    expected = dict(reference.live().store.db.execute("SELECT doc_id, count(*) FROM chunks GROUP BY doc_id"))
    assert {d.doc_id for d in index.documents()} == doc_ids and len(index.documents()) == len(doc_ids)
    assert dict(rows) == {d: expected[d] for d in doc_ids}
    fts = live.store.db.execute("SELECT count(*) FROM chunks_fts").fetchone()[0]
    assert fts == live.store.counts()[1] == live.vectors.size


def test_an_add_that_dies_after_two_batches_keeps_them_and_a_rerun_adds_the_rest_once(tmp_path, monkeypatch):
    texts = _texts(11)
    articles = [article_from_text(text, doc_id=doc_id) for doc_id, text in texts.items()]
    reference = _build(tmp_path / "reference", 0)
    reference.add(articles)
    index = _build(tmp_path / "index", 0)
    index.batch_size = 4
    sizes = _die_after_batches(monkeypatch, index, 2)
    with pytest.raises(_Killed):
        index.add(articles)
    assert sizes[:2] == [4, 4]  # never more than a batch of articles chunked and embedded at a time
    monkeypatch.undo()
    first = {a.doc_id for a in articles[:8]}
    _assert_each_once(index, reference, first)  # two whole batches, nothing of the third
    index.close()
    again = _fresh(tmp_path / "index")
    again.batch_size = 4
    report = again.add(articles)
    assert set(report.unchanged) == first and set(report.added) == set(texts) - first
    _assert_each_once(again, reference, set(texts))
    again.close()
    _assert_intact(tmp_path / "index", set(texts))
    reference.close()


def test_a_rebuild_in_batches_switches_only_at_the_end(tmp_path, monkeypatch):
    texts = _texts(11)
    articles = [article_from_text(text, doc_id=doc_id) for doc_id, text in texts.items()]
    index = _build(tmp_path / "index", 3)
    old = {d.doc_id for d in index.documents()}
    index.batch_size = 4
    sizes = _die_after_batches(monkeypatch, index, 2)
    with pytest.raises(_Killed):
        index.rebuild(articles)
    assert sizes == [4, 4, 3]
    monkeypatch.undo()
    assert {d.doc_id for d in index.documents()} == old  # the previous generation, untouched
    _assert_intact(tmp_path / "index", old)
    index.batch_size = 4
    index.rebuild(articles)
    reference = _build(tmp_path / "reference", 0)
    reference.add(articles)
    _assert_each_once(index, reference, set(texts))
    index.close()
    reference.close()
    _assert_intact(tmp_path / "index", set(texts))
