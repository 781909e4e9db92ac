"""Kill the process at any point of a write: the index still opens, answers, and takes the next write.

A child process builds or changes an index and is killed with SIGKILL at a chosen stage (or at a random
moment of a long build); the parent then reopens it. The fake embedder keeps this a test of plumbing only."""

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from qa.index import NewsIndex
from qa.ingest import article_from_text
from qa.settings import Settings

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
