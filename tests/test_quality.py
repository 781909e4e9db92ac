"""Retrieval quality on our own question set over the seed articles, and the parts of retrieval that make it:
weighted fusion, publisher and date cues, per-article diversity and near-duplicate removal.

The measured numbers (and the published baselines) are in docs/quality.md; `qa eval questions
tests/data/seed_questions.jsonl --articles seeds` prints them."""

from pathlib import Path

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from qa.evaluation import _holds, load_questions
from qa.lexical import date_cues, source_aliases
from qa.retrieval import RetrievalConfig, convex_fusion, min_max, named_sources, select

QUESTIONS = load_questions(Path(__file__).parent / "data" / "seed_questions.jsonl")
ANSWERABLE = [q for q in QUESTIONS if q.kind == "answerable"]
FOLLOWUPS = [q for q in QUESTIONS if q.kind == "followup"]
# Off-topic questions on subjects the articles never touch. The others ask about a detail of the articles' own
# subject that they do not state ("what did Mexico's president say about the steel tariffs?"); the reader declines
# some of them, and docs/quality.md counts how often they are answered anyway.
UNRELATED = {"o01", "o03", "o05", "o07", "o09", "o11", "o13", "o15"}

# Measured with the shipped settings (the reader on): the top passage holds the answer for 29 of 48 answerable
# questions (21 without the reader), the top three for 35 (docs/quality.md). The floors guard against regressions;
# the issue's targets are marked below.
TOP1_FLOOR = 0.55
TOP3_FLOOR = 0.70


@pytest.fixture(scope="module")
def asked(seed_index):
    return {q.id: seed_index.ask(q.question, k=5, history=q.history) for q in QUESTIONS}


def _share(asked, questions, depth):
    return sum(any(_holds(p, q) for p in asked[q.id].passages[:depth]) for q in questions) / len(questions)


def test_the_top_passage_holds_the_answer_for_most_answerable_questions(asked):
    assert _share(asked, ANSWERABLE, 1) >= TOP1_FLOOR


def test_the_top_three_passages_hold_the_answer_for_most_answerable_questions(asked):
    assert _share(asked, ANSWERABLE, 3) >= TOP3_FLOOR


@pytest.mark.xfail(strict=True, reason="issue target (top passage >= 90%, top three 100%) not reached with "
                   "all-MiniLM-L6-v2 and BM25 on these paraphrased questions; see docs/quality.md")
def test_issue_target_top_passage_for_nine_in_ten_and_top_three_for_all(asked):
    assert _share(asked, ANSWERABLE, 1) >= 0.9 and _share(asked, ANSWERABLE, 3) == 1.0


def test_every_followup_finds_its_answer_in_the_top_three_once_resolved(asked):
    for q in FOLLOWUPS:
        assert any(_holds(p, q) for p in asked[q.id].passages[:3]), q.id
        assert asked[q.id].query != q.question, q.id


def test_followups_do_worse_when_asked_without_the_conversation(seed_index, asked):
    alone = sum(any(_holds(p, q) for p in seed_index.search(q.question, k=3)) for q in FOLLOWUPS)
    resolved = sum(any(_holds(p, q) for p in asked[q.id].passages[:3]) for q in FOLLOWUPS)
    assert resolved > alone


def test_questions_on_unrelated_subjects_are_declined_with_weak_passages(asked):
    for qid in UNRELATED:
        answer = asked[qid]
        assert not answer.answerable and answer.answer == "The articles don't say.", qid
        assert answer.passages and all(p.weak for p in answer.passages), qid


def test_answerable_questions_are_rarely_declined(asked):
    declined = [q.id for q in ANSWERABLE + FOLLOWUPS if not asked[q.id].answerable]
    assert len(declined) <= 2, declined


def test_answer_spans_are_exact_slices_of_cited_passages(seed_index, asked):
    for q in ANSWERABLE:
        answer = asked[q.id]
        for span in answer.answer_spans:
            passage = answer.passages[span.rank - 1]
            assert passage.doc_id == span.doc_id and passage.start <= span.start < span.end <= passage.end
            text = seed_index.document(span.doc_id)["text"]
            assert f"{text[span.start:span.end]} [{span.rank}]" in answer.answer


# --- the parts ----------------------------------------------------------------------------------------------------


def test_convex_fusion_puts_both_scores_on_one_scale():
    dense = {1: 0.8, 2: 0.4, 3: 0.6}
    lexical = {1: 0.0, 2: 10.0, 3: 5.0}
    # Each score divided by the best one: cosines 1, 0.5, 0.75; BM25 0, 1, 0.5.
    assert convex_fusion(dense, lexical, lexical_weight=0.5) == pytest.approx({1: 0.5, 2: 0.75, 3: 0.625})
    assert convex_fusion(dense, lexical, lexical_weight=0.0) == pytest.approx({1: 1.0, 2: 0.5, 3: 0.75})
    # Min-max stretches the cosines over [0, 1] instead, so a near-tie becomes a gap.
    assert convex_fusion(dense, lexical, 0.0, "minmax") == pytest.approx({1: 1.0, 2: 0.0, 3: 0.5})
    assert min_max({1: 3.0, 2: 3.0}) == {1: 1.0, 2: 1.0}


def _row(cid, doc, text):
    return {"id": cid, "doc_id": doc, "text": text, "score": 1.0 / cid}


def test_one_article_cannot_fill_the_list_while_others_wait():
    ranked = [_row(1, "a", "one x"), _row(2, "a", "two x"), _row(3, "a", "three x"), _row(4, "b", "four x"),
              _row(5, "c", "five x")]
    assert [r["id"] for r in select(ranked, 4, per_article=2, duplicate_overlap=1.0)] == [1, 2, 4, 5]
    # With nothing else left, the waiting chunks fill the list.
    assert [r["id"] for r in select(ranked, 5, per_article=2, duplicate_overlap=1.0)] == [1, 2, 4, 5, 3]
    assert [r["id"] for r in select(ranked, 3, per_article=0, duplicate_overlap=1.0)] == [1, 2, 3]


def test_the_same_text_from_two_copies_of_an_article_appears_once():
    story = "Canada is one of only two countries that has retaliated against the tariffs, officials said on Friday."
    ranked = [_row(1, "wire-copy", story), _row(2, "site-copy", "Updated. " + story), _row(3, "other", "Unrelated text "
              "about the harbour ferry and the pier that will be rebuilt in the spring by the city.")]
    assert [r["id"] for r in select(ranked, 3, per_article=0, duplicate_overlap=0.7)] == [1, 3]
    assert [r["id"] for r in select(ranked, 3, per_article=0, duplicate_overlap=1.0)] == [1, 2, 3]


def test_dates_named_in_a_question_are_read_in_common_forms():
    assert date_cues("After the TechCrunch report on October 7, 2023, and the one of 30th Oct. 2023") == {
        "2023-10-07", "2023-10-30"}
    assert date_cues("published 2023-12-01") == {"2023-12-01"}
    assert date_cues("on February 30, 2023 or in 2023") == set()


def test_a_publisher_is_known_by_its_name_before_the_tagline():
    assert source_aliases("The Independent - Life and Style") == ["The Independent - Life and Style",
                                                                   "The Independent"]
    assert source_aliases("Cnbc | World Business News Leader")[-1] == "Cnbc"


def test_publishers_named_in_a_question_are_matched_as_names_not_words(fake_index):
    fake_index.add_text("Rates rose again.", title="Rates", source="Fortune", date="2023-10-07")
    fake_index.add_text("A new phone.", title="Phone", source="The Verge", date="2023-10-08")
    fake_index.add_text("Cricket scores.", title="Cricket", source="The Age", date="2023-10-09")
    store = fake_index.live()
    assert named_sources(store, "What did Fortune and the Verge report?") == {"Fortune", "The Verge"}
    assert named_sources(store, "Is good fortune in the age of AI wired?") == set()


class _Publishers:
    """A store as named_sources sees one: its publishers, at one write stamp."""

    def __init__(self, names):
        self.names = names

    def stamp(self):
        return 0

    def sources(self):
        return self.names


PUBLISHERS = _Publishers(["Fortune", "The Verge", "The Age", "TechCrunch", "Sky News", "BBC News",
                          "The Independent - Life and Style", "Cnbc | World Business News Leader", "Straße Zeitung"])
PIECES = ["Fortune", "fortune", "the Verge", "THE VERGE", "The Age", "age", "TechCrunch's", "Sky", "ſky News", "news",
          "BBC", "The Independent", "Independent", "CNBC", "Cnbc", "STRASSE Zeitung", "Straße Zeitung", "what", "and",
          ",", "?", "(The", "Age)", "2023"]


@hypothesis_settings(max_examples=300, deadline=None)
@given(question=st.lists(st.sampled_from(PIECES), min_size=1, max_size=8).map(" ".join))
def test_looking_only_for_names_whose_first_word_is_there_finds_what_every_pattern_finds(question):
    import re

    expected = set()
    for name in PUBLISHERS.sources():
        for alias in source_aliases(name):
            for m in re.finditer(r"(?<!\w)" + re.escape(alias) + r"(?!\w)", question, re.IGNORECASE):
                last = m.group(0).split()[-1]
                if last[:1].isupper() or last[:1].isdigit():
                    expected.add(name)
    assert named_sources(PUBLISHERS, question) == expected


def test_a_question_naming_a_publisher_and_a_day_ranks_that_article_first(fake_index):
    text = "The central bank raised interest rates by a quarter point to fight inflation."
    fake_index.add_text(text + " Markets fell.", title="Rates up", source="Fortune", date="2023-10-07")
    fake_index.add_text(text + " Markets rose.", title="Rates up", source="TechCrunch", date="2023-10-08")
    plain = RetrievalConfig(source_boost=0.0, date_boost=0.0, duplicate_overlap=1.0)
    cued = RetrievalConfig(duplicate_overlap=1.0)
    for question, source in [("According to TechCrunch, why did the central bank raise interest rates?", "TechCrunch"),
                             ("Why did the central bank raise rates, as reported on October 7, 2023?", "Fortune")]:
        vector = fake_index.embedder.encode([question])[0]
        top = fake_index._retrieve(question, 2, query_vector=vector, config=cued).passages[0]
        assert top.source == source
        assert {p.source for p in fake_index._retrieve(question, 2, query_vector=vector, config=plain).passages} == {
            "Fortune", "TechCrunch"}


def test_retrieval_settings_read_from_strings_and_reject_unknown_names():
    config = RetrievalConfig().with_(lexical_weight="0.25", per_article="2", bm25_weights="2,1,1", mode="bm25")
    assert (config.lexical_weight, config.per_article, config.bm25_weights, config.mode) == (0.25, 2, (2.0, 1.0, 1.0),
                                                                                            "bm25")
    with pytest.raises(ValueError):
        RetrievalConfig().with_(nonsense="1")
    with pytest.raises(ValueError):
        RetrievalConfig(mode="magic")
