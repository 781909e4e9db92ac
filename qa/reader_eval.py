"""The reader measured alone: answer-sentence selection and "no sentence here answers", on data it was not trained
on (``qa eval reader DATA_DIR``).

- SQuAD 2.0 held-out articles (``squad2_split``: ``dev`` to choose the threshold, ``test`` to report): is the top
  sentence of an answerable question the answer sentence; is a question answerable (best probability over its
  paragraph's sentences at least the threshold) — accuracy over answerable and unanswerable questions alike.
- WikiQA test, filtered (the 237 questions with a correct sentence, as in Yang et al. 2015): MAP and MRR.
- TrecQA clean test (news): MAP and MRR.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .reader_data import Question, squad2_titles, squad_questions, trecqa_questions, wikiqa_questions


def average_precision(scores: np.ndarray, positives: set[int]) -> tuple[float, float]:
    """``(AP, reciprocal rank)`` of one question's ranking (ties broken by position, as trec_eval does by order)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    hits = 0
    total = 0.0
    rr = 0.0
    for n, i in enumerate(order, start=1):
        if i in positives:
            hits += 1
            total += hits / n
            rr = rr or 1.0 / n
    return (total / len(positives) if positives else 0.0), rr


def score_questions(reader, questions: list[Question]) -> list[np.ndarray]:
    """The reader's probabilities for every sentence of every question."""
    return [reader.score(q.question, q.sentences) for q in questions]


def with_cosines(questions: list[Question], scores: list[np.ndarray], embedder, config) -> list[np.ndarray]:
    """The scores an answer's first sentence is chosen by (``qa.answer.compose_read``, less the passage-rank
    share): the reader's probability plus ``read_dense_weight`` × the embedding cosine with the question for its
    best ``read_dense_depth`` sentences."""
    from .answer import read_dense_picks

    mixed = []
    for q, s in zip(questions, scores):
        picks = read_dense_picks(s, config.read_dense_depth)
        vectors = embedder.encode([q.question] + [q.sentences[i] for i in picks])
        out = np.asarray(s, dtype=np.float64).copy()
        out[picks] += config.read_dense_weight * (vectors[1:] @ vectors[0])
        mixed.append(out)
    return mixed


def ranking_metrics(questions: list[Question], scores: list[np.ndarray]) -> dict[str, float]:
    """MAP and MRR over the questions that have a correct sentence."""
    rows = [average_precision(s, q.positives) for q, s in zip(questions, scores) if q.positives]
    return {"questions": len(rows), "MAP": float(np.mean([r[0] for r in rows])),
            "MRR": float(np.mean([r[1] for r in rows]))}


def answerability(questions: list[Question], scores: list[np.ndarray], threshold: float) -> dict[str, float]:
    """Top-sentence accuracy on answerable questions, and answerable-vs-unanswerable accuracy at ``threshold``."""
    yes = [(q, s) for q, s in zip(questions, scores) if q.positives]
    no = [(q, s) for q, s in zip(questions, scores) if not q.positives]
    top = np.mean([int(np.argmax(s)) in q.positives for q, s in yes]) if yes else 0.0
    said_yes = sum(float(s.max()) >= threshold for _, s in yes)
    said_no = sum(float(s.max()) < threshold for _, s in no)
    return {
        "answerable": len(yes), "unanswerable": len(no), "top sentence right": float(top),
        "accuracy": (said_yes + said_no) / max(1, len(yes) + len(no)),
        "answerable kept": said_yes / max(1, len(yes)), "unanswerable declined": said_no / max(1, len(no)),
    }


def best_threshold(questions: list[Question], scores: list[np.ndarray]) -> float:
    """The threshold with the best answerable-vs-unanswerable accuracy (for choosing on a dev split)."""
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2)
    return float(max(grid, key=lambda t: (answerability(questions, scores, t)["accuracy"], -abs(t - 0.5))))


def _wikiqa_filtered(data_dir: Path, split: str = "test") -> list[Question]:
    """The filtered protocol of Yang et al. (2015), as in ``WikiQA-test-filtered.ref``: questions with both a
    correct and an incorrect candidate sentence (237 in test)."""
    return [q for q in wikiqa_questions(data_dir, split) if q.positives and len(q.positives) < len(q.sentences)]


def run_reader_eval(reader, data_dir: Path, *, threshold: float, split: str = "test", embedder=None,
                    config=None) -> "Report":
    """The tables of ``qa eval reader``: SQuAD 2.0 held-out articles, WikiQA (filtered) and TrecQA (clean).
    ``split="test"`` reports the test sets (with SQuAD 2.0's dev articles beside them, for the threshold);
    ``split="dev"`` only the dev sets, the ones settings and models are chosen on. With ``embedder`` and ``config``
    (an ``AnswerConfig``), sentence choice is also measured as answers make it (``with_cosines``)."""
    from .evaluation import Report, markdown_table

    began = time.perf_counter()
    data_dir = Path(data_dir)
    mixing = embedder is not None and config is not None
    report = Report(f"The reader alone: answer-sentence selection ({split} sets)")
    v2 = data_dir / "squad-v2" / "dev-v2.0.json"
    rows = []
    for part in ("dev", "test") if split == "test" else ("dev",):
        questions = squad_questions(v2, articles=squad2_titles(v2, part))
        scores = score_questions(reader, questions)
        a = answerability(questions, scores, threshold)
        mixed = [answerability(questions, with_cosines(questions, scores, embedder, config), threshold)[
            "top sentence right"]] if mixing else []
        rows.append([f"SQuAD 2.0 held-out articles ({part})", a["answerable"], a["unanswerable"],
                     a["top sentence right"], *mixed, a["accuracy"], a["answerable kept"], a["unanswerable declined"],
                     best_threshold(questions, scores) if part == "dev" else "–"])
    plus = " + cosine"
    report.tables.append(markdown_table(
        ["data", "answerable", "unanswerable", "top sentence right", *([f"top sentence right{plus}"] * mixing),
         "answerable vs not: accuracy", "answerable kept", "unanswerable declined", "best threshold"], rows))
    ranked = ((("WikiQA test (filtered)", _wikiqa_filtered(data_dir, "test")),
               ("TrecQA clean test", trecqa_questions(data_dir, "clean-test"))) if split == "test" else
              (("WikiQA dev (filtered)", _wikiqa_filtered(data_dir, "dev")),
               ("TrecQA clean dev", trecqa_questions(data_dir, "clean-dev"))))
    rank_rows = []
    for name, questions in ranked:
        scores = score_questions(reader, questions)
        m = ranking_metrics(questions, scores)
        row = [name, m["questions"], m["MAP"], m["MRR"]]
        if mixing:
            mm = ranking_metrics(questions, with_cosines(questions, scores, embedder, config))
            row += [mm["MAP"], mm["MRR"]]
        rank_rows.append(row)
    report.tables.append(markdown_table(
        ["data", "questions", "MAP", "MRR", *([f"MAP{plus}", f"MRR{plus}"] * mixing)], rank_rows))
    report.notes.append(f"threshold {threshold}; total {time.perf_counter() - began:.1f} s."
                        + (f" '{plus}': the embedding's cosine with the question, weight {config.read_dense_weight},"
                           f" over the reader's best {config.read_dense_depth} sentences (as an answer's first"
                           " sentence is chosen)."
                           if mixing else ""))
    return report
