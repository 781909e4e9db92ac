"""Extractive answers: the one to three sentences of the retrieved passages that best answer the question, each
followed by the ``[n]`` of its passage, located in the article by character offsets."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .chunking import split_sentences
from .lexical import query_terms
from .records import AnswerSpan, Passage

NOT_FOUND = "The articles don't say."
# A question that asks for several things may be answered by sentences from several passages.
_LIST_CUE = re.compile(r"\b(which|what)\s+(\w+\s+)?(countries|companies|goods|products|people|sectors|industries|"
                       r"states|nations|leaders|cities|groups|measures|tariffs|steps|ways)\b|\bwho\b.*\band\b|\blist\b",
                       re.IGNORECASE)


@dataclass(frozen=True)
class AnswerConfig:
    """Weights of the sentence score and the thresholds below which the articles are taken not to say."""

    passages: int = 3
    max_sentences: int = 3
    dense_weight: float = 0.6
    lexical_weight: float = 0.4
    keep_ratio: float = 0.85
    min_sentence_score: float = 0.35
    min_passage_similarity: float = 0.25


@dataclass
class Candidate:
    rank: int
    doc_id: str
    start: int
    end: int
    text: str
    lexical: float = 0.0
    dense: float = 0.0
    score: float = 0.0


_LEANS_ON_CONTEXT = re.compile(
    r"^(and|but|also|so|what about|how about|then)\b|\b(it|its|they|them|their|this|that|these|those|he|she|him|"
    r"her|his|there|the same|such)\b",
    re.IGNORECASE,
)


def resolve_followup(question: str, history: list[dict]) -> str:
    """The text to search for a question in a conversation. A follow-up that leans on an earlier turn (a
    pronoun, "and …", or only a few content words) is searched together with the previous question."""
    previous = next((h.get("question", "") for h in reversed(history) if isinstance(h, dict) and h.get("question")), "")
    if not previous:
        return question
    if _LEANS_ON_CONTEXT.search(question) or len(query_terms(question)) <= 2:
        return f"{previous} {question}"
    return question


def _stem(word: str) -> str:
    # A five-letter prefix joins "retaliated", "retaliatory" and "retaliation" without a stemmer's weight.
    return word[:5]


def lexical_overlap(question_terms: list[str], text: str) -> float:
    """Share of the question's content words (by five-letter stem) that the text contains."""
    if not question_terms:
        return 0.0
    stems = {_stem(t) for t in query_terms(text)}
    wanted = {_stem(t) for t in question_terms}
    return len(wanted & stems) / len(wanted)


def candidates(passages: list[Passage], limit: int) -> list[Candidate]:
    """Sentences of the best passages, once each (overlapping chunks repeat sentences), with article offsets."""
    seen: set[tuple[str, int]] = set()
    found: list[Candidate] = []
    for passage in passages[:limit]:
        for s, e in split_sentences(passage.text):
            key = (passage.doc_id, passage.start + s)
            if key in seen or len(passage.text[s:e].split()) < 3:
                continue
            seen.add(key)
            found.append(Candidate(passage.rank, passage.doc_id, passage.start + s, passage.start + e, passage.text[s:e]))
    return found


def compose(
    question: str,
    passages: list[Passage],
    query_vector: np.ndarray,
    encode: Callable[[list[str]], np.ndarray],
    similarity: float,
    config: AnswerConfig = AnswerConfig(),
) -> tuple[str, list[AnswerSpan], bool]:
    """``(answer text, answer spans, answerable)`` for the question over the ranked passages.

    ``similarity`` is the best cosine between the question and any retrieved passage."""
    pool = candidates(passages, config.passages)
    if not pool:
        return NOT_FOUND, [], False
    terms = query_terms(question)
    vectors = encode([c.text for c in pool])
    for cand, vec in zip(pool, vectors):
        cand.lexical = lexical_overlap(terms, cand.text)
        cand.dense = float(np.dot(vec, query_vector))
        cand.score = config.dense_weight * cand.dense + config.lexical_weight * cand.lexical
    best = max(pool, key=lambda c: c.score)
    if best.score < config.min_sentence_score or similarity < config.min_passage_similarity:
        return NOT_FOUND, [], False
    limit = config.max_sentences if _LIST_CUE.search(question) else 2
    chosen = [c for c in sorted(pool, key=lambda c: -c.score) if c.score >= config.keep_ratio * best.score][:limit]
    chosen.sort(key=lambda c: (c.rank, c.start))
    text = " ".join(f"{c.text} [{c.rank}]" for c in chosen)
    spans = [AnswerSpan(c.rank, c.doc_id, c.start, c.end) for c in chosen]
    return text, spans, True
