"""The same index behaviour on every store (QA_STORE): the embedded SQLite + FAISS default and Milvus Lite. Each
test runs once per store (``store_seed_copy``), with the real model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from conftest import REPO, RETALIATION_DOC, SEEDS, store_settings
from qa.backends import check_store
from qa.errors import IndexMismatch, NotFound, TooLarge
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


@pytest.fixture
def milvus_copy(milvus_seed_dir, tmp_path, embedder) -> NewsIndex:
    """A private copy of the seed index on Milvus Lite."""
    shutil.copytree(milvus_seed_dir, tmp_path / "copy")
    idx = NewsIndex(store_settings("milvus", tmp_path / "copy"), embedder=embedder)
    yield idx
    idx.close()


def _collections(index: NewsIndex) -> list[str]:
    return sorted(index.live().client.list_collections())


def test_a_milvus_rebuild_killed_midway_loses_no_article_and_the_next_rebuild_completes(milvus_copy, monkeypatch):
    index = milvus_copy
    before = index.stats()
    texts = {d.doc_id: index.document(d.doc_id)["text"] for d in index.documents()}
    backend = index.live()
    # Killed (SIGKILL: nothing cleans up) after the rebuild's first batch of one article was written.
    monkeypatch.setattr(type(index), "batch_size", 1)
    monkeypatch.setattr(backend, "abandon", lambda fresh: None, raising=False)
    write, writes = index._write, []

    def killed_after_one_write(*args, **kwargs):
        if writes:
            raise KeyboardInterrupt("killed")
        writes.append(write(*args, **kwargs))

    monkeypatch.setattr(index, "_write", killed_after_one_write)
    with pytest.raises(KeyboardInterrupt):
        index.rebuild()
    monkeypatch.undo()
    # Every article is still there, whole, and answered from, here and in a process opening the store afresh.
    for reader in (index, NewsIndex(index.settings, embedder=index.embedder)):
        assert reader.stats()["documents"] == before["documents"] == 5
        assert reader.stats()["chunks"] == before["chunks"]
        assert {d.doc_id: reader.document(d.doc_id)["text"] for d in reader.documents()} == texts
        answer = reader.ask("which countries retaliated?", k=3)
        assert answer.passages[0].doc_id == RETALIATION_DOC
        _assert_exact(reader, answer.passages)
        if reader is not index:
            reader.close()
    # The next rebuild finishes, reusing the stored vectors, and leaves one generation of collections.
    report = index.rebuild()
    assert sorted(report.added) == sorted(texts) and report.embedded == 0
    assert (index.stats()["documents"], index.stats()["chunks"]) == (5, before["chunks"])
    assert {d.doc_id: index.document(d.doc_id)["text"] for d in index.documents()} == texts
    live = index.live()
    assert _collections(index) == sorted([*live.names.values(), live.pointer])


def test_a_milvus_rebuild_that_fails_midway_leaves_the_index_as_it_was(milvus_copy, monkeypatch):
    index = milvus_copy
    collections, before = _collections(index), index.stats()
    monkeypatch.setattr(index, "_write", lambda *a, **k: (_ for _ in ()).throw(OSError("disk gone")))
    with pytest.raises(OSError):
        index.rebuild()
    assert _collections(index) == collections  # its unfinished generation dropped
    assert index.stats()["documents"] == before["documents"] and index.stats()["chunks"] == before["chunks"]
    _assert_exact(index, index.search("which countries retaliated?", k=5))


@pytest.mark.parametrize("field, value", [("title", "Bonspiel " * 8_000), ("url", "https://x.example/" + "é" * 33_000),
                                          ("source", "Valley News " * 6_000)])
def test_a_milvus_article_with_a_field_longer_than_milvus_holds_is_refused_with_nothing_written(
        milvus_copy, field, value):
    index = milvus_copy
    before = index.stats()
    with pytest.raises(TooLarge, match=rf"{field} is [\d,]+ bytes long, more than the 65,535") as refused:
        index.add_text(BONSPIEL, **{field: value})
    assert "nothing was written" in str(refused.value)
    after = index.stats()
    assert (after["documents"], after["chunks"]) == (before["documents"], before["chunks"])  # no orphan chunk
    assert "curling" not in " ".join(index.live().all_chunk_texts())


def test_a_milvus_upload_with_a_source_longer_than_milvus_holds_is_413_with_the_field_named(milvus_copy):
    article = ("---\nsource: " + "Valley News " * 6_000 + "\n---\n" + BONSPIEL).encode()
    with TestClient(create_app(milvus_copy.settings, index=milvus_copy), base_url="http://localhost:8000") as client:
        reply = client.post("/documents", files={"file": ("bonspiel.txt", article, "text/plain")})
        assert reply.status_code == 413 and "source" in reply.json()["detail"] and "65,535" in reply.json()["detail"]
        assert client.get("/health").json()["documents"] == 5


def test_a_milvus_lite_file_another_process_holds_is_one_line_saying_so(tmp_path):
    db = tmp_path / "milvus.db"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "QA_READER": "off", "QA_STORE": f"milvus://{db}",
           "QA_INDEX_DIR": str(tmp_path / "index"),
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    holder = subprocess.Popen([sys.executable, "-c", f"from pymilvus import MilvusClient; import time; "
                               f"c = MilvusClient({str(db)!r}); print('held', flush=True); time.sleep(120)"],
                              env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        run = subprocess.run([sys.executable, "-c", "import sys; from qa.cli import main; sys.exit(main())", "docs"],
                             env=env, capture_output=True, text=True, timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("qa: error: ")  # one line, no traceback
    assert "in use by another process" in run.stderr and str(db) in run.stderr
