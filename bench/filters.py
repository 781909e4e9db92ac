"""Filtered questions: warm in-process ``search`` (k=10, reader off) on the MultiHop-RAG bench index with no filter,
a wide date filter, the largest outlet and one article, medians over the same questions.

    python -m bench.filters [--questions 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

from .corpora import CORPORA
from .indexing import ensure_index
from .measure import table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.filters", description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=8)
    args = parser.parse_args(argv)
    from qa.index import NewsIndex
    from qa.settings import Settings

    index = NewsIndex(Settings.from_env(index_dir=ensure_index("multihop"), reader=False))
    store = index.live().store
    questions = CORPORA["multihop"].queries(args.questions)
    outlet = store.db.execute("SELECT source FROM documents GROUP BY source ORDER BY count(*) DESC").fetchone()[0]
    first = store.db.execute("SELECT doc_id FROM documents ORDER BY doc_id").fetchone()[0]
    filters = {"none": {}, "since 2023-10-01": {"since": "2023-10-01"}, f"source {outlet}": {"sources": [outlet]},
               "one article": {"doc_ids": [first]}}
    for q in questions[:3]:
        index.search(q, k=10)
    rows = []
    for label, kw in filters.items():
        times = []
        for q in questions:
            began = time.perf_counter()
            index.search(q, k=10, **kw)
            times.append((time.perf_counter() - began) * 1000)
        rows.append([label, len(questions), statistics.median(times), max(times)])
    print(table(["filter", "questions", "search p50 ms", "max ms"], rows))


if __name__ == "__main__":
    main()
