"""What the check does with a real model: every seed question answered by the model at ``--url`` (an
OpenAI-compatible server), counting the sentences it wrote, kept and dropped, and how often the extractive answer
stood in, and why.

    python -m llama_cpp.server --model SMOLLM2.gguf --host 127.0.0.1 --port 8089 --n_ctx 2048 --n_threads 1 &
    python -m bench.llm_answers --url http://127.0.0.1:8089/v1 [--split all] [--show 5]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = REPO / "tests" / "data" / "seed_questions.jsonl"


def main(argv: list[str] | None = None) -> None:
    from qa.evaluation import load_questions
    from qa.index import NewsIndex
    from qa.ingest import collect
    from qa.llm import claims
    from qa.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--split", default="all", choices=("dev", "test", "all"))
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--show", type=int, default=5, help="print this many drafts with what was kept")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(index_dir=Path(tmp) / "index", llm_url=args.url, llm_timeout=args.timeout)
        index = NewsIndex(settings)
        index.rebuild(collect([REPO / "seeds"], max_bytes=settings.max_article_bytes).articles)
        tally = collections.Counter()
        notes = collections.Counter()
        seconds = []
        shown = 0
        for q in load_questions(QUESTIONS):
            if args.split != "all" and q.split != args.split:
                continue
            extractive = index.ask(q.question, 5, q.history, llm=False)
            if not extractive.answerable:
                tally["not answerable: model not asked"] += 1
                continue
            began = time.perf_counter()
            draft, answer = "", extractive
            for kind, value in index.llm_events(extractive, q.history):
                if kind == "draft":
                    draft += value
                elif kind == "answer":
                    answer = value
            seconds.append(time.perf_counter() - began)
            written = claims(draft)
            tally["asked"] += 1
            tally["sentences written"] += len(written)
            tally["sentences citing nothing"] += sum(not c.ranks for c in written)
            tally["sentences dropped"] += answer.sentences_dropped
            tally["sentences kept"] += len(claims(answer.answer)) if answer.mode == "llm" else 0
            tally[f"mode {answer.mode}"] += 1
            if answer.fell_back:
                notes[answer.llm_note.split(" (")[0]] += 1
            if shown < args.show:
                shown += 1
                print(f"--- {q.id}: {q.question}\ndraft: {draft.strip()!r}\n{answer.mode}: {answer.answer!r}\n")
        index.close()
    print(f"{args.split} split, model at {args.url}")
    for key, value in tally.items():
        print(f"{key:34} {value}")
    asked = max(1, tally["asked"])
    print(f"{'fell back':34} {tally['mode extractive']} of {tally['asked']} ({tally['mode extractive'] / asked:.0%})")
    for note, n in notes.most_common():
        print(f"  {n:3}  {note}")
    if seconds:
        print(f"{'seconds per answer (median, max)':34} {statistics.median(seconds):.1f}, {max(seconds):.1f}")


if __name__ == "__main__":
    main()
