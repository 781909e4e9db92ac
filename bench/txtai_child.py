"""txtai's side of the comparison, run by the txtai virtualenv's Python (never the project's: txtai may pin other
package versions). Standard library and txtai only.

``python -m bench.txtai_child index '{"texts": ..., "queries": ..., "model": ..., "save": ...}'`` indexes the
exact strings our index embedded, with the same model folder read up to 256 tokens, then times searches."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def config(model: str) -> dict:
    """The same model folder, the same 256-token limit as our index, FAISS, vectors only (no content store)."""
    return {"path": model, "maxlength": 256, "backend": "faiss", "content": False, "batch": 32, "encodebatch": 32}


def index(args: dict) -> dict:
    import txtai

    texts = json.loads(Path(args["texts"]).read_text(encoding="utf-8"))
    queries = json.loads(Path(args["queries"]).read_text(encoding="utf-8"))
    began = time.perf_counter()
    embeddings = txtai.Embeddings(config(args["model"]))  # loads the model; not indexing throughput
    load_s = time.perf_counter() - began
    encoder = getattr(embeddings.model, "model", None)
    max_tokens = getattr(encoder, "max_seq_length", None)
    began = time.perf_counter()
    embeddings.index((i, text, None) for i, text in enumerate(texts))
    index_s = time.perf_counter() - began
    ms = _search_ms(embeddings, queries)
    if args.get("save"):
        embeddings.save(args["save"])
    return {"version": txtai.__version__ if hasattr(txtai, "__version__") else "", "chunks": len(texts),
            "index_s": index_s, "load_s": load_s, "max_tokens": max_tokens, "search_ms": ms, "peak_rss_mb": _peak_rss_mb()}


def _search_ms(embeddings, queries: list[str]) -> list[float]:
    """Sorted wall times (ms) of one k=10 search per query, after ten warm-up searches."""
    for q in queries[:10]:
        embeddings.search(q, 10)
    seconds = []
    for q in queries:
        began = time.perf_counter()
        embeddings.search(q, 10)
        seconds.append(time.perf_counter() - began)
    return sorted(s * 1000 for s in seconds)


def search(args: dict) -> dict:
    """Load a saved txtai index and time searches (k=10) for the queries."""
    import txtai

    queries = json.loads(Path(args["queries"]).read_text(encoding="utf-8"))
    embeddings = txtai.Embeddings()
    embeddings.load(args["save"])
    return {"search_ms": _search_ms(embeddings, queries), "peak_rss_mb": _peak_rss_mb()}


if __name__ == "__main__":
    task, arguments = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps({"index": index, "search": search}[task](arguments)), flush=True)
