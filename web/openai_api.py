"""The OpenAI chat API over the same NewsIndex: ``POST /v1/chat/completions`` (whole, or streamed as server-sent
events) and ``GET /v1/models``, so any OpenAI client or chat front end can ask the articles.

The last user message is the question; the earlier user and assistant messages are the conversation that
``NewsIndex.ask`` reads follow-ups against; system messages are ignored. The reply's ``content`` is the answer with
its ``[n]`` markers followed by the numbered passages, and the top-level ``newsqa`` field carries the full answer
(passages with their exact offsets, answer spans, the query searched), as ``POST /ask`` returns it; OpenAI clients
ignore it. Asking is a read, as ``/ask`` is: no API token is needed. Errors on these routes have OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``.

Self-contained: the router reads the index the app serves from ``app.state.index`` and needs nothing else from
``web/app.py``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa.errors import IndexCorrupt, IndexMismatch, IndexMissing, QAError
from qa.index import NewsIndex
from qa.records import Answer, Passage, page_label, strip_controls

from .deps import get_index
from .models import MAX_HISTORY_ANSWER_CHARS, MAX_HISTORY_TURNS, AskResponse

log = logging.getLogger("qa.web.openai")

MODEL_ID = "newsqa"
MODEL_CREATED = 1_767_225_600  # 2026-01-01: a fixed date, so /v1/models answers the same every time
SOURCES = "Sources:"
NEAREST = "Nearest passages (they don't answer it):"
# The search only leans on the latest turns; longer conversations keep their last ones (as the chat page does).
WORDS_PER_CHUNK = 6  # a streamed chunk carries a few words (never across a line break)


# --- errors ---------------------------------------------------------------------------------------------------------
class ChatError(QAError):
    """A request these routes refuse, said the way OpenAI says it (``param`` names the field at fault)."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code


class ErrorBody(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error for 4xx, server_error for 5xx")
    param: str | None = Field(None, description="the request field at fault, such as `messages` or `n`")
    code: str | None = Field(None, description="e.g. `question_empty`, `question_too_long`, `no_user_message`, "
                                               "`index_missing`, `index_mismatch`, `index_corrupt`, `model_not_found`")


class OpenAIErrorOut(BaseModel):
    """Every error on the /v1 routes, in OpenAI's shape."""

    error: ErrorBody


def error_response(status: int, message: str, *, param: str | None = None, code: str | None = None) -> JSONResponse:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status, headers=headers)


def _param(loc) -> str | None:
    """Pydantic's location as OpenAI writes it: ('body', 'messages', 0, 'role') -> 'messages[0].role'."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def _validation_response(errors: list[dict]) -> JSONResponse:
    """A malformed body: 400 invalid_request_error naming the first field at fault (all of them in the message)."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "the body is not valid JSON", code="invalid_json")
    if not errors:
        return error_response(400, "malformed request")
    if [tuple(e.get("loc", ())) for e in errors] == [("body",)] and errors[0].get("type") == "missing":
        return error_response(400, "the body is empty: send a JSON object with `messages`", code="missing")
    parts = []
    for e in errors:
        where = _param(e.get("loc", ()))
        parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
    first = errors[0]
    return error_response(400, "; ".join(parts), param=_param(first.get("loc", ())), code=str(first.get("type")))


def _is_json(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media in ("", "application/json") or (media.startswith("application/") and media.endswith("+json"))


class _OpenAIRoute(APIRoute):
    """Routes whose every error, the body's validation included, has OpenAI's shape rather than the app's."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request):
            try:
                if request.method == "POST":
                    if not _is_json(request):
                        raise ChatError("send the request as JSON (content-type: application/json)", status=415,
                                        code="unsupported_media_type")
                    await request.body()  # read here, so a body over the app's size limit gets its 413
                return await handler(request)
            except RequestValidationError as e:
                return _validation_response(list(e.errors()))
            except ChatError as e:
                return error_response(e.status, str(e), param=e.param, code=e.code)
            except QAError as e:
                code = {IndexMissing: "index_missing", IndexMismatch: "index_mismatch",
                        IndexCorrupt: "index_corrupt"}.get(type(e))
                return error_response(e.status, str(e), code=code)
            except StarletteHTTPException as e:
                return error_response(e.status_code, str(e.detail))
            except Exception:
                log.exception("unexpected error on %s %s", request.method, request.url.path)
                return error_response(500, "internal error: the server log has the details")

        return route


router = APIRouter(prefix="/v1", tags=["OpenAI-compatible API"], route_class=_OpenAIRoute,
                   strict_content_type=False)  # a body sent without a content type is read as JSON, as /ask does
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": OpenAIErrorOut, "description": "No user message, an empty or too long question, a malformed "
                                                  "body, or n > 1"},
    409: {"model": OpenAIErrorOut, "description": "No index yet, or one built with other settings"},
    415: {"model": OpenAIErrorOut, "description": "A body that is not JSON"},
    503: {"model": OpenAIErrorOut, "description": "The index is damaged: `qa doctor` repairs it"},
    # Declaring 4XX also keeps FastAPI from listing a 422 these routes never send (malformed bodies get 400).
    "4XX": {"model": OpenAIErrorOut, "description": "Any other client error (413: a body over the size limit)"},
}




# --- request --------------------------------------------------------------------------------------------------------
class ContentPart(BaseModel):
    """A part of a message's content; only ``text`` parts are read."""

    model_config = ConfigDict(extra="allow")
    type: str = "text"
    text: str = ""


class ChatMessage(BaseModel):
    """One message. ``content`` is a string or a list of parts (text parts are joined; others are ignored)."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content or () if p.type in ("text", "input_text"))


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat request. The last user message is the question, earlier user and assistant messages the
    conversation; ``k`` (not OpenAI's: send it with ``extra_body``) is how many passages to cite. The sampling
    fields are accepted and ignored: answers are sentences taken from the articles, or written by the local model
    (``QA_LLM_URL``) with the server's own settings and checked sentence by sentence."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [
        {"model": MODEL_ID, "messages": [{"role": "user", "content": "Which countries retaliated?"}]},
        {"model": MODEL_ID, "stream": True, "messages": [
            {"role": "user", "content": "What tariffs did the U.S. put on steel?"},
            {"role": "assistant", "content": "…"},
            {"role": "user", "content": "And which countries retaliated?"}]},
    ]})
    messages: list[ChatMessage]
    model: str = Field(MODEL_ID, description=f"ignored: there is one model, `{MODEL_ID}`")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    k: int = Field(5, ge=1, le=20, description="how many passages to cite (newsqa's own field)")
    since: str | None = Field(None, description="only articles dated on or after this day, YYYY-MM-DD (newsqa's own)")
    until: str | None = Field(None, description="only articles dated on or before this day, YYYY-MM-DD (newsqa's own)")
    sources: list[str] = Field(default_factory=list, description="only articles from these outlets (newsqa's own)")
    doc_ids: list[str] = Field(default_factory=list, description="only these articles (newsqa's own)")
    n: int | None = Field(None, ge=1, description="only 1 is supported")
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    user: str | None = None


# --- response -------------------------------------------------------------------------------------------------------
class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: str | None = None


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop"]


class Usage(BaseModel):
    """Approximate: words, not tokens."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """OpenAI's chat completion, plus ``newsqa``: the answer as POST /ask returns it (passages with exact
    offsets, answer spans, the query searched)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[Choice]
    usage: Usage
    newsqa: AskResponse


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


# --- the conversation -----------------------------------------------------------------------------------------------
def strip_sources(content: str) -> str:
    """One of our own earlier replies without its list of passages: the answer sentences alone."""
    for heading in (SOURCES, NEAREST):
        cut = content.find(f"\n\n{heading}\n")
        if cut >= 0:
            content = content[:cut]
    return content.strip()


def _check_text(value: str, param: str) -> None:
    """JSON may escape lone surrogates, which are not text: refuse them before they reach SQLite."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ChatError(f"{param} holds a lone surrogate escape, which is not valid Unicode text",
                        param=param, code="invalid_value") from None


def conversation(messages: list[ChatMessage], max_question_chars: int = 2000) -> tuple[str, list[dict], int]:
    """The question (the last user message), the earlier turns, oldest first, as ``NewsIndex.ask`` reads them, and
    the question's position in ``messages``. The turns are held to the limits ``POST /ask`` puts on its history
    (``web.models``): an earlier question to ``max_question_chars``, since a follow-up is searched with it. A chat
    client sends its whole transcript, so only the latest turns are kept and long answers are cut, not refused."""
    last = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None)
    if last is None:
        raise ChatError("messages holds no user message: the last one with role 'user' is the question",
                        param="messages", code="no_user_message")
    question = messages[last].text()
    _check_text(question, f"messages[{last}].content")
    history: list[dict] = []
    for i, m in enumerate(messages[:last]):
        if m.role not in ("user", "assistant"):
            continue
        text = m.text()
        _check_text(text, f"messages[{i}].content")
        if m.role == "user":
            if not text.strip():
                continue
            if len(text.strip()) > max_question_chars:
                raise ChatError(f"messages[{i}] is {len(text.strip()):,} characters long; an earlier question, like "
                                f"a question, may have at most {max_question_chars:,}", param=f"messages[{i}].content",
                                code="string_too_long")
            history.append({"question": text.strip(), "answer": ""})
        elif history and not history[-1]["answer"]:
            # An assistant message before any question (a greeting) answers nothing: it is left out.
            history[-1]["answer"] = strip_sources(text)[:MAX_HISTORY_ANSWER_CHARS]
    return question, history[-MAX_HISTORY_TURNS:], last


def _validated_question(index: NewsIndex, question: str, param: str) -> str:
    """The question as ``index.validate_question`` accepts it, or a 400 that says what is wrong."""
    try:
        return index.validate_question(question)
    except QAError as e:
        # The code follows the check that failed, as validate_question makes them: control characters alone are an
        # empty question (they are stripped), not a long one.
        if not strip_controls(question).strip():
            code = "question_empty"
        elif len(question) > index.settings.max_question_chars:
            code = "question_too_long"
        else:
            code = "invalid_value"
        raise ChatError(str(e), param=param, code=code) from None


def source_line(p: Passage) -> str:
    """``[n] title (date, doc_id, chars a–b)``, the date left out where the article states none."""
    title = " ".join(p.title.split()) or p.doc_id
    where = ", ".join(x for x in (p.date, page_label(p.pages), p.doc_id, f"chars {p.start}–{p.end}") if x)
    return f"[{p.rank}] {title} ({where})"


def render_content(answer: Answer) -> str:
    """The answer with its ``[n]`` markers, then one line per passage (weak matches under their own heading)."""
    lines = [answer.answer.strip()]
    if answer.passages:
        lines += ["", SOURCES if answer.answerable else NEAREST]
        lines += [source_line(p) for p in answer.passages]
    return "\n".join(lines)


def pieces(content: str) -> list[str]:
    """``content`` cut into a few words at a time, never across a line break; joined they are ``content``."""
    words = re.split(r"(?<=\s)(?=\S)", content)
    out: list[str] = []
    current, count = "", 0
    for w in words:
        current += w
        count += 1
        if count >= WORDS_PER_CHUNK or "\n" in w:
            out.append(current)
            current, count = "", 0
    if current:
        out.append(current)
    return out


def _words(text: str) -> int:
    return len(text.split())


# --- routes ---------------------------------------------------------------------------------------------------------
# One server-sent event of the stream (OpenAPI 3.1 tools read a text/event-stream schema as the schema of each event).
SSE_EVENT = {
    "type": "object", "required": ["data"],
    "properties": {
        "data": {"type": "string", "contentMediaType": "application/json",
                 "description": "a chat.completion.chunk as JSON; the last event's data is `[DONE]`"},
        "event": {"type": "string"}, "id": {"type": "string"}, "retry": {"type": "integer"},
    },
}


@router.post("/chat/completions", summary="Answer a chat (OpenAI-compatible)", response_model=ChatCompletion,
             responses={**_ERRORS, 200: {"description": "A chat.completion, or with `stream: true` server-sent "
                                                        "events of chat.completion.chunk ending with `data: [DONE]`",
                                         "content": {"text/event-stream": {"schema": SSE_EVENT}}}})
async def chat_completions(body: ChatCompletionRequest, index: NewsIndex = Depends(get_index)):
    """Answer the last user message from the articles, as OpenAI's chat completions do.

    Earlier user and assistant messages are the conversation: a follow-up that leans on the previous question is
    searched together with it. `choices[0].message.content` is the answer with its `[n]` markers, then the passages,
    one line each: `[n] title (date, doc_id, chars a–b)`. When the articles don't answer, the content says "The
    articles don't say." and lists the nearest passages under their own heading. The `newsqa` field holds the full
    answer as `POST /ask` returns it. With `stream: true` the content comes as server-sent events: a first chunk
    with the role, chunks of a few words, a last one with `finish_reason: "stop"` (and `newsqa`), then
    `data: [DONE]`. `temperature`, `max_tokens`, `user` and the other sampling fields are accepted and ignored;
    `n` must be 1. Send `k` (1–20, default 5) to choose how many passages are cited.

    With `QA_LLM_URL` set, a local model writes the answer and each sentence is checked against the passage it
    cites (`newsqa.mode`, `newsqa.sentences_dropped`, `newsqa.fell_back`); streamed, each sentence is sent as soon
    as it has passed the check, so a client never receives a sentence the check removed."""
    if body.n not in (None, 1):
        raise ChatError("n must be 1: there is one answer to a question", param="n", code="unsupported_value")
    question, history, last = conversation(body.messages, index.settings.max_question_chars)
    question = _validated_question(index, question, f"messages[{last}].content")
    for name in ("sources", "doc_ids"):
        for i, value in enumerate(getattr(body, name)):
            _check_text(value, f"{name}[{i}]")
    # A stream written by the local model is asked for the extractive answer first, then written as it streams.
    written = bool(body.stream) and index.writer is not None
    answer = await run_in_threadpool(lambda: index.ask(question, body.k, history, since=body.since, until=body.until,
                                                       sources=body.sources, doc_ids=body.doc_ids,
                                                       llm=not written))
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    prompt = sum(_words(m.text()) for m in body.messages if m.role in ("user", "assistant"))

    def usage_of(content: str) -> dict:
        return {"prompt_tokens": prompt, "completion_tokens": _words(content),
                "total_tokens": prompt + _words(content)}

    if not body.stream:
        content = render_content(answer)
        newsqa = answer.to_dict()
        usage = usage_of(content)
        return {"id": completion_id, "object": "chat.completion", "created": created, "model": MODEL_ID,
                "system_fingerprint": None,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": usage, "newsqa": newsqa}
    with_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID,
                "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
        if with_usage:
            data.setdefault("usage", None)
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    def events():
        yield chunk({"role": "assistant", "content": ""})
        final, said = answer, ""
        # Each sentence the local model writes is sent once it has passed the check (a client cannot take back
        # what it was sent); when none passes, the extractive answer is sent instead.
        for kind, value in (index.llm_events(answer, history) if written else [("answer", answer)]):
            if kind == "sentence":
                piece = (" " if said else "") + value
                said += piece
                yield chunk({"content": piece})
            elif kind == "answer":
                final = value
        content = render_content(final)
        for piece in pieces(content[len(said):]):
            yield chunk({"content": piece})
        yield chunk({}, "stop", newsqa=final.to_dict())
        if with_usage:
            data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID,
                    "system_fingerprint": None, "choices": [], "usage": usage_of(content)}
            yield f"data: {json.dumps(data)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _model() -> dict:
    return {"id": MODEL_ID, "object": "model", "created": MODEL_CREATED, "owned_by": "newsqa"}


@router.get("/models", summary="The one model (OpenAI-compatible)", response_model=ModelList)
async def list_models():
    """The models this server answers with: one, `newsqa` (extractive answers cited from the articles)."""
    return {"object": "list", "data": [_model()]}


@router.get("/models/{model}", summary="One model (OpenAI-compatible)", response_model=ModelOut,
            responses={404: {"model": OpenAIErrorOut, "description": "Not a model this server has"},
                       "4XX": _ERRORS["4XX"]})
async def get_model(model: str):
    """`newsqa`, the one model; any other name is 404 model_not_found."""
    if model != MODEL_ID:
        raise ChatError(f"the model {model!r} does not exist: this server has one, {MODEL_ID!r}", status=404,
                        param="model", code="model_not_found")
    return _model()


__all__ = ["router", "get_index", "ChatCompletionRequest", "ChatCompletion", "render_content", "pieces"]
