"""BM25 engines side by side: SQLite FTS5 (what the index uses) against bm25s, on the same texts and queries.

Run: .venv/bin/python bench/bm25_compare.py [--data ../shared/data]
Prints quality (SciFact test nDCG@10, MultiHop-RAG Hits@10 / MRR@10 over 256-token chunks) and speed (build time,
query p50/p99, cost of adding one document) for both engines.
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import statistics
import time
from pathlib import Path

from qa.chunking import Chunker, load_tokenizer
from qa.lexical import STOP_WORDS, fts_query, query_terms
from qa.settings import Settings


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Fts5:
    name = "SQLite FTS5 (porter)"

    def build(self, texts: list[str]) -> None:
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE VIRTUAL TABLE t USING fts5(body, tokenize='porter unicode61 remove_diacritics 2')")
        with self.db:
            self.db.executemany("INSERT INTO t(rowid, body) VALUES (?, ?)", enumerate(texts))

    def search(self, query: str, k: int) -> list[int]:
        match = fts_query(query)
        if not match:
            return []
        rows = self.db.execute("SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT ?", (match, k))
        return [r[0] for r in rows]

    def add_one(self, text: str, rowid: int) -> None:
        with self.db:
            self.db.execute("INSERT INTO t(rowid, body) VALUES (?, ?)", (rowid, text))


class Bm25s:
    name = "bm25s (Snowball stemmer)"

    def __init__(self):
        import Stemmer

        self.stemmer = Stemmer.Stemmer("english")

    def build(self, texts: list[str]) -> None:
        import bm25s

        self.texts = list(texts)
        tokens = bm25s.tokenize(self.texts, stopwords=sorted(STOP_WORDS), stemmer=self.stemmer, show_progress=False)
        self.retriever = bm25s.BM25()
        self.retriever.index(tokens, show_progress=False)

    def search(self, query: str, k: int) -> list[int]:
        import bm25s

        if not query_terms(query):
            return []
        tokens = bm25s.tokenize([query], stopwords=sorted(STOP_WORDS), stemmer=self.stemmer, show_progress=False)
        if not tokens.vocab:
            return []
        docs, _ = self.retriever.retrieve(tokens, k=min(k, len(self.texts)), show_progress=False, n_threads=1)
        return [int(d) for d in docs[0]]

    def add_one(self, text: str, rowid: int) -> None:
        self.build(self.texts + [text])  # bm25s has no incremental add: the whole index is rebuilt


def ndcg_at_10(ranked: list[str], relevant: set[str]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:10]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    return dcg / ideal if ideal else 0.0


def scifact(data: Path):
    docs = [json.loads(line) for line in (data / "scifact" / "corpus.jsonl").open()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (data / "scifact" / "queries.jsonl").open())}
    qrels: dict[str, set[str]] = {}
    for line in list((data / "scifact" / "qrels" / "test.tsv").open())[1:]:
        qid, did, score = line.split("\t")
        if int(score) > 0:
            qrels.setdefault(qid, set()).add(did)
    texts = [f"{d['title']} {d['text']}" for d in docs]
    ids = [d["_id"] for d in docs]

    def score(ranked_rows: list[int], qid: str) -> float:
        return ndcg_at_10([ids[r] for r in ranked_rows], qrels[qid])

    return texts, [(qid, queries[qid]) for qid in qrels], score, "SciFact test nDCG@10"


def multihop(data: Path):
    corpus = json.loads((data / "multihop-rag" / "corpus.json").read_text())
    queries = [q for q in json.loads((data / "multihop-rag" / "MultiHopRAG.json").read_text())
               if q["question_type"] != "null_query"]
    chunker = Chunker(load_tokenizer(str(Settings().model_dir)))
    texts = []
    for article in corpus:
        header = f"{article['title']} | {article['source']} | {article['published_at'][:10]} | "
        texts.extend(header + c.text for c in chunker.chunk(article["body"], article["title"]))
    squashed = ["".join(t.split()) for t in texts]
    facts = {n: ["".join(e["fact"].split()) for e in q["evidence_list"]] for n, q in enumerate(queries)}

    def score(ranked_rows: list[int], n: int) -> float:
        for rank, row in enumerate(ranked_rows[:10], start=1):
            if any(f in squashed[row] for f in facts[n]):
                return 1.0 / rank  # reciprocal rank; > 0 means a hit in the top 10
        return 0.0

    return texts, [(n, q["query"]) for n, q in enumerate(queries)], score, "MultiHop-RAG MRR@10 (Hits@10)"


def run(data: Path) -> None:
    print("| data | engine | quality | build s | query p50 ms | query p99 ms | add one doc ms |")
    print("|---|---|---|---|---|---|---|")
    for load in (scifact, multihop):
        texts, queries, score, label = load(data)
        for engine in (Fts5(), Bm25s()):
            began = time.perf_counter()
            engine.build(texts)
            build = time.perf_counter() - began
            latencies, scores = [], []
            for qid, query in queries:
                t = time.perf_counter()
                ranked = engine.search(query, 10)
                latencies.append((time.perf_counter() - t) * 1000)
                scores.append(score(ranked, qid))
            t = time.perf_counter()
            engine.add_one("A freshly added document about tariffs.", len(texts))
            add_ms = (time.perf_counter() - t) * 1000
            quality = statistics.mean(scores)
            if "MultiHop" in label:
                quality_text = f"{quality:.3f} ({sum(s > 0 for s in scores) / len(scores):.3f})"
            else:
                quality_text = f"{quality:.3f}"
            print(f"| {label} ({len(texts)} texts, {len(queries)} q) | {engine.name} | {quality_text} | {build:.1f} | "
                  f"{statistics.median(latencies):.2f} | {_percentile(latencies, 0.99):.2f} | {add_ms:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    run(parser.parse_args().data)
