"""Answers written by a local model (qa/llm.py): the check of each sentence against the passage it cites (with the
real reader and the real embedding model), and the plumbing (prompt, streaming, timeout, failures, fallback, /ask,
/ask/stream, /v1) against a scripted OpenAI-compatible server on a loopback port. The contract against a real model
server is in tests/test_llm_server.py."""

from __future__ import annotations

import json
import random

import pytest
from fastapi.testclient import TestClient

from conftest import RETALIATION_DOC, SEEDS
from llm_servers import FakeLLM, free_port, passages_in, rank_holding
from qa.index import NewsIndex
from qa.llm import CheckConfig, Checker, Claim, ClaimStream, LLMClient, LLMFailed, claims, prompt
from qa.reader import OnnxReader
from qa.records import Passage
from qa.settings import Settings
from web.app import create_app

ARTICLE = ("Tariff war widens\n\nCanada has imposed three rounds of retaliatory measures against the U.S. since March. "
           "The only other country to hit back with countertariffs is China. Ferry workers in Halifax went on "
           "strike on Monday over pay.")
CHINA = "The only other country to hit back with countertariffs is China."
QUESTION = "Which countries retaliated against the U.S. tariffs?"


def passage(rank: int = 1, text: str = ARTICLE, doc_id: str = "tariffs") -> Passage:
    return Passage(rank, doc_id, "Tariff war widens", "2025-03-05", 0, 0, len(text), text, 1.0)


# --- reading what the model wrote -----------------------------------------------------------------------------------
def test_each_sentence_is_read_with_the_passages_it_cites():
    text = "China hit back [1]. Canada did too [2][3]. Both said so [1, 2]. A closing remark without a marker."
    assert claims(text) == [Claim("China hit back.", (1,)), Claim("Canada did too.", (2, 3)),
                            Claim("Both said so.", (1, 2)), Claim("A closing remark without a marker.", ())]


def test_sentences_before_one_marker_are_each_read_with_it():
    assert claims("China hit back. Canada did too. [2]") == [Claim("China hit back.", (2,)),
                                                             Claim("Canada did too.", (2,))]


def test_list_markers_are_not_part_of_a_sentence():
    text = "1. China hit back [1].\n2) Canada did too [2].\n- Both said so [1]."
    assert claims(text) == [Claim("China hit back.", (1,)), Claim("Canada did too.", (2,)),
                            Claim("Both said so.", (1,))]


def streamed(text: str, rng: random.Random) -> list[Claim]:
    """The claims of ``text`` fed to a ClaimStream in random pieces of 1 to 6 characters."""
    stream, found, i = ClaimStream(), [], 0
    while i < len(text):
        j = i + rng.randint(1, 6)
        found += stream.feed(text[i:j])
        i = j
    return found + stream.close()


def test_streamed_pieces_give_the_same_sentences_as_the_whole_text():
    text = "China hit back with tariffs [1]. Canada imposed three rounds [2] [3]. It said so [1,2]! Then words"
    whole = claims(text)
    rng = random.Random(7)
    for _ in range(300):
        assert streamed(text, rng) == whole


def test_a_sentence_is_complete_only_once_its_markers_end():
    stream = ClaimStream()
    assert stream.feed("China hit back [1]") == []
    assert stream.feed(" [") == []
    assert stream.feed("2]. Canada") == [Claim("China hit back.", (1, 2))]


# --- the check ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reader():
    return OnnxReader()


@pytest.fixture(scope="module")
def checker(reader):
    return Checker(reader)


def test_a_sentence_its_passage_says_is_kept_with_the_sentence_it_rests_on(checker):
    verdict = checker.check(Claim("China also hit back with countertariffs.", (1,)), {1: passage()})
    assert verdict.supported, verdict.reason
    [span] = verdict.spans
    assert ARTICLE[span.start:span.end] == CHINA
    assert verdict.text == "China also hit back with countertariffs. [1]"


@pytest.mark.parametrize("sentence, why", [
    ("Mexico also hit back with countertariffs.", "Mexico"),  # a name the passage lacks
    ("Canada has imposed five rounds of retaliatory measures.", "5"),  # a number the passage lacks
    ("Canada has imposed 4 rounds of retaliatory measures.", "4"),
    ("The European Union weighs a digital services tax on tech firms.", ""),  # another story
])
def test_a_sentence_its_passage_does_not_say_is_dropped(checker, sentence, why):
    verdict = checker.check(Claim(sentence, (1,)), {1: passage()})
    assert not verdict.supported and not verdict.spans
    assert why in verdict.reason


def test_numbers_may_be_written_in_words_or_digits(checker):
    assert checker.check(Claim("Canada has imposed 3 rounds of retaliatory measures against the U.S.", (1,)),
                         {1: passage()}).supported


def test_a_supported_sentence_that_does_not_answer_the_question_is_dropped(checker):
    fact = "Canada has imposed three rounds of retaliatory measures against the U.S."
    assert checker.check(Claim(fact, (1,)), {1: passage()}, "How many rounds of retaliatory measures has Canada imposed?"
                         ).supported
    off = checker.check(Claim(fact, (1,)), {1: passage()}, "What is the capital of Australia?")
    assert not off.supported and off.reason.startswith("it does not answer the question")


def test_a_sentence_that_only_restates_the_question_is_dropped(checker):
    question = "How many rounds of retaliatory measures has Canada imposed against the U.S.?"
    echo = checker.check(Claim("Canada has imposed rounds of retaliatory measures against the U.S.", (1,)),
                         {1: passage()}, question)
    assert not echo.supported and echo.reason == "it only restates the question"
    answer = checker.check(Claim("Canada has imposed three rounds of retaliatory measures against the U.S.", (1,)),
                           {1: passage()}, question)
    assert answer.supported, answer.reason  # the number is what the question did not say


def test_a_sentence_citing_a_passage_not_given_is_dropped(checker):
    assert checker.check(Claim(CHINA, (4,)), {1: passage()}).reason == "it cites a passage it was not given"


def test_a_sentence_citing_nothing_is_cited_to_the_passages_that_support_it_or_dropped(checker):
    other = passage(2, "Ferry workers went on strike over pay in Halifax on Monday morning.", "ferry")
    found = checker.check(Claim(CHINA, ()), {1: passage(), 2: other})
    assert found.supported and found.ranks == [1] and found.text.endswith("China. [1]")
    unsupported = checker.check(Claim("Mexico hit back with countertariffs too.", ()), {1: passage(), 2: other})
    assert not unsupported.supported and unsupported.reason.startswith("it cites no passage, and none supports it")
    strict = Checker(checker.reader, config=CheckConfig(cite_uncited=False))
    assert strict.check(Claim(CHINA, ()), {1: passage()}).reason == "it cites no passage"


def test_only_the_cited_passages_that_support_a_sentence_keep_their_marker(checker):
    other = passage(2, "Ferry workers went on strike over pay in Halifax on Monday morning.", "ferry")
    verdict = checker.check(Claim(CHINA, (1, 2)), {1: passage(), 2: other})
    assert verdict.ranks == [1] and verdict.text.endswith("China. [1]")


def test_without_the_reader_the_embedding_model_checks(embedder):
    checker = Checker(None, embedder)
    assert checker.check(Claim("China also hit back with countertariffs.", (1,)), {1: passage()}).supported
    assert not checker.check(Claim("The European Union weighs a digital tax on tech firms.", (1,)),
                             {1: passage()}).supported


def test_the_prompt_holds_the_question_and_the_numbered_passages_only():
    messages = prompt(QUESTION, [passage(1), passage(3, "Ferry workers went on strike.", "ferry")],
                      [{"question": "What did Canada do?", "answer": "…"}])
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "[n]" not in messages[0]["content"] and "[1]" in messages[0]["content"]
    assert passages_in(messages) == {1: f"Tariff war widens — 2025-03-05\n{ARTICLE}",
                                     3: "Tariff war widens — 2025-03-05\nFerry workers went on strike."}
    assert f"Question: {QUESTION}" in messages[1]["content"]
    assert "Earlier question: What did Canada do?" in messages[1]["content"]


# --- the client -----------------------------------------------------------------------------------------------------
@pytest.fixture
def fake():
    server = FakeLLM()
    yield server
    server.close()


def test_the_client_streams_what_the_server_writes(fake):
    fake.reply = "China hit back [1]. Canada did too [1]."
    client = LLMClient(fake.url, timeout=5)
    assert "".join(client.tokens([{"role": "user", "content": "hi"}])) == fake.reply
    [request] = fake.requests
    assert request["model"] == "fake-model" and request["stream"] is True and request["temperature"] == 0


@pytest.mark.parametrize("status", [500, 404, 401])
def test_a_failing_server_is_an_error_that_says_so(fake, status):
    fake.status = status
    with pytest.raises(LLMFailed, match=f"HTTP {status}"):
        list(LLMClient(fake.url, model="m", timeout=5).tokens([{"role": "user", "content": "hi"}]))


def test_a_silent_server_times_out(fake):
    fake.delay = 3
    with pytest.raises(LLMFailed, match="longer than 0.3 s"):
        list(LLMClient(fake.url, model="m", timeout=0.3).tokens([{"role": "user", "content": "hi"}]))


# A server answering JSON of another shape: the request's thread died and the answer waited out the whole timeout
# (then said "took longer"), or a list of parts reached the answer as if it were text (a 500).
@pytest.mark.parametrize("events, completion", [
    ([[1, 2]], None), (["text"], None), ([{"choices": ["x"]}], None),
    ([{"choices": [{"delta": {"content": ["China"]}}]}], None), ([{"choices": [{"delta": {"content": 7}}]}], None),
    (None, {"choices": [{"message": {"content": [{"type": "text", "text": "China"}]}}]}), (None, [1]),
])
def test_a_server_sending_json_of_another_shape_is_an_error_at_once(fake, events, completion):
    fake.events, fake.completion = events, completion
    with pytest.raises(LLMFailed, match="not a chat completion"):
        list(LLMClient(fake.url, model="m", timeout=120).tokens([{"role": "user", "content": "hi"}]))


def test_a_dead_server_is_an_error_that_says_so():
    with pytest.raises(LLMFailed, match="could not be reached"):
        list(LLMClient(f"http://127.0.0.1:{free_port()}/v1", model="m", timeout=5).tokens([]))


# --- answers --------------------------------------------------------------------------------------------------------
@pytest.fixture
def llm_index(seed_index_dir, embedder, fake):
    settings = Settings.from_env(index_dir=seed_index_dir, seeds_dir=SEEDS, llm_url=fake.url, llm_timeout=10)
    idx = NewsIndex(settings, embedder=embedder)
    yield idx
    idx.close()


def china_reply(messages: list[dict]) -> str:
    n = rank_holding(messages, CHINA)
    return (f"China is the only other country that hit back with countertariffs [{n}]. "
            f"Mexico put 99 per cent tariffs on American cars [{n}]. Many people were upset about it.")


def test_the_model_answer_keeps_the_supported_sentences_and_counts_the_others(llm_index, fake):
    fake.reply = china_reply
    extractive = llm_index.ask(QUESTION, llm=False)
    answer = llm_index.ask(QUESTION)
    n = rank_holding(fake.requests[0]["messages"], CHINA)
    assert answer.mode == "llm" and not answer.fell_back and answer.llm_note is None
    assert answer.answer == f"China is the only other country that hit back with countertariffs. [{n}]"
    assert answer.sentences_dropped == 2
    [span] = answer.answer_spans
    cited = next(p for p in answer.passages if p.rank == n)
    assert span.rank == n and span.doc_id == cited.doc_id == RETALIATION_DOC
    assert cited.text[span.start - cited.start:span.end - cited.start].strip() == CHINA
    assert answer.passages == extractive.passages  # the same passages stay the sources
    given = passages_in(fake.requests[0]["messages"])
    assert set(given) <= {p.rank for p in extractive.passages} and len(given) <= 5


def test_when_no_sentence_is_supported_the_extractive_answer_is_given(llm_index, fake):
    fake.reply = "Mexico put 99 per cent tariffs on American cars [1]. Nobody knows [2]."
    extractive = llm_index.ask(QUESTION, llm=False)
    answer = llm_index.ask(QUESTION)
    assert answer.mode == "extractive" and answer.fell_back and answer.sentences_dropped == 2
    assert answer.answer == extractive.answer and answer.answer_spans == extractive.answer_spans
    assert "no sentence" in answer.llm_note


# The failing server gets a timeout that a loaded machine cannot reach, so it fails by its status, not by time.
@pytest.mark.parametrize("setup, timeout, note", [
    (lambda fake: setattr(fake, "status", 500), 30.0, "HTTP 500"),
    (lambda fake: setattr(fake, "delay", 3), 0.5, "longer than"),
])
def test_a_failing_or_slow_model_gives_the_extractive_answer(seed_index_dir, embedder, fake, setup, timeout, note):
    setup(fake)
    fake.reply = china_reply
    settings = Settings.from_env(index_dir=seed_index_dir, seeds_dir=SEEDS, llm_url=fake.url, llm_timeout=timeout)
    idx = NewsIndex(settings, embedder=embedder)
    answer = idx.ask(QUESTION)
    extractive = idx.ask(QUESTION, llm=False)
    idx.close()
    assert answer.mode == "extractive" and answer.fell_back and note in answer.llm_note
    assert answer.answer == extractive.answer


def test_a_dead_model_server_gives_the_extractive_answer(seed_index_dir, embedder):
    settings = Settings.from_env(index_dir=seed_index_dir, seeds_dir=SEEDS,
                                 llm_url=f"http://127.0.0.1:{free_port()}/v1", llm_timeout=5)
    idx = NewsIndex(settings, embedder=embedder)
    answer = idx.ask(QUESTION)
    idx.close()
    assert answer.mode == "extractive" and answer.fell_back and "could not be reached" in answer.llm_note


def test_a_model_cut_short_after_a_supported_sentence_keeps_it(seed_index_dir, embedder, fake):
    fake.reply, fake.words, fake.stall = china_reply, 100, (1, 3)
    fake.reply = lambda m: china_reply(m).split(" Mexico")[0] + " " + "word " * 100 + "[1]."
    settings = Settings.from_env(index_dir=seed_index_dir, seeds_dir=SEEDS, llm_url=fake.url, llm_timeout=1)
    idx = NewsIndex(settings, embedder=embedder)
    answer = idx.ask(QUESTION)
    idx.close()
    assert answer.mode == "llm" and answer.llm_note.startswith("cut short") and "China" in answer.answer


@pytest.mark.parametrize("sent, kept", [
    (lambda m: china_reply(m).split(" Mexico")[0] + " ", True),  # "… countertariffs [n]. ": complete
    (lambda m: "China is the only other country that hit back with ", False),  # stopped mid-sentence
])
def test_when_the_model_stalls_the_sentence_it_finished_is_checked_and_the_unfinished_one_is_not(
        seed_index_dir, embedder, fake, sent, kept):
    """The stream holds back "… [1]. " in case more markers follow: a stall just there threw the sentence away."""
    def reply(messages):
        first = sent(messages)
        fake.words = len(first.split())  # the first chunk is exactly ``first``; the stall comes before the next
        return first + "Mexico put 99 per cent tariffs on American cars."

    fake.reply, fake.stall = reply, (1, 3)
    settings = Settings.from_env(index_dir=seed_index_dir, seeds_dir=SEEDS, llm_url=fake.url, llm_timeout=1)
    idx = NewsIndex(settings, embedder=embedder)
    answer = idx.ask(QUESTION)
    idx.close()
    assert "longer than" in answer.llm_note and "Mexico" not in answer.answer
    if kept:
        assert answer.mode == "llm" and answer.llm_note.startswith("cut short") and "China" in answer.answer
    else:
        assert answer.mode == "extractive" and answer.fell_back


def test_when_the_articles_dont_say_the_model_is_not_asked(llm_index, fake):
    answer = llm_index.ask("What is the recipe for a good sourdough bread?")
    assert not answer.answerable and answer.mode == "extractive" and not answer.fell_back
    assert fake.requests == []


def test_the_model_is_off_unless_configured(monkeypatch):
    monkeypatch.delenv("QA_LLM_URL", raising=False)
    assert Settings.from_env().llm_url is None


@pytest.mark.parametrize("name, value", [("QA_LLM_URL", "localhost:11434"), ("QA_LLM_URL", "ftp://x/v1"),
                                         ("QA_LLM_TIMEOUT", "0"), ("QA_LLM_TIMEOUT", "soon"),
                                         ("QA_LLM_MAX_TOKENS", "-1"), ("QA_LLM_PASSAGES", "0")])
def test_bad_llm_settings_are_refused(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        Settings.from_env()


# --- over HTTP ------------------------------------------------------------------------------------------------------
@pytest.fixture
def client(llm_index):
    with TestClient(create_app(llm_index.settings, index=llm_index)) as c:
        yield c


def events_of(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.split("\n\n"):
        if block.strip():
            head, data = block.split("\n", 1)
            assert head.startswith("event: ") and data.startswith("data: ")
            out.append((head[len("event: "):], json.loads(data[len("data: "):])))
    return out


def test_ask_says_which_mode_wrote_the_answer(client, fake):
    fake.reply = china_reply
    data = client.post("/ask", json={"question": QUESTION}).json()
    assert data["mode"] == "llm" and data["sentences_dropped"] == 2 and data["fell_back"] is False
    assert data["answer"].startswith("China is the only other country")
    fake.status = 500
    data = client.post("/ask", json={"question": QUESTION}).json()
    assert data["mode"] == "extractive" and data["fell_back"] is True and "HTTP 500" in data["llm_note"]


def test_ask_stream_sends_the_draft_then_the_checked_answer(client, fake):
    fake.reply = china_reply
    response = client.post("/ask/stream", json={"question": QUESTION})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = events_of(response.text)
    kinds = [k for k, _ in events]
    assert kinds[-1] == "answer" and kinds.count("answer") == 1 and "turn" not in kinds
    draft = "".join(d["text"] for k, d in events if k == "draft")
    assert draft == china_reply(fake.requests[0]["messages"])
    [sentence] = [d["text"] for k, d in events if k == "sentence"]
    final = events[-1][1]
    assert final["mode"] == "llm" and final["answer"] == sentence
    assert final == {**client.post("/ask", json={"question": QUESTION}).json(), "took_ms": final["took_ms"]}


def test_ask_stream_renders_the_turn_for_the_chat_page(client, fake):
    fake.reply = china_reply
    response = client.post("/ask/stream?partial=1", data={"question": QUESTION},
                           headers={"Accept": "text/event-stream"})
    events = dict(events_of(response.text))
    assert "Written by the local model" in events["turn"]["html"]
    assert "2 sentences their passages did not support were removed" in events["turn"]["html"]
    page = client.get("/").text
    assert 'data-stream="/ask/stream"' in page and "never generated" not in page
    assert "written by a local model" in page


def test_ask_stream_refuses_bad_input_before_streaming(client):
    response = client.post("/ask/stream", json={"question": "  "})
    assert response.status_code == 400 and response.json()["detail"]


def test_the_openai_route_streams_only_checked_sentences(client, fake):
    fake.reply = china_reply
    whole = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}]}).json()
    content = whole["choices"][0]["message"]["content"]
    assert whole["newsqa"]["mode"] == "llm" and content.startswith("China is the only other country")
    assert "99 per cent" not in content
    streamed = client.post("/v1/chat/completions", json={"stream": True, "messages": [
        {"role": "user", "content": QUESTION}]})
    chunks = [json.loads(b[len("data: "):]) for b in streamed.text.split("\n\n")
              if b.startswith("data: ") and b != "data: [DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == content
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["newsqa"]["mode"] == "llm"
    assert "99 per cent" not in streamed.text  # the dropped sentence never reaches the client


def test_the_openai_stream_falls_back_to_the_extractive_answer(client, fake):
    fake.status = 500
    streamed = client.post("/v1/chat/completions", json={"stream": True, "messages": [
        {"role": "user", "content": QUESTION}]})
    chunks = [json.loads(b[len("data: "):]) for b in streamed.text.split("\n\n")
              if b.startswith("data: ") and b != "data: [DONE]"]
    final = chunks[-1]
    assert final["newsqa"]["fell_back"] is True
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text.startswith(final["newsqa"]["answer"])


# --- what the model writes around its markers -----------------------------------------------------------------------
def test_marker_like_brackets_and_markdown_emphasis_are_not_part_of_a_sentence():
    # "[^13]", "[-18]" or "[1-3]" name no passage: out of the sentence, which then cites nothing (and is checked
    # against every passage); "**" and "__" are markup.
    assert claims("The work will cost 18 million dollars [^13].") == [
        Claim("The work will cost 18 million dollars.", ())]
    assert claims("The work will cost 18 million dollars [-18]. It starts in April [1-3].") == [
        Claim("The work will cost 18 million dollars.", ()), Claim("It starts in April.", ())]
    assert claims("**The work will cost 18 million dollars** [1]. It __starts__ in April [2].") == [
        Claim("The work will cost 18 million dollars.", (1,)), Claim("It starts in April.", (2,))]
    assert claims("1. **Cost:** 18 million dollars [1]") == [Claim("Cost: 18 million dollars", (1,))]
    assert claims("The file is named snake__case [1].") == [Claim("The file is named snake__case.", (1,))]
    # "[0]" has the shape of a marker: it is one, to a passage no model is given (the check drops the sentence).
    assert claims("It opened [0].") == [Claim("It opened.", (0,))]


def test_markers_in_parentheses_are_taken_whole_with_the_parenthesis():
    assert claims("The work will cost 18 million dollars (see [1]). It starts in April ([2], [3]).") == [
        Claim("The work will cost 18 million dollars.", (1,)), Claim("It starts in April.", (2, 3))]
    assert claims("The work will cost 18 million dollars (source: [1][2]).") == [
        Claim("The work will cost 18 million dollars.", (1, 2))]
    assert claims("The cost rose (see [^4]). It starts in April [2].") == [
        Claim("The cost rose.", (2,)), Claim("It starts in April.", (2,))]
    # A parenthesis that says something stays.
    assert claims("The work (begun in May) costs more [1].") == [Claim("The work (begun in May) costs more.", (1,))]
    text = "Costs rose (see [1]). **Tolls** stay [^2]. Work starts ([2], [3]) in April [3]! Then (see [1"
    whole = claims(text)
    rng = random.Random(11)
    for _ in range(300):
        assert streamed(text, rng) == whole


@pytest.mark.parametrize("written", ["{china} [^{n}].", "{china} [-18].", "{china} (see [{n}]).",
                                     "**{china}** [{n}].", "__{china}__ (see [^13])."])
def test_the_model_answer_shows_no_stray_marker_or_markup(llm_index, fake, written):
    china = "China is the only other country that hit back with countertariffs"

    def reply(messages):
        return written.format(china=china, n=rank_holding(messages, CHINA))

    fake.reply = reply
    answer = llm_index.ask(QUESTION)
    n = rank_holding(fake.requests[-1]["messages"], CHINA)
    assert answer.mode == "llm" and not answer.fell_back
    assert answer.answer == f"{china}. [{n}]"
    [span] = answer.answer_spans
    cited = next(p for p in answer.passages if p.rank == n)
    assert span.doc_id == cited.doc_id == RETALIATION_DOC
    assert llm_index.document(span.doc_id)["text"][span.start:span.end].strip() == CHINA
