"""The articles: list, read, add, delete, rebuild (JSON for programs, the articles pages for browsers)."""

from __future__ import annotations

import dataclasses
import re
from functools import partial
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from qa.errors import Conflict, InvalidInput, NotFound, QAError, TooLarge, UnsupportedFile
from qa.index import NewsIndex
from qa.ingest import (HTML_SUFFIXES, MARKDOWN_SUFFIXES, PDF_SUFFIXES, TEXT_SUFFIXES, article_from_text, content_hash,
                       decode, html_to_article, parse_date, pdf_to_article, safe_doc_id)
from qa.records import Article
from qa.settings import Settings, size_text

from ..bodies import is_json, json_body, parse, read_form, text
from ..deps import get_index, get_pages, get_settings, write_access
from ..errors import show_errors_on
from ..guards import UnsupportedBody
from ..highlight import segments
from ..jobs import Job, Jobs
from ..models import (AddArticle, AddResult, ArticleUpload, DocumentOut, DocumentSummary, ErrorOut, JobReply,
                      RebuildResult)
from ..negotiation import is_form, wants_html
from ..pages import Listing, Pages, passage_check
from .common import ERRORS, HTML_200, INDEX_ERRORS, SEE_PAGE, WRITE_ERRORS, body

UPLOAD_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES
_DIGITS = re.compile(r"[0-9]{1,12}")  # an offset; int() refuses over 4,300 digits


def on_documents_page(request: Request) -> None:
    """Errors of the articles page's forms are shown on the articles page."""
    pages: Pages = request.app.state.pages
    # What the add form held comes back with the error (without JavaScript the page is new: it was lost).
    show_errors_on(request, lambda r, status, detail: pages.documents(
        r, error=detail, status=status, typed=getattr(r.state, "typed", None)))


router = APIRouter()
# The write routes: errors on the articles page for browsers, then the origin and token checks.
writes = APIRouter(dependencies=[Depends(on_documents_page), Depends(write_access)])


@router.get("/documents", summary="List the articles", response_model=list[DocumentSummary],
            responses={**HTML_200, 422: ERRORS[422], **INDEX_ERRORS})
def list_documents(request: Request, response: Response,
                   q: str = Query("", max_length=1000, description="only articles whose title, source or id holds "
                                                                    "this (any case)"),
                   sort: Literal["date", "title", "source", "chunks", "added"] = Query(
                       "date", description="sort by this (undated articles come last when sorted by date)"),
                   order: Literal["asc", "desc", ""] = Query(
                       "", description="asc or desc (default: desc for date, chunks and added, asc for title and "
                                       "source)"),
                   limit: int | None = Query(None, ge=1, le=100_000, description="JSON: at most this many (default: "
                                                                                   "all)"),
                   offset: int = Query(0, ge=0, le=10**9, description="JSON: skip this many first"),
                   page: int = Query(1, ge=1, le=10**6, description="HTML: the page of 50 articles to show"),
                   index: NewsIndex = Depends(get_index), pages: Pages = Depends(get_pages)):
    """The articles, newest first: id, title, date, source, url, chunk count, length and when it was added.
    `q` searches titles, sources and ids, `sort`/`order` sort, `limit`/`offset` take a slice; the header
    `X-Total-Count` says how many match `q`. HTML for browsers: the articles page (50 a page, with the search box,
    sortable columns and forms to add, delete and rebuild)."""
    listing = Listing(q=q, sort=sort, order=order, page=page)
    if wants_html(request):
        message, added = done_message(index, request.query_params)
        return pages.documents(request, message=message, added=added, listing=listing)
    response.headers["X-Total-Count"] = str(index.count_documents(search=q))
    return [d.to_dict() for d in index.documents(search=q, sort=sort, descending=listing.descending, limit=limit,
                                                  offset=offset)]


def done_message(index: NewsIndex, query) -> tuple[str, str]:
    """What the articles page says after a form's write redirected to it (POST-redirect-GET): the write is
    named in the query (``added``/``status``, ``deleted``, ``rebuilt``); the rest is read from the index now."""
    seconds = _number(query.get("seconds"))
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    if query.get("added"):
        doc_id = query["added"]
        try:
            doc = index.document(doc_id)
        except QAError:
            return "", ""
        verb = {"updated": "Updated", "unchanged": "Already indexed, unchanged:"}.get(query.get("status", ""), "Added")
        return (f"{verb} “{doc['title']}” ({doc_id}, {len(doc['chunks'])} chunks){took}. "
                "Ask about it on the chat page."), doc_id
    if query.get("deleted"):
        return f"Deleted {query['deleted']}.", ""
    if query.get("rebuilt") is not None:
        documents, chunks, embedded = (_number(query.get(k)) for k in ("rebuilt", "chunks", "embedded"))
        if None not in (documents, chunks, embedded):
            return (f"Rebuilt the index: {documents:.0f} articles, {chunks:.0f} chunks ({embedded:.0f} embedded "
                    f"anew){took}."), ""
    return "", ""


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and 0 <= number < 1e12 else None


def see_documents(**query) -> RedirectResponse:
    """303 to the articles page, which says what was done: reloading it repeats nothing."""
    return RedirectResponse(f"/documents?{urlencode(query)}", status_code=303)


@router.get("/documents/{doc_id}", summary="One article", response_model=DocumentOut,
            responses={**HTML_200, **ERRORS, 404: {"model": ErrorOut}, **INDEX_ERRORS})
def get_document(request: Request, doc_id: str,
                 start: int | None = Query(None, ge=0, description="HTML only: start of the passage to highlight"),
                 end: int | None = Query(None, ge=0, description="HTML only: end of the passage to highlight"),
                 hl: list[str] = Query([], description="HTML only: answer sentences to highlight, as start-end"),
                 check: str = Query("", max_length=64, description="HTML only: the cited passage's checksum, from "
                                    "an answer's link: when the article has changed since, nothing is highlighted "
                                    "and the page says so"),
                 index: NewsIndex = Depends(get_index), pages: Pages = Depends(get_pages)):
    """One article with its verbatim text and its chunks' offsets (HTML for browsers, with the passage
    `start:end` and the answer sentences `hl` highlighted)."""
    doc = index.document(doc_id)
    if not wants_html(request):
        return doc
    article = doc["text"]
    passage = None
    # A link kept from before the article was replaced: its characters now hold other text, which was highlighted
    # as "the one cited".
    changed = bool(check) and not (start is not None and end is not None and 0 <= start < end <= len(article)
                                   and passage_check(article[start:end]) == check)
    if changed:
        start = end = None
        hl = []
    if start is not None or end is not None:
        if start is None or end is None or not start < end <= len(article):
            raise InvalidInput(f"start and end must satisfy 0 ≤ start < end ≤ {len(article)}")
        passage = (start, end)
    answers = []
    for item in hl:
        a, sep, b = item.partition("-")
        # ASCII digits only: "²".isdigit() is true, but int() refuses it.
        if not (sep and _DIGITS.fullmatch(a) and _DIGITS.fullmatch(b) and int(a) < int(b) <= len(article)):
            raise InvalidInput(f"hl must be start-end inside the article, not {item!r}")
        answers.append((int(a), int(b)))
    anchors: dict[int, list[str]] = {}
    for c in doc["chunks"]:
        anchors.setdefault(c["start"], []).append(f"chunk-{c['chunk_no']}")
    if passage:
        anchors.setdefault(passage[0], []).append("passage")
    url = doc["url"] if doc["url"].lower().startswith(("http://", "https://")) else ""
    return pages.render(request, "document.html", {
        "doc": doc, "url": url, "passage": passage, "changed": changed,
        "segments": segments(article, 0, passage=passage, answers=answers, anchors=anchors),
    })


def add_sync(index: NewsIndex, article: Article, progress=None) -> dict:
    report = index.add([article], progress=progress)
    doc_id = (report.added + report.updated + report.unchanged)[0]
    status = "added" if report.added else "updated" if report.updated else "unchanged"
    doc = index.document(doc_id)
    return {"doc_id": doc_id, "title": doc["title"], "chunks": len(doc["chunks"]), "status": status,
            "embedded": report.embedded, "seconds": report.seconds}


BACKGROUND = {202: {"model": JobReply, "description": "With `?background=1` or `Prefer: respond-async`: the job "
                                                     "started, to poll at `Location: /jobs/{id}`"}}


def in_background(request: Request) -> bool:
    """The client asked for a background job: ``?background=1`` or ``Prefer: respond-async``."""
    flag = request.query_params.get("background", "").lower() in ("1", "true", "yes")
    prefer = request.headers.get("prefer", "").lower()
    return flag or "respond-async" in [p.split("=")[0].strip() for p in prefer.replace(";", ",").split(",")]


def accepted(job: Job) -> JSONResponse:
    return JSONResponse({"job": job.to_dict()}, status_code=202, headers={"Location": f"/jobs/{job.id}"})


def check_name_free(index: NewsIndex, article: Article) -> None:
    """Conflict when an upload named by its file alone would replace a stored article with other text: browsers
    send a file's name without its folder, so two reports both named "article.txt" are one id, and the second
    silently took the place of the first. Sent again unchanged, or with its id given, it is the same article."""
    stored = index.stored_hashes([article.doc_id])[article.doc_id]
    if stored is None or stored == content_hash(article):
        return
    held = index.document(article.doc_id)
    raise Conflict(f"an article from a file named {held['path'] or article.path} is already stored as "
                   f"{article.doc_id!r} (“{held['title']}”), with other text: to replace it, delete it first (or "
                   f"send doc_id={article.doc_id}); to keep both, rename this file")


def upload_article(settings: Settings, filename: str, data: bytes, fields: dict) -> Article:
    """An article from an uploaded file; fields given in the form win over what the file states."""
    name = Path(filename.replace("\\", "/")).name
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise UnsupportedFile(f"{name}: unsupported file type {suffix or '(none)'}; upload .txt, .md, .html or .pdf")
    if len(data) > settings.max_article_bytes:
        # Only the limit and one byte more were read: the file's own size is not known here.
        raise TooLarge(f"{name} is larger than the {size_text(settings.max_article_bytes)} limit")
    doc_id = fields.get("doc_id") or safe_doc_id(Path(name).stem)
    if suffix in PDF_SUFFIXES:
        article = pdf_to_article(data, doc_id=doc_id, path=name, date=fields.get("date", ""))
        overrides = {k: fields[k].strip() for k in ("title", "source", "url") if fields.get(k, "").strip()}
        return dataclasses.replace(article, **overrides)
    decoded = decode(data, name)
    if suffix in HTML_SUFFIXES:
        article = html_to_article(decoded, doc_id=doc_id, path=name, date=fields.get("date", ""))
        overrides = {k: fields[k].strip() for k in ("title", "source", "url") if fields.get(k, "").strip()}
        return dataclasses.replace(article, **overrides)
    return article_from_text(decoded, doc_id=doc_id, path=name, markdown=suffix in MARKDOWN_SUFFIXES, **{
        k: fields.get(k, "") for k in ("title", "date", "source", "url")})


@writes.post("/documents", summary="Add an article", status_code=201, response_model=AddResult,
             responses={**BACKGROUND, **SEE_PAGE, **WRITE_ERRORS,
                        409: {"model": ErrorOut, "description": "No index yet, or one built with other settings; or "
                              "an upload whose file name names a stored article with other text (no doc_id given)"},
                        413: {"model": ErrorOut, "description": "Article over the size limit"},
                        415: {"model": ErrorOut, "description": "Binary, non-UTF-8 or unsupported file"}},
             openapi_extra=body({"application/json": "AddArticle", "multipart/form-data": "ArticleUpload"}))
async def add_document(request: Request, index: NewsIndex = Depends(get_index),
                       settings: Settings = Depends(get_settings)):
    """Add an article: JSON `{"text": "...", "title"?, "date"?, "source"?, "url"?, "doc_id"?}` or a multipart
    upload of a .txt, .md, .html or .pdf `file` (a PDF without a text layer, such as a scan, is refused with
    415). It is searchable by the very next question. Adding an article
    again with the same id replaces it. With `?background=1` (or `Prefer: respond-async`) the answer is 202 and a
    job to poll at `GET /jobs/{id}`; errors in the request itself are still answered at once."""
    article, fields = None, None
    if is_form(request):
        form = await read_form(request, request.app.state.body_limit)
        values = {k: text(form.get(k)) for k in ("text", "title", "date", "source", "url", "doc_id")}
        request.state.typed = values
        upload = form.get("file")
        if isinstance(upload, UploadFile) and upload.filename:
            parse(ArticleUpload, {"doc_id": values["doc_id"]})  # the pattern the schema declares (422), as for JSON
            if values["text"].strip():  # the pasted text was dropped, and its title put over the file's
                raise InvalidInput("send either pasted text or a file, not both: the text would be lost")
            data = await upload.read(settings.max_article_bytes + 1)
            if values["date"]:
                values["date"] = parse_date(values["date"])
            article = upload_article(settings, upload.filename, data, values)
            if not values["doc_id"]:
                await run_in_threadpool(check_name_free, index, article)
        elif isinstance(upload, str) and upload:
            raise InvalidInput("the file part has no file name: send it with a name ending in .txt, .md, .html or "
                               ".pdf (the type is read from it), or send the text as `text`")
        elif not values["text"].strip():
            raise InvalidInput("paste the article text or choose a file to upload")
        else:
            fields = parse(AddArticle, values)
    elif is_json(request):
        fields = parse(AddArticle, await json_body(request))
    else:
        raise UnsupportedBody("send the article as JSON or as a multipart upload of a .txt, .md, .html or .pdf file")
    if article is None:
        # Read before any job starts, so that a bad field is answered at once, in the background too; the size
        # against this server's limit (QA_MAX_ARTICLE_BYTES as it was started with).
        if len(fields.text.encode("utf-8")) > settings.max_article_bytes:
            raise TooLarge(f"the article is over the {size_text(settings.max_article_bytes)} limit")
        article = await run_in_threadpool(partial(
            index.text_article, fields.text, title=fields.title, date=fields.date, source=fields.source,
            url=fields.url, doc_id=fields.doc_id))
    if in_background(request):
        jobs: Jobs = request.app.state.jobs
        return accepted(jobs.submit("add", lambda progress: (201, AddResult(**add_sync(
            index, article, progress)).model_dump())))
    result = await run_in_threadpool(add_sync, index, article)
    if wants_html(request):
        return see_documents(added=result["doc_id"], status=result["status"], seconds=f"{result['seconds']:.1f}")
    return JSONResponse(AddResult(**result).model_dump(), status_code=201)


@writes.delete("/documents/{doc_id}", summary="Delete an article", status_code=204, response_class=Response,
               responses={**WRITE_ERRORS, 404: {"model": ErrorOut}})
async def delete_document(doc_id: str, index: NewsIndex = Depends(get_index)):
    """Remove an article from the index (its text, chunks, vectors and BM25 entries)."""
    await run_in_threadpool(index.remove, doc_id)
    return Response(status_code=204)


@writes.post("/documents/{doc_id}/delete", include_in_schema=False)
async def delete_document_form(request: Request, doc_id: str, index: NewsIndex = Depends(get_index),
                               pages: Pages = Depends(get_pages)):
    """The articles page's delete button (HTML forms cannot send DELETE); browsers are sent on to the articles
    page (303), so reloading it deletes nothing again. The button asks first with JavaScript (and says so with
    ``confirmed``); a browser without it is shown a page that asks, so one click does not delete."""
    listing = {}
    if wants_html(request) and is_form(request):
        form = await read_form(request)
        # Back to the list as it was shown (searched, sorted, paged): it went back to the whole list.
        listing = {k: text(form.get(k)) for k in ("q", "sort", "order", "page") if text(form.get(k))}
        if form.get("confirmed") != "1":
            return pages.confirm_delete(request, await run_in_threadpool(index.document, doc_id), listing)
    await run_in_threadpool(index.remove, doc_id)
    if wants_html(request):
        return see_documents(deleted=doc_id, **listing)
    return Response(status_code=204)


@writes.post("/index/rebuild", summary="Rebuild the index", response_model=RebuildResult,
             responses={**BACKGROUND, **SEE_PAGE, **WRITE_ERRORS})
async def rebuild(request: Request, index: NewsIndex = Depends(get_index)):
    """Rebuild the index from the stored articles into a new generation and switch to it atomically;
    questions keep being answered from the old one until then. Unchanged chunks reuse their vectors. With
    `?background=1` (or `Prefer: respond-async`) the answer is 202 and a job to poll at `GET /jobs/{id}`."""
    if in_background(request):
        jobs: Jobs = request.app.state.jobs
        return accepted(jobs.submit("rebuild", lambda progress: (200, rebuild_sync(index, progress))))
    result = await run_in_threadpool(rebuild_sync, index)
    if wants_html(request):
        return see_documents(rebuilt=result["documents"], chunks=result["chunks"], embedded=result["embedded"],
                             seconds=f"{result['seconds']:.1f}")
    return result


def rebuild_sync(index: NewsIndex, progress=None) -> dict:
    report = index.rebuild(progress=progress)
    return {"documents": len(report.added), "chunks": report.chunks, "embedded": report.embedded,
            "seconds": report.seconds}


@router.get("/jobs/{job_id}", summary="A background write", response_model=JobReply,
            responses={404: {"model": ErrorOut, "description": "No such job (unknown, or forgotten since)"},
                       422: ERRORS[422]})
def get_job(request: Request, job_id: str):
    """A job started by `POST /documents?background=1` or `POST /index/rebuild?background=1`: its `state`
    (queued, running, done, failed), `done` of `total` passages embedded, and once ended the `status` and
    `result` the synchronous request would have answered (the error's `{"detail"}` when failed)."""
    job = request.app.state.jobs.get(job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id!r}")
    return {"job": job.to_dict()}


router.include_router(writes)
