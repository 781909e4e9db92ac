"""The core engine with the real model: cited passages, incremental updates, removal by every route, mismatches."""

from dataclasses import replace

import numpy as np
import pytest

from qa.errors import IndexMismatch, IndexMissing, InvalidInput, NotFound
from qa.index import NewsIndex
from qa.ingest import article_from_text, collect
from qa.records import Article

from conftest import RETALIATION_DOC, SEEDS, FakeEmbedder


def _article_text(index, doc_id):
    return index.document(doc_id)["text"]


def test_which_countries_retaliated_ranks_the_china_passage_first(seed_index):
    passages = seed_index.search("which countries retaliated?", k=5)
    assert passages[0].doc_id == RETALIATION_DOC
    assert "China" in passages[0].text


def test_every_passage_is_an_exact_slice_of_its_article(seed_index):
    for question in ["which countries retaliated?", "steel tariffs doubled", "APEC summit in South Korea",
                     "When did Carney and Trump first speak?"]:
        for p in seed_index.search(question, k=10):
            assert _article_text(seed_index, p.doc_id)[p.start:p.end] == p.text
            assert [p.rank for p in seed_index.search(question, k=3)] == [1, 2, 3]


def test_passages_carry_title_date_and_chunk_number(seed_index):
    (p,) = seed_index.search("Carney spoke with Trump at length on Monday", k=1)
    assert p.doc_id == "002_2a1d74c9607f2477"
    assert p.date == "2025-09-03" and p.title.startswith("Prime Minister Mark Carney says")
    assert isinstance(p.chunk_no, int) and p.score > 0


def test_ask_answers_with_cited_sentences_located_in_the_article(seed_index):
    answer = seed_index.ask("which countries retaliated?")
    assert answer.answerable and "[1]" in answer.answer
    for span in answer.answer_spans:
        text = _article_text(seed_index, span.doc_id)
        assert text[span.start:span.end] in answer.answer


def test_empty_and_oversized_questions_are_refused(seed_index):
    for bad in ["", "   \n", "x" * 2001]:
        with pytest.raises(InvalidInput):
            seed_index.ask(bad)


def test_an_added_article_is_answerable_at_once_and_embeds_only_its_chunks(seed_copy):
    before = seed_copy.stats()["chunks"]
    report = seed_copy.add_text(
        "The Moose Jaw curling club announced on Tuesday that its ice plant failed during the heat wave, "
        "forcing the cancellation of the provincial bonspiel.", title="Curling bonspiel cancelled", date="2025-07-01")
    assert report.added and report.embedded == report.chunks == 1
    assert seed_copy.stats()["chunks"] == before + 1
    top = seed_copy.search("why was the bonspiel cancelled?", k=1)[0]
    assert top.doc_id == report.added[0] and top.date == "2025-07-01"


def test_re_adding_an_unchanged_file_does_nothing(seed_copy):
    generation = seed_copy.stats()["generation"]
    report = seed_copy.add_paths([SEEDS])
    assert len(report.unchanged) == 5 and not report.added and not report.updated and report.embedded == 0
    assert seed_copy.stats()["generation"] == generation


def test_a_changed_file_replaces_its_chunks(seed_copy, tmp_path):
    path = tmp_path / f"{RETALIATION_DOC}.txt"
    path.write_text("Canada dropped every counter-tariff on Tuesday, officials in Ottawa said.", encoding="utf-8")
    report = seed_copy.add_paths([path])
    assert report.updated == [RETALIATION_DOC]
    assert len(seed_copy.document(RETALIATION_DOC)["chunks"]) == 1
    for p in seed_copy.search("which countries retaliated? China", k=20):
        assert p.doc_id != RETALIATION_DOC or "China" not in p.text


def test_a_removed_article_cannot_be_retrieved_by_any_route(seed_copy):
    seed_copy.remove(RETALIATION_DOC)
    live = seed_copy.live()
    with pytest.raises(NotFound):
        seed_copy.document(RETALIATION_DOC)
    assert RETALIATION_DOC not in [d.doc_id for d in seed_copy.documents()]
    assert all(p.doc_id != RETALIATION_DOC for p in seed_copy.search("which countries retaliated? China", k=20))
    # Each route on its own: FTS5, FAISS and the chunk table hold nothing of it.
    rows = live.store.db.execute("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH 'countertariffs'").fetchall()
    assert rows == []
    assert live.store.db.execute("SELECT count(*) FROM chunks WHERE doc_id = ?", (RETALIATION_DOC,)).fetchone()[0] == 0
    docs, chunks = live.store.counts()
    assert live.vectors.size == chunks
    query = seed_copy.embedder.encode(["The only other country to hit back with countertariffs is China."])[0]
    hit_ids = [i for i, _ in live.vectors.search(query, 100)]
    assert set(hit_ids) <= {r[0] for r in live.store.db.execute("SELECT id FROM chunks")}
    with pytest.raises(NotFound):
        seed_copy.remove(RETALIATION_DOC)
    # And a fresh process (a new NewsIndex reading the files) agrees.
    reopened = NewsIndex(seed_copy.settings, embedder=seed_copy.embedder)
    assert reopened.live().vectors.size == chunks
    assert all(p.doc_id != RETALIATION_DOC for p in reopened.search("countertariffs China", k=20))


def test_no_index_yet_says_to_run_qa_index(index):
    with pytest.raises(IndexMissing, match="qa index"):
        index.ask("anything?")


def test_opening_an_index_built_with_other_settings_says_to_rebuild(seed_index_dir, embedder):
    for change in [{"max_tokens": 128}, {"overlap_sentences": 0}, {"model": str(seed_index_dir)}]:
        other = NewsIndex(seed_index_dir_settings(seed_index_dir, **change), embedder=embedder)
        with pytest.raises(IndexMismatch, match="rebuild"):
            other.stats()


def test_a_model_of_another_dimension_is_a_mismatch(seed_index_dir):
    other = NewsIndex(seed_index_dir_settings(seed_index_dir), embedder=FakeEmbedder())
    with pytest.raises(IndexMismatch, match="dimensional"):
        other.search("tariffs")


def seed_index_dir_settings(folder, **change):
    from qa.settings import Settings

    return Settings.from_env(index_dir=folder, seeds_dir=SEEDS, **change)


def test_rebuild_reuses_the_vectors_of_unchanged_chunks(seed_copy):
    report = seed_copy.rebuild()
    assert report.embedded == 0 and len(report.added) == 5
    assert seed_copy.search("which countries retaliated?", k=1)[0].doc_id == RETALIATION_DOC


def _stored_chunks(index) -> dict[str, list[tuple]]:
    """Doc id → its chunk rows (chunk_no, start, end, embed hash, vector, BM25 title, meta and body)."""
    rows: dict[str, list[tuple]] = {}
    for doc_id, *row in index.live().store.db.execute(
        "SELECT c.doc_id, c.chunk_no, c.start, c.end, c.embed_hash, c.vector, f.title, f.meta, f.body "
        "FROM chunks c JOIN chunks_fts f ON f.rowid = c.id ORDER BY c.doc_id, c.chunk_no"
    ):
        rows.setdefault(doc_id, []).append(tuple(row))
    return rows


def test_a_rebuild_with_the_same_settings_keeps_unchanged_articles_chunks_without_chunking_them(seed_copy,
                                                                                             monkeypatch):
    import qa.index

    before = _stored_chunks(seed_copy)
    chunked = []
    real = qa.index.chunk_article
    monkeypatch.setattr(qa.index, "chunk_article", lambda a, *rest: chunked.append(a.doc_id) or real(a, *rest))
    first, *rest = seed_copy.stored_articles()
    edited = replace(first, text=first.text + " Ottawa answered with duties on orange juice.")
    seed_copy.rebuild([edited, *rest])

    after = _stored_chunks(seed_copy)
    assert chunked == [first.doc_id]
    assert {d: after[d] for d in after if d != first.doc_id} == {d: before[d] for d in before if d != first.doc_id}
    assert after[first.doc_id] != before[first.doc_id]
    for article in [edited, *rest]:
        for _, start, end, *_, body in after[article.doc_id]:
            assert article.text[start:end] == body
    assert seed_copy.search("which countries retaliated?", k=1)[0].doc_id == RETALIATION_DOC


def test_rebuild_from_other_articles_replaces_the_index(seed_copy):
    only = [article_from_text("Quebec maple syrup exports rose sharply this spring.", doc_id="syrup")]
    seed_copy.rebuild(only)
    assert [d.doc_id for d in seed_copy.documents()] == ["syrup"]
    assert seed_copy.stats()["chunks"] == 1 and seed_copy.live().vectors.size == 1


class ReleasingEmbedder(FakeEmbedder):
    """The fake embedder with a release() that counts how often the index gives its memory back."""

    def __init__(self):
        super().__init__()
        self.released = 0

    def release(self):
        self.released += 1


def test_a_large_batch_gives_the_embedders_memory_back_and_a_small_add_keeps_it(settings):
    embedder = ReleasingEmbedder()
    idx = NewsIndex(settings, embedder=embedder)
    idx.release_after = 8
    try:
        long_text = " ".join(f"Paragraph {i} about the harbour council and its budget vote." * 6 for i in range(60))
        idx.add([article_from_text(long_text, doc_id="long", title="Harbour budget")])
        assert idx.stats()["chunks"] >= idx.release_after
        assert embedder.released == 1
        idx.add([article_from_text("The ferry ran late on Monday.", doc_id="short", title="Ferry")])
        assert embedder.released == 1
    finally:
        idx.close()
