"""Question–sentence pairs for training and evaluating the reader, from public data only (``../shared/data``).

The recipe is QNLI's (GLUE), rebuilt from SQuAD: a question paired with a sentence of its paragraph is positive when
the sentence holds the answer, negative otherwise. SQuAD 2.0's unanswerable questions add what SQuAD 1.1 lacks:
questions written to look answerable by their paragraph, every sentence of which is a negative — the "near-topic
question the articles don't answer" that the product must refuse. Sentences are split by the product's own splitter,
so the model trains on the units it will read.

Splits (never tuned on, never trained on: SQuAD 2.0 ``test`` articles, WikiQA and TrecQA test):

- SQuAD 1.1 train: training pairs (CC BY-SA 4.0).
- SQuAD 2.0 dev (35 articles) is split by a fixed hash of the article title into ``train`` (about half),
  ``dev`` (about a sixth: thresholds are chosen on it) and ``test`` (the rest: reported).
- WikiQA and TrecQA are research-only: evaluation only, never in the shipped weights.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .chunking import split_sentences

_WORD = re.compile(r"\w+")
_STOP = frozenset(
    """a an the of in on at to for from by with and or but is are was were be been being do does did what which who
    whom whose when where why how that this these those it its as than then there their they he she his her him
    them we you your our i me my not no any some into about over after before during""".split()
)


@dataclass(frozen=True)
class Pair:
    """One training or evaluation example: ``label`` 1 when ``sentence`` answers ``question``."""

    question: str
    sentence: str
    label: int
    group: str  # the question's id: pairs of one question are ranked together in evaluation


@dataclass
class Question:
    """A question with the sentences of its paragraph and which of them answer it (none: unanswerable)."""

    qid: str
    question: str
    sentences: list[str]
    positives: set[int]
    plausible: set[int]  # SQuAD 2.0: sentences holding a plausible but wrong answer (the hardest negatives)
    answers: tuple[str, ...] = ()  # the answer texts (SQuAD): a sentence holding one is never a negative
    elsewhere: list[str] = field(default_factory=list)  # sentences of the article's other paragraphs (``with_article``)


def content_words(text: str) -> set[str]:
    """Lower-cased words that are not stop words: the basis of the lexical hard-negative choice."""
    return set(_content_words(text))


@lru_cache(maxsize=200_000)
def _content_words(text: str) -> frozenset[str]:
    return frozenset(w for w in _WORD.findall(text.lower()) if w not in _STOP)


def _sentence_of(spans: list[tuple[int, int]], start: int, end: int) -> int | None:
    """The index of the sentence holding the character range, or None when it crosses a sentence boundary."""
    for i, (s, e) in enumerate(spans):
        if s <= start and end <= e:
            return i
    return None


def squad_questions(path: Path, *, articles: set[str] | None = None, with_article: bool = False) -> list[Question]:
    """Questions of a SQuAD-format file (1.1 or 2.0), each with its paragraph's sentences (and, ``with_article``,
    the sentences of the article's other paragraphs). An answerable question whose answer crosses a sentence
    boundary is left out (it has no single answer sentence)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    out: list[Question] = []
    for article in data:
        if articles is not None and article["title"] not in articles:
            continue
        split = [(p["context"], split_sentences(p["context"])) for p in article["paragraphs"]]
        for n, paragraph in enumerate(article["paragraphs"]):
            context, spans = split[n]
            sentences = [context[s:e] for s, e in spans]
            elsewhere = ([c[s:e] for m, (c, sp) in enumerate(split) if m != n for s, e in sp] if with_article
                         else [])
            for qa in paragraph["qas"]:
                def located(answers):
                    found = set()
                    for a in answers:
                        i = _sentence_of(spans, a["answer_start"], a["answer_start"] + len(a["text"]))
                        if i is not None and context[a["answer_start"]:a["answer_start"] + len(a["text"])] == a["text"]:
                            found.add(i)
                    return found

                impossible = bool(qa.get("is_impossible"))
                positives = set() if impossible else located(qa["answers"])
                if not impossible and not positives:
                    continue
                plausible = located(qa.get("plausible_answers", [])) if impossible else set()
                answers = tuple(a["text"] for a in qa.get("answers") or [] if a.get("text"))
                out.append(Question(qa["id"], qa["question"], sentences, positives, plausible, answers, elsewhere))
    return out


def squad2_split(title: str) -> str:
    """``train``, ``dev`` or ``test`` for a SQuAD 2.0 dev article, by a fixed hash of its title."""
    bucket = int(hashlib.sha256(f"qa-reader-2026:squad2:{title}".encode()).hexdigest(), 16) % 12
    return "train" if bucket < 6 else "dev" if bucket < 8 else "test"


def squad2_titles(path: Path, split: str) -> set[str]:
    """The SQuAD 2.0 article titles in one split."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    return {a["title"] for a in data if squad2_split(a["title"]) == split}


def training_pairs(q: Question, rng: random.Random, *, hard: int = 1, easy: int = 1, near: int = 0) -> list[Pair]:
    """The positive sentence(s) of ``q`` and a few negatives: the sentences sharing most content words with the
    question (what a lexical retriever would surface; a plausible-answer sentence first), random others and, with
    ``near``, the sentences of the article's other paragraphs sharing most words with it that hold no answer text:
    the near-topic text a news question finds in other articles on its subject, where no sentence answers."""
    pairs = [Pair(q.question, q.sentences[i], 1, q.qid) for i in sorted(q.positives)]
    pairs += [Pair(q.question, s, 0, q.qid) for s in near_topic_sentences(q, near)]
    others = [i for i in range(len(q.sentences)) if i not in q.positives and len(q.sentences[i].split()) >= 3]
    if not others:
        return pairs
    words = content_words(q.question)
    by_overlap = sorted(others, key=lambda i: (i not in q.plausible, -len(words & content_words(q.sentences[i])), i))
    chosen = by_overlap[:hard]
    rest = [i for i in others if i not in chosen]
    chosen += rng.sample(rest, min(easy, len(rest)))
    pairs += [Pair(q.question, q.sentences[i], 0, q.qid) for i in chosen]
    return pairs


def near_topic_sentences(q: Question, count: int) -> list[str]:
    """The ``count`` sentences of ``q.elsewhere`` sharing most content words with the question (at least one),
    leaving out any that holds an answer text (it may answer the question too)."""
    if count <= 0 or not q.elsewhere:
        return []
    words = content_words(q.question)
    answers = [a.lower() for a in q.answers]
    scored = []
    for i, s in enumerate(q.elsewhere):
        overlap = len(words & _content_words(s))
        if overlap and len(s.split()) >= 3 and not any(a in s.lower() for a in answers):
            scored.append((-overlap, i))
    return [q.elsewhere[i] for _, i in sorted(scored)[:count]]


def build_training_set(data_dir: Path, *, squad1_questions: int, seed: int = 13, squad1_skip: int = 0,
                       hard: int = 1, easy: int = 1, near: int = 0) -> list[Pair]:
    """Shuffled training pairs: ``squad1_questions`` SQuAD 1.1 train questions after the first ``squad1_skip`` of a
    fixed shuffle (one positive, ``hard`` lexical, ``easy`` random and ``near`` near-topic negatives from the
    article's other paragraphs each; a later stage skips the questions an earlier one used) and every question of
    the SQuAD 2.0 ``train`` articles (unanswerable ones give ``hard + 1`` hard negatives: learning that no sentence
    answers them is the point)."""
    rng = random.Random(seed)
    data_dir = Path(data_dir)
    squad1 = squad_questions(data_dir / "squad-v1.1" / "train-v1.1.explorer.json", with_article=near > 0)
    rng.shuffle(squad1)
    pairs: list[Pair] = []
    for q in squad1[squad1_skip:squad1_skip + squad1_questions]:
        pairs += training_pairs(q, rng, hard=hard, easy=easy, near=near)
    v2 = data_dir / "squad-v2" / "dev-v2.0.json"
    for q in squad_questions(v2, articles=squad2_titles(v2, "train")):
        pairs += training_pairs(q, rng, hard=hard + 1 if not q.positives else hard, easy=0 if not q.positives else 1)
    rng.shuffle(pairs)
    return pairs


# --- evaluation sets ---------------------------------------------------------------------------------------------
def wikiqa_questions(data_dir: Path, split: str = "test") -> list[Question]:
    """WikiQA questions of one split with their candidate sentences; research-only licence: evaluation only.
    Questions with no correct sentence are kept (the filtered protocol drops them when scoring MAP)."""
    rows = (Path(data_dir) / "wikiqa" / f"WikiQA-{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
    grouped: dict[str, Question] = {}
    for line in rows:
        qid, question, _doc, _title, _sid, sentence, label = line.split("\t")
        q = grouped.setdefault(qid, Question(qid, question, [], set(), set()))
        if label.strip() == "1":
            q.positives.add(len(q.sentences))
        q.sentences.append(sentence)
    return list(grouped.values())


def trecqa_questions(data_dir: Path, split: str = "clean-test") -> list[Question]:
    """TrecQA (news, lower-cased and tokenised) questions of one split; research-only: evaluation only."""
    folder = Path(data_dir) / "trecqa" / split
    read = lambda name: (folder / name).read_text(encoding="utf-8").splitlines()  # noqa: E731
    grouped: dict[str, Question] = {}
    for qid, question, sentence, label in zip(read("id.txt"), read("a.toks"), read("b.toks"), read("sim.txt")):
        q = grouped.setdefault(qid, Question(qid, question, [], set(), set()))
        if label.strip() == "1":
            q.positives.add(len(q.sentences))
        q.sentences.append(sentence)
    return list(grouped.values())
