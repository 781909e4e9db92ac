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
