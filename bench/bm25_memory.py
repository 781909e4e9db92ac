"""BM25 from memory against FTS5, side by side in one process on the same bench index (MultiHop-RAG by default),
turns alternating question by question so machine noise hits both alike. Warm, reader off.

    python -m bench.bm25_memory [--corpus multihop] [--questions 200]

Rows: the BM25 list alone (1,000 deep, as hybrid search reads it), hybrid search given the question's vector (what
retrieval costs after the embedding), ``search`` (k=10, the embedding included) unfiltered and with a wide date
filter. Also: how long reading the postings took, what they hold, and on how many questions the two gave the very
same ten passages.
"""

from __future__ import annotations

import argparse
import statistics
import time

from .corpora import CORPORA
from .indexing import ensure_index
from .measure import percentile, table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bm25_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="multihop", choices=sorted(CORPORA))
    parser.add_argument("--questions", type=int, default=200)
    args = parser.parse_args(argv)
    from qa.index import NewsIndex
    from qa.settings import Settings

    index = NewsIndex(Settings.from_env(index_dir=ensure_index(args.corpus), reader=False))
    live = index.live()
    limit = live.bm25.max_chunks
    began = time.perf_counter()
    live.bm25.warm(live.stamp())
    read_s = time.perf_counter() - began
    snapshot = live.bm25.current(live.stamp())
    held_mb = (snapshot.ids.nbytes + snapshot.lengths.nbytes + sum(p.nbytes + c.nbytes for p, c in
                                                                   snapshot.postings.values())) / 2**20
    questions = CORPORA[args.corpus].queries(args.questions)
    vectors = index.embedder.encode(questions)
    depth = index.retrieval.lexical_depth
    since = "2023-10-01"
    steps = {
        "BM25 list, 1,000 deep": lambda q, v: live.lexical(q, depth),
        "hybrid search, vector given (k=10)": lambda q, v: index._retrieve(q, 10, query_vector=v),
        "search (k=10), embedding included": lambda q, v: index.search(q, k=10),
        f"search (k=10), since {since}": lambda q, v: index.search(q, k=10, since=since),
    }
    for q, v in zip(questions[:5], vectors):  # warm both ways
        for mode in (0, limit):
            live.bm25.max_chunks = mode
            for step in steps.values():
                step(q, v)
    times = {(name, mode): [] for name in steps for mode in ("fts5", "memory")}
    same = 0
    for n, (q, v) in enumerate(zip(questions, vectors)):
        passages = {}
        for mode in (("fts5", "memory") if n % 2 == 0 else ("memory", "fts5")):
            live.bm25.max_chunks = 0 if mode == "fts5" else limit
            for name, step in steps.items():
                t = time.perf_counter()
                result = step(q, v)
                times[(name, mode)].append((time.perf_counter() - t) * 1000)
                if name.startswith("hybrid"):
                    passages[mode] = [(p.doc_id, p.start, p.end, p.score) for p in result.passages]
        same += passages["fts5"] == passages["memory"]
    live.bm25.max_chunks = limit
    rows = []
    for name in steps:
        fts, mem = statistics.median(times[(name, "fts5")]), statistics.median(times[(name, "memory")])
        rows.append([name, len(questions), fts, percentile(times[(name, "fts5")], 99), mem,
                     percentile(times[(name, "memory")], 99), fts / mem])
    chunks = len(snapshot.ids)
    print(f"{args.corpus}: {chunks} chunks; postings read in {read_s:.2f} s, {len(snapshot.postings)} words, "
          f"{held_mb:.1f} MB held; the same ten passages (scores included) on {same} of {len(questions)} questions")
    print()
    print(table(["step", "questions", "FTS5 p50 ms", "FTS5 p99 ms", "memory p50 ms", "memory p99 ms",
                 "FTS5 / memory (p50)"], rows))


if __name__ == "__main__":
    main()
