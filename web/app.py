"""The web app: the chat page, the articles pages and the JSON API, all over one NewsIndex.

Each route computes one result and renders it twice: JSON for programs and Jinja2 HTML for browsers (content
negotiation on Accept; the page's own forms post urlencoded or multipart and work without JavaScript). Everything
that embeds, reads the index or writes runs in the thread pool, so the event loop keeps answering while an article
is embedded or the index rebuilt; NewsIndex serializes the writes and lets readers see the old index or the new
one, never half of one.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
from contextlib import asynccontextmanager
from itertools import zip_longest
from pathlib import Path
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa.errors import InvalidInput, QAError, TooLarge, UnsupportedFile
from qa.index import NewsIndex
from qa.ingest import HTML_SUFFIXES, TEXT_SUFFIXES, article_from_text, decode, html_to_article, parse_date, safe_doc_id
from qa.records import Article
from qa.settings import Settings

from .guards import BodyLimit, HostGuard, UnsupportedBody, allowed_hosts, check_origin, check_token
from .highlight import answer_parts, passage_segments, segments
from .models import (
    AddArticle, AddResult, ArticleUpload, AskForm, AskRequest, AskResponse, DocumentOut, DocumentSummary, ErrorOut,
    MAX_HISTORY_TURNS, Health, HistoryTurn, RebuildResult, check_history,
)
from .negotiation import content_type, is_form, wants_html
from .openai_api import router as openai_router

log = logging.getLogger("qa.web")
HERE = Path(__file__).resolve().parent
UPLOAD_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES
# The page carries the whole conversation in hidden fields; the search only leans on the latest turns.
FORM_HISTORY_TURNS = MAX_HISTORY_TURNS
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HTML_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


class MalformedBody(QAError):
    """A body that is not JSON, or not the JSON the route reads."""

    status = 422


class ValidationErrorOut(ErrorOut):
    """A malformed body or parameter: ``detail`` in one line, ``errors`` field by field."""

    errors: list[dict] = []


_ERRORS = {
    400: {"model": ErrorOut, "description": "Bad input (empty, blank or too long question, bad date, …)"},
    422: {"model": ValidationErrorOut, "description": "Malformed body or parameter"},
}
_WRITE_ERRORS = {
    **_ERRORS,
    401: {"model": ErrorOut, "description": "Missing or wrong API token (when QA_API_TOKEN is set)"},
    403: {"model": ErrorOut, "description": "A write sent from another site's page"},
}
_HTML_200 = {200: {"description": "JSON, or the page when the client asks for text/html",
                   "content": {"text/html": {"schema": {"type": "string"}}}}}
_INDEX_ERRORS = {409: {"model": ErrorOut, "description": "No index yet, or one built with other settings"}}


def _body(content: dict[str, str]) -> dict:
    """OpenAPI text for a body that the route parses itself (it accepts several media types)."""
    return {"requestBody": {"required": True, "content": {
        media: {"schema": {"$ref": f"#/components/schemas/{model}"}} for media, model in content.items()
    }}}


def _validation_detail(errors: list[dict]) -> str:
    """Pydantic's errors in one line: 'k: Input should be less than or equal to 20; question: Field required'."""
    parts = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path")]
        parts.append(f"{'.'.join(loc) or 'body'}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "malformed request"


def _validation_error(errors: list[dict]) -> JSONResponse:
    plain = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
             for e in errors]
    return JSONResponse({"detail": _validation_detail(errors), "errors": plain}, status_code=422)


def _parse(model: type[BaseModel], data) -> BaseModel:
    """``model`` from parsed data, or the same 422 that FastAPI gives for a declared body."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = e.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in errors]) from None


async def _json_body(request: Request):
    raw = await request.body()
    if not raw.strip():
        raise MalformedBody("the body is empty: send a JSON object")
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise MalformedBody(f"the body is not valid UTF-8 JSON ({e})") from None
    _check_unicode(data)
    return data


def _check_unicode(value) -> None:
    """JSON may escape lone surrogates ("\\ud800"), which are not text: refuse them before they reach SQLite."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedBody("the body holds a lone surrogate escape, which is not valid Unicode text") from None
    elif isinstance(value, list):
        for item in value:
            _check_unicode(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_unicode(key)
            _check_unicode(item)


def _looks_like_json(raw: bytes) -> bool:
    # `curl -d '{"question": …}'` without a content type sends urlencoded: read it as the JSON it is.
    return raw.lstrip()[:1] == b"{"


def _document_link(doc_id: str, start: int, end: int, spans: list[dict]) -> str:
    """The article page, scrolled to a passage that is highlighted there with its answer sentences."""
    query = [("start", start), ("end", end)] + [("hl", f"{s['start']}-{s['end']}") for s in spans]
    return f"/documents/{quote(doc_id, safe='')}?{urlencode(query)}#passage"


def _turn_view(n: int, data: dict) -> dict:
    """What the page shows for one answered question."""
    spans = data["answer_spans"]
    cards = []
    for p in data["passages"]:
        mine = [s for s in spans if s["rank"] == p["rank"] and s["doc_id"] == p["doc_id"]]
        cards.append({**p, "segments": passage_segments(p, spans),
                      "link": _document_link(p["doc_id"], p["start"], p["end"], mine)})
    return {"n": n, "question": data["question"], "answer": data["answer"], "answerable": data["answerable"],
            "parts": answer_parts(data["answer"], {p["rank"] for p in data["passages"]}), "cards": cards,
            "took_ms": data["took_ms"], "full": True}


def _history_view(n: int, question: str, answer: str) -> dict:
    """An earlier turn re-rendered from the page's hidden fields (its passages are not resent)."""
    return {"n": n, "question": question, "answer": answer, "answerable": True, "parts": [(answer, None)],
            "cards": [], "full": False}


def create_app(settings: Settings | None = None, index: NewsIndex | None = None) -> FastAPI:
    """The FastAPI app over ``index`` (default: a NewsIndex opened with ``settings``, default: the environment)."""
    settings = settings or (index.settings if index is not None else Settings.from_env())
    index = index if index is not None else NewsIndex(settings)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    limit = settings.max_article_bytes
    max_size = f"{limit >> 20} MB" if limit >= 1 << 20 and limit % (1 << 20) == 0 else f"{limit:,} bytes"
    # JSON escapes can triple an article's size; multipart adds little.
    body_limit = 4 * settings.max_article_bytes + (1 << 20)

    def warm() -> None:
        """Open the index and load the model before the first question, so that one is fast too."""
        try:
            if index.exists():
                index.live()
                index.embedder.encode(["warm up"])
        except QAError as e:
            log.warning("the index cannot be opened yet: %s", e)

    @asynccontextmanager
    async def lifespan(_app):
        await run_in_threadpool(warm)
        yield

    app = FastAPI(
        title="News QA",
        version="0.1.0",
        description=(
            "Ask questions of a folder of news articles. Answers are sentences taken from the articles, each "
            "followed by `[n]`, the rank of the passage it comes from; every passage cites its article by "
            "character offsets (`text == article[start:end]`). Errors are JSON `{\"detail\": \"...\"}`. When "
            "QA_API_TOKEN is set, writes need `Authorization: Bearer <token>`."
        ),
        docs_url=None, redoc_url=None, lifespan=lifespan,
    )
    app.state.index = index
    app.state.settings = settings
    app.state.allowed_hosts = allowed_hosts(settings.allowed_hosts)
    app.add_middleware(BodyLimit, limit=body_limit)
    app.add_middleware(HostGuard, allowed=app.state.allowed_hosts)  # outermost: checked before anything else

    swagger = importlib.util.find_spec("swagger_ui")
    if swagger is not None and swagger.origin:
        app.mount("/static/swagger", StaticFiles(directory=str(Path(swagger.origin).parent / "static")),
                  name="swagger")
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    # --- rendering ----------------------------------------------------------------------------------------------
    def stats() -> dict | None:
        try:
            return index.stats()
        except QAError:
            return None

    def render(request: Request, name: str, context: dict, status: int = 200) -> HTMLResponse:
        base = {"token_required": bool(settings.api_token), "max_size": max_size,
                "max_question_chars": settings.max_question_chars}
        if "stats" not in context:
            base["stats"] = stats()
        return templates.TemplateResponse(request, name, {**base, **context}, status_code=status,
                                          headers=HTML_HEADERS)

    def error_page(request: Request, status: int, detail: str) -> HTMLResponse:
        return render(request, "error.html", {"status": status, "detail": detail}, status)

    def chat_page(request: Request, turns: list[dict], *, k: int = 5, error: str = "", status: int = 200,
                  partial: bool = False, question: str = "") -> HTMLResponse:
        if partial:
            return render(request, "_turn.html" if not error else "_error.html",
                          {"turn": turns[-1] if turns else None, "error": error}, status)
        return render(request, "chat.html", {"turns": turns, "k": k, "error": error, "stats": stats(),
                                             "question": question}, status)

    def documents_page(request: Request, *, message: str = "", error: str = "", status: int = 200,
                       added: str = "") -> HTMLResponse:
        try:
            docs, problem = [d.to_dict() for d in index.documents()], ""
        except QAError as e:
            docs, problem = [], str(e)
        return render(request, "documents.html", {"docs": docs, "stats": stats(), "message": message,
                                                  "error": error or problem, "added": added}, status)

    # --- errors -------------------------------------------------------------------------------------------------
    @app.exception_handler(QAError)
    async def qa_error(request: Request, exc: QAError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if wants_html(request):
            return error_page(request, exc.status, str(exc))
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        if wants_html(request):
            return error_page(request, 422, _validation_detail(list(exc.errors())))
        return _validation_error(list(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if wants_html(request):
            return error_page(request, exc.status_code, str(exc.detail))
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error: the server log has the details"}, status_code=500)

    # --- asking -------------------------------------------------------------------------------------------------
    async def reply(request: Request, question: str, k: int, history: list[dict], *, turn: int, partial: bool,
                    earlier: list[dict]):
        """The one answer path behind GET and POST /ask: JSON for programs, the chat page for browsers."""
        html = wants_html(request)
        try:
            answer = await run_in_threadpool(index.ask, question, k, history)
        except QAError as e:
            if not html:
                raise
            return chat_page(request, earlier, k=k, error=str(e), status=e.status, partial=partial, question=question)
        data = answer.to_dict()
        if html:
            return chat_page(request, earlier + [_turn_view(turn, data)], k=k, partial=partial)
        return data

    @app.post("/ask", summary="Answer a question", response_model=AskResponse,
              responses={**_HTML_200, **_ERRORS, **_INDEX_ERRORS},
              openapi_extra=_body({"application/json": "AskRequest", "application/x-www-form-urlencoded": "AskForm"}))
    async def ask(request: Request, partial: bool = Query(False, include_in_schema=False)):
        """Answer a question from the articles.

        Send JSON `{"question": "...", "k": 5, "history": [{"question": "...", "answer": "..."}]}`. The reply's
        `answer` holds one to three sentences taken from the passages, each followed by `[n]` (the passage's
        `rank`); `answer_spans` locate those sentences in their articles. When the articles don't answer the
        question, `answerable` is false, the answer says so, and the nearest passages are listed as weak matches.
        A follow-up that leans on the previous turn ("and what did they say about it?") is searched together
        with it. The chat page posts the same route as a form."""
        if is_form(request) and not _looks_like_json(await request.body()):
            html = wants_html(request)
            form = await request.form()
            raw = {"question": form.get("question", ""), "k": form.get("k") or 5,
                   "history_question": form.getlist("history_question"),
                   "history_answer": form.getlist("history_answer")}
            try:
                body = _parse(AskForm, raw)
            except RequestValidationError as e:
                if not html:
                    raise
                return chat_page(request, [], error=_validation_detail(list(e.errors())), status=422,
                                 partial=partial)
            pairs = list(zip_longest(body.history_question, body.history_answer, fillvalue=""))
            pairs = [(q, a) for q, a in pairs if q.strip()][-FORM_HISTORY_TURNS:]
            first = len(body.history_question) - len(pairs) + 1
            try:
                check_history(pairs, settings.max_question_chars, name="the conversation", first=first,
                              fields=("the question of turn {i}", "the answer of turn {i}"))
            except QAError as e:
                if not html:
                    raise
                return chat_page(request, [], error=str(e), status=e.status, partial=partial)
            earlier = [_history_view(first + i, q, a) for i, (q, a) in enumerate(pairs)]
            history = [{"question": q, "answer": a} for q, a in pairs]
            return await reply(request, body.question, body.k, history, turn=len(body.history_question) + 1,
                               partial=partial, earlier=earlier)
        if not (_is_json(request) or is_form(request)):
            raise UnsupportedBody("send the question as JSON (content-type: application/json)")
        body = _parse(AskRequest, await _json_body(request))
        check_history([(t.question, t.answer or "") for t in body.history], settings.max_question_chars)
        history = [turn.model_dump() for turn in body.history]
        earlier = [_history_view(i + 1, t.question, t.answer or "") for i, t in enumerate(body.history)]
        return await reply(request, body.question, body.k, history, turn=len(history) + 1, partial=partial,
                           earlier=earlier)

    @app.get("/ask", summary="Answer a question given in the URL", response_model=AskResponse,
             responses={**_HTML_200, **_ERRORS, **_INDEX_ERRORS})
    async def ask_get(request: Request, q: str = Query("", description="the question (1 to 2,000 characters)"),
                      k: int = Query(5, ge=1, le=20, description="how many passages to return")):
        """Answer a question given in the URL: `/ask?q=which+countries+retaliated%3F&k=5`. Same reply as POST."""
        if not q.strip() and wants_html(request):
            return RedirectResponse("/", status_code=303)
        return await reply(request, q, k, [], turn=1, partial=False, earlier=[])

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def chat(request: Request):
        """The chat page."""
        return chat_page(request, [])

    # --- articles -----------------------------------------------------------------------------------------------
    @app.get("/documents", summary="List the articles", response_model=list[DocumentSummary],
             responses={**_HTML_200, **_INDEX_ERRORS})
    def list_documents(request: Request):
        """Every article: id, title, date, source, url, chunk count, length and when it was added (HTML for
        browsers: the articles page, with forms to add, delete and rebuild)."""
        if wants_html(request):
            return documents_page(request)
        return [d.to_dict() for d in index.documents()]

    @app.get("/documents/{doc_id}", summary="One article", response_model=DocumentOut,
             responses={**_HTML_200, **_ERRORS, 404: {"model": ErrorOut}, **_INDEX_ERRORS})
    def get_document(request: Request, doc_id: str,
                     start: int | None = Query(None, ge=0, description="HTML only: start of the passage to highlight"),
                     end: int | None = Query(None, ge=0, description="HTML only: end of the passage to highlight"),
                     hl: list[str] = Query([], description="HTML only: answer sentences to highlight, as start-end")):
        """One article with its verbatim text and its chunks' offsets (HTML for browsers, with the passage
        `start:end` and the answer sentences `hl` highlighted)."""
        doc = index.document(doc_id)
        if not wants_html(request):
            return doc
        text = doc["text"]
        passage = None
        if start is not None or end is not None:
            if start is None or end is None or not start < end <= len(text):
                raise InvalidInput(f"start and end must satisfy 0 ≤ start < end ≤ {len(text)}")
            passage = (start, end)
        answers = []
        for item in hl:
            a, sep, b = item.partition("-")
            if not (sep and a.isdigit() and b.isdigit() and int(a) < int(b) <= len(text)):
                raise InvalidInput(f"hl must be start-end inside the article, not {item!r}")
            answers.append((int(a), int(b)))
        anchors: dict[int, list[str]] = {}
        for c in doc["chunks"]:
            anchors.setdefault(c["start"], []).append(f"chunk-{c['chunk_no']}")
        if passage:
            anchors.setdefault(passage[0], []).append("passage")
        url = doc["url"] if doc["url"].lower().startswith(("http://", "https://")) else ""
        return render(request, "document.html", {
            "doc": doc, "url": url, "passage": passage,
            "segments": segments(text, 0, passage=passage, answers=answers, anchors=anchors),
        })

    def add_sync(article: Article | None, fields: AddArticle | None) -> dict:
        if article is not None:
            report = index.add([article])
        else:
            if len(fields.text.encode("utf-8")) > settings.max_article_bytes:
                raise TooLarge(f"the article is over the {max_size} limit")
            report = index.add_text(fields.text, title=fields.title, date=fields.date, source=fields.source,
                                    url=fields.url, doc_id=fields.doc_id)
        doc_id = (report.added + report.updated + report.unchanged)[0]
        status = "added" if report.added else "updated" if report.updated else "unchanged"
        doc = index.document(doc_id)
        return {"doc_id": doc_id, "title": doc["title"], "chunks": len(doc["chunks"]), "status": status,
                "embedded": report.embedded, "seconds": report.seconds}

    def upload_article(filename: str, data: bytes, fields: dict) -> Article:
        """An article from an uploaded file; fields given in the form win over what the file states."""
        name = Path(filename.replace("\\", "/")).name
        suffix = Path(name).suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise UnsupportedFile(f"{name}: unsupported file type {suffix or '(none)'}; upload .txt, .md or .html")
        if len(data) > settings.max_article_bytes:
            raise TooLarge(f"{name} is {len(data) / 1e6:.1f} MB, over the {max_size} limit")
        text = decode(data, name)
        doc_id = fields.get("doc_id") or safe_doc_id(Path(name).stem)
        if suffix in HTML_SUFFIXES:
            article = html_to_article(text, doc_id=doc_id, path=name, date=fields.get("date", ""))
            overrides = {k: fields[k].strip() for k in ("title", "source", "url") if fields.get(k, "").strip()}
            return dataclasses.replace(article, **overrides)
        return article_from_text(text, doc_id=doc_id, path=name, **{
            k: fields.get(k, "") for k in ("title", "date", "source", "url")})

    @app.post("/documents", summary="Add an article", status_code=201, response_model=AddResult,
              responses={**_WRITE_ERRORS, 413: {"model": ErrorOut, "description": "Article over the size limit"},
                         415: {"model": ErrorOut, "description": "Binary, non-UTF-8 or unsupported file"}},
              openapi_extra=_body({"application/json": "AddArticle", "multipart/form-data": "ArticleUpload"}))
    async def add_document(request: Request):
        """Add an article: JSON `{"text": "...", "title"?, "date"?, "source"?, "url"?, "doc_id"?}` or a multipart
        upload of a .txt, .md or .html `file`. It is searchable by the very next question. Adding an article
        again with the same id replaces it."""
        html = wants_html(request)
        try:
            check_origin(request)
            article, fields = None, None
            if is_form(request):
                form = await request.form(max_part_size=body_limit)
                check_token(request, settings.api_token, _text(form.get("token")))
                values = {k: _text(form.get(k)) for k in ("text", "title", "date", "source", "url", "doc_id")}
                upload = form.get("file")
                if isinstance(upload, UploadFile) and upload.filename:
                    data = await upload.read(settings.max_article_bytes + 1)
                    if values["date"]:
                        values["date"] = parse_date(values["date"])
                    if values["doc_id"]:
                        values["doc_id"] = safe_doc_id(values["doc_id"])
                    article = upload_article(upload.filename, data, values)
                elif not values["text"].strip():
                    raise InvalidInput("paste the article text or choose a file to upload")
                else:
                    fields = _parse(AddArticle, values)
            elif _is_json(request):
                check_token(request, settings.api_token)
                fields = _parse(AddArticle, await _json_body(request))
            else:
                raise UnsupportedBody("send the article as JSON or as a multipart upload of a .txt, .md or .html file")
            result = await run_in_threadpool(add_sync, article, fields)
        except (QAError, RequestValidationError) as e:
            if not html:
                raise
            status, detail = _problem(e)
            return documents_page(request, error=detail, status=status)
        if html:
            verb = {"added": "Added", "updated": "Updated",
                    "unchanged": "Already indexed, unchanged:"}[result["status"]]
            return documents_page(
                request, status=201, added=result["doc_id"],
                message=f"{verb} “{result['title']}” ({result['doc_id']}, {result['chunks']} chunks) in "
                        f"{result['seconds']:.1f} s. Ask about it on the chat page.")
        return JSONResponse(AddResult(**result).model_dump(), status_code=201)

    @app.delete("/documents/{doc_id}", summary="Delete an article", status_code=204, response_class=Response,
                responses={**_WRITE_ERRORS, 404: {"model": ErrorOut}})
    async def delete_document(request: Request, doc_id: str):
        """Remove an article from the index (its text, chunks, vectors and BM25 entries)."""
        check_origin(request)
        check_token(request, settings.api_token)
        await run_in_threadpool(index.remove, doc_id)
        return Response(status_code=204)

    @app.post("/documents/{doc_id}/delete", include_in_schema=False)
    async def delete_document_form(request: Request, doc_id: str):
        """The articles page's delete button (HTML forms cannot send DELETE)."""
        try:
            check_origin(request)
            form = await request.form() if is_form(request) else {}
            check_token(request, settings.api_token, _text(form.get("token")) if form else None)
            await run_in_threadpool(index.remove, doc_id)
        except QAError as e:
            if not wants_html(request):
                raise
            return documents_page(request, error=str(e), status=e.status)
        if wants_html(request):
            return documents_page(request, message=f"Deleted {doc_id}.")
        return Response(status_code=204)

    @app.post("/index/rebuild", summary="Rebuild the index", response_model=RebuildResult,
              responses={**_WRITE_ERRORS, **_INDEX_ERRORS})
    async def rebuild(request: Request):
        """Rebuild the index from the stored articles into a new generation and switch to it atomically;
        questions keep being answered from the old one until then. Unchanged chunks reuse their vectors."""
        try:
            check_origin(request)
            form = await request.form() if is_form(request) else {}
            check_token(request, settings.api_token, _text(form.get("token")) if form else None)
            report = await run_in_threadpool(index.rebuild)
        except QAError as e:
            if not wants_html(request):
                raise
            return documents_page(request, error=str(e), status=e.status)
        result = {"documents": len(report.added), "chunks": report.chunks, "embedded": report.embedded,
                  "seconds": report.seconds}
        if wants_html(request):
            return documents_page(request, message=(
                f"Rebuilt the index: {result['documents']} articles, {result['chunks']} chunks "
                f"({result['embedded']} embedded anew) in {result['seconds']:.1f} s."))
        return result

    @app.get("/health", summary="Health and counts", response_model=Health,
             responses={503: {"model": ErrorOut, "description": "No usable index"}})
    def health():
        """Liveness and what is served: article and chunk counts, the model, the vector index type."""
        try:
            s = index.stats()
        except QAError as e:
            return JSONResponse({"detail": str(e)}, status_code=503)
        return {"status": "ok", **{k: s[k] for k in Health.model_fields if k != "status"}}

    # POST /v1/chat/completions and GET /v1/models: the OpenAI chat API over app.state.index (web/openai_api.py).
    app.include_router(openai_router)

    @app.get("/docs", include_in_schema=False)
    def docs():
        """Swagger UI, served from the bundled files (no CDN)."""
        if swagger is None:
            return HTMLResponse('<p>Swagger UI is not installed; the schema is at <a href="/openapi.json">'
                                '/openapi.json</a>.</p>')
        return get_swagger_ui_html(openapi_url="/openapi.json", title="News QA API",
                                   swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger/favicon-32x32.png")

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _, defs = models_json_schema(
                [(m, "validation") for m in (AskRequest, AskForm, HistoryTurn, AddArticle, ArticleUpload)],
                ref_template="#/components/schemas/{model}",
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app


def _text(value) -> str:
    """A form field as text ('' for a missing field or a file where text was expected)."""
    return value if isinstance(value, str) else ""


def _is_json(request: Request) -> bool:
    """A JSON body, or one sent without a content type (read as JSON)."""
    media = content_type(request)
    return media in ("", "application/json") or media.endswith("+json")


def _problem(e: Exception) -> tuple[int, str]:
    if isinstance(e, RequestValidationError):
        return 422, _validation_detail(list(e.errors()))
    return e.status, str(e)


__all__ = ["create_app"]
