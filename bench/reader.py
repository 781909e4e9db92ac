"""The reader's cost: `ask` with the reader on and off, side by side in one process on the same questions, plus the
sentences it read per question. Turns alternate (off, on, off, on, ...) so machine noise hits both alike."""

from __future__ import annotations

import statistics
import time

from .indexing import indexed
from .measure import percentile, table

QUESTIONS = 100


def run(corpora: list[str], results: dict) -> str:
    from qa.index import NewsIndex
    from qa.settings import Settings

    rows = []
    for name, corpus, folder in indexed(corpora):
        on = NewsIndex(Settings.from_env(index_dir=folder, reader=True))
        off = NewsIndex(Settings.from_env(index_dir=folder, reader=False), embedder=on.embedder)
        questions = corpus.queries(QUESTIONS)
        for q in questions[:3]:  # warm-up: models loaded, caches filled
            on.ask(q), off.ask(q)
        times = {"off": [], "on": []}
        read = []
        for q in questions:
            for label, index in (("off", off), ("on", on)):
                began = time.perf_counter()
                answer = index.ask(q)
                times[label].append((time.perf_counter() - began) * 1000)
                if label == "on":
                    read.append(answer.sentences_read)
        figures = {k: {"p50": percentile(v, 50), "p99": percentile(v, 99)} for k, v in times.items()}
        results.setdefault("reader", {})[name] = {**figures, "sentences_read_median": statistics.median(read),
                                                  "questions": len(questions)}
        rows.append([corpus.label, len(questions), figures["off"]["p50"], figures["off"]["p99"],
                     figures["on"]["p50"], figures["on"]["p99"], figures["on"]["p50"] / figures["off"]["p50"],
                     statistics.median(read), max(read)])
        on.close()
        off.close()
    return table(["corpus", "questions", "ask p50 ms, reader off", "p99 off", "ask p50 ms, reader on", "p99 on",
                  "on / off (p50)", "sentences read (median)", "sentences read (max)"], rows)
