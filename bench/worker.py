"""Benchmark steps that run in a fresh child process, so each one's time and peak memory are its own.

Run as ``python -m bench.worker TASK '{"json": "arguments"}'``; the last stdout line is the result as JSON."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class TimedEmbedder:
    """Wraps an embedder: adds up the time spent encoding and keeps the texts it was given (minus the index's
    one-text dimension probe), so the raw model pass and txtai can embed exactly the same strings."""

    def __init__(self, inner):
        self.inner = inner
        self.dim = inner.dim
        self.seconds = 0.0
        self.texts: list[str] = []

    def encode(self, texts, *, batch_size: int = 32, show_progress: bool = False):
        began = time.perf_counter()
        out = self.inner.encode(texts, batch_size=batch_size, show_progress=show_progress)
        self.seconds += time.perf_counter() - began
        if list(texts) != ["dimension probe"]:
            self.texts.extend(texts)
        return out


def _settings(index_dir: str):
    from qa.settings import Settings

    return Settings.from_env(index_dir=Path(index_dir))


def build(args: dict) -> dict:
    """Index a corpus from scratch, as ``qa index PATH`` does; write the embedded texts to ``texts``."""
    from bench.corpora import CORPORA
    from qa.embedding import load_embedder
    from qa.index import NewsIndex
    from qa.ingest import collect

    corpus = CORPORA[args["corpus"]]
    settings = _settings(args["index_dir"])
    began = time.perf_counter()
    embedder = TimedEmbedder(load_embedder(settings))
    load_s = time.perf_counter() - began
    index = NewsIndex(settings, embedder=embedder)
    began = time.perf_counter()
    found = collect([corpus.path], max_bytes=settings.max_article_bytes, ids=corpus.ids)
    report = index.rebuild(found.articles)
    build_s = time.perf_counter() - began
    stats = index.stats()
    Path(args["texts"]).write_text(json.dumps(embedder.texts), encoding="utf-8")
    return {"documents": stats["documents"], "chunks": stats["chunks"], "embedded": report.embedded,
            "skipped": list(found.skipped), "build_s": build_s, "embed_s": embedder.seconds, "load_s": load_s,
            "vector_index": stats["vector_index"], "backend": settings.backend}


def rebuild(args: dict) -> dict:
    """Rebuild an existing index from its stored articles: unchanged chunks must reuse their vectors."""
    from qa.embedding import load_embedder
    from qa.index import NewsIndex

    settings = _settings(args["index_dir"])
    embedder = TimedEmbedder(load_embedder(settings))
    index = NewsIndex(settings, embedder=embedder)
    began = time.perf_counter()
    report = index.rebuild()
    return {"chunks": report.chunks, "embedded": report.embedded, "rebuild_s": time.perf_counter() - began,
            "embed_s": embedder.seconds}


def raw(args: dict) -> dict:
    """The model alone (tokenize + forward + pool) on the texts the index embedded, batch 32 like the index."""
    from qa.embedding import load_embedder

    texts = json.loads(Path(args["texts"]).read_text(encoding="utf-8"))
    embedder = load_embedder(_settings(args["index_dir"]))
    embedder.encode(texts[:8])  # first-call allocations are not throughput
    began = time.perf_counter()
    embedder.encode(texts, batch_size=32)
    return {"chunks": len(texts), "embed_s": time.perf_counter() - began}


def query(args: dict) -> dict:
    """Warm in-process latency: query embedding alone, retrieval (``search``, k=10) and a full ``ask``."""
    from bench.corpora import CORPORA
    from qa.index import NewsIndex

    index = NewsIndex(_settings(args["index_dir"]))
    questions = CORPORA[args["corpus"]].queries(args["n"])
    index.warm()  # what `qa serve` does before its first question (the BM25 postings read into memory)
    for q in questions[:10]:
        index.ask(q)  # warm: model, SQLite page cache, FAISS
    timings: dict[str, list[float]] = {"embed": [], "search": [], "ask": []}
    for q in questions:
        began = time.perf_counter()
        index.embedder.encode([q])
        timings["embed"].append(time.perf_counter() - began)
        began = time.perf_counter()
        index.search(q, k=10)
        timings["search"].append(time.perf_counter() - began)
        began = time.perf_counter()
        index.ask(q)
        timings["ask"].append(time.perf_counter() - began)
    from bench.measure import latency_ms, rss_mb

    stats = index.stats()
    return {"queries": len(questions), "chunks": stats["chunks"], "vector_index": stats["vector_index"],
            "rss_mb": rss_mb(), **{name: latency_ms(values) for name, values in timings.items()}}


TASKS = {"build": build, "rebuild": rebuild, "raw": raw, "query": query}


def main() -> None:
    from bench.measure import report

    task, args = sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    if task == "scale":
        from bench.scale import child

        report(child(args))
        return
    report(TASKS[task](args))


if __name__ == "__main__":
    main()
