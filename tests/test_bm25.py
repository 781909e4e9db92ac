"""BM25 from memory (qa/bm25.py): FTS5's own scores, current after every write, FTS5 answering whenever it cannot."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

import qa.bm25 as bm25
from conftest import REPO, SEEDS
from qa.index import NewsIndex
from qa.lexical import fts_query
from qa.records import Article
from qa.settings import Settings
from qa.store import FTS_TOKENIZER, Store

QUESTIONS = [json.loads(line)["question"] for line in (REPO / "tests/data/seed_questions.jsonl").open()]


def fts5(live, query: str, limit: int = 1000, weights=(1.0, 1.0, 1.0), admitted=None):
    """The ranking FTS5 itself gives (what the index answered with before)."""
    return live.store.lexical_search(fts_query(query), limit, weights, admitted)


def memory(live, query: str, limit: int = 1000, weights=(1.0, 1.0, 1.0), admitted=None):
    found = live.bm25.search(query, limit, weights, live.stamp(), admitted)
    assert found is not None, "the postings should be in memory"
    return found


def assert_ranked(found):
    """Best first, ties by chunk id."""
    assert found == sorted(found, key=lambda kv: (-kv[1], kv[0]))


def test_scores_are_fts5s_to_the_last_bit_for_every_seed_question(seed_index):
    live = seed_index.live()
    for question in QUESTIONS:
        for weights in ((1.0, 1.0, 1.0), (2.0, 0.0, 1.0), (0.3, 0.7, 1.1)):
            got = memory(live, question, weights=weights)
            assert dict(got) == dict(fts5(live, question, weights=weights)), (question, weights)
            assert_ranked(got)
        top = memory(live, question, limit=3)
        assert top == memory(live, question)[:3]


def test_the_backend_searches_memory_and_gives_what_fts5_gives(seed_index):
    live = seed_index.live()
    question = "Which countries retaliated against the tariffs?"
    assert live.bm25.current(live.stamp()) is not None  # a small index is read on its first search
    assert dict(live.lexical(question, 50)) == dict(fts5(live, question, 50))


def test_a_filter_ranks_the_admitted_chunks_with_whole_collection_scores(seed_index):
    live = seed_index.live()
    everything = memory(live, "tariffs steel aluminum Canada")
    admitted = frozenset(i for i, _ in everything[1::2])
    got = memory(live, "tariffs steel aluminum Canada", admitted=admitted)
    assert got == [(i, s) for i, s in everything if i in admitted]
    assert memory(live, "tariffs", admitted=frozenset()) == []


def test_a_write_is_searched_at_once_from_memory(seed_copy):
    live = seed_copy.live()
    before = memory(live, "tariffs")
    seed_copy.add([Article("quokka", "A quokka named Ferdinand crossed the tariff office on Rottnest Island.",
                           title="Quokka tariffs")])
    assert live.stamp() != live.bm25._snapshot.stamp  # caught up by the next search, not by the write
    for question in ("quokka Ferdinand", "tariffs", QUESTIONS[0]):
        assert dict(memory(live, question)) == dict(fts5(live, question)), question
    assert [i for i, _ in memory(live, "quokka")] == [int(live.store.chunk_ids().max())]  # the newest chunk
    assert dict(memory(live, "tariffs")) != dict(before)  # one more chunk: every idf moved

    seed_copy.remove("quokka")
    assert memory(live, "quokka") == []
    assert live.bm25._snapshot.dead > 0  # masked, not read again
    for question in QUESTIONS[:8]:
        assert dict(memory(live, question)) == dict(fts5(live, question)), question


def test_many_deletions_read_the_postings_again(seed_copy, monkeypatch):
    monkeypatch.setattr(bm25, "DEAD_SHARE_REBUILD", 0.0)
    live = seed_copy.live()
    memory(live, "tariffs")
    doc_id = seed_copy.documents()[0].doc_id
    seed_copy.remove(doc_id)
    assert dict(memory(live, "tariffs")) == dict(fts5(live, "tariffs"))
    deadline = time.monotonic() + 30
    while live.bm25._snapshot.dead and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live.bm25._snapshot.dead == 0
    assert dict(memory(live, "tariffs")) == dict(fts5(live, "tariffs"))


def test_closing_the_index_stops_a_background_read_and_waits_for_it(seed_copy, monkeypatch):
    """Closing a connection in the middle of another thread's read crashed the process (CPython's sqlite3): the
    read is told to stop at its next statement, and close() returns only once it has."""
    monkeypatch.setattr(bm25, "DEAD_SHARE_REBUILD", 0.0)
    started, ended = threading.Event(), []
    real_read = bm25.read_postings

    def slow_read(*args, **kwargs):
        started.set()
        time.sleep(0.3)  # long enough for close() to run in the middle of it
        try:
            return real_read(*args, **kwargs)
        finally:
            ended.append(time.monotonic())

    monkeypatch.setattr(bm25, "read_postings", slow_read)
    live = seed_copy.live()
    memory(live, "tariffs")  # the first read, in this thread
    started.clear(), ended.clear()
    seed_copy.remove(seed_copy.documents()[0].doc_id)
    memory(live, "tariffs")  # the deletion is caught up and a fresh read starts in the background
    assert started.wait(30)
    seed_copy.close()
    closed = time.monotonic()
    assert ended and ended[0] <= closed


def test_a_read_told_to_stop_gives_up_before_its_next_statement(seed_index):
    store = seed_index.live().store
    with store.read_transaction() as db:
        ids = np.sort(np.asarray(store.chunk_ids(), dtype=np.int64))
        with pytest.raises(bm25.ReadStopped):
            bm25.read_postings(db, "main", "chunks_fts", ids, stop=lambda: True)
        assert len(bm25.read_postings(db, "main", "chunks_fts", ids)[1]) == len(ids)


def test_a_write_by_another_process_is_caught_up(seed_copy, embedder):
    live = seed_copy.live()
    memory(live, "tariffs")
    other = NewsIndex(seed_copy.settings, embedder=embedder)  # its own backend: to this one, another writer
    try:
        other.add([Article("wombat", "A wombat blocked the customs road at dawn, delaying tariff inspections.",
                           title="Wombat at customs")])
    finally:
        other.close()
    assert [p.doc_id for p in seed_copy.search("wombat customs road", k=1)] == ["wombat"]
    assert dict(memory(live, "wombat tariff")) == dict(fts5(live, "wombat tariff"))


def test_a_word_fts5_reads_as_a_phrase_is_left_to_fts5(seed_index):
    live = seed_index.live()
    assert bm25.query_tokens("covid_19 tariffs", FTS_TOKENIZER) is None  # "covid 19": two tokens in a row
    assert live.bm25.search("covid_19 tariffs", 10, (1.0, 1.0, 1.0), live.stamp()) is None
    assert live.lexical("covid_19 tariffs", 10) == fts5(live, "covid_19 tariffs", 10)
    assert bm25.query_tokens("Tariffs RETALIATED café", FTS_TOKENIZER) == ["tariff", "retali", "cafe"]


def test_a_large_index_is_read_in_the_background_while_fts5_answers(seed_index_dir, embedder, monkeypatch):
    monkeypatch.setattr(bm25, "SYNC_BUILD_CHUNKS", 0)
    monkeypatch.setattr(bm25, "BUILD_DELAY_S", 0.2)
    idx = NewsIndex(Settings.from_env(index_dir=seed_index_dir, seeds_dir=SEEDS), embedder=embedder)
    try:
        live = idx.live()
        question = QUESTIONS[1]
        assert live.bm25.search(question, 10, (1.0, 1.0, 1.0), live.stamp()) is None
        assert live.lexical(question, 10) == fts5(live, question, 10)  # FTS5 meanwhile
        deadline = time.monotonic() + 30
        while live.bm25.search(question, 10, (1.0, 1.0, 1.0), live.stamp()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert dict(memory(live, question)) == dict(fts5(live, question))
    finally:
        idx.close()


def test_an_index_over_the_limit_is_searched_by_fts5(seed_index_dir, embedder):
    idx = NewsIndex(Settings.from_env(index_dir=seed_index_dir, seeds_dir=SEEDS, bm25_memory=5),
                    embedder=embedder)
    try:
        live = idx.live()
        idx.warm()
        assert live.bm25.search("tariffs", 10, (1.0, 1.0, 1.0), live.stamp()) is None
        assert live.bm25._snapshot is None
        assert live.lexical("tariffs", 10) == fts5(live, "tariffs", 10)
    finally:
        idx.close()


@pytest.mark.parametrize("value", ["-1", "lots", "1.5"])
def test_a_bad_memory_limit_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv("QA_BM25_MEMORY", value)
    with pytest.raises(ValueError, match="QA_BM25_MEMORY must be a whole number"):
        Settings.from_env()


# --- a property, on collections no one wrote: random words, accents, cases and stems ----------------------------------
WORDS = ["strike", "strikes", "striking", "Port", "port", "ports", "café", "cafe", "naïve", "ferry", "ferries", "union",
         "pay", "paid", "tariff", "tariffs", "Tariff", "steel", "x", "42", "2024", "über", "Straße"]
texts = st.lists(st.sampled_from(WORDS), min_size=0, max_size=30).map(" ".join)


def _bare_store(folder: Path, rows: list[tuple[str, str, str]]) -> Store:
    """A store holding these ``(title, meta, body)`` chunks (plumbing only: no article text or vectors)."""
    store = Store(folder / "qa.sqlite3")
    store.create({"dim": 1, "generation": 0})
    with store.transaction() as tx:
        tx.execute("INSERT INTO documents(doc_id, content_hash, text, added_at) VALUES ('d', '', '', '')")
        for n, (title, meta, body) in enumerate(rows):
            cur = tx.execute("INSERT INTO chunks(doc_id, chunk_no, start, end, embed_hash, vector) "
                             "VALUES ('d', ?, 0, 0, '', x'')", (n,))
            tx.execute("INSERT INTO chunks_fts(rowid, title, meta, body) VALUES (?, ?, ?, ?)",
                       (cur.lastrowid, title, meta, body))
    return store


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(texts, texts, texts), min_size=1, max_size=12),
       questions=st.lists(texts, min_size=1, max_size=4),
       weights=st.sampled_from([(1.0, 1.0, 1.0), (3.0, 1.0, 0.5), (0.1, 0.2, 0.7)]))
def test_any_collection_scores_as_fts5_scores_it(rows, questions, weights):
    with tempfile.TemporaryDirectory() as tmp:
        store = _bare_store(Path(tmp), rows)
        try:
            index = bm25.MemoryBM25(store, 1000, FTS_TOKENIZER)
            for question in questions:
                got = index.search(question, 100, weights, store.generation())
                expected = store.lexical_search(fts_query(question), 100, weights)
                assert got is not None and dict(got) == dict(expected), question
                assert_ranked(got)
        finally:
            store.close()
