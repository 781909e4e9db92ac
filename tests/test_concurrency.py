"""Reads during writes: every search sees a complete index (the old or the new), never an error or a torn citation."""

import threading

from qa.errors import NotFound
from qa.ingest import article_from_text


def _article(i: int):
    return article_from_text(f"Report {i}: steel tariffs and lumber quotas were discussed in round {i}. " * 30,
                             doc_id=f"doc{i}", title=f"Round {i}")


def test_readers_never_fail_while_another_thread_adds_removes_and_rebuilds(fake_index):
    fake_index.rebuild([_article(i) for i in range(5)])
    errors: list[BaseException] = []
    stop = threading.Event()

    def read():
        while not stop.is_set():
            try:
                for p in fake_index.search("steel tariffs lumber", k=5):
                    try:
                        text = fake_index.document(p.doc_id)["text"]
                    except NotFound:
                        continue  # removed since the search: a later state, still complete
                    assert text[p.start:p.end] == p.text
                live = fake_index.live()
                assert live.vectors.size >= 0
            except BaseException as e:  # noqa: BLE001 - any failure of a reader is the finding
                errors.append(e)
                return

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for round_no in range(6):
            fake_index.add([_article(100 + round_no)])
            fake_index.remove(f"doc{round_no % 5}") if round_no < 5 else None
            fake_index.rebuild()
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert not errors, errors[0]
    docs, chunks = fake_index.live().store.counts()
    assert fake_index.live().vectors.size == chunks


class _NoticedLock:
    """A thread lock that tells when a thread has to wait for it."""

    def __init__(self):
        self._lock = threading.Lock()
        self.contended = threading.Event()

    def __enter__(self):
        if not self._lock.acquire(blocking=False):
            self.contended.set()
            self._lock.acquire()
        return self

    def __exit__(self, *exc):
        self._lock.release()


def test_a_rebuild_called_while_an_add_is_embedding_keeps_the_added_article(fake_index):
    fake_index.rebuild([_article(0)])
    embedding, release = threading.Event(), threading.Event()
    fake = fake_index.embedder

    class SlowEmbedder:
        """The add's embedding takes as long as the test wants (a large upload)."""

        dim = fake.dim

        def encode(self, texts, **kwargs):
            if not release.is_set() and any("Report 1:" in t for t in texts):
                embedding.set()
                release.wait(60)
            return fake.encode(texts, **kwargs)

    fake_index._embedder = SlowEmbedder()
    fake_index._write_lock = lock = _NoticedLock()
    errors: list[BaseException] = []

    def run(func):
        try:
            func()
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    adder = threading.Thread(target=run, args=(lambda: fake_index.add([_article(1)]),))
    adder.start()
    assert embedding.wait(60)  # the add holds the write path, embedding
    rebuilder = threading.Thread(target=run, args=(fake_index.rebuild,))
    rebuilder.start()
    assert lock.contended.wait(60)  # the rebuild is waiting for the add to finish
    release.set()
    adder.join(60)
    rebuilder.join(60)
    assert not errors, errors[0]
    assert {d.doc_id for d in fake_index.documents()} == {"doc0", "doc1"}
    assert "doc1" in {p.doc_id for p in fake_index.search("Report 1: steel tariffs round 1", k=5)}


def _deleted_databases(root) -> list[str]:
    """Descriptors this process holds on databases (or their WAL) of the index in ``root`` that were deleted: leaked
    generations. Only this index's: another test's index, not yet garbage-collected, is not this test's leak."""
    import os

    import psutil

    paths = [f.path for f in psutil.Process().open_files()]
    # psutil lists only paths that still exist; a deleted file's link reads '<path> (deleted)'.
    for fd in os.listdir("/proc/self/fd"):
        try:
            paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return sorted({p for p in paths if p.startswith(str(root)) and "qa.sqlite3" in p
                   and (p.endswith(" (deleted)") or not os.path.exists(p))})


def test_rebuilds_close_every_connection_to_the_generations_they_replace(fake_index):
    fake_index.rebuild([_article(i) for i in range(3)])

    def read():
        # Each thread gets its own connection to the generation it reads.
        fake_index.search("steel tariffs", k=2)
        fake_index.documents()

    for _ in range(10):
        threads = [threading.Thread(target=read) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        fake_index.add([_article(50)])  # the writer's connection too
        fake_index.rebuild()
    assert _deleted_databases(fake_index.root) == []
    assert len(fake_index.search("steel tariffs", k=2)) == 2


def test_a_generation_replaced_by_another_process_is_closed_once_reads_end(fake_index, settings):
    from conftest import FakeEmbedder
    from qa.index import NewsIndex

    fake_index.rebuild([_article(i) for i in range(3)])
    fake_index.search("steel tariffs", k=2)
    other = NewsIndex(settings, embedder=FakeEmbedder())  # stands for another process: its own objects
    try:
        for _ in range(3):
            other.rebuild()
            assert len(fake_index.search("steel tariffs", k=2)) == 2  # notices the new generation, reloads
    finally:
        other.close()
    assert _deleted_databases(fake_index.root) == []


def test_a_writer_removes_temporary_files_left_by_a_crashed_save(fake_index):
    fake_index.rebuild([_article(i) for i in range(2)])
    gen_dir = fake_index.live().gen_dir
    leftovers = [gen_dir / ".vectors-000007.faiss.4242.tmp", fake_index.root / ".CURRENT.4242.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    fake_index.search("steel tariffs", k=1)  # readers leave them alone
    assert all(p.exists() for p in leftovers)
    fake_index.add([_article(9)])
    assert not any(p.exists() for p in leftovers)
    assert not list(gen_dir.glob("*.tmp")) and not list(gen_dir.glob(".*.tmp"))


def test_a_finished_threads_connection_is_not_kept_open(fake_index):
    fake_index.rebuild([_article(i) for i in range(2)])
    store = fake_index.live().store
    fake_index.documents()
    before = len(store._connections)
    for _ in range(5):
        t = threading.Thread(target=fake_index.documents)
        t.start()
        t.join()
    import gc

    gc.collect()
    assert len(store._connections) == before


def test_two_first_adds_into_an_empty_index_keep_both_articles(fake_index):
    """Both threads find no index; whichever locks first builds it, the other adds to it (not builds over it)."""
    fake = fake_index.embedder
    fake_index._write_lock = lock = _NoticedLock()

    class WaitingEmbedder:
        """The first writer's embedding waits until the other writer is waiting for the write lock, so the
        other has looked for the index (wherever it looks) before the first one's build can finish."""

        dim = fake.dim

        def encode(self, texts, **kwargs):
            lock.contended.wait(10)
            return fake.encode(texts, **kwargs)

    fake_index._embedder = WaitingEmbedder()
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def add(i):
        start.wait()
        try:
            fake_index.add([_article(i)])
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=add, args=(i,)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert lock.contended.is_set()
    assert not errors, errors[0]
    assert {d.doc_id for d in fake_index.documents()} == {"doc1", "doc2"}
    docs, chunks = fake_index.live().store.counts()
    assert fake_index.live().vectors.size == chunks


def _qa_index_in_a_child(index_dir: str, folder: str, barrier) -> None:
    """`qa index FOLDER` over the fake embedder, started with the other process (the child of a fork)."""
    from conftest import FakeEmbedder
    from qa import cli as qa_cli
    from qa.index import NewsIndex

    qa_cli._index = lambda settings: NewsIndex(settings, embedder=FakeEmbedder())
    barrier.wait()
    raise SystemExit(qa_cli.main(["--index-dir", index_dir, "index", folder]))


def test_two_qa_index_processes_into_an_empty_index_keep_both_folders(tmp_path):
    import multiprocessing

    from conftest import FakeEmbedder
    from qa.index import NewsIndex
    from qa.settings import Settings

    folders = []
    for name in ("north", "south"):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(3):
            (folder / f"{name}{i}.txt").write_text(f"The {name} harbour story {i}: ferries, tariffs and quotas.",
                                                   encoding="utf-8")
        folders.append(str(folder))
    index_dir = str(tmp_path / "index")
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    children = [ctx.Process(target=_qa_index_in_a_child, args=(index_dir, f, barrier)) for f in folders]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    assert [c.exitcode for c in children] == [0, 0]
    index = NewsIndex(Settings.from_env(index_dir=index_dir), embedder=FakeEmbedder())
    try:
        assert {d.doc_id for d in index.documents()} == {f"{n}{i}" for n in ("north", "south") for i in range(3)}
        docs, chunks = index.live().store.counts()
        assert index.live().vectors.size == chunks
    finally:
        index.close()
