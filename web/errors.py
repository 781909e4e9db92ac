"""The one place an error becomes a reply: JSON ``{"detail": ...}`` for programs, a rendered page for browsers.

A route that shows its errors on its own page (the chat, the articles page) names that page with
``request.state.error_view`` (see ``show_errors_on``); any other HTML request gets the error page."""

from __future__ import annotations

import logging
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa.errors import QAError

from .negotiation import wants_html

log = logging.getLogger("qa.web")

# (request, status, detail) -> the page that shows the error
ErrorView = Callable[[Request, int, str], object]


def validation_detail(errors: list[dict]) -> str:
    """Pydantic's errors in one line: 'k: Input should be less than or equal to 20; question: Field required'."""
    parts = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path")]
        parts.append(f"{'.'.join(loc) or 'body'}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "malformed request"


def show_errors_on(request: Request, view: ErrorView) -> None:
    """Errors of this request, when it wants HTML, are shown by ``view`` rather than the error page."""
    request.state.error_view = view


def problem(request: Request, status: int, detail: str, *, headers: dict | None = None, extra: dict | None = None):
    """The reply for an error: the route's page (or the error page) for browsers, JSON for everyone else."""
    if wants_html(request):
        view = getattr(request.state, "error_view", None)
        page = view(request, status, detail) if view is not None else \
            request.app.state.pages.error_page(request, status, detail)
        for name, value in (headers or {}).items():  # a page says what JSON says: Allow on 405, Retry-After on 429
            page.headers[name] = value
        return page
    return JSONResponse({"detail": detail, **(extra or {})}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that send every error through ``problem``."""

    @app.exception_handler(QAError)
    async def qa_error(request: Request, exc: QAError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return problem(request, exc.status, str(exc), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = list(exc.errors())
        plain = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                 for e in errors]
        return problem(request, 422, validation_detail(errors), extra={"errors": plain})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        headers = getattr(exc, "headers", None)
        allow = (headers or {}).get("Allow", "")
        if exc.status_code == 405 and "GET" in allow.split(", ") and "HEAD" not in allow:
            headers = {**headers, "Allow": f"{allow}, HEAD"}  # answered for every GET route (guards.HeadAsGet)
        return problem(request, exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error: the server log has the details"}, status_code=500)
