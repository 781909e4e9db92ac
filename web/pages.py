"""Rendering the HTML pages (Jinja2): the chat, the articles list, an article, an error."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from qa.errors import QAError
from qa.index import NewsIndex
from qa.llm import mode_note
from qa.records import page_label
from qa.settings import Settings

from .highlight import answer_parts, excerpt, passage_segments

HERE = Path(__file__).resolve().parent
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HTML_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


def size_text(limit: int) -> str:
    return f"{limit >> 20} MB" if limit >= 1 << 20 and limit % (1 << 20) == 0 else f"{limit:,} bytes"


def document_link(doc_id: str, start: int, end: int, spans: list[dict]) -> str:
    """The article page, scrolled to a passage that is highlighted there with its answer sentences."""
    query = [("start", start), ("end", end)] + [("hl", f"{s['start']}-{s['end']}") for s in spans]
    return f"/documents/{quote(doc_id, safe='')}?{urlencode(query)}#passage"


def turn_view(n: int, data: dict) -> dict:
    """What the page shows for one answered question."""
    spans = data["answer_spans"]
    cited_ranks = {s["rank"] for s in spans}
    cards = []
    for p in data["passages"]:
        mine = [s for s in spans if s["rank"] == p["rank"] and s["doc_id"] == p["doc_id"]]
        quote = " ".join(p["text"][s["start"] - p["start"]:s["end"] - p["start"]].strip() for s in mine)
        cards.append({**p, "segments": passage_segments(p, spans), "excerpt": excerpt(p, spans),
                      "page_label": page_label(p.get("pages") or []),
                      "cited": p["rank"] in cited_ranks,
                      "quote": " ".join((quote or p["text"]).split()),
                      "link": document_link(p["doc_id"], p["start"], p["end"], mine)})
    cited = [c for c in cards if c["cited"]]
    # The cited passages first; the others (the nearest ones, when none is cited) under "More passages".
    shown, more = (cited, [c for c in cards if not c["cited"]]) if cited else (cards, [])
    return {"n": n, "question": data["question"], "answer": data["answer"], "answerable": data["answerable"],
            "parts": answer_parts(data["answer"], {p["rank"] for p in data["passages"]}), "cards": cards,
            "shown": shown, "more": more, "took_ms": data["took_ms"], "full": True,
            "mode_note": mode_note(data)}


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

    def error_page(self, request: Request, status: int, detail: str) -> HTMLResponse:
        return self.render(request, "error.html", {"status": status, "detail": detail}, status)

    def chat(self, request: Request, turns: list[dict], *, k: int = 5, error: str = "", status: int = 200,
             partial: bool = False, question: str = "") -> HTMLResponse:
        if partial:
            return self.render(request, "_turn.html" if not error else "_error.html",
                               {"turn": turns[-1] if turns else None, "error": error}, status)
        return self.render(request, "chat.html", {"turns": turns, "k": k, "error": error, "stats": self.stats(),
                                                  "question": question}, status)

    def documents(self, request: Request, *, message: str = "", error: str = "", status: int = 200,
                  added: str = "") -> HTMLResponse:
        try:
            docs, problem = [d.to_dict() for d in self.index.documents()], ""
        except QAError as e:
            docs, problem = [], str(e)
        return self.render(request, "documents.html", {"docs": docs, "stats": self.stats(), "message": message,
                                                       "error": error or problem, "added": added}, status)
