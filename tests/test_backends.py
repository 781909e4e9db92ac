"""The same index behaviour on every store (QA_STORE): the embedded SQLite + FAISS default and Milvus Lite. Each
test runs once per store (``store_seed_copy``), with the real model."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from conftest import RETALIATION_DOC, SEEDS, store_settings
from qa.backends import check_store
from qa.errors import IndexMismatch, NotFound
from qa.index import NewsIndex
from qa.settings import Settings
from web.app import create_app

BONSPIEL = ("The Glenmore curling club cancelled its winter bonspiel on Saturday because the ice plant failed.\n\n"
            "Organisers said the 32 teams would get their entry fees back and the event would move to March.")


def _assert_exact(index: NewsIndex, passages) -> None:
    for p in passages:
        assert index.document(p.doc_id)["text"][p.start:p.end] == p.text


def test_the_seed_question_is_answered_with_exact_citations(store_seed_copy):
    answer = store_seed_copy.ask("which countries retaliated?", k=3)
    assert answer.answerable and answer.passages[0].doc_id == RETALIATION_DOC
    assert "China" in answer.answer
    _assert_exact(store_seed_copy, answer.passages)
    for span in answer.answer_spans:
        assert store_seed_copy.document(span.doc_id)["text"][span.start:span.end].strip()


def test_an_added_article_is_answerable_at_once(store_seed_copy):
    report = store_seed_copy.add_text(BONSPIEL, title="Bonspiel cancelled", date="2031-07-01", source="Valley News")
    assert report.added and report.chunks >= 1
    answer = store_seed_copy.ask("why was the bonspiel cancelled?", k=3)
    assert answer.passages[0].doc_id == report.added[0] and "ice plant" in answer.answer
    _assert_exact(store_seed_copy, answer.passages)
    assert store_seed_copy.stats()["documents"] == 6
    # Scoped to it, by outlet and by date: still found.
    assert store_seed_copy.search("curling", k=2, sources=["valley news"])[0].doc_id == report.added[0]
    assert [p.doc_id for p in store_seed_copy.search("tariffs", k=5, since="2031-01-01")] == [report.added[0]]


def test_a_changed_article_replaces_its_chunks_and_a_rerun_changes_nothing(store_seed_copy, tmp_path):
    path = tmp_path / f"{RETALIATION_DOC}.txt"
    path.write_text("Canada dropped every counter-tariff on Tuesday, officials in Ottawa said.", encoding="utf-8")
    assert store_seed_copy.add_paths([path]).updated == [RETALIATION_DOC]
    counts = store_seed_copy.stats()["chunks"]
    assert len(store_seed_copy.document(RETALIATION_DOC)["chunks"]) == 1
    for p in store_seed_copy.search("which countries retaliated? China", k=20):
        assert p.doc_id != RETALIATION_DOC or "China" not in p.text
    again = store_seed_copy.add_paths([path])
    assert again.unchanged == [RETALIATION_DOC] and store_seed_copy.stats()["chunks"] == counts


def test_a_removed_article_leaves_no_trace(store_seed_copy):
    index = store_seed_copy
    before = index.stats()
    query = index.embedder.encode(["The only other country to hit back with countertariffs is China."])[0]
    index.remove(RETALIATION_DOC)
    with pytest.raises(NotFound):
        index.document(RETALIATION_DOC)
    with pytest.raises(NotFound):
        index.remove(RETALIATION_DOC)
    assert RETALIATION_DOC not in [d.doc_id for d in index.documents()]
    assert RETALIATION_DOC not in index.document_paths()
    assert all(p.doc_id != RETALIATION_DOC for p in index.ask("which countries retaliated?", k=10).passages)
    after = index.stats()
    assert after["documents"] == before["documents"] - 1 and after["chunks"] < before["chunks"]
    # Through the storage interface: neither the vector nor the BM25 side returns any chunk of it, and every chunk
    # either returns belongs to a stored article.
    live = index.live()
    dense = live.dense(query, 100)
    lexical = dict(live.lexical("countertariffs China retaliated", 100))
    rows = live.chunk_rows(list(dense) + list(lexical))
    assert set(rows) == set(dense) | set(lexical) and len(dense) == after["chunks"]
    assert all(r["doc_id"] != RETALIATION_DOC for r in rows.values())
    if not index.embedded:  # and Milvus' own collections hold no row of it
        for collection in ("chunks", "documents", "texts"):
            assert live._query(collection, f'doc_id == "{RETALIATION_DOC}"', ["doc_id"]) == []
    # A fresh process agrees.
    reopened = NewsIndex(index.settings, embedder=index.embedder)
    try:
        assert reopened.stats()["chunks"] == after["chunks"]
        assert all(p.doc_id != RETALIATION_DOC for p in reopened.search("countertariffs China", k=20))
    finally:
        reopened.close()


def test_an_index_built_with_other_settings_says_to_rebuild(store_seed_copy, embedder):
    other = NewsIndex(store_seed_copy.settings.with_(max_tokens=128), embedder=embedder)
    try:
        with pytest.raises(IndexMismatch, match="rebuild"):
            other.ask("which countries retaliated?")
    finally:
        other.close()


def test_the_api_answers_and_deletes(store_seed_copy):
    with TestClient(create_app(store_seed_copy.settings, index=store_seed_copy),
                    base_url="http://localhost:8000") as client:
        reply = client.post("/ask", json={"question": "which countries retaliated?", "k": 3}).json()
        first = reply["passages"][0]
        article = client.get(f"/documents/{first['doc_id']}").json()
        assert first["doc_id"] == RETALIATION_DOC and article["text"][first["start"]:first["end"]] == first["text"]
        assert client.delete(f"/documents/{RETALIATION_DOC}").status_code == 204
        assert client.get(f"/documents/{RETALIATION_DOC}").status_code == 404
        reply = client.post("/ask", json={"question": "which countries retaliated?"}).json()
        assert all(p["doc_id"] != RETALIATION_DOC for p in reply["passages"])
        assert client.get("/health").json()["documents"] == 4


def test_a_milvus_write_killed_midway_is_finished_by_a_rerun_without_duplicates(tmp_path, embedder, monkeypatch):
    index = NewsIndex(store_settings("milvus", tmp_path), embedder=embedder)
    try:
        index.add_paths([SEEDS])
        clean = index.stats()
        backend = index.live()
        upsert = backend.client.upsert

        def dies_at_the_document_rows(collection, rows, **kwargs):
            if collection == backend.names["documents"]:
                raise KeyboardInterrupt("killed")
            return upsert(collection, rows, **kwargs)

        path = tmp_path / f"{RETALIATION_DOC}.txt"
        path.write_text((SEEDS / f"{RETALIATION_DOC}.txt").read_text(encoding="utf-8") + "\n\nA new paragraph.",
                        encoding="utf-8")
        monkeypatch.setattr(backend.client, "upsert", dies_at_the_document_rows)
        with pytest.raises(KeyboardInterrupt):
            index.add_paths([path])
        monkeypatch.setattr(backend.client, "upsert", upsert)
        # Readers still see the old version whole: the new chunks are hidden until the document row names them.
        old = index.document(RETALIATION_DOC)
        assert "A new paragraph." not in old["text"]
        _assert_exact(index, index.search("which countries retaliated?", k=10))
        assert index.add_paths([path]).updated == [RETALIATION_DOC]
        assert "A new paragraph." in index.document(RETALIATION_DOC)["text"]
        assert index.stats()["documents"] == clean["documents"]
        chunks = sum(len(index.document(d.doc_id)["chunks"]) for d in index.documents())
        assert index.stats()["chunks"] == chunks  # nothing left over, nothing twice
        report = index.doctor()
        assert report["problems"] == [] and "SQLite" not in report["checked"]  # says what it checked on Milvus
    finally:
        index.close()


@pytest.mark.parametrize("url", ["", "sqlite", "milvus://", "ftp://host", "http://"])
def test_an_unknown_store_is_refused_with_the_accepted_forms(url):
    with pytest.raises(ValueError, match="milvus:///path"):
        check_store(url)
    with pytest.raises(ValueError, match="QA_STORE"):
        Settings.from_env(store=url)
