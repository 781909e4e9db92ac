"""`python -m bench.stores [--corpus bbc] [--queries 200]`: the embedded store beside Milvus Lite (issue 13).

Each build runs in its own process: the embedded store first with a cold embedding cache (what a first `qa index`
costs, embedding included), then the embedded store and Milvus Lite again with the cache warm, so their build times
compare the stores alone (chunking + writing). Each child then opens its index afresh and times `search` (retrieval
alone) and `ask` (retrieval + reader: what `/ask` does in the server) on real queries, and reports its resident
memory (its own and any child process's, Milvus Lite's server included) and the index's size on disk. Results go
to bench/out/stores.json (stores-milvus.json with --only milvus); docs/scale.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from .corpora import CORPORA  # noqa: E402
from .measure import OUT, PYTHON, latency_ms, run_child, tree_rss_mb  # noqa: E402


def _disk_mb(path: Path) -> float:
    """The index's files under ``path``, less the exported ONNX model (the same for both stores)."""
    onnx = path / "index" / "onnx"
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and onnx not in f.parents) / 1e6


def child(args) -> None:
    """Build one store, reopen it, time questions, report one JSON line."""
    from qa.embedding import load_embedder
    from qa.evaluation import CachedEmbedder, EmbeddingCache
    from qa.index import NewsIndex
    from qa.ingest import collect
    from qa.settings import Settings

    corpus = CORPORA[args.corpus]
    folder = Path(args.dir)
    store = "embedded" if args.store == "embedded" else f"milvus://{folder}/milvus.db"
    settings = Settings.from_env(index_dir=folder / "index", store=store)
    cache = EmbeddingCache(Path(args.cache))
    embedder = CachedEmbedder(load_embedder(settings), cache, settings.model_name, settings.precision)
    articles = collect([corpus.path], max_bytes=settings.max_article_bytes, ids=corpus.ids).articles
    index = NewsIndex(settings, embedder=embedder)
    began = time.perf_counter()
    report = index.rebuild(articles)
    build_s = time.perf_counter() - began
    embedded = embedder.computed
    index.close()
    index = NewsIndex(settings, embedder=embedder)
    queries = corpus.queries(args.queries)
    index.ask(queries[0])  # loads the reader and opens the store: not a question's cost
    search_s, ask_s = [], []
    for q in queries:
        t = time.perf_counter()
        index.search(q, k=5)
        search_s.append(time.perf_counter() - t)
    for q in queries:
        t = time.perf_counter()
        index.ask(q, k=5)
        ask_s.append(time.perf_counter() - t)
    result = {"store": args.store, "corpus": args.corpus, "articles": len(articles), "chunks": report.chunks,
              "embedded": embedded, "build_s": round(build_s, 1), "search_ms": latency_ms(search_s),
              "ask_ms": latency_ms(ask_s), "rss_mb": round(tree_rss_mb(), 1),
              "disk_mb": round(_disk_mb(folder), 1)}
    index.close()
    cache.close()
    print(json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stores", description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="bbc", choices=sorted(CORPORA))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--only", choices=["milvus"], help="build Milvus Lite alone (with --cache from a full run)")
    parser.add_argument("--keep-cache", metavar="PATH",
                        help="embedding cache file to use and keep (default: a temporary one, cold)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", default="embedded", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    work = Path(tempfile.mkdtemp(prefix="qa-bench-stores-"))
    rows = []
    try:
        cache = Path(args.keep_cache).resolve() if args.keep_cache else work / "embeddings.sqlite3"
        runs = [("embedded, cold cache", "embedded"), ("embedded", "embedded"), ("Milvus Lite", "milvus")]
        for label, store in runs[2:] if args.only == "milvus" else runs:
            folder = work / label.replace(" ", "-").replace(",", "")
            folder.mkdir()
            print(f"building: {label}", file=sys.stderr, flush=True)
            result = run_child([PYTHON, "-m", "bench.stores", "--child", "--store", store, "--dir", str(folder),
                                "--cache", str(cache), "--corpus", args.corpus, "--queries", str(args.queries)],
                               timeout=3600)
            rows.append({"label": label, **result.data})
            print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / ("stores-milvus.json" if args.only else "stores.json")).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
