"""The reader: it reads the question with each sentence, chooses the answer sentences, re-ranks passages, says "the
articles don't say" when no sentence answers, and answers a follow-up with the sentence that answers it rather than
the previous answer. Plumbing is tested with a fake reader; behaviour with the shipped model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qa.answer import NOT_FOUND, AnswerConfig, Candidate, compose_read, is_heading, reader_question, rerank
from qa.records import Passage
from qa.reader import DEFAULT_DIR, MODEL_NAME, OnnxReader
from qa.reader_data import Question, squad_questions, training_pairs
from qa.reader_eval import answerability, average_precision
from qa.retrieval import Retrieved

ARTICLE = ("Ferry workers walk out over pay\n"
           "By Jane Doe\n"
           "Ferry workers went on strike on Monday, stranding about 4,000 passengers at the harbour. "
           "The union demanded a 9 per cent raise and a cap on overtime. "
           "Managers said talks would resume in March.")


class KeywordReader:
    """A fake reader for plumbing: a sentence answers when it holds the keyword the test chose for the question."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.read: list[tuple[str, list[str]]] = []

    def score(self, question, sentences):
        self.read.append((question, list(sentences)))
        key = self.answers.get(question, "\0")
        return np.array([0.9 if key in s else 0.01 for s in sentences], dtype=np.float32)


def _passage(rank, start, end, score=1.0, doc_id="strike", title="Ferry workers walk out over pay"):
    return Passage(rank=rank, doc_id=doc_id, title=title, date="", chunk_no=0, start=start, end=end,
                   text=ARTICLE[start:end], score=score)


def _found(passages, question_vector=(0.0, 0.0)):
    return Retrieved(passages, np.array(question_vector, dtype=np.float32), 0.9, [0.9] * len(passages))


def test_the_reader_chooses_the_sentence_that_answers_and_cites_it_by_offsets():
    reader = KeywordReader({"What did the union demand?": "raise"})
    got = compose_read("What did the union demand?", _found([_passage(1, 0, len(ARTICLE))]), reader)
    assert got.answerable
    assert got.text == "The union demanded a 9 per cent raise and a cap on overtime. [1]"
    (span,) = got.spans
    assert ARTICLE[span.start:span.end] == "The union demanded a 9 per cent raise and a cap on overtime."
    assert got.read == len(reader.read[0][1])


def test_headlines_and_bylines_are_never_read_as_answers():
    reader = KeywordReader({"Why did ferry workers walk out?": "walk out"})
    got = compose_read("Why did ferry workers walk out?", _found([_passage(1, 0, len(ARTICLE))]), reader)
    read = reader.read[0][1]
    assert "Ferry workers walk out over pay" not in read and "By Jane Doe" not in read
    assert (got.text, got.answerable) == (NOT_FOUND, False)


def test_heading_rules():
    p = _passage(1, 0, len(ARTICLE))
    title_end = ARTICLE.index("\n")
    assert is_heading(Candidate(1, "strike", 0, title_end, ARTICLE[:title_end]), p)
    assert is_heading(Candidate(1, "strike", 0, 0, "By Jane Doe"), p)
    assert is_heading(Candidate(1, "strike", 50, 70, "Updated 3 March 2025"), p)
    assert not is_heading(Candidate(1, "strike", 50, 90, "Bystanders said the strike was peaceful."), p)


def _lone(text: str, title: str) -> tuple[Passage, callable]:
    passage = Passage(rank=1, doc_id="wire", title=title, date="", chunk_no=0, start=0, end=len(text), text=text,
                      score=1.0)

    def candidate(sentence: str) -> Candidate:
        start = text.index(sentence)
        return Candidate(1, "wire", start, start + len(sentence), sentence)
    return passage, candidate


def test_a_lead_sentence_the_title_was_made_from_is_no_headline():
    """An article without a headline line is titled by its first sentence (qa.ingest.derive_title); that sentence
    was then never read, so a question it answers got "the articles don't say"."""
    lead = "LONDON (Reuters) - British inflation rose to 3.5% in May, official data showed on Wednesday."
    passage, candidate = _lone(f"{lead}\n\nEconomists had expected a smaller rise.", lead)
    assert not is_heading(candidate(lead), passage)
    short = "Inflation rose to 3.5% in May."
    passage, candidate = _lone(f"{short} Economists had expected less.\n\nPrices of food rose most.", short)
    assert not is_heading(candidate(short), passage)  # it shares its line: the first sentence, not a headline
    headline = "Inflation rises to 3.5%"
    passage, candidate = _lone(f"{headline}\n{lead}", headline)
    assert is_heading(candidate(headline), passage)


@pytest.mark.parametrize("line", [
    "Related: Why the mayor resigned after the audit found a gap",
    "Read more: Who will replace the mayor",
    "(Reporting by Jane Doe; Editing by Tom Brown)",
    "Additional reporting by Tom Brown in Ottawa",
    "FILE PHOTO: The mayor speaks at city hall in Springfield, June 1, 2025.",
    "REUTERS/Jane Doe/File Photo",
    "(Photo by John Smith/Getty Images)",
    "Copyright 2025 The Associated Press. All rights reserved.",
    "Sign up for our daily newsletter to get the latest news",
    "The Trump Effect: Why foreign investors are bailing on Canada",
])
def test_credits_and_link_lines_are_never_answers(line):
    """Worded like the story, they were chosen as answers ("Related: Why Canada's tariffs …" answered "Why is
    Canada removing its tariffs?")."""
    passage, candidate = _lone(f"The mayor resigned on Monday.\n{line}\nThe council meets on Friday.", "Mayor resigns")
    assert is_heading(candidate(line), passage)


@pytest.mark.parametrize("line", ["Population: 5 million", "By Friday, the talks had collapsed over the 9 per cent "
                                  "raise the union wanted.", "Steel and aluminium: the tariffs stay."])
def test_fact_lines_and_sentences_are_answers(line):
    passage, candidate = _lone(f"The mayor resigned on Monday.\n{line}\nThe council meets on Friday.", "Mayor resigns")
    assert not is_heading(candidate(line), passage)


def test_no_sentence_answering_means_the_articles_dont_say_and_passages_stay_listed():
    got = compose_read("Who won the Super Bowl?", _found([_passage(1, 0, len(ARTICLE))]), KeywordReader({}))
    assert (got.text, got.spans, got.answerable) == (NOT_FOUND, [], False)
    assert [p.rank for p in got.passages] == [1]


def test_a_passage_with_the_answering_sentence_moves_up_and_ranks_are_renumbered():
    second_start = ARTICLE.index("The union")
    passages = [_passage(1, 0, second_start - 1, score=1.0), _passage(2, second_start, len(ARTICLE), score=0.9)]
    reader = KeywordReader({"What did the union demand?": "raise"})
    got = compose_read("What did the union demand?", _found(passages), reader)
    assert [p.start for p in got.passages] == [second_start, 0]
    assert [p.rank for p in got.passages] == [1, 2]
    assert got.text.endswith("[1]") and got.spans[0].rank == 1


def test_rerank_keeps_the_retrieval_order_when_the_reader_has_no_opinion():
    passages = [_passage(n, 0, 10, score=1.0 - n / 10) for n in (1, 2, 3)]
    ordered, renumber = rerank(passages, {}, 0.5)
    assert [p.score for p in ordered] == sorted((p.score for p in ordered), reverse=True)
    assert renumber == {1: 1, 2: 2, 3: 3}


def test_the_reader_reads_the_question_as_asked_unless_it_is_too_short_to_stand_alone():
    assert reader_question("What did the union demand?", "How many were stranded? What did the union demand?") \
        == "What did the union demand?"
    assert reader_question("And China?", "Which countries retaliated? And China?") \
        == "Which countries retaliated? And China?"


def test_sentences_read_are_bounded():
    long_article = " ".join(f"Sentence number {n} says something." for n in range(100))
    p = Passage(rank=1, doc_id="d", title="", date="", chunk_no=0, start=0, end=len(long_article),
                text=long_article, score=1.0)
    reader = KeywordReader({})
    compose_read("What does sentence 7 say?", _found([p]), reader, AnswerConfig(reader_limit=10))
    assert len(reader.read[0][1]) == 10


QUESTION_VECTOR = (1.0, 0.0)


class MeaningEmbedder:
    """A fake embedding model for plumbing: unit vectors whose cosine with ``QUESTION_VECTOR`` the test chooses."""

    def __init__(self, cosines: dict[str, float]):
        self.cosines = cosines
        self.encoded: list[str] = []

    def encode(self, texts, **_):
        self.encoded += texts
        return np.array([[c, (1 - c * c) ** 0.5] for c in (self.cosines.get(t, 0.0) for t in texts)],
                        dtype=np.float32)


def test_between_sentences_the_reader_rates_alike_the_one_closer_in_meaning_answers():
    reader = KeywordReader({})
    reader.score = lambda q, sentences: np.array(
        [0.45 if "raise" in s else 0.4 if "March" in s else 0.01 for s in sentences], dtype=np.float32)
    march = "Managers said talks would resume in March."
    embedder = MeaningEmbedder({march: 0.8, "The union demanded a 9 per cent raise and a cap on overtime.": 0.2})
    question = "When do negotiations restart?"
    passages = [_passage(1, 0, len(ARTICLE))]
    alone = compose_read(question, _found(passages, QUESTION_VECTOR), reader)
    assert alone.text == "The union demanded a 9 per cent raise and a cap on overtime. [1]"
    got = compose_read(question, _found([_passage(1, 0, len(ARTICLE))], QUESTION_VECTOR), reader,
                       AnswerConfig(read_dense_depth=2), embedder=embedder)
    assert got.text == f"{march} [1]"
    # Only the reader's best two were embedded; the question's own vector came with the search.
    assert sorted(embedder.encoded) == sorted([march, "The union demanded a 9 per cent raise and a cap on overtime."])


def test_a_declined_question_costs_no_embedding_and_a_follow_up_is_compared_as_asked():
    embedder = MeaningEmbedder({})
    compose_read("Who won the Super Bowl?", _found([_passage(1, 0, len(ARTICLE))], QUESTION_VECTOR),
                 KeywordReader({}), embedder=embedder)
    assert embedder.encoded == []
    reader = KeywordReader({"What did the union demand?": "raise"})
    compose_read("What did the union demand?", _found([_passage(1, 0, len(ARTICLE))], QUESTION_VECTOR), reader,
                 AnswerConfig(read_dense_depth=1), query="How many were stranded? What did the union demand?",
                 embedder=embedder)
    assert embedder.encoded[-1] == "What did the union demand?"


# --- training and evaluation data --------------------------------------------------------------------------------
def test_squad_questions_find_the_answer_sentence(tmp_path):
    context = "Paris is in France. Its mayor is Anne Hidalgo. The river is the Seine."
    data = {"data": [{"title": "Paris", "paragraphs": [{"context": context, "qas": [
        {"id": "q1", "question": "Who is the mayor?", "answers": [{"text": "Anne Hidalgo",
                                                                     "answer_start": context.index("Anne")}]},
        {"id": "q2", "question": "Who is the king?", "answers": [], "is_impossible": True,
         "plausible_answers": [{"text": "Anne Hidalgo", "answer_start": context.index("Anne")}]},
    ]}]}]}
    path = tmp_path / "squad.json"
    import json

    path.write_text(json.dumps(data))
    q1, q2 = squad_questions(path)
    assert q1.sentences[next(iter(q1.positives))] == "Its mayor is Anne Hidalgo."
    assert q2.positives == set() and q2.plausible == {1}
    pairs = training_pairs(q2, __import__("random").Random(0), hard=1, easy=0)
    assert [(p.sentence, p.label) for p in pairs] == [("Its mayor is Anne Hidalgo.", 0)]


def test_ranking_and_answerability_metrics():
    assert average_precision(np.array([0.9, 0.8, 0.1]), {1}) == (0.5, 0.5)

def test_near_topic_negatives_come_from_the_article_s_other_paragraphs_and_never_hold_the_answer(tmp_path):
    """Another paragraph of the same article is what a news question finds on its subject without its answer."""
    first = "The mayor of Paris is Anne Hidalgo. She was elected in 2014."
    second = "The mayor of Lyon is another person. Paris has a mayor called Anne Hidalgo too. Bread is sold daily."
    data = {"data": [{"title": "Cities", "paragraphs": [
        {"context": first, "qas": [{"id": "q1", "question": "Who is the mayor of Paris?",
                                     "answers": [{"text": "Anne Hidalgo", "answer_start": first.index("Anne")}]}]},
        {"context": second, "qas": []},
    ]}]}
    path = tmp_path / "squad.json"
    path.write_text(__import__("json").dumps(data))
    (q,) = squad_questions(path, with_article=True)
    assert q.elsewhere == ["The mayor of Lyon is another person.", "Paris has a mayor called Anne Hidalgo too.",
                           "Bread is sold daily."]
    pairs = training_pairs(q, __import__("random").Random(0), hard=0, easy=0, near=2)
    # The Lyon sentence shares "mayor"; the Hidalgo one holds the answer text; the bread one shares no word.
    assert [(p.sentence, p.label) for p in pairs] == [("The mayor of Paris is Anne Hidalgo.", 1),
                                                     ("The mayor of Lyon is another person.", 0)]
    (plain,) = squad_questions(path)
    assert plain.elsewhere == [] and training_pairs(plain, __import__("random").Random(0), hard=0, easy=0, near=2) \
        == pairs[:1]

    assert average_precision(np.array([0.9, 0.8, 0.1]), {0, 2}) == ((1 + 2 / 3) / 2, 1.0)
    yes = Question("a", "q", ["x", "y"], {1}, set())
    no = Question("b", "q", ["x", "y"], set(), set())
    got = answerability([yes, no], [np.array([0.2, 0.7]), np.array([0.3, 0.4])], threshold=0.5)
    assert got["top sentence right"] == 1.0 and got["accuracy"] == 1.0


# --- the shipped model -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reader():
    if not (DEFAULT_DIR / MODEL_NAME).exists():
        pytest.fail(f"the shipped reader is missing: {DEFAULT_DIR / MODEL_NAME} (run `make reader`)")
    return OnnxReader(DEFAULT_DIR, threads=2)


def test_the_shipped_model_is_int8_and_small():
    size = (DEFAULT_DIR / MODEL_NAME).stat().st_size
    assert size <= 25 * 1024 * 1024


def test_the_real_reader_prefers_the_answering_sentence(reader):
    sentences = ["Ferry workers went on strike on Monday, stranding about 4,000 passengers at the harbour.",
                 "The union demanded a 9 per cent raise and a cap on overtime.",
                 "Managers said talks would resume in March."]
    probs = reader.score("What did the union demand?", sentences)
    assert int(np.argmax(probs)) == 1
    probs = reader.score("How many passengers were stranded?", sentences)
    assert int(np.argmax(probs)) == 0
    assert float(reader.score("Who won the Stanley Cup in 2023?", sentences).max()) < AnswerConfig().reader_threshold


def test_a_question_of_the_longest_allowed_length_is_read(reader):
    probs = reader.score("why " * 500, ["A short sentence.", "Another sentence that is a little longer than that."])
    assert probs.shape == (2,) and np.all((probs >= 0) & (probs <= 1))



TRECQA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "trecqa"


@pytest.mark.slow
def test_the_embedding_cosine_beside_the_reader_ranks_news_answer_sentences_better(reader, embedder):
    """TrecQA clean dev (news; research licence, evaluation only): the reader's probability plus
    ``read_dense_weight`` × cosine over its best ``read_dense_depth`` sentences, as answers choose, ranks the answer
    sentences better than the reader alone (docs/quality.md: MAP 0.813 -> 0.832)."""
    if not TRECQA.exists():
        pytest.skip(f"TrecQA is not at {TRECQA} (../shared/data beside the checkout)")
    from qa.reader_data import trecqa_questions
    from qa.reader_eval import ranking_metrics, score_questions, with_cosines

    questions = trecqa_questions(TRECQA.parent, "clean-dev")
    alone = score_questions(reader, questions)
    mixed = with_cosines(questions, alone, embedder, AnswerConfig())
    assert ranking_metrics(questions, mixed)["MAP"] > ranking_metrics(questions, alone)["MAP"] + 0.01


def test_a_follow_up_is_answered_with_its_own_sentence_not_the_previous_answer(index):
    """The case from the issue: after "How many passengers were stranded?", "What did the union demand?" must
    return the demand sentence, which sits in the same passage."""
    index.add_text(ARTICLE.replace("By Jane Doe\n", ""), title="Ferry workers walk out over pay",
                   date="2025-03-03", source="Coastal Post", doc_id="ferry-strike")
    first = index.ask("How many passengers were stranded?")
    assert first.answerable and "4,000 passengers" in first.answer
    second = index.ask("What did the union demand?",
                       history=[{"question": "How many passengers were stranded?", "answer": first.answer}])
    assert second.answerable
    assert "The union demanded a 9 per cent raise" in second.answer
    assert "4,000 passengers" not in second.answer
    third = index.ask("When will talks resume?", history=[{"question": "What did the union demand?"}])
    assert "resume in March" in third.answer and "walk out over pay" not in third.answer
    text = index.document("ferry-strike")["text"]
    for span in second.answer_spans + third.answer_spans:
        assert text[span.start:span.end] in second.answer + third.answer
    assert second.sentences_read > 0


def test_wire_copy_as_it_comes_is_answered_with_whole_sentences_never_a_link_line(index):
    """Plain-text wire copy: hard-wrapped lines, a lead sentence that titles the article (no headline line) and a
    "Related:" line. The lead was never read ("the articles don't say"), a wrapped line ending in "Mr." cut the
    answer there, and the link line was chosen as an answer."""
    index.add_text("LONDON (Reuters) - British inflation rose to 3.5% in May, official data showed on Wednesday.\n\n"
                   "Economists polled by Reuters had expected a reading of 3.3%.\n\n"
                   "Related: Why British inflation is rising faster than economists expected this year\n\n"
                   "The Bank of England meets next week to set interest rates.", doc_id="inflation")
    index.add_text("Carney and Trump talk trade\n"
                   "Prime Minister Mark Carney spoke by phone on Thursday with U.S. President Mr.\n"
                   "Trump about steel tariffs and the auto sector, his office said in a statement.\n"
                   "The call lasted an hour, and both leaders agreed to keep talking next week.", doc_id="call")
    inflation = index.ask("How much did British inflation rise in May?")
    assert inflation.answerable and "rose to 3.5% in May" in inflation.answer
    call = index.ask("Who did Mark Carney speak with on Thursday?")
    assert call.answerable and "Mr.\nTrump about steel tariffs" in call.answer
    why = index.ask("Why is British inflation rising faster than expected?")
    assert "Related:" not in why.answer
    for answer in (inflation, call, why):
        for span in answer.answer_spans:
            assert index.document(span.doc_id)["text"][span.start:span.end] in answer.answer


def test_a_what_about_follow_up_is_answered_about_what_it_names(seed_index):
    """"What about China?" after a question about the steel industry's reaction is read with that question (it is
    too short to stand alone), and the steel sentence won again; it asks about China."""
    first = seed_index.ask("What did the Steel Producers Association say?")
    assert "Steel Producers Association" in first.answer
    second = seed_index.ask("What about China?", history=[{"question": first.question, "answer": first.answer}])
    assert second.answerable and "China" in second.answer and "Steel Producers" not in second.answer
    for span in second.answer_spans:
        assert seed_index.document(span.doc_id)["text"][span.start:span.end] in second.answer


@pytest.mark.parametrize("question", ["?", "-", "What is it?", "Who said that?"])
def test_a_question_without_a_content_word_is_not_answered(seed_index, question):
    """`qa ask -` or `?` got a confident, cited answer from whatever sentence came first."""
    answer = seed_index.ask(question)
    assert not answer.answerable and answer.answer == "The articles don't say."


def test_a_follow_up_whose_best_sentence_was_the_previous_answer_also_gets_a_new_one():
    # The reader favours the demand again, but the previous turn already said it: the follow-up adds the best
    # sentence not said before (one the reader does not rule out), and keeps the repeat beside it.
    reader = KeywordReader({})
    previous = "The union demanded a 9 per cent raise and a cap on overtime. [1]"
    reader.score = lambda q, sentences: np.array(
        [0.9 if "union" in s else 0.2 if "March" in s else 0.01 for s in sentences], dtype=np.float32)
    got = compose_read("And what else?", _found([_passage(1, 0, len(ARTICLE))]), reader, said=previous)
    assert "Managers said talks would resume in March." in got.text and "The union demanded" in got.text
    alone = compose_read("And what else?", _found([_passage(1, 0, len(ARTICLE))]), reader)
    assert "March" not in alone.text


def test_a_student_can_start_from_the_shipped_int8_file_whose_weights_read_back_as_the_same_model(reader):
    """``qa.reader_train.onnx_state_dict``: the int8 weights turned back into floats give a torch model that scores
    like the shipped file (up to int8 rounding), so a smaller student can start from the reader itself."""
    torch = pytest.importorskip("torch")
    from qa.reader import pad
    from qa.reader_train import UNUSED, _model_dir, build_module, onnx_state_dict

    state = onnx_state_dict(torch, DEFAULT_DIR / MODEL_NAME)
    model = build_module(torch, _model_dir(), 6)
    own = model.state_dict()
    assert not [k for k in own if k not in state and not k.startswith(UNUSED)]
    assert all(state[k].shape == v.shape for k, v in own.items() if k in state)
    model.load_state_dict({k: state.get(k, v) for k, v in own.items()})
    model.eval()
    question = "What did the union demand?"
    sentences = [s + "." for s in ARTICLE.split("\n")[2].split(". ") if s]
    ids, mask, types = pad(reader.tokenizer.encode_batch([(question, s) for s in sentences]))
    with torch.no_grad():
        got = model(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types)).numpy()
    expected = reader.logits(question, sentences)
    assert np.abs(got - expected).max() < 0.5
    assert int(np.argmax(got)) == int(np.argmax(expected)) == 1
