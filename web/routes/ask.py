"""Asking: POST and GET /ask (JSON for programs, the chat page for browsers), POST /ask/stream (server-sent events
while the local model writes) and the chat page itself."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from itertools import zip_longest

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from qa.index import NewsIndex

from ..bodies import is_json, json_body, looks_like_json, parse, read_form
from ..deps import get_index, get_pages
from ..errors import show_errors_on
from ..guards import UnsupportedBody
from ..models import MAX_HISTORY_TURNS, AskForm, AskRequest, AskResponse, check_history
from ..negotiation import is_form, wants_html
from ..pages import Pages, chat_filters, history_view, turn_view
from .common import ERRORS, HTML_200, INDEX_ERRORS, body

router = APIRouter()
# The page carries the whole conversation in hidden fields; the search only leans on the latest turns.
FORM_HISTORY_TURNS = MAX_HISTORY_TURNS


def show_chat_errors(request: Request, pages: Pages, a: "Asked", partial: bool) -> dict:
    """Errors from here on show as the chat page with the conversation, the question and the filter row kept;
    returns the filter row as the request set it."""
    scope = a.scope or {}
    filters = chat_filters(scope.get("since"), scope.get("until"), scope.get("sources"))
    show_errors_on(request, lambda r, status, detail: pages.chat(
        r, a.earlier, k=a.k, error=detail, status=status, partial=partial, question=a.question, filters=filters))
    return filters


def answer_turn(a: "Asked", data: dict) -> dict:
    """The chat page's rendering of an answer to ``a``."""
    previous = a.history[-1]["question"] if a.history else ""
    return turn_view(a.turn, data, k=a.k, previous=previous)


async def reply(request: Request, index: NewsIndex, pages: Pages, a: "Asked", partial: bool):
    """The one answer path behind GET and POST /ask: JSON for programs, the chat page for browsers (its filter
    row set as the request's scope was)."""
    filters = show_chat_errors(request, pages, a, partial)
    if a.follows:
        # A permalinked follow-up: the turn it follows is answered again first, so that this one is answered as
        # it was in the conversation (which does not repeat the previous answer) and the page shows both turns,
        # numbered as they were.
        before = await run_in_threadpool(lambda: index.ask(a.follows, a.k, [], **(a.scope or {})))
        a = replace(a, history=[{"question": a.follows, "answer": before.answer}], turn=2,
                    earlier=[turn_view(1, before.to_dict(), k=a.k)])
    answer = await run_in_threadpool(lambda: index.ask(a.question, a.k, a.history, **(a.scope or {})))
    data = answer.to_dict()
    if wants_html(request):
        return pages.chat(request, a.earlier + [answer_turn(a, data)], k=a.k, partial=partial, filters=filters)
    return data


@dataclass
class Asked:
    """A question as POST /ask and /ask/stream read it, from JSON or from the chat page's form."""

    question: str
    k: int
    history: list[dict]
    turn: int
    earlier: list[dict]
    scope: dict | None = None
    follows: str = ""  # the question a permalinked follow-up follows (GET /ask?after=): answered again first


async def asked(request: Request, pages: Pages, partial: bool) -> Asked:
    """The question, its conversation and its filters from the body (JSON, or the chat page's form)."""
    max_chars = request.app.state.settings.max_question_chars
    if is_form(request) and not looks_like_json(await request.body()):
        form = await read_form(request)
        raw = {"question": form.get("question", ""), "k": form.get("k") or 5,
               "history_question": form.getlist("history_question"),
               "history_answer": form.getlist("history_answer"),
               "since": form.get("since", ""), "until": form.get("until", ""), "source": form.getlist("source")}
        show_errors_on(request, lambda r, status, detail: pages.chat(
            r, [], error=detail, status=status, partial=partial))
        form_body = parse(AskForm, raw)
        pairs = list(zip_longest(form_body.history_question, form_body.history_answer, fillvalue=""))
        pairs = [(q, a) for q, a in pairs if q.strip()][-FORM_HISTORY_TURNS:]
        first = len(form_body.history_question) - len(pairs) + 1
        check_history(pairs, max_chars, name="the conversation", first=first,
                      fields=("the question of turn {i}", "the answer of turn {i}"))
        earlier = [history_view(first + i, q, a) for i, (q, a) in enumerate(pairs)]
        history = [{"question": q, "answer": a} for q, a in pairs]
        # The filter row's empty fields ("any date", "any outlet") filter nothing.
        scope = {"since": form_body.since.strip() or None, "until": form_body.until.strip() or None,
                 "sources": [s for s in form_body.source if s.strip()]}
        return Asked(form_body.question, form_body.k, history, len(form_body.history_question) + 1, earlier, scope)
    if not (is_json(request) or is_form(request)):
        raise UnsupportedBody("send the question as JSON (content-type: application/json)")
    json_request = parse(AskRequest, await json_body(request))
    check_history([(t.question, t.answer or "") for t in json_request.history], max_chars)
    history = [turn.model_dump() for turn in json_request.history]
    earlier = [history_view(i + 1, t.question, t.answer or "") for i, t in enumerate(json_request.history)]
    scope = {"since": json_request.since, "until": json_request.until, "sources": json_request.sources,
             "doc_ids": json_request.doc_ids}
    return Asked(json_request.question, json_request.k, history, len(history) + 1, earlier, scope)


@router.post("/ask", summary="Answer a question", response_model=AskResponse,
             responses={**HTML_200, **ERRORS, **INDEX_ERRORS},
             openapi_extra=body({"application/json": "AskRequest", "application/x-www-form-urlencoded": "AskForm"}))
async def ask(request: Request, partial: bool = Query(False, include_in_schema=False),
              index: NewsIndex = Depends(get_index), pages: Pages = Depends(get_pages)):
    """Answer a question from the articles.

    Send JSON `{"question": "...", "k": 5, "history": [{"question": "...", "answer": "..."}]}`. The reply's
    `answer` holds one to three sentences taken from the passages, each followed by `[n]` (the passage's
    `rank`); `answer_spans` locate those sentences in their articles. When the articles don't answer the
    question, `answerable` is false, the answer says so, and the nearest passages are listed as weak matches.
    A follow-up that leans on the previous turn ("and what did they say about it?") is searched together
    with it. The chat page posts the same route as a form. With `QA_LLM_URL` set, a local model writes the
    answer from the passages and each of its sentences is checked against the passage it cites: `mode` says
    which wrote it, `sentences_dropped` how many the check removed, `fell_back` whether the extractive answer
    stands in (timeout, server error, nothing supported)."""
    return await reply(request, index, pages, await asked(request, pages, partial), partial)


def sse(event: str, data: dict) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


# One server-sent event of the stream (OpenAPI 3.1 tools read a text/event-stream schema as each event's schema).
STREAM_EVENT = {
    "type": "object", "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["draft", "sentence", "turn", "answer"]},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "description": "JSON: `{\"text\"}` for draft and sentence, `{\"html\"}` for turn, the answer as "
                                "POST /ask returns it for answer"},
    },
}
STREAM_200 = {200: {"description": "Server-sent events: `draft` (a piece the local model wrote, unchecked), "
                                   "`sentence` (a sentence that passed the check, with its markers), with "
                                   "`?partial=1` `turn` (the chat page's rendering of the answer), and last `answer` "
                                   "(the answer as POST /ask returns it)",
                    "content": {"text/event-stream": {"schema": STREAM_EVENT}}}}


@router.post("/ask/stream", summary="Answer a question, streaming the local model's draft",
             responses={**STREAM_200, **ERRORS, **INDEX_ERRORS},
             openapi_extra=body({"application/json": "AskRequest", "application/x-www-form-urlencoded": "AskForm"}))
async def ask_stream(request: Request, partial: bool = Query(False, include_in_schema=False),
                     index: NewsIndex = Depends(get_index), pages: Pages = Depends(get_pages)):
    """Answer a question as POST /ask does, as server-sent events while the local model (`QA_LLM_URL`) writes.

    `draft` events carry the model's text as it arrives, before any check; `sentence` events each sentence that
    its passage supports; the last event, `answer`, is the checked answer (or the extractive one when the model
    fails, is too slow or writes nothing supported) exactly as POST /ask returns it. The draft is for showing
    progress: only the `answer` is cited. Without `QA_LLM_URL` the stream is the `answer` event alone. Bad input
    is refused before the stream starts, as on POST /ask."""
    a = await asked(request, pages, partial)
    filters = show_chat_errors(request, pages, a, partial)
    extractive = await run_in_threadpool(lambda: index.ask(a.question, a.k, a.history, llm=False, **(a.scope or {})))

    def events():
        for kind, value in index.llm_events(extractive, a.history):
            if kind != "answer":
                yield sse(kind, {"text": value})
                continue
            data = value.to_dict()
            if partial:
                page = pages.chat(request, a.earlier + [answer_turn(a, data)], k=a.k, partial=True, filters=filters)
                yield sse("turn", {"html": page.body.decode("utf-8")})
            yield sse("answer", data)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/ask", summary="Answer a question given in the URL", response_model=AskResponse,
            responses={**HTML_200, **ERRORS, **INDEX_ERRORS})
async def ask_get(request: Request, q: str = Query("", description="the question (1 to 2,000 characters)"),
                  k: int = Query(5, ge=1, le=20, description="how many passages to return"),
                  since: str | None = Query(None, description="only articles dated on or after this day (YYYY-MM-DD)"),
                  until: str | None = Query(None, description="only articles dated on or before this day (YYYY-MM-DD)"),
                  source: list[str] = Query([], description="only articles from this outlet (repeatable)"),
                  doc_id: list[str] = Query([], description="only this article (repeatable)"),
                  after: str = Query("", description="the question this one follows up: a follow-up that leans on "
                                                     "it is searched together with it"),
                  index: NewsIndex = Depends(get_index), pages: Pages = Depends(get_pages)):
    """Answer a question given in the URL: `/ask?q=which+countries+retaliated%3F&k=5`, optionally restricted:
    `&since=2025-03-01&until=2025-03-31&source=Coastal+Post&doc_id=ferry`, and for a follow-up the question
    before it: `&after=…` (that question is answered again first and the follow-up asked after it, as in the
    conversation: the page shows both turns). Same reply as POST. The chat page's "Link to this answer" is such
    a URL."""
    if not q.strip() and wants_html(request):
        return RedirectResponse("/", status_code=303)
    scope = {"since": since, "until": until, "sources": source, "doc_ids": doc_id}
    after = after.strip()
    if after:
        check_history([(after, "")], request.app.state.settings.max_question_chars,
                      fields=("after", "after"))
    return await reply(request, index, pages, Asked(q, k, [], 1, [], scope, follows=after), False)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def chat(request: Request, pages: Pages = Depends(get_pages)):
    """The chat page."""
    return pages.chat(request, [])
