"""Rendering the HTML pages (Jinja2): the chat, the articles list, an article, an error."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from qa.errors import QAError
from qa.index import NewsIndex
from qa.llm import mode_note
from qa.records import merge_passages, page_label
from qa.settings import Settings, size_text

from .highlight import answer_parts, excerpt, passage_segments

HERE = Path(__file__).resolve().parent
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HTML_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


def passage_check(text: str) -> str:
    """A short checksum of a cited passage's text, carried by its link: the article page highlights ``start:end``
    only while those characters still hold it."""
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def document_link(doc_id: str, start: int, end: int, spans: list[dict], text: str = "") -> str:
    """The article page, scrolled to a passage that is highlighted there with its answer sentences (``text``, the
    passage, lets the page tell whether the article has changed since)."""
    query = [("start", start), ("end", end)] + [("hl", f"{s['start']}-{s['end']}") for s in spans]
    query += [("check", passage_check(text))] if text else []
    return f"/documents/{quote(doc_id, safe='')}?{urlencode(query)}#passage"


def answer_link(question: str, *, k: int = 5, filters: dict | None = None, after: str = "") -> str:
    """GET /ask for the same answer: the question, ``k``, the filters and, for a follow-up, the question it
    followed (the only part of the conversation its search reads)."""
    filters = filters or {}
    query = [("q", question)] + ([("k", k)] if k != 5 else [])
    query += [(name, filters[name]) for name in ("since", "until") if filters.get(name)]
    query += [("source", s) for s in filters.get("sources") or ()]
    query += [("doc_id", d) for d in filters.get("doc_ids") or ()]
    query += [("after", after)] if after.strip() else []
    return f"/ask?{urlencode(query)}"


def turn_view(n: int, data: dict, *, k: int = 5, previous: str = "") -> dict:
    """What the page shows for one answered question. ``previous`` is the question before it in the
    conversation (its permalink carries it)."""
    spans = data["answer_spans"]
    cited_ranks = {s["rank"] for s in spans}
    cards = []
    # Overlapping passages of one article are one card spanning them all (its id is its best rank's).
    for p in merge_passages(data["passages"]):
        mine = [s for s in spans if s["rank"] in p["ranks"] and s["doc_id"] == p["doc_id"]]
        quote = " ".join(p["text"][s["start"] - p["start"]:s["end"] - p["start"]].strip() for s in mine)
        cards.append({**p, "segments": passage_segments(p, spans), "excerpt": excerpt(p, spans),
                      "page_label": page_label(p.get("pages") or []),
                      "cited": bool(cited_ranks & set(p["ranks"])),
                      "quote": " ".join((quote or p["text"]).split()),
                      "link": document_link(p["doc_id"], p["start"], p["end"], mine, p["text"])})
    card_of = {rank: c["rank"] for c in cards for rank in c["ranks"]}
    cited = [c for c in cards if c["cited"]]
    # The cited passages first; the others (the nearest ones, when none is cited) under "More passages".
    shown, more = (cited, [c for c in cards if not c["cited"]]) if cited else (cards, [])
    return {"n": n, "question": data["question"], "answer": data["answer"], "answerable": data["answerable"],
            "parts": answer_parts(data["answer"], {p["rank"] for p in data["passages"]}, data["passages"], spans), "cards": cards,
            "shown": shown, "more": more, "took_ms": data["took_ms"], "full": True, "card_of": card_of,
            "scope": scope_notes(data.get("filters"), data.get("date_range")),
            "permalink": answer_link(data["question"], k=k, filters=data.get("filters"), after=previous),
            "mode_note": mode_note(data)}


def scope_notes(filters: dict | None, period: dict | None) -> list[str]:
    """What an answer was restricted to (the caller's filters) and the period its question named, in words."""
    notes = []
    if filters:
        parts = []
        if filters.get("sources"):
            parts.append("from " + " or ".join(filters["sources"]))
        if filters.get("since") and filters.get("until"):
            parts.append(f"dated {filters['since']} to {filters['until']}")
        elif filters.get("since"):
            parts.append(f"dated {filters['since']} or later")
        elif filters.get("until"):
            parts.append(f"dated {filters['until']} or earlier")
        if filters.get("doc_ids"):
            parts.append("among " + ", ".join(filters["doc_ids"]))
        if parts:
            notes.append("Only articles " + ", ".join(parts) + ".")
    if period:
        notes.append(f"“{period['phrase']}” read as {period['since']} to {period['until']}: articles dated then "
                     "come first.")
    return notes


def chat_filters(since: str | None = None, until: str | None = None, sources=()) -> dict:
    """The chat page's filter row as the request set it (shown again with the answer, or with an error)."""
    sources = [s for s in (sources or ()) if s and s.strip()]
    return {"since": since or "", "until": until or "", "source": sources[0] if sources else "",
            "active": bool(since or until or sources)}


def history_view(n: int, question: str, answer: str) -> dict:
    """An earlier turn re-rendered from the page's hidden fields (its passages are not resent)."""
    return {"n": n, "question": question, "answer": answer, "answerable": True, "parts": [(answer, None)],
            "cards": [], "full": False}


class Pages:
    """The app's templates with what every page shows (the index's counts, the limits, whether writes need a
    token)."""

    def __init__(self, settings: Settings, index: NewsIndex):
        self.settings = settings
        self.index = index
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.max_size = size_text(settings.max_article_bytes)

    def stats(self) -> dict | None:
        try:
            return self.index.stats()
        except QAError:
            return None

    def render(self, request: Request, name: str, context: dict, status: int = 200) -> HTMLResponse:
        base = {"token_required": bool(self.settings.api_token), "max_size": self.max_size,
                "max_question_chars": self.settings.max_question_chars, "llm": bool(self.settings.llm_url)}
        if "stats" not in context:
            base["stats"] = self.stats()
        return self.templates.TemplateResponse(request, name, {**base, **context}, status_code=status,
                                               headers=HTML_HEADERS)

    def confirm_delete(self, request: Request, doc: dict, listing: dict | None = None) -> HTMLResponse:
        """The page asking whether to delete an article, for a browser without JavaScript (whose delete button
        cannot ask first); ``listing`` is the list's query to go back to."""
        listing = listing or {}
        return self.render(request, "confirm_delete.html", {
            "doc_id": doc["doc_id"], "title": doc["title"] or doc["doc_id"], "listing": sorted(listing.items()),
            "back": "/documents" + (f"?{urlencode(sorted(listing.items()))}" if listing else "")})

    def error_page(self, request: Request, status: int, detail: str) -> HTMLResponse:
        return self.render(request, "error.html", {"status": status, "detail": detail}, status)

    def chat(self, request: Request, turns: list[dict], *, k: int = 5, error: str = "", status: int = 200,
             partial: bool = False, question: str = "", filters: dict | None = None) -> HTMLResponse:
        """The chat page with ``turns`` (or, for the page's script, only the latest turn or the error)."""
        if partial:
            return self.render(request, "_turn.html" if not error else "_error.html",
                               {"turn": turns[-1] if turns else None, "error": error}, status)
        try:
            sources = self.index.sources() if self.index.exists() else []
        except QAError:
            sources = []
        filters = filters or chat_filters()
        if filters["source"] and filters["source"].lower() not in {s.lower() for s in sources}:
            sources = sorted([*sources, filters["source"]], key=str.lower)  # asked for, though no article has it
        return self.render(request, "chat.html", {"turns": turns, "k": k, "error": error, "stats": self.stats(),
                                                  "question": question, "filters": filters, "sources": sources},
                           status)

    def documents(self, request: Request, *, message: str = "", error: str = "", status: int = 200,
                  added: str = "", listing: "Listing | None" = None, typed: dict | None = None) -> HTMLResponse:
        """The articles page: a page of the list as ``listing`` asks (the newest first by default), the forms
        (the add form holding ``typed``, what was sent, when it was refused)."""
        listing = listing or Listing()
        try:
            total = self.index.count_documents(search=listing.q)
            everything = self.index.count_documents() if listing.q else total
            pages = max(1, -(-total // ARTICLES_PER_PAGE))
            listing = listing.on_page(min(listing.page, pages))
            docs = [d.to_dict() for d in self.index.documents(
                search=listing.q, sort=listing.sort, descending=listing.descending, limit=ARTICLES_PER_PAGE,
                offset=(listing.page - 1) * ARTICLES_PER_PAGE)]
            problem = ""
        except QAError as e:
            docs, total, everything, pages, problem = [], 0, 0, 1, str(e)
        columns = {key: {"label": label, "href": listing.sorted_by(key).url(),
                         "sorted": ("descending" if listing.descending else "ascending") if key == listing.sort
                         else None}
                   for key, (label, _) in SORTS.items()}
        page = self.render(request, "documents.html", {
            "docs": docs, "stats": self.stats(), "message": message, "error": error or problem, "added": added,
            "typed": typed or {},
            "listing": listing, "total": total, "everything": everything, "pages": pages, "columns": columns,
            "first": (listing.page - 1) * ARTICLES_PER_PAGE + 1,
            "previous": listing.on_page(listing.page - 1).url() if listing.page > 1 else "",
            "next": listing.on_page(listing.page + 1).url() if listing.page < pages else "",
        }, status)
        # The list changes with every add and delete: Back after a delete showed the deleted article, and its
        # Delete button then failed. Asked for again, not kept.
        page.headers["Cache-Control"] = "no-store"
        return page


# The articles page shows this many articles at a time (a page of the list, with next and previous links).
ARTICLES_PER_PAGE = 50
# Sort keys of the articles page (NewsIndex.documents' whitelist): column label, and whether it starts descending.
SORTS = {"title": ("Title", False), "source": ("Source", False), "date": ("Date", True), "chunks": ("Chunks", True),
         "added": ("Added", True)}


@dataclass(frozen=True)
class Listing:
    """What the articles page lists: the search ``q`` (title, source or id), the sort key and direction, the page."""

    q: str = ""
    sort: str = "date"
    order: str = ""  # "asc" or "desc"; empty: the sort key's own default
    page: int = 1

    @property
    def descending(self) -> bool:
        return self.order == "desc" if self.order else SORTS[self.sort][1]

    def on_page(self, page: int) -> "Listing":
        return replace(self, page=max(1, page))

    def cleared(self) -> "Listing":
        """The whole list, sorted as this one."""
        return replace(self, q="", page=1)

    def sorted_by(self, key: str) -> "Listing":
        """Sorted by ``key`` from the first page: the current key flips direction, another starts at its own."""
        if key == self.sort:
            return replace(self, order="asc" if self.descending else "desc", page=1)
        return replace(self, sort=key, order="", page=1)

    def query(self) -> list[tuple[str, object]]:
        """The query parameters this listing needs (defaults left out)."""
        return [(name, value) for name, value, default in (
            ("q", self.q, ""), ("sort", self.sort, "date"), ("order", self.order, ""), ("page", self.page, 1),
        ) if value != default]

    def url(self) -> str:
        """/documents with the query this listing needs."""
        query = self.query()
        return "/documents" + (f"?{urlencode(query)}" if query else "")
