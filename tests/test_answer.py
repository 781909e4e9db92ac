"""Extractive answers: cited sentences located in their articles, list answers from several sentences, "the
articles don't say" with weak passages, and follow-ups resolved against the conversation."""

import re

import pytest

from qa.answer import NOT_FOUND, candidates, compose, resolve_followup
from qa.records import Passage
from qa.retrieval import Retrieved

from conftest import RETALIATION_DOC, FakeEmbedder


def _passage(rank, doc_id, article, start, end):
    return Passage(rank=rank, doc_id=doc_id, title="", date="", chunk_no=0, start=start, end=end,
                   text=article[start:end], score=1.0)


ARTICLE = ("Storms closed the harbour on Monday. The ferry service resumed on Wednesday after repairs. "
           "Officials said the pier would be rebuilt by spring.")
OTHER = "The mayor thanked volunteers. The ferry service carried 900 passengers on Thursday."


def _found(question, passages, embedder, similarity=0.9):
    return Retrieved(passages, embedder.encode([question])[0], similarity, [similarity] * len(passages))


def test_the_answer_is_whole_sentences_each_followed_by_its_passage_number():
    fake = FakeEmbedder()
    passages = [_passage(1, "a", ARTICLE, 0, len(ARTICLE)), _passage(2, "b", OTHER, 0, len(OTHER))]
    got = compose("when did the ferry service resume after repairs", _found("when did the ferry service resume "
                  "after repairs", passages, fake), fake)
    assert got.answerable
    assert got.text.startswith("The ferry service resumed on Wednesday after repairs. [1]")
    articles = {"a": ARTICLE, "b": OTHER}
    for span in got.spans:
        assert f"{articles[span.doc_id][span.start:span.end]} [{span.rank}]" in got.text


def test_sentence_candidates_skip_repeats_from_overlapping_chunks_and_keep_article_offsets():
    first = _passage(1, "a", ARTICLE, 0, 93)  # the first two sentences
    overlap = _passage(2, "a", ARTICLE, 37, len(ARTICLE))  # the second sentence again, then the third
    pool = candidates([first, overlap], limit=3)
    assert [ARTICLE[c.start:c.end] for c in pool] == [
        "Storms closed the harbour on Monday.", "The ferry service resumed on Wednesday after repairs.",
        "Officials said the pier would be rebuilt by spring."]
    assert [c.rank for c in pool] == [1, 1, 2]


def test_nothing_close_enough_means_the_articles_dont_say():
    fake = FakeEmbedder()
    passages = [_passage(1, "a", ARTICLE, 0, len(ARTICLE))]
    got = compose("who won the super bowl", _found("who won the super bowl", passages, fake, similarity=0.05), fake)
    assert (got.text, got.spans, got.answerable) == (NOT_FOUND, [], False)


def test_a_list_question_combines_the_canada_and_the_china_sentences(seed_index):
    answer = seed_index.ask("which countries retaliated?")
    assert answer.answerable
    assert "Canada is one of only two countries that has retaliated" in answer.answer
    assert "The only other country to hit back with countertariffs is China." in answer.answer
    for span in answer.answer_spans:
        text = seed_index.document(span.doc_id)["text"]
        assert f"{text[span.start:span.end]} [{span.rank}]" in answer.answer
        passage = answer.passages[span.rank - 1]
        assert passage.doc_id == span.doc_id and passage.start <= span.start < span.end <= passage.end


def test_an_unrelated_question_is_declined_but_the_nearest_passages_are_listed_as_weak(seed_index):
    answer = seed_index.ask("Who won the 2024 Super Bowl?")
    assert not answer.answerable and answer.answer == NOT_FOUND and answer.answer_spans == []
    assert answer.passages and all(p.weak for p in answer.passages)


def test_answered_questions_list_strong_passages(seed_index):
    answer = seed_index.ask("Which country besides Canada hit back with countertariffs?")
    assert answer.answerable and not any(p.weak for p in answer.passages)
    assert answer.passages[0].doc_id == RETALIATION_DOC


def test_a_followup_that_leans_on_the_previous_question_is_searched_with_it():
    history = [{"question": "What tariffs did the U.S. put on steel?", "answer": "50 per cent."}]
    assert resolve_followup("And what did the steel industry say about it?", history) == (
        "What tariffs did the U.S. put on steel? And what did the steel industry say about it?")
    assert resolve_followup("Who is he?", history).startswith("What tariffs did the U.S. put on steel?")


def test_a_self_contained_question_or_an_empty_history_is_searched_as_asked():
    history = [{"question": "What tariffs did the U.S. put on steel?"}]
    question = "Where is the APEC summit where Carney will see Trump?"
    assert resolve_followup(question, history) == question
    assert resolve_followup("And what about it?", []) == "And what about it?"
    assert resolve_followup("And what about it?", [{"answer": "no question here"}, "junk"]) == "And what about it?"


def test_the_followup_pair_retrieves_the_article_on_the_doubled_steel_tariffs(seed_index):
    answer = seed_index.ask("And what did the steel industry say about it?",
                            history=[{"question": "What tariffs did the U.S. put on steel?"}])
    assert answer.query.startswith("What tariffs did the U.S. put on steel?")
    assert any("crushing blow" in p.text for p in answer.passages[:3])


def test_answer_sentences_are_embedded_once_and_reused(seed_index):
    """A second identical question embeds nothing but the question: the sentence vectors are cached."""
    seed_index.ask("How many rounds of retaliatory measures has Canada imposed?")
    embedder = seed_index.embedder
    calls = []
    original = embedder.encode

    def counting(texts, **kw):
        calls.append(len(texts))
        return original(texts, **kw)

    embedder.encode = counting
    try:
        seed_index.ask("How many rounds of retaliatory measures has Canada imposed?")
    finally:
        del embedder.encode
    assert calls == [1]


# --- footnote marks pasted from encyclopedias ----------------------------------------------------------------------
def test_a_lead_sentence_ending_in_footnote_marks_is_no_headline():
    from qa.answer import Candidate, is_heading

    lead = "The Harbour bridge will close for repairs for six weeks starting in April.[12]"
    article = lead + " The work will cost 18 million dollars.[13]"
    passage = _passage(1, "bridge", article, 0, len(article))
    for text in (lead, lead[:-4] + "[a]", lead[:-4] + "[12][13]", lead[:-4] + "[citation needed]"):
        assert not is_heading(Candidate(1, "bridge", 0, len(text), text), passage), text
    # A first line without end punctuation is still a headline, marks or not.
    for text in ("Harbour bridge to close for repairs", "Harbour bridge to close for repairs[1]"):
        assert is_heading(Candidate(1, "bridge", 0, len(text), text), passage), text


BRIDGE = ("The Harbour bridge will close for repairs for six weeks starting in April.[12] The work will cost 18 "
          "million dollars.[13]\n\nEngineers found cracks in two of the bridge's support cables during an inspection "
          "in January.[14]")


def test_an_article_with_footnote_marks_answers_from_its_lead_sentence(index):
    from qa.records import Article

    index.rebuild([
        Article("bridge", BRIDGE, title="Harbour bridge repairs", date="2025-03-05", source="Valley News"),
        Article("ferry", "Ferry crossings to the islands were cancelled on Monday because of high winds. Commuters "
                "waited up to 90 minutes for a boat on Monday morning.", title="Ferries cancelled",
                date="2025-03-03"),
        Article("school", "A new elementary school opened in Dartmouth on Friday. It has room for 600 students and "
                "cost 40 million dollars to build.", title="School opens", date="2025-02-21"),
    ])
    for question, said in (("How long will the Harbour bridge close for repairs?", "six weeks"),
                           ("How much will the bridge work cost?", "18 million dollars")):
        answer = index.ask(question, k=3)
        assert answer.answerable and said in answer.answer, (question, answer.answer)
        first = answer.answer_spans[0]
        assert first.doc_id == "bridge" and said in BRIDGE[first.start:first.end]
        # The encyclopedia's marks after the sentence are left out of it: beside "[1]" they read as citations.
        assert not re.search(r"\.\[\d+\]", answer.answer) and BRIDGE[first.end] == "["
        for span in answer.answer_spans:
            assert index.document(span.doc_id)["text"][span.start:span.end] in answer.answer
        for p in answer.passages:
            assert index.document(p.doc_id)["text"][p.start:p.end] == p.text
