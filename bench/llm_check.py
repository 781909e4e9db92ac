"""How well the check of written sentences (qa/llm.py) tells supported from unsupported, on the seed questions: each
question's reference answer (written by a person, often a paraphrase) against the passages retrieved for it. Against
a passage of its own article it is supported; against a passage of another article it is not, nor is it with one of
its numbers changed. CheckConfig's thresholds were chosen on the dev split with this script.

    python -m bench.llm_check [--split dev|test|all] [--reader on|off]
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = REPO / "tests" / "data" / "seed_questions.jsonl"
OVERLAPS = (0.3, 0.4, 0.5, 0.6, 0.7)
SUPPORTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
COSINES = (0.3, 0.4, 0.5, 0.6, 0.7)


def _tamper(text: str) -> str | None:
    """The sentence with its first number changed, or None when it states none."""
    m = re.search(r"\d+", text)
    if not m:
        return None
    return text[:m.start()] + str(int(m.group(0)) + 7) + text[m.end():]


def pairs(split: str, reader: bool) -> tuple[list, list]:
    """Measured (sentence, passage) pairs: those that should pass and those that should not."""
    from qa.evaluation import load_questions
    from qa.index import NewsIndex
    from qa.ingest import collect
    from qa.llm import Checker
    from qa.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        index = NewsIndex(Settings.from_env(index_dir=Path(tmp) / "index", reader=reader, llm_url=None))
        index.rebuild(collect([REPO / "seeds"], max_bytes=index.settings.max_article_bytes).articles)
        checker = Checker(index.reader, index.embedder)
        good, bad = [], []
        for q in load_questions(QUESTIONS):
            if q.kind == "offtopic" or (split != "all" and q.split != split):
                continue
            answer = index.ask(q.question, 5, q.history)
            own = [p for p in answer.passages if p.doc_id in {q.doc_id, *q.also}]
            other = [p for p in answer.passages if p.doc_id not in {q.doc_id, *q.also}]
            if own:
                good.append(max((checker.measure(q.answer, p) for p in own), key=lambda m: (not m.problem, m.score)))
            bad += [checker.measure(q.answer, p) for p in other]
            tampered = _tamper(q.answer)
            if tampered and own:
                bad += [checker.measure(tampered, p) for p in own]
        index.close()
    return good, bad


def passes(m, overlap: float, floor: float) -> bool:
    return not m.problem and m.overlap >= overlap and m.score >= floor


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="dev", choices=("dev", "test", "all"))
    parser.add_argument("--reader", default="on", choices=("on", "off"))
    args = parser.parse_args(argv)
    good, bad = pairs(args.split, args.reader == "on")
    print(f"{args.split} split, reader {args.reader}: {len(good)} supported pairs, {len(bad)} unsupported")
    print("min_overlap  floor   kept (supported)  dropped (unsupported)  balanced")
    floors = SUPPORTS if args.reader == "on" else COSINES
    for overlap in OVERLAPS:
        for floor in floors:
            kept = sum(passes(m, overlap, floor) for m in good) / max(1, len(good))
            dropped = sum(not passes(m, overlap, floor) for m in bad) / max(1, len(bad))
            print(f"{overlap:11.1f}  {floor:5.2f}   {kept:16.2f}  {dropped:21.2f}  {(kept + dropped) / 2:8.3f}")


if __name__ == "__main__":
    main()
