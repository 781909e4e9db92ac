"""Kill the process at any point of a write: the index still opens, answers, and takes the next write.

A child process builds or changes an index and is killed with SIGKILL at a chosen stage (or at a random
moment of a long build); the parent then reopens it. The fake embedder keeps this a test of plumbing only."""

import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import faiss
import numpy as np
import pytest

from qa.errors import StorageFull
from qa.index import NewsIndex
from qa.ingest import article_from_text
from qa.settings import Settings
from qa.vectors import VectorIndex, faiss_path

from conftest import FakeEmbedder

TESTS = Path(__file__).resolve().parent

CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from conftest import FakeEmbedder
    import qa.index, qa.store, qa.vectors
    from qa.index import NewsIndex
    from qa.ingest import article_from_text
    from qa.settings import Settings

    stage, op, folder, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    def after(func):
        def wrapped(*args, **kwargs):
            func(*args, **kwargs)
            die()
        return wrapped

    if stage == "before-commit":
        qa.store._Transaction.__exit__ = lambda self, *exc: die()
    elif stage == "after-cache-write":
        qa.vectors.VectorIndex.save = after(qa.vectors.VectorIndex.save)
    elif stage == "after-commit":
        qa.vectors.VectorIndex.drop_older = staticmethod(lambda *a: die())
    elif stage == "before-switch":
        qa.index.atomic_write_text = die
    elif stage == "after-switch":
        qa.index.atomic_write_text = after(qa.store.atomic_write_text)

    index = NewsIndex(Settings.from_env(index_dir=folder), embedder=FakeEmbedder())
    articles = [article_from_text(f"Story {{i}} about tariffs number {{i}}. " * 40, doc_id=f"new{{i}}") for i in range(n)]
    if op == "add":
        index.add(articles)
    elif op == "remove":
        index.remove("old0")
    else:
        index.rebuild(articles)
    print("finished")
""").format(tests=str(TESTS))


def _old_index(folder: Path) -> NewsIndex:
    index = NewsIndex(Settings.from_env(index_dir=folder), embedder=FakeEmbedder())
    index.rebuild([article_from_text(f"Old story {i} on steel tariffs.", doc_id=f"old{i}") for i in range(3)])
    index.close()
    return index


def _assert_whole(folder: Path, allowed: list[set[str]]) -> None:
    index = NewsIndex(Settings.from_env(index_dir=folder), embedder=FakeEmbedder())
    docs = {d.doc_id for d in index.documents()}
    assert docs in allowed, docs
    live = index.live()
    assert live.store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    _, chunks = live.store.counts()
    assert live.vectors.size == chunks
    assert {p.doc_id for p in index.search("steel tariffs story", k=50)} <= docs
    # The writer's lock died with it: the next write goes through.
    index.add([article_from_text("A later story about lumber.", doc_id="later")])
    assert "later" in {d.doc_id for d in index.documents()}
    index.close()


def _run_child(stage: str, op: str, folder: Path, n: int = 4, kill_after: float | None = None) -> int:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, stage, op, str(folder), str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if kill_after is not None:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=120)
    return proc.returncode


OLD = {"old0", "old1", "old2"}
NEW = {f"new{i}" for i in range(4)}


@pytest.mark.parametrize("stage", ["before-commit", "after-cache-write", "after-commit"])
def test_a_crash_during_an_add_keeps_the_old_or_the_new_index(tmp_path, stage):
    folder = tmp_path / "index"
    _old_index(folder)
    assert _run_child(stage, "add", folder) == -signal.SIGKILL
    _assert_whole(folder, [OLD, OLD | NEW])


@pytest.mark.parametrize("stage", ["before-commit", "after-cache-write"])
def test_a_crash_during_a_remove_keeps_the_article_or_removes_it_everywhere(tmp_path, stage):
    folder = tmp_path / "index"
    _old_index(folder)
    assert _run_child(stage, "remove", folder) == -signal.SIGKILL
    _assert_whole(folder, [OLD, OLD - {"old0"}])


@pytest.mark.parametrize("stage", ["before-commit", "before-switch", "after-switch"])
def test_a_crash_during_a_rebuild_keeps_the_previous_generation_or_the_new_one(tmp_path, stage):
    folder = tmp_path / "index"
    _old_index(folder)
    assert _run_child(stage, "rebuild", folder) == -signal.SIGKILL
    _assert_whole(folder, [OLD, NEW])


def test_killing_a_long_build_at_random_moments_never_breaks_the_index(tmp_path):
    folder = tmp_path / "index"
    _old_index(folder)
    rng = random.Random(7)
    for _ in range(4):
        _run_child("none", "rebuild", folder, n=400, kill_after=rng.uniform(0.3, 2.0))
        _assert_whole(folder, [OLD, {f"new{i}" for i in range(400)}, OLD | {"later"}])
        _old_index(folder)


def test_a_crash_before_the_first_build_finishes_leaves_no_index(tmp_path):
    folder = tmp_path / "index"
    assert _run_child("before-switch", "rebuild", folder) == -signal.SIGKILL
    assert not NewsIndex(Settings.from_env(index_dir=folder), embedder=FakeEmbedder()).exists()


# --- a write that fails without a crash: the process goes on, and so must its in-memory FAISS index -------------

class _FullDisk:
    """The writer connection of a store whose next COMMIT fails as on a full disk. SQLite may or may not roll
    the transaction back by itself on such an error; ``rolled_back`` picks which."""

    def __init__(self, conn, rolled_back: bool):
        self._conn, self._rolled_back, self.failed = conn, rolled_back, False

    def execute(self, sql, *args):
        if sql == "COMMIT" and not self.failed:
            self.failed = True
            if self._rolled_back:
                self._conn.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def _assert_cites_truly(index: NewsIndex, queries: list[str]) -> None:
    """Every passage is an exact slice of its article, and every vector FAISS holds under a chunk id is the
    vector SQLite stores for that chunk (a phantom vector under a reused id would cite another article)."""
    live = index.live()
    assert live.vectors.size == live.store.counts()[1]
    for query in queries:
        for p in index.search(query, k=10):
            assert index.document(p.doc_id)["text"][p.start:p.end] == p.text
        q = index.embedder.encode([query])[0]
        for chunk_id, score in live.vectors.search(q, 10):
            row = live.store.db.execute("SELECT vector FROM chunks WHERE id = ?", (chunk_id,)).fetchone()
            assert row is not None and abs(float(np.frombuffer(row[0], dtype=np.float32) @ q) - score) < 1e-4


@pytest.mark.parametrize("rolled_back", [True, False])
def test_a_failed_commit_leaves_no_phantom_vector_in_memory_or_on_disk(tmp_path, rolled_back):
    folder = tmp_path / "index"
    _old_index(folder)
    index = NewsIndex(Settings.from_env(index_dir=folder), embedder=FakeEmbedder())
    live = index.live()
    live.store._writer = _FullDisk(live.store.writer, rolled_back)
    failed = "Ferry workers in Halifax went on strike over pay on Monday."
    with pytest.raises(StorageFull, match="is full"):
        index.add([article_from_text(failed, doc_id="ferry")])
    # The next add gets the chunk id the failed one had (AUTOINCREMENT's counter was rolled back with it).
    index.add([article_from_text("Ottawa announced new lumber quotas on Friday.", doc_id="lumber")])
    queries = [failed, "lumber quotas Ottawa", "steel tariffs story"]
    reopened = NewsIndex(Settings.from_env(index_dir=folder), embedder=FakeEmbedder())
    for idx in (index, reopened):  # in memory, and from the files as a restarted process reads them
        assert {d.doc_id for d in idx.documents()} == OLD | {"lumber"}
        _assert_cites_truly(idx, queries)
        assert all("Ferry" not in p.text for p in idx.search(failed, k=10))
        top = idx.search("Ottawa announced new lumber quotas on Friday.", k=1)[0]
        assert top.doc_id == "lumber" and "lumber quotas" in top.text
    index.close()
    reopened.close()


def _forged_ids(ids: list[int]) -> list[list[int]]:
    return [ids + [max(ids) + 1],  # a vector for a chunk whose transaction failed
            ids[:-1],  # a chunk missing
            ids + [ids[0]]]  # one id twice: a phantom under an id handed out again


@pytest.mark.parametrize("forgery", range(3))
def test_a_cache_file_that_does_not_hold_the_databases_chunks_is_not_trusted(tmp_path, forgery):
    folder = tmp_path / "index"
    _old_index(folder)
    index = NewsIndex(Settings.from_env(index_dir=folder), embedder=FakeEmbedder())
    live = index.live()
    ids = [r[0] for r in live.store.db.execute("SELECT id FROM chunks ORDER BY id")]
    forged_ids = _forged_ids(ids)[forgery]
    forged = VectorIndex(live.vectors.dim)
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(len(forged_ids), live.vectors.dim)).astype(np.float32)
    forged.add(np.asarray(forged_ids, dtype=np.int64), vecs / np.linalg.norm(vecs, axis=1, keepdims=True))
    forged.save(live.gen_dir, live.generation)  # under the very name the database generation points to
    index.close()
    reopened = NewsIndex(Settings.from_env(index_dir=folder), embedder=FakeEmbedder())
    _assert_cites_truly(reopened, ["steel tariffs story", "Old story 1"])
    reopened.close()
    # The cache was rebuilt from SQLite and saved again: the next process loads it as it is.
    cached = faiss.read_index(str(faiss_path(live.gen_dir, live.generation)))
    assert sorted(faiss.vector_to_array(cached.id_map).tolist()) == ids
