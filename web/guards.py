"""What protects the server: the API token on writes, same-origin writes from browsers, and a cap on how
many bytes a request body may send."""

from __future__ import annotations

import hmac
import json

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from qa.errors import QAError, TooLarge


class Unauthorized(QAError):
    """A write without the right API token."""

    status = 401


class Forbidden(QAError):
    """A write sent from another site's page."""

    status = 403


class UnsupportedBody(QAError):
    """A body in a media type the route does not read."""

    status = 415


def check_token(request: Request, expected: str | None, form_token: str | None = None) -> None:
    """Writes need ``Authorization: Bearer <token>`` when QA_API_TOKEN is set (the page's forms send it as a
    ``token`` field instead). Compared in constant time."""
    if not expected:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    candidates = [given.strip()] if scheme.lower() == "bearer" else []
    if form_token:
        candidates.append(form_token.strip())
    if not any(hmac.compare_digest(c.encode("utf-8"), expected.encode("utf-8")) for c in candidates if c):
        if not candidates:
            raise Unauthorized("this server needs an API token for changes: send 'Authorization: Bearer <token>'")
        raise Unauthorized("wrong API token")


def check_origin(request: Request) -> None:
    """Refuse a write that a browser sends from another site's page (a forged form post to 127.0.0.1).
    Programs send no Origin header and are not affected."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if origin.rstrip("/").lower() != f"{request.url.scheme}://{host}".lower():
        raise Forbidden(f"changes are accepted only from this server's own pages, not from {origin}")


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before it is read into memory (by its
    Content-Length) or while it streams (chunked bodies), so no upload can exhaust memory."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is over the {self.limit / (1 << 20):.1f} MB limit"
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = False
                if too_big:
                    body = json.dumps({"detail": message}).encode()
                    await send({"type": "http.response.start", "status": 413, "headers": [
                        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")]})
                    await send({"type": "http.response.body", "body": body})
                    return
        received = 0

        async def limited() -> dict:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit:
                    raise TooLarge(message)
            return msg

        await self.app(scope, limited, send)
