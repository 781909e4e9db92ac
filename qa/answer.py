"""Extractive answers: the one to three sentences of the retrieved passages that best answer the question, each
followed by the ``[n]`` of its passage and located in the article by character offsets; "the articles don't say"
when nothing retrieved is close enough; and follow-up questions resolved against the conversation.

Sentences are scored by the model (cosine with the question) and by term overlap. Embedding sentences is the
costly part of an answer (a few milliseconds each on two cores), so only the most promising few are embedded per
question and every sentence vector is kept in a bounded in-memory cache: passages that are asked about again cost
nothing the second time.
"""

from __future__ import annotations

import math
import re
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .chunking import TRAILING_FOOTNOTES, split_sentences
from .ingest import TITLE_LINE_WORDS
from .lexical import query_terms
from .records import AnswerSpan, Passage
from .settings import with_changes

NOT_FOUND = "The articles don't say."
# A question that asks for several things may be answered by sentences from several passages.
_LIST_CUE = re.compile(
    r"\b(which|what)\s+(\w+\s+){0,2}(countries|companies|firms|goods|products|people|sectors|industries|states|"
    r"nations|leaders|cities|groups|measures|tariffs|steps|ways|teams|players|items|things|reasons|issues)\b"
    r"|\bwho\b.*\band\b|\blist\b|\bname (the|all)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class AnswerConfig:
    """Weights of the sentence score and the thresholds below which the articles are taken not to say.
    Chosen on the dev split of the seed questions and of MultiHop-RAG (docs/quality.md)."""

    passages: int = 3  # answer sentences come from the best few passages
    max_sentences: int = 3  # for a list question; otherwise at most 2
    embed_limit: int = 8  # sentences scored by the model per question (embedded once, then cached)
    rank_prior: float = 0.5  # how much a sentence's passage rank counts when choosing which to score
    dense_weight: float = 0.6
    lexical_weight: float = 0.4
    keep_ratio: float = 0.85  # further sentences must score this share of the best one
    list_keep_ratio: float = 0.75  # the same for a question that asks for several things ("which countries")
    # The articles don't say when no passage's cosine with the question reaches the threshold. Long questions
    # reach higher cosines with related and unrelated text alike, so the threshold grows with the number of
    # content words: min_similarity at 6 words, plus similarity_slope times ln(words / 6).
    min_similarity: float = 0.32
    similarity_slope: float = 0.15
    # With the reader (qa/reader.py). Chosen on the dev questions of the seed set, MultiHop-RAG's dev part and the
    # SQuAD 2.0 dev articles (docs/quality.md).
    reader_passages: int = 5  # sentences of this many best passages are read
    reader_limit: int = 24  # at most this many sentences read per question (seed dev: 12 and 16 lose 0.06 answer sentences; cost: docs/performance.md)
    reader_threshold: float = 0.05  # below this probability for every sentence, the articles don't say
    reader_keep: float = 0.5  # a further answer sentence needs this probability ...
    reader_keep_ratio: float = 0.6  # ... and this share of the best one's
    # A question asking for several things ("which countries ...") is answered by sentences that each hold one of
    # them, and the reader rates each lower than a sentence holding the whole answer.
    reader_list_keep: float = 0.15
    reader_list_keep_ratio: float = 0.25
    rerank_weight: float = 0.5  # share of the passage's best sentence probability in its new score
    rerank_depth: int = 3  # only the best few passages are re-ordered (0: all that were read)
    # Which sentences answer: the reader's probability plus these shares of the sentence's term overlap with the
    # question and of its passage's retrieval prior (1 / rank). The model alone under-rates paraphrases.
    read_lexical_weight: float = 0.0
    read_rank_weight: float = 0.2
    # The first answer sentence is chosen with this share of its cosine with the question under the embedding
    # model added (trained on paraphrases; the reader learnt from SQuAD's questions worded like their answers), among
    # the reader's best few sentences only: embedding a sentence costs about 6 ms on two cores, and deeper than four
    # lifted no dev figure by more than 0.007. Chosen on the reader's dev sets {0.3, 0.5, 0.8} x {3, 4, 6, 8, all}
    # (docs/quality.md): 0.5 and 4 lift WikiQA dev MAP 0.720 -> 0.743, TrecQA clean dev 0.813 -> 0.832, the SQuAD
    # 2.0 dev articles' top sentence 0.907 -> 0.918, seed dev answer sentences 0.375 -> 0.438. 0 turns it off.
    read_dense_weight: float = 0.5
    read_dense_depth: int = 4
    # Also require the retrieval similarity gate of the reader-less path (min_similarity, similarity_slope): the
    # reader alone cannot tell MultiHop-RAG's null queries from its multi-hop ones (dev: 93 % of null queries
    # answered at 0.1), while the gate declines them; the reader declines near-topic seed questions the gate lets by.
    similarity_gate: bool = True

    def with_(self, **changes) -> "AnswerConfig":
        """A copy with some fields changed (values given as strings are converted to the field's type)."""
        return with_changes(self, changes, "answer")


@dataclass
class Candidate:
    """A sentence of a retrieved passage with its article offsets and scores."""

    rank: int
    doc_id: str
    start: int
    end: int
    text: str
    prior: float = 0.0
    lexical: float = 0.0
    dense: float | None = None
    read: float = 0.0  # the reader's probability that the sentence answers the question
    score: float = 0.0


@dataclass
class Composed:
    """What ``compose`` decides: the answer text with ``[n]`` markers, its spans, and whether it is an answer."""

    text: str
    spans: list[AnswerSpan] = field(default_factory=list)
    answerable: bool = False
    best_score: float = 0.0
    passages: list[Passage] | None = None  # the passages in the reader's order, ranks renumbered (None: unchanged)
    read: int = 0  # sentences the reader read


# --- follow-ups -----------------------------------------------------------------------------------------------------
_LEANS_ON_CONTEXT = re.compile(
    r"^(and|but|also|so|what about|how about|then)\b|\b(it|its|they|them|their|this|that|these|those|he|she|him|"
    r"her|his|there|the same|such|the rest|the others|the remaining|the former|the latter)\b",
    re.IGNORECASE,
)


def previous_answer(history: list[dict]) -> str:
    """The most recent earlier turn's answer text ('' when there is none)."""
    for turn in reversed(history):
        if isinstance(turn, dict) and isinstance(turn.get("answer"), str) and turn["answer"].strip():
            return turn["answer"]
    return ""


def resolve_followup(question: str, history: list[dict]) -> str:
    """The text to search for a question in a conversation. A follow-up that leans on an earlier turn (a
    pronoun, "and …", "the rest", or only a few content words) is searched together with the previous question;
    one that stands on its own is searched as asked, so an old topic cannot pull it away."""
    previous = next((h.get("question", "") for h in reversed(history) if isinstance(h, dict) and h.get("question")), "")
    if not previous:
        return question
    if _LEANS_ON_CONTEXT.search(question) or len(query_terms(question)) <= 2:
        return f"{previous} {question}"
    return question


# --- sentence vectors -----------------------------------------------------------------------------------------------
class SentenceVectors:
    """A bounded least-recently-used cache of sentence vectors for one embedder."""

    def __init__(self, capacity: int = 50_000):
        self.capacity = capacity
        self.items: OrderedDict[str, np.ndarray] = OrderedDict()
        self.lock = threading.Lock()

    def lookup(self, texts: list[str]) -> list[np.ndarray | None]:
        with self.lock:
            out = []
            for t in texts:
                vec = self.items.get(t)
                if vec is not None:
                    self.items.move_to_end(t)
                out.append(vec)
            return out

    def store(self, texts: list[str], vectors: np.ndarray) -> None:
        with self.lock:
            for t, v in zip(texts, vectors):
                self.items[t] = np.asarray(v, dtype=np.float32)
                self.items.move_to_end(t)
            while len(self.items) > self.capacity:
                self.items.popitem(last=False)


_SENTENCE_CACHES: "weakref.WeakKeyDictionary[object, SentenceVectors]" = weakref.WeakKeyDictionary()
_SENTENCE_LOCK = threading.Lock()


def _sentence_cache(embedder) -> SentenceVectors:
    with _SENTENCE_LOCK:
        cache = _SENTENCE_CACHES.get(embedder)
        if cache is None:
            cache = _SENTENCE_CACHES[embedder] = SentenceVectors()
        return cache


def sentence_vectors(embedder, texts: list[str]) -> list[np.ndarray | None]:
    """Vectors of ``texts``: cached ones for free, the others embedded in one batch and cached."""
    cache = _sentence_cache(embedder)
    found = cache.lookup(texts)
    missing = list(dict.fromkeys(t for t, v in zip(texts, found) if v is None))
    if missing:
        fresh = embedder.encode(missing)
        cache.store(missing, fresh)
        by_text = dict(zip(missing, fresh))
        found = [v if v is not None else by_text[t] for t, v in zip(texts, found)]
    return found


@lru_cache(maxsize=8192)
def sentence_spans(text: str, min_words: int = 3) -> tuple[tuple[int, int], ...]:
    """The sentences of a passage worth answering with (a few words at least), as offsets into it. Kept for the
    passages asked about most recently: splitting is a large share of a warm question's time."""
    return tuple((s, e) for s, e in split_sentences(text) if len(text[s:e].split()) >= min_words)


# --- scoring --------------------------------------------------------------------------------------------------------
def _stem(word: str) -> str:
    # A five-letter prefix joins "retaliated", "retaliatory" and "retaliation" without a stemmer's weight.
    return word[:5]


def candidates(passages: list[Passage], limit: int) -> list[Candidate]:
    """Sentences of the best passages, once each (overlapping chunks repeat sentences), with article offsets."""
    seen: set[tuple[str, int]] = set()
    found: list[Candidate] = []
    for passage in passages[:limit]:
        for s, e in sentence_spans(passage.text):
            key = (passage.doc_id, passage.start + s)
            if key in seen:
                continue
            seen.add(key)
            # Footnote marks after the sentence's end ("… in January.[14]") are the encyclopedia's, not part of the
            # answer: beside the answer's own "[1]" they read as a citation of a passage that does not exist.
            marks = TRAILING_FOOTNOTES.search(passage.text, s, e)
            if marks is not None and marks.start() > s:
                e = marks.start()
            found.append(Candidate(passage.rank, passage.doc_id, passage.start + s, passage.start + e, passage.text[s:e]))
    return found


def _weights(terms: list[str], pool: list[Candidate]) -> dict[str, float]:
    """Weights of the question's stems: rarer among the candidate sentences, more telling."""
    stems = [{_stem(t) for t in query_terms(c.text)} for c in pool]
    n = len(pool)
    return {s: math.log(1 + n / (1 + sum(s in st for st in stems))) for s in {_stem(t) for t in terms}}


def _overlap(weights: dict[str, float], text: str) -> float:
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    stems = {_stem(t) for t in query_terms(text)}
    return sum(w for s, w in weights.items() if s in stems) / total


def similarity_threshold(content_words: int, config: AnswerConfig = AnswerConfig()) -> float:
    """The cosine a question of this many content words must reach with some passage to be answered."""
    return config.min_similarity + config.similarity_slope * math.log(max(1, content_words) / 6)


def compose(question: str, found, embedder, config: AnswerConfig = AnswerConfig()) -> Composed:
    """The answer to ``question`` from the retrieved passages (``found``: a ``retrieval.Retrieved``).

    ``embedder`` encodes sentences (an object with ``encode``); at most ``config.embed_limit`` sentences are
    newly embedded per question, chosen by term overlap and passage rank."""
    passages = found.passages
    pool = candidates(passages, config.passages)
    terms = query_terms(question)
    # No content word ("?", "-", "exit", "what is it?" asked alone): nothing is asked about, whatever comes back.
    if not pool or not terms or found.similarity < similarity_threshold(len(terms), config):
        return Composed(NOT_FOUND)
    weights = _weights(terms, pool)
    for c in pool:
        c.lexical = _overlap(weights, c.text)
        c.prior = 1.0 / c.rank
    # Only the most promising few sentences (by term overlap and passage rank) are scored by the model, always the
    # same few for the same passages, so an answer does not depend on what happens to be cached.
    scored = sorted(pool, key=lambda c: (-(c.lexical + config.rank_prior * c.prior), c.rank, c.start))
    scored = scored[: config.embed_limit]
    for c, vec in zip(scored, sentence_vectors(embedder, [c.text for c in scored])):
        c.dense = float(np.dot(vec, found.query_vector))
        c.score = config.dense_weight * c.dense + config.lexical_weight * c.lexical
    best = max(scored, key=lambda c: c.score)
    many = bool(_LIST_CUE.search(question))
    limit, ratio = (config.max_sentences, config.list_keep_ratio) if many else (2, config.keep_ratio)
    chosen = [c for c in sorted(scored, key=lambda c: -c.score) if c.score >= ratio * best.score][:limit]
    chosen.sort(key=lambda c: (c.rank, c.start))
    text = " ".join(f"{c.text} [{c.rank}]" for c in chosen)
    spans = [AnswerSpan(c.rank, c.doc_id, c.start, c.end) for c in chosen]
    return Composed(text, spans, True, best.score)


# --- with the reader ------------------------------------------------------------------------------------------------
_BYLINE = re.compile(
    r"^\s*(by|from|reporting by|written by|photo:|image:|updated|published|posted)\b", re.IGNORECASE)
# Credits, link lines and boilerplate that news pages and wire copy carry between paragraphs ("Related: Why …",
# "(Reporting by …; Editing by …)", "FILE PHOTO: …"): worded like the story, they were chosen as answers.
_CREDIT = re.compile(
    r"^\s*[(\[\u2014\u2013-]?\s*(?:(?:additional |writing and )?reporting by|editing by|writing by|compiled by|"
    r"(?:related|read more|more|see also|also read|watch|listen|image caption|image source|photo credit|caption)\s*:|"
    r"file photo\b|photo(?:graph)?s? by\b|(?-i:[A-Z]{2,})/[^/.!?]+/|copyright\b|\u00a9|all rights reserved|last updated\b|sign up\b|click here\b|follow us\b)",
    re.IGNORECASE)
# A line shaped like a linked headline: a short label, a colon, a capitalised title and no end punctuation ("The
# Trump Effect: Why foreign investors are bailing on Canada"). A fact line ("Population: 5 million") has no capital.
_LINK_LINE = re.compile(r"^[^:.!?]{2,40}:\s+[\"'\u201c\u2018]?[A-Z][^.!?]*$")


def _whole_line(c: Candidate, passage: Passage) -> bool:
    """Does the sentence fill its line of the passage? (At the passage's edges the article may go on: yes.)"""
    before = passage.text[:c.start - passage.start]
    after = passage.text[c.end - passage.start:]
    return (not before.strip(" \t") or before.rstrip(" \t").endswith("\n")) and \
        (not after.strip(" \t") or after.lstrip(" \t").startswith(("\n", "\r")))


def is_heading(c: Candidate, passage: Passage) -> bool:
    """A headline, dateline, byline, credit or link line: never an answer by itself. A headline is the article's
    title standing as a line of its own (a lead sentence the title was made from is no headline: it ends in a
    period and is longer, or shares its line) or a first line without end punctuation; a byline is a short line
    opening with "By", "Published", "Updated" and the like; credits and link lines are "(Reporting by …)",
    "Related: …", "FILE PHOTO: …" and lines shaped like a linked headline. Footnote marks after the end
    punctuation ("… in April.[12]", pasted from an encyclopedia) are looked past: such a lead sentence is no
    headline."""
    text = c.text.strip()
    bare = TRAILING_FOOTNOTES.sub("", text)
    ended = bare[-1:] in ".!?\"\u201d'\u2019)"
    if passage.title and " ".join(text.split()) == " ".join(passage.title.split()):
        if _whole_line(c, passage) and (not text.endswith(".") or len(text.split()) <= TITLE_LINE_WORDS):
            return True
    if c.start == 0 and not ended:
        return True
    if len(text.split()) <= 25 and _CREDIT.match(text):
        return True
    if not ended and _LINK_LINE.match(text) and _whole_line(c, passage):
        return True
    return len(text.split()) <= 12 and bool(_BYLINE.match(text))


def _named_anew(question: str, query: str | None) -> set[str]:
    """The stems a follow-up names that the question it leans on does not (``query`` is that question followed by
    this one, as ``resolve_followup`` joins them); empty when it was searched alone."""
    if not query or query == question or not query.endswith(question):
        return set()
    before = {_stem(t) for t in query_terms(query[: -len(question)])}
    return {_stem(t) for t in query_terms(question)} - before


def reader_question(question: str, query: str) -> str:
    """What the reader reads: the question as asked, so a follow-up is not answered with the previous answer; only
    a question too short to stand alone ("And China?") is read with the turn it leans on."""
    return question if len(query_terms(question)) >= 2 else query


def _reader_pool(question: str, passages: list[Passage], config: AnswerConfig) -> list[Candidate]:
    pool = candidates(passages, config.reader_passages)
    by_rank = {p.rank: p for p in passages}
    pool = [c for c in pool if not is_heading(c, by_rank[c.rank])]
    weights = _weights(query_terms(question), pool)
    for c in pool:
        c.lexical = _overlap(weights, c.text)
        c.prior = 1.0 / c.rank
    if len(pool) <= config.reader_limit:
        return pool
    keep = sorted(pool, key=lambda c: (-(c.lexical + config.rank_prior / c.rank), c.rank, c.start))
    return keep[: config.reader_limit]


def rerank(passages: list[Passage], best: dict[int, float], weight: float,
           depth: int = 0) -> tuple[list[Passage], dict[int, int]]:
    """The first ``depth`` passages (0: all) ordered by ``(1 - weight) * retrieval score / the best one's + weight *
    best sentence probability`` (a passage the reader did not read counts 0 for it), the rest left in place; ranks
    renumbered; and old rank → new rank."""
    depth = depth or len(passages)
    top = max((p.score for p in passages), default=0.0) or 1.0
    head = sorted(passages[:depth],
                  key=lambda p: (-((1 - weight) * p.score / top + weight * best.get(p.rank, 0.0)), p.rank))
    scored = head + passages[depth:]
    renumber = {p.rank: n for n, p in enumerate(scored, start=1)}
    for p in scored:
        p.rank = renumber[p.rank]
    return scored, renumber


def read_dense_picks(reads, depth: int) -> list[int]:
    """Which sentences also score their cosine with the question: the reader's best ``depth`` (ties: the first)."""
    return [int(i) for i in np.argsort(-np.asarray(reads, dtype=np.float64), kind="stable")[:depth]]


def _add_dense(pool: list[Candidate], asked: str, query: str, query_vector: np.ndarray, embedder,
               config: AnswerConfig) -> None:
    """The cosine with the question (``Candidate.dense``) of the reader's best few sentences. A follow-up read as
    asked is compared as asked, not with the earlier turn its search leaned on."""
    best = [pool[i] for i in read_dense_picks([c.read for c in pool], config.read_dense_depth)]
    texts = [c.text for c in best]
    if asked != query:
        texts.append(asked)
    vectors = sentence_vectors(embedder, texts)
    question_vector = vectors.pop() if asked != query else query_vector
    for c, vec in zip(best, vectors):
        c.dense = float(np.dot(vec, question_vector))


def compose_read(question: str, found, reader, config: AnswerConfig = AnswerConfig(), *,
                 query: str | None = None, said: str = "", embedder=None) -> Composed:
    """The answer chosen by the reader: every sentence of the best passages (headlines and bylines left out,
    at most ``config.reader_limit``) is read with the question; the best passages are re-ordered by their best
    sentence; the articles don't say when no sentence reaches ``config.reader_threshold`` or the question fails
    the retrieval similarity gate. ``said`` is the previous turn's answer: a follow-up whose chosen sentences are
    all in it also gets the best sentence not said before (one the reader does not rule out), so a follow-up
    always brings something new, and repeats the previous answer only beside it. With ``embedder``, the first answer
    sentence is chosen with the cosine of the reader's best ``config.read_dense_depth`` with the question added."""
    passages = found.passages
    asked = reader_question(question, query or question)
    pool = _reader_pool(asked, passages, config)
    # No content word in what was searched ("?", "-", "exit"): nothing is asked about; the reader gave such
    # questions a confident answer from whatever sentence came first.
    if not pool or not query_terms(query or question):
        return Composed(NOT_FOUND, passages=passages)
    probs = reader.score(asked, [c.text for c in pool])
    best_by_rank: dict[int, float] = {}
    for c, p in zip(pool, probs):
        c.read = float(p)
        c.score = c.read + config.read_lexical_weight * c.lexical + config.read_rank_weight * c.prior
        best_by_rank[c.rank] = max(best_by_rank.get(c.rank, 0.0), c.read)
    ordered, renumber = rerank(passages, best_by_rank, config.rerank_weight, config.rerank_depth)
    for c in pool:
        c.rank = renumber[c.rank]
    confidence = max(c.read for c in pool)
    gated = config.similarity_gate and found.similarity < similarity_threshold(len(query_terms(asked)), config)
    if confidence < config.reader_threshold or gated:
        return Composed(NOT_FOUND, best_score=confidence, passages=ordered, read=len(pool))
    # Only an answer pays for the embeddings (they choose among sentences, not whether to answer).
    if embedder is not None and config.read_dense_weight and config.read_dense_depth:
        _add_dense(pool, asked, query or question, found.query_vector, embedder, config)
    # The cosine chooses the first answer sentence only: further sentences (the items of a list answer) are
    # measured against the best one as before, so the few sentences with a cosine do not crowd out the rest.
    # A short follow-up is read with the question it leans on; what it names anew ("What about China?" after a
    # question about steel) is what it asks about: among the sentences that name it, if any do. Read with the
    # earlier question, the earlier answer's sentence won again.
    named = _named_anew(question, query) if asked != question else set()
    about = [c for c in pool if named & {_stem(t) for t in query_terms(c.text)}] if named else []
    pool_read, pool = pool, about or pool
    best = max(pool, key=lambda c: (c.score + config.read_dense_weight * (c.dense or 0.0), -c.rank))
    many = bool(_LIST_CUE.search(question))
    limit = config.max_sentences if many else 2
    keep, ratio = (config.reader_list_keep, config.reader_list_keep_ratio) if many else \
        (config.reader_keep, config.reader_keep_ratio)
    floor = max(keep, ratio * best.read)
    ranked = sorted(pool, key=lambda c: (-c.score, c.rank, c.start))
    # Each further sentence of a list answer must name something the question asks about (a shared term), so
    # the list is made of items rather than of the best sentence's neighbours.
    chosen = [best] + [c for c in ranked if c is not best and c.read >= floor and c.score >= ratio * best.score
                       and (c.lexical > 0 or not many)]
    chosen = chosen[:limit]
    if said and all(c.text in said for c in chosen):
        fresh = next((c for c in ranked if c.text not in said and c.read >= config.reader_threshold), None)
        if fresh is not None:
            chosen = [fresh] + chosen[:max(1, limit - 1)]
    chosen.sort(key=lambda c: (c.rank, c.start))
    text = " ".join(f"{c.text} [{c.rank}]" for c in chosen)
    spans = [AnswerSpan(c.rank, c.doc_id, c.start, c.end) for c in chosen]
    return Composed(text, spans, True, confidence, passages=ordered, read=len(pool_read))
