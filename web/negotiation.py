"""Which rendering a request gets: JSON for programs, HTML for browsers (and for the page's own forms)."""

from __future__ import annotations

from starlette.requests import Request

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _quality(accept: str) -> dict[str, float]:
    """Media range → q from an Accept header; malformed q values count as 1."""
    found: dict[str, float] = {}
    for item in accept.split(","):
        media, _, params = item.strip().partition(";")
        media = media.strip().lower()
        if not media:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    q = max(0.0, min(1.0, float(value)))
                except ValueError:
                    q = 1.0
        found[media] = max(q, found.get(media, 0.0))
    return found


def wants_html(request: Request) -> bool:
    """True when the client prefers HTML to JSON: browsers do (``text/html`` first), curl's and fetch's
    ``*/*`` does not, so the API answers JSON unless HTML is asked for by name."""
    q = _quality(request.headers.get("accept", ""))
    html = max(q.get("text/html", 0.0), q.get("application/xhtml+xml", 0.0))
    json_q = q.get("application/json", q.get("application/*", q.get("*/*", 0.0)))
    return html > 0 and html > json_q


def content_type(request: Request) -> str:
    """The body's media type without parameters, lower case ('' when none is given)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def is_form(request: Request) -> bool:
    """A browser form post (urlencoded or multipart)."""
    return content_type(request) in FORM_TYPES
