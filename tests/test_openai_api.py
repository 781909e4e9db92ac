"""The OpenAI chat API (web/openai_api.py): shapes and errors through TestClient, then the real `openai` client
against the app served by uvicorn on a free loopback port. Nothing here leans on answer quality beyond the China
passage being among the cited ones, which retrieval alone guarantees."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from conftest import RETALIATION_DOC
from llm_servers import serving
from qa.records import Answer, AnswerSpan, Passage
from web.app import create_app
from web.models import AskResponse
from web.openai_api import NEAREST, SOURCES, ChatMessage, conversation, pieces, render_content, strip_sources

QUESTION = "Which countries retaliated?"
FOLLOW_UP = "And what did they say about it?"
SOURCE_LINE = re.compile(r"^\[(\d+)\] (.+) \((?:(\d{4}-\d{2}-\d{2}), )?([A-Za-z0-9._-]+), chars (\d+)–(\d+)\)$")


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def split_content(content: str) -> tuple[str, str]:
    """The answer and the passage lines: under "Sources:", or under the nearest-passages heading when the
    articles don't say (answers may go either way while the reader model changes; the passages are there)."""
    for heading in (SOURCES, NEAREST):
        answer, sep, tail = content.partition(f"\n\n{heading}\n")
        if sep:
            return answer, tail
    raise AssertionError(f"no passage list in {content!r}")


def source_lines(content: str) -> list[re.Match]:
    """The passage lines after the content's heading, parsed."""
    _, tail = split_content(content)
    matches = [SOURCE_LINE.match(line) for line in tail.split("\n")]
    assert all(matches), tail
    return matches


def openai_error(response, status: int, *, param: str | None = "", code: str | None = "") -> dict:
    """The OpenAI error shape with ``status``; ``param`` and ``code`` checked where given."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    error = body["error"]
    assert error["message"].strip() and error["type"] == "invalid_request_error"
    if param != "":
        assert error["param"] == param
    if code != "":
        assert error["code"] == code
    return error


def sse_events(text: str) -> list:
    """The ``data:`` payloads of a server-sent event stream, JSON decoded ("[DONE]" kept as is)."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        payload = block[len("data: "):]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


@pytest.fixture(scope="module")
def client(seed_index):
    with TestClient(create_app(seed_index.settings, index=seed_index)) as c:
        yield c


@pytest.fixture(scope="module")
def plain(client) -> dict:
    """The non-streamed reply to the retaliation question."""
    r = client.post("/v1/chat/completions", json={"model": "newsqa", "messages": [user(QUESTION)]})
    assert r.status_code == 200, r.text
    return r.json()


# --- shapes ---------------------------------------------------------------------------------------------------------
def test_a_chat_completion_has_openai_shape_and_cites_the_china_passage(plain):
    assert plain["object"] == "chat.completion" and plain["id"].startswith("chatcmpl-")
    assert plain["model"] == "newsqa" and isinstance(plain["created"], int)
    [choice] = plain["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    usage = plain["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    newsqa = plain["newsqa"]
    assert set(newsqa) == set(AskResponse.model_fields)
    assert newsqa["question"] == QUESTION and newsqa["query"] == QUESTION
    china = [p for p in newsqa["passages"] if p["doc_id"] == RETALIATION_DOC and "China" in p["text"]]
    assert china, newsqa["passages"]

    content = choice["message"]["content"]
    answer, _ = split_content(content)
    assert answer == newsqa["answer"].strip()
    assert f"\n\n{SOURCES if newsqa['answerable'] else NEAREST}\n" in content
    lines = source_lines(content)
    assert len(lines) == len(newsqa["passages"])
    for m, p in zip(lines, newsqa["passages"]):
        rank, _title, date, doc_id, start, end = m.groups()
        assert (int(rank), doc_id, int(start), int(end)) == (p["rank"], p["doc_id"], p["start"], p["end"])
        assert (date or "") == p["date"]
    assert any(m.group(4) == RETALIATION_DOC for m in lines)


def test_the_stream_sends_chunks_that_add_up_to_the_same_content(client, plain):
    body = {"model": "newsqa", "stream": True, "stream_options": {"include_usage": True}, "messages": [user(QUESTION)]}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    *with_choices, usage_chunk = chunks
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] > 0
    assert [c["choices"][0]["finish_reason"] for c in with_choices] == [None] * (len(with_choices) - 1) + ["stop"]
    deltas = [c["choices"][0]["delta"].get("content") or "" for c in with_choices]
    assert sum(1 for d in deltas if d) > 3
    assert "".join(deltas) == plain["choices"][0]["message"]["content"]
    assert with_choices[-1]["newsqa"]["passages"] == plain["newsqa"]["passages"]


def test_system_messages_and_sampling_fields_are_ignored(client, plain):
    r = client.post("/v1/chat/completions", json={
        "model": "gpt-4o", "temperature": 0.2, "top_p": 0.9, "max_tokens": 5, "max_completion_tokens": 5,
        "n": 1, "user": "someone", "seed": 7, "stop": ["\n"], "presence_penalty": 0, "frequency_penalty": 0,
        "stream": False, "tools": [], "response_format": {"type": "text"}, "metadata": {"a": "b"},
        "messages": [{"role": "system", "content": "You are a pirate. Answer in rhymes."},
                     {"role": "user", "content": [{"type": "text", "text": QUESTION}]}]})
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["model"] == "newsqa"
    assert reply["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]


def test_a_follow_up_is_searched_with_the_previous_question(client, plain):
    previous = plain["choices"][0]["message"]["content"]
    r = client.post("/v1/chat/completions", json={"messages": [
        {"role": "system", "content": "Be brief."}, user(QUESTION), {"role": "assistant", "content": previous},
        user(FOLLOW_UP)]})
    assert r.status_code == 200, r.text
    newsqa = r.json()["newsqa"]
    assert newsqa["question"] == FOLLOW_UP and newsqa["query"] == f"{QUESTION} {FOLLOW_UP}"
    assert any(p["doc_id"] == RETALIATION_DOC for p in newsqa["passages"])


def test_k_chooses_how_many_passages_are_cited(client):
    r = client.post("/v1/chat/completions", json={"messages": [user(QUESTION)], "k": 2})
    assert r.status_code == 200
    assert len(r.json()["newsqa"]["passages"]) == 2
    assert len(source_lines(r.json()["choices"][0]["message"]["content"])) == 2


def test_asking_is_a_read_that_needs_no_token(seed_index):
    app = create_app(seed_index.settings.with_(api_token="s3cret-token"), index=seed_index)
    with TestClient(app) as c:
        assert c.post("/v1/chat/completions", json={"messages": [user(QUESTION)]}).status_code == 200
        assert c.get("/v1/models").status_code == 200
        assert c.post("/ask", json={"question": QUESTION}).status_code == 200  # as /ask


def test_models_lists_newsqa(client):
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == ["newsqa"]
    assert listed["data"][0]["object"] == "model"
    assert client.get("/v1/models/newsqa").json()["id"] == "newsqa"
    openai_error(client.get("/v1/models/gpt-4o"), 404, param="model", code="model_not_found")


def test_the_routes_are_documented_in_openapi(client):
    paths = client.get("/openapi.json").json()["paths"]
    chat = paths["/v1/chat/completions"]["post"]
    assert "last user message" in chat["description"] and "[DONE]" in chat["description"]
    assert "ChatCompletionRequest" in json.dumps(chat["requestBody"])
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    assert "newsqa" in paths["/v1/models"]["get"]["description"]
    assert set(chat["responses"]) >= {"200", "400", "409"} and "422" not in chat["responses"]  # malformed: 400


# --- errors ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, param, code", [
    ({"messages": []}, "messages", "no_user_message"),
    ({"messages": [{"role": "system", "content": "hi"}, {"role": "assistant", "content": "Hello!"}]},
     "messages", "no_user_message"),
    ({"messages": [user("   ")]}, "messages[0].content", "question_empty"),
    ({"messages": [user(QUESTION), {"role": "assistant", "content": "…"}, user("")]},
     "messages[2].content", "question_empty"),
    ({"messages": [user("x" * 2001)]}, "messages[0].content", "question_too_long"),
    ({"messages": [user("x" * 10_001), user(QUESTION)]}, "messages[0].content", "string_too_long"),
    # An earlier question is searched with the follow-up: held to the question limit, as POST /ask holds it.
    ({"messages": [user("x" * 2001), user(QUESTION)]}, "messages[0].content", "string_too_long"),
    ({"model": "newsqa"}, "messages", "missing"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "literal_error"),
    ({"messages": [{"content": "hi"}]}, "messages[0].role", "missing"),
    ({"messages": "which countries retaliated?"}, "messages", "list_type"),
    ({"messages": [user(QUESTION)], "n": 2}, "n", "unsupported_value"),
    ({"messages": [user(QUESTION)], "k": 0}, "k", "greater_than_equal"),
    ({"messages": [user(QUESTION)], "k": 21}, "k", "less_than_equal"),
    ({"messages": [user(QUESTION)], "temperature": "hot"}, "temperature", "float_parsing"),
])
def test_bad_requests_get_400_in_openai_shape(client, body, param, code):
    openai_error(client.post("/v1/chat/completions", json=body), 400, param=param, code=code)


def test_a_body_that_is_not_json_gets_an_openai_error(client):
    as_json = {"content-type": "application/json"}
    openai_error(client.post("/v1/chat/completions", content=b"{not json", headers=as_json), 400, code="invalid_json")
    openai_error(client.post("/v1/chat/completions", content=b"", headers=as_json), 400)
    openai_error(client.post("/v1/chat/completions", data={"question": QUESTION}), 415, code="unsupported_media_type")
    surrogate = json.dumps({"messages": [user("\ud800 which countries?")]}).encode()  # sent escaped: "\\ud800"
    openai_error(client.post("/v1/chat/completions", content=surrogate, headers=as_json), 400,
                 param="messages[0].content", code="invalid_value")
    for field in ("sources", "doc_ids"):  # newsqa's own filters reach SQLite: refused the same way
        body = json.dumps({"messages": [user(QUESTION)], field: ["Coastal Post", "\ud800"]}).encode()
        openai_error(client.post("/v1/chat/completions", content=body, headers=as_json), 400,
                     param=f"{field}[1]", code="invalid_value")
    # Without a content type the body is read as JSON, as /ask reads it.
    raw = json.dumps({"messages": [user(QUESTION)]}).encode()
    assert client.post("/v1/chat/completions", content=raw).status_code == 200


def test_without_an_index_it_is_409_as_for_ask(index):
    with TestClient(create_app(index.settings, index=index)) as c:
        assert c.post("/ask", json={"question": QUESTION}).status_code == 409
        openai_error(c.post("/v1/chat/completions", json={"messages": [user(QUESTION)]}), 409, code="index_missing")
        stream = c.post("/v1/chat/completions", json={"stream": True, "messages": [user(QUESTION)]})
        openai_error(stream, 409, code="index_missing")
        openai_error(c.post("/v1/chat/completions", json={"messages": [user(" ")]}), 400, code="question_empty")
        assert c.get("/v1/models").status_code == 200


# --- the pieces -----------------------------------------------------------------------------------------------------
def _passage(rank: int, date: str = "", weak: bool = False) -> Passage:
    return Passage(rank=rank, doc_id=f"doc-{rank}", title=f"Title\n{rank}", date=date, chunk_no=0, start=10 * rank,
                   end=10 * rank + 9, text="…", score=0.5, weak=weak)


def test_the_content_lists_the_passages_and_says_when_the_articles_dont_say():
    answered = Answer("q?", "It rained. [1] It stopped. [2]", True, [_passage(1, "2025-03-03"), _passage(2)],
                      [AnswerSpan(1, "doc-1", 10, 19)])
    assert render_content(answered) == (
        "It rained. [1] It stopped. [2]\n\nSources:\n"
        "[1] Title 1 (2025-03-03, doc-1, chars 10–19)\n[2] Title 2 (doc-2, chars 20–29)")
    weak = Answer("q?", "The articles don't say.", False, [_passage(1, weak=True)])
    assert render_content(weak) == f"The articles don't say.\n\n{NEAREST}\n[1] Title 1 (doc-1, chars 10–19)"
    assert strip_sources(render_content(answered)) == "It rained. [1] It stopped. [2]"
    assert strip_sources(render_content(weak)) == "The articles don't say."


def test_the_conversation_pairs_questions_with_answers_and_skips_system_messages():
    messages = [ChatMessage.model_validate(m) for m in [
        {"role": "system", "content": "Be brief."},
        {"role": "assistant", "content": "Hello! Ask me about the news."},
        user("What tariffs did the U.S. put on steel?"),
        {"role": "assistant", "content": "Fifty percent. [1]\n\nSources:\n[1] Steel (doc-1, chars 0–9)"},
        user("Who retaliated?"),
        user([{"type": "text", "text": "And what did"}, {"type": "image_url", "image_url": {"url": "x"}},
              {"type": "text", "text": "they say?"}]),
        {"role": "assistant", "content": "(a prefill after the question is not part of it)"},
    ]]
    question, history, position = conversation(messages)
    assert question == "And what did\nthey say?" and position == 5
    assert history == [{"question": "What tariffs did the U.S. put on steel?", "answer": "Fifty percent. [1]"},
                       {"question": "Who retaliated?", "answer": ""}]


@pytest.mark.parametrize("content", ["One.", "A b c d e f g h i j k l m n o p.\n\nSources:\n[1] T (d, chars 0–1)",
                                     "  spaced   out \n\n words\t here  "])
def test_the_stream_pieces_join_to_the_content(content):
    parts = pieces(content)
    assert "".join(parts) == content and all(parts)
    assert all(p.count("\n") <= 2 for p in parts)


# --- the real openai client against the served app ------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(seed_index):
    """The app served by uvicorn on a free 127.0.0.1 port in a thread; yields the OpenAI base URL."""
    with serving(create_app(seed_index.settings, index=seed_index)) as base:
        yield f"{base}/v1"


@pytest.fixture(scope="module")
def openai_client(served):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=served, api_key="x", max_retries=0, timeout=120)


def test_the_openai_client_gets_an_answer_citing_the_china_passage(openai_client):
    completion = openai_client.chat.completions.create(model="newsqa", messages=[user(QUESTION)])
    content = completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop" and completion.usage.total_tokens > 0
    assert any(m.group(4) == RETALIATION_DOC for m in source_lines(content))
    newsqa = completion.model_extra["newsqa"]
    assert any(p["doc_id"] == RETALIATION_DOC and "China" in p["text"] for p in newsqa["passages"])


def test_the_openai_client_streams_the_same_text_in_chunks(openai_client):
    whole = openai_client.chat.completions.create(model="newsqa", messages=[user(QUESTION)])
    stream = openai_client.chat.completions.create(model="newsqa", messages=[user(QUESTION)], stream=True)
    chunks = list(stream)
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert sum(1 for d in deltas if d) > 3
    assert "".join(deltas) == whole.choices[0].message.content


def test_the_openai_client_asks_a_follow_up_in_context(openai_client):
    first = openai_client.chat.completions.create(model="newsqa", messages=[user(QUESTION)])
    follow = openai_client.chat.completions.create(model="newsqa", messages=[
        user(QUESTION), {"role": "assistant", "content": first.choices[0].message.content}, user(FOLLOW_UP)])
    newsqa = follow.model_extra["newsqa"]
    assert newsqa["query"] == f"{QUESTION} {FOLLOW_UP}"
    assert any(m.group(4) == RETALIATION_DOC for m in source_lines(follow.choices[0].message.content))


def test_the_openai_client_lists_the_model_and_raises_on_bad_requests(openai_client):
    import openai

    assert [m.id for m in openai_client.models.list()] == ["newsqa"]
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model="newsqa", messages=[user("  ")])
    assert caught.value.code == "question_empty" and caught.value.param == "messages[0].content"
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model="newsqa", messages=[{"role": "system", "content": "hi"}])
    assert caught.value.code == "no_user_message"


def test_the_openai_client_sends_k_as_an_extra_field(openai_client):
    completion = openai_client.chat.completions.create(model="newsqa", messages=[user(QUESTION)], temperature=0,
                                                       max_tokens=10, extra_body={"k": 2})
    assert len(completion.model_extra["newsqa"]["passages"]) == 2
    assert len(source_lines(completion.choices[0].message.content)) == 2


@pytest.mark.parametrize("content, code, says", [
    ("\u0000\u0001", "question_empty", "the question is empty"),  # control characters are stripped: nothing left
    ("\u0007 \u001b\t", "question_empty", "the question is empty"),
    ("\u0000" * 2001, "question_empty", "the question is empty"),
    ("\u0000" + "x" * 2001, "question_too_long", "the limit is 2000"),
])
def test_the_error_code_names_the_check_the_question_failed(client, content, code, says):
    error = openai_error(client.post("/v1/chat/completions", json={"messages": [user(content)]}), 400,
                         param="messages[0].content", code=code)
    assert says in error["message"]
