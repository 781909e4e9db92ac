"""The evaluation harness: metrics on hand-made rankings, loaders on small files, splits, the embedding cache and the
`qa eval` command on a few questions."""

import json

import numpy as np
import pytest

from qa.cli import main
from qa.errors import InvalidInput, NotFound
from qa.evaluation import (
    CachedEmbedder, EmbeddingCache, in_dev, load_beir, load_multihop, load_questions, markdown_table, mrr_at_k,
    multihop_scores, ndcg_at_k, pick_split, recall_at_k,
)

from conftest import SEEDS, FakeEmbedder


def test_ndcg_is_one_for_a_perfect_ranking_and_discounts_a_late_hit():
    assert ndcg_at_k(["a", "b", "x"], {"a": 1, "b": 1}) == pytest.approx(1.0)
    # One relevant document at rank 2: DCG = 1/log2(3), ideal DCG = 1.
    assert ndcg_at_k(["x", "a"], {"a": 1}) == pytest.approx(1 / np.log2(3))
    assert ndcg_at_k(["x", "y"], {"a": 1}) == 0.0


def test_ndcg_uses_graded_gains():
    # Ranking the grade-1 document above the grade-2 one: (1 + 2/log2 3) / (2 + 1/log2 3).
    got = ndcg_at_k(["low", "high"], {"high": 2, "low": 1})
    assert got == pytest.approx((1 + 2 / np.log2(3)) / (2 + 1 / np.log2(3)))


def test_recall_and_mrr_count_only_the_cutoff():
    ranked = ["x", "a", "y", "b"]
    rel = {"a": 1, "b": 1, "c": 1}
    assert recall_at_k(ranked, rel, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, rel, 4) == pytest.approx(2 / 3)
    assert mrr_at_k(ranked, rel) == pytest.approx(0.5)
    assert mrr_at_k(ranked, rel, k=1) == 0.0


def test_multihop_hit_ignores_spaces_and_newlines_and_needs_the_whole_fact():
    facts = ["The cat sat on the mat.", "Dogs bark at night."]
    retrieved = ["noise", "It was late. The cat sat\non  the mat. Then", "Dogs bark", "x", "y"]
    s = multihop_scores(retrieved, facts)
    assert s["Hits@10"] == 1.0 and s["Hits@4"] == 1.0
    assert s["MRR@10"] == pytest.approx(0.5)
    assert s["evidence recall@10"] == pytest.approx(0.5)  # "Dogs bark" is not the whole second fact
    assert s["all-evidence@10"] == 0.0
    assert s["MAP@10"] == pytest.approx((1 / 2) / 2)


def test_multihop_map_counts_each_fact_once_and_all_evidence_needs_every_fact():
    facts = ["alpha beta", "gamma delta"]
    retrieved = ["alpha beta", "alpha beta again", "x", "x", "gamma delta"]
    s = multihop_scores(retrieved, facts)
    assert s["MAP@10"] == pytest.approx((1 / 1 + 1 / 5) / 2)
    assert s["all-evidence@10"] == 1.0 and s["evidence recall@10"] == 1.0
    assert s["Hits@4"] == 1.0


def test_multihop_hit_beyond_the_tenth_chunk_does_not_count():
    s = multihop_scores(["x"] * 10 + ["the fact"], ["the fact"])
    assert s["Hits@10"] == 0.0 and s["MRR@10"] == 0.0


def test_beir_loader_keeps_judged_queries_and_skips_empty_documents(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(
        json.dumps({"_id": "d1", "title": "T1", "text": "first text"}) + "\n"
        + json.dumps({"_id": "d2", "title": "T2", "text": ""}) + "\n", encoding="utf-8")
    (tmp_path / "queries.jsonl").write_text(
        json.dumps({"_id": "1", "text": "judged?"}) + "\n" + json.dumps({"_id": "2", "text": "not judged"}) + "\n",
        encoding="utf-8")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\td1\t1\n", encoding="utf-8")
    data = load_beir(tmp_path, "test")
    assert [a.doc_id for a in data.articles] == ["d1"] and data.articles[0].title == "T1"
    assert data.queries == {"1": "judged?"} and data.qrels == {"1": {"d1": 1}}
    with pytest.raises(NotFound):
        load_beir(tmp_path, "train")


def test_multihop_loader_reads_metadata_and_keeps_null_queries_without_facts(tmp_path):
    corpus = [{"title": "A", "author": None, "source": "TechCrunch", "published_at": "2023-10-07T20:15:26+00:00",
               "category": "tech", "url": "u", "body": "Body text."}]
    queries = [
        {"query": "q1", "answer": "Yes", "question_type": "comparison_query",
         "evidence_list": [{"fact": "Body text.", "title": "A"}]},
        {"query": "q2", "answer": "Insufficient information.", "question_type": "null_query", "evidence_list": []},
    ]
    (tmp_path / "corpus.json").write_text(json.dumps(corpus), encoding="utf-8")
    (tmp_path / "MultiHopRAG.json").write_text(json.dumps(queries), encoding="utf-8")
    articles, qs = load_multihop(tmp_path)
    assert articles[0].date == "2023-10-07" and articles[0].source == "TechCrunch" and articles[0].author == ""
    assert [q.facts for q in qs] == [["Body text."], []]


def test_question_loader_checks_the_format(tmp_path):
    good = tmp_path / "q.jsonl"
    good.write_text(json.dumps({"id": "x", "kind": "offtopic", "question": "Who won?", "split": "dev"}) + "\n",
                    encoding="utf-8")
    assert load_questions(good)[0].kind == "offtopic"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "y", "kind": "answerable", "question": "What?"}) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInput):
        load_questions(bad)


def test_the_seed_question_file_is_valid_and_its_answers_are_in_their_articles():
    questions = load_questions(SEEDS.parent / "tests" / "data" / "seed_questions.jsonl")
    assert sum(q.kind == "answerable" for q in questions) >= 30
    for q in questions:
        if q.kind != "offtopic":
            assert q.answer in (SEEDS / f"{q.doc_id}.txt").read_text(encoding="utf-8"), q.id


def test_the_dev_split_is_fixed_and_about_thirty_percent():
    keys = [f"multihop:{n}" for n in range(2000)]
    dev = pick_split(keys, lambda k: k, "dev")
    test = pick_split(keys, lambda k: k, "test")
    assert set(dev).isdisjoint(test) and len(dev) + len(test) == 2000
    assert 0.25 < len(dev) / 2000 < 0.35
    assert [in_dev(k) for k in keys[:50]] == [in_dev(k) for k in keys[:50]]
    with pytest.raises(InvalidInput):
        pick_split(keys, lambda k: k, "train")


def test_the_embedding_cache_computes_each_text_once_across_runs(tmp_path):
    fake = FakeEmbedder()
    first = CachedEmbedder(fake, EmbeddingCache(tmp_path / "c.sqlite3"), "m", "fp32")
    a = first.encode(["one", "two", "one"])
    assert fake.texts == 2
    again = CachedEmbedder(fake, EmbeddingCache(tmp_path / "c.sqlite3"), "m", "fp32")
    b = again.encode(["two", "one"])
    assert fake.texts == 2  # nothing recomputed
    np.testing.assert_array_equal(b, a[[1, 0]])
    other_precision = CachedEmbedder(fake, EmbeddingCache(tmp_path / "c.sqlite3"), "m", "int8")
    other_precision.encode(["one"])
    assert fake.texts == 3


def test_markdown_table_prints_three_decimals():
    assert markdown_table(["a", "b"], [["x", 0.12345]]).splitlines() == ["| a | b |", "|---|---|", "| x | 0.123 |"]


def test_qa_eval_questions_prints_a_table_and_never_touches_the_index_folder(tmp_path, capsys):
    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in [
        {"id": "a", "kind": "answerable", "question": "Which country besides Canada hit back with countertariffs?",
         "doc_id": "000_0fdd7e176c3271ac", "answer": "The only other country to hit back with countertariffs is China.",
         "split": "test"},
        {"id": "o", "kind": "offtopic", "question": "How do I make a sourdough starter from scratch?", "split": "test"},
    ]) + "\n", encoding="utf-8")
    index_dir = tmp_path / "index"
    code = main(["--index-dir", str(index_dir), "eval", "questions", str(questions), "--articles", str(SEEDS),
                 "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "| answerable | 1 |" in out and "| offtopic | 1 |" in out
    assert not (index_dir / "CURRENT").exists()
    assert (index_dir / "eval-cache" / "embeddings.sqlite3").exists()


def test_qa_eval_refuses_bad_input_with_one_line(tmp_path, capsys):
    assert main(["--index-dir", str(tmp_path), "eval", "beir", str(tmp_path / "missing"), "--quiet"]) == 2
    assert main(["--index-dir", str(tmp_path), "eval", "multihop", str(tmp_path), "--set", "nonsense=1",
                 "--quiet"]) == 2
    assert main(["--index-dir", str(tmp_path), "eval", "questions", str(tmp_path / "q.jsonl"), "--quiet"]) == 2
    assert main(["--index-dir", str(tmp_path), "eval", "multihop", str(tmp_path), "--limit", "-1", "--quiet"]) == 2
    assert main(["--index-dir", str(tmp_path), "eval", "reader", str(tmp_path), "--split", "train", "--quiet"]) == 2
    assert main(["--index-dir", str(tmp_path), "eval", "multihop", str(tmp_path), "--set", "reader_limit=abc",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 6 and all(line.startswith("qa: error: ") for line in err)
    # The setting is named, and an unknown one is told apart from an answer setting.
    assert err[1].startswith("qa: error: --set nonsense: no such setting; known: ") and "reader_limit" in err[1]
    assert err[5] == "qa: error: answer setting reader_limit takes a whole number, not 'abc'"
