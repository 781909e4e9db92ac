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
