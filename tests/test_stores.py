"""Milvus Lite answers the seed questions as the embedded default does: the same top passages with the same exact
offsets, on the 48 answerable and 16 off-topic questions of tests/data/seed_questions.jsonl. Milvus' BM25 is
scaled to FTS5's IDF; what still differs is the k1 Milvus Lite uses (1.5 against FTS5's 1.2), so the lists are
compared rather than required to be identical; the agreement rates are printed (``pytest -s
tests/test_stores.py``)."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from conftest import REPO, store_settings
from qa.index import NewsIndex

QUESTIONS = [json.loads(line) for line in (REPO / "tests" / "data" / "seed_questions.jsonl").read_text().splitlines()
             if line.strip()]
ASKED = [q for q in QUESTIONS if q["kind"] in ("answerable", "offtopic")]


@pytest.fixture(scope="module")
def both(seed_index, milvus_seed_dir, tmp_path_factory, embedder):
    folder = tmp_path_factory.mktemp("milvus-compare")
    shutil.copytree(milvus_seed_dir, folder, dirs_exist_ok=True)
    milvus = NewsIndex(store_settings("milvus", folder), embedder=embedder)
    yield seed_index, milvus
    milvus.close()


def _key(p) -> tuple[str, int, int]:
    return p.doc_id, p.start, p.end


@pytest.mark.slow
def test_milvus_gives_the_default_stores_top_passages_with_exact_offsets(both):
    default, milvus = both
    texts = {d.doc_id: milvus.document(d.doc_id)["text"] for d in milvus.documents()}
    top1 = top3 = answerable = 0
    gold = {"milvus": 0, "embedded": 0}
    for q in ASKED:
        ours = milvus.search(q["question"], k=3)
        theirs = default.search(q["question"], k=3)
        for p in ours:
            assert texts[p.doc_id][p.start:p.end] == p.text  # exact citations on Milvus too
        top1 += bool(ours and theirs and _key(ours[0]) == _key(theirs[0]))
        top3 += {_key(p) for p in ours} == {_key(p) for p in theirs}
        if q["kind"] == "answerable":
            gold["milvus"] += bool(ours) and ours[0].doc_id == q["doc_id"]
            gold["embedded"] += bool(theirs) and theirs[0].doc_id == q["doc_id"]
    for q in [q for q in ASKED if q["kind"] == "answerable"][:12]:
        a, b = milvus.ask(q["question"], k=3), default.ask(q["question"], k=3)
        answerable += (a.answer, a.answerable) == (b.answer, b.answerable)
    n = len(ASKED)
    print(f"\nMilvus Lite vs embedded on {n} seed questions: same top passage {top1}/{n} ({top1 / n:.0%}), same top-3 "
          f"set {top3}/{n} ({top3 / n:.0%}); same answer text on 12 answerable questions: {answerable}/12; top passage "
          f"from the expected article: Milvus {gold['milvus']}/48, embedded {gold['embedded']}/48")
    # Measured (issue 13): with Milvus' own IDF 56/64 same top passage, 46/64 same top-3 set, 10/12 same answer,
    # expected article first 24/48 on Milvus against 28/48 embedded (FTS5's log((N-n+.5)/(n+.5)) all but drops a
    # word found in half of the 17 chunks, Milvus' log(1 + ...) keeps it). With FTS5's IDF and ties ranked by
    # article and chunk: 63/64, 62/64, 12/12, 27/48 against 28/48; the one different top passage is Lite's k1.
    assert top1 >= n - 2
    assert top3 >= n - 4
    assert answerable >= 11
    assert gold["milvus"] >= gold["embedded"] - 2


def test_the_idf_factor_turns_milvus_idf_into_fts5s():
    from qa.backends.milvus import fts5_idf_factor

    assert fts5_idf_factor(17, 8) * math.log1p(9.5 / 8.5) == pytest.approx(math.log(9.5 / 8.5))
    assert fts5_idf_factor(17, 12) < 1e-5  # FTS5 floors the IDF of a word in most rows at 1e-6
    assert fts5_idf_factor(1_000_000, 10) == pytest.approx(1.0, abs=1e-5)  # rare words: the formulas agree


def _lexical(index, question: str) -> list[tuple[tuple[str, int], float]]:
    backend = index.live()
    found = backend.lexical(question, 6)
    rows = backend.chunk_rows([i for i, _ in found], text=False)
    return [((rows[i]["doc_id"], rows[i]["chunk_no"]), score) for i, score in found]


@pytest.mark.parametrize("question", ["How far did Canadian purchases of American goods decline?",
                                      "What is Ontario's premier urging Ottawa to do if talks with Washington fail?"])
def test_milvus_bm25_scores_words_with_the_embedded_stores_idf(both, question):
    default, milvus = both
    ours, theirs = _lexical(milvus, question), _lexical(default, question)
    assert [c for c, _ in ours] == [c for c, _ in theirs]
    for (_, a), (_, b) in zip(ours, theirs):
        assert a == pytest.approx(b, rel=0.06)  # k1 1.5 (Lite) against 1.2 (FTS5); the IDF is the same


def test_milvus_counts_a_words_chunks_by_its_bm25_list_up_to_the_word_depth(both, monkeypatch):
    import qa.backends.milvus as milvus_backend
    from qa.backends.milvus import analyzed, fts5_idf_factor

    _, milvus = both
    backend = milvus.live()
    word = analyzed("tariffs")
    holding = len([t for t in backend.all_chunk_texts() if word in analyzed(t).split()])
    rows = backend.counts()[1]
    assert 3 < holding < rows
    backend._term_cache = (None, None, {})
    assert backend._idf_factors([word]) == {word: fts5_idf_factor(rows, holding)}  # exact below the depth
    monkeypatch.setattr(milvus_backend, "WORD_DEPTH", 3)
    backend._term_cache = (None, None, {})
    assert backend._idf_factors([word]) == {word: fts5_idf_factor(rows, 3)}  # beyond it: counted as the depth
