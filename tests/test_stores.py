"""Milvus Lite answers the seed questions as the embedded default does: the same top passages with the same exact
offsets, on the 48 answerable and 16 off-topic questions of tests/data/seed_questions.jsonl. The stores differ in
BM25 (FTS5 with per-column weights and the porter stemmer against Milvus' single-field BM25 function), so the
lists are compared rather than required to be identical; the agreement rates are printed (``pytest -s
tests/test_stores.py``)."""

from __future__ import annotations

import json
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
    # Measured (issue 13): 54/64 same top passage, 46/64 same top-3 set, 11/12 same answer, expected article first
    # 24/48 on Milvus against 28/48 embedded. The gap is BM25's IDF on 17 chunks: FTS5's log((N-n+.5)/(n+.5))
    # all but drops a word found in half the chunks, Milvus' log(1 + ...) keeps it; on larger collections the two
    # converge.
    assert top1 >= 0.8 * n
    assert answerable >= 10
    assert gold["milvus"] >= gold["embedded"] - 5
