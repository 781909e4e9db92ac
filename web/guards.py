"""What protects the server: the Host header (only loopback names and QA_ALLOWED_HOSTS, against DNS rebinding),
the API token on writes, writes from browsers only from allowed origins, and a cap on how many bytes a request body
may send."""

from __future__ import annotations

import hmac
import json
import math
import time
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from qa.errors import QAError, TooLarge
from qa.settings import host_name

# The names a browser on this machine uses for a server on loopback.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


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


def allowed_hosts(configured=()) -> frozenset[str]:
    """The host names the server answers to: loopback and the configured ones (QA_ALLOWED_HOSTS)."""
    return LOOPBACK_HOSTS | {h for h in (host_name(c) for c in configured) if h}


def _request_host(value: str) -> str | None:
    """The host name of a Host header ('localhost:8000', '[::1]:8000'), None when it is malformed."""
    try:
        parts = urlsplit("//" + value)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None or parts.path or parts.query or parts.fragment:
        return None
    return host_name(parts.hostname)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _own_port(request: Request) -> int | None:
    """The port the request was sent to, as its Host header names it (the scheme's default when it names none);
    None without a Host header."""
    value = request.headers.get("host")
    if value is None:
        return None
    try:
        return urlsplit("//" + value).port or _DEFAULT_PORTS.get(request.url.scheme)
    except ValueError:
        return None


def check_origin(request: Request) -> None:
    """Refuse a write that a browser sends from a page whose origin is not this server's (a forged form post to
    127.0.0.1 from another site, a rebound DNS name, ``Origin: null``). Programs send no Origin header and are not
    affected. The allowed hosts are ``request.app.state.allowed_hosts``. A page on this machine must also come
    from this server's port: another app's page (a dev server on localhost:3000) could post forms to it. A host
    named in QA_ALLOWED_HOSTS is compared by name alone, since a proxy in front of the server sends its own port."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    allowed = getattr(request.app.state, "allowed_hosts", LOOPBACK_HOSTS)
    try:
        parts = urlsplit(origin.strip())
        host = host_name(parts.hostname or "")
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        host = port = None
    refused = host is None or host not in allowed
    if not refused and host in LOOPBACK_HOSTS and _request_host(request.headers.get("host", "")) in LOOPBACK_HOSTS:
        refused = port is None or port != _own_port(request)
    if refused:
        raise Forbidden(f"changes are accepted only from this server's own pages, not from {origin}")


class HostGuard:
    """ASGI middleware: a request whose Host header names another host gets 400 before any route runs. A web page
    whose DNS name is rebound to 127.0.0.1 sends its own name as Host, so it cannot read from or write to the
    server. Requests without a Host header (HTTP/1.0 programs) pass."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]):
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = next((value for key, value in scope.get("headers", ()) if key == b"host"), None)
        if raw is not None:
            value = raw.decode("latin-1")
            if _request_host(value) not in self.allowed:
                shown = value if len(value) <= 100 else value[:100] + "…"
                detail = (f"this server does not answer to the host {shown!r}: use localhost or 127.0.0.1, or add the "
                          "host name to QA_ALLOWED_HOSTS")
                body = json.dumps({"detail": detail}).encode()
                await send({"type": "http.response.start", "status": 400, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class HeadAsGet:
    """ASGI middleware: a HEAD request is answered as the GET would be, without the body (HTTP asks every server
    to support HEAD; link checkers and uptime monitors send it). It sits outside the rate limit, which counts a
    HEAD of ``/ask`` as the question it runs."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


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
                    from .errors import problem

                    # JSON, or the error page for a browser's form (it showed the JSON); never read, and the
                    # connection closed, so the rest of the upload is not waited for.
                    response = problem(Request(scope, receive), 413, message, headers={"Connection": "close"})
                    await response(scope, receive, send)
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


# The routes that answer questions: what a rate limit counts (pages, lists and writes are not limited).
RATE_LIMITED = frozenset({"/ask", "/ask/stream", "/v1/chat/completions"})


class RateLimit:
    """ASGI middleware: at most ``count`` questions (``POST``/``GET /ask``, ``POST /ask/stream``, ``POST
    /v1/chat/completions``) per ``period`` seconds from one client address (QA_RATE_LIMIT). A token bucket per
    address: a burst of ``count``, then one more every ``period / count`` seconds; a question over it gets 429 with
    ``Retry-After`` (whole seconds) and the error in the route's shape: JSON ``detail`` (or the error page for a
    browser) on /ask, OpenAI's ``error`` on /v1. Behind a reverse proxy every client has the proxy's address, so
    they share one budget."""

    def __init__(self, app: ASGIApp, count: int, period: float, *, clock=time.monotonic, max_clients: int = 10_000):
        self.app = app
        self.count, self.period = count, period
        self.clock = clock
        self.max_clients = max_clients
        self.buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens left, when counted)

    def take(self, client: str) -> float:
        """Spend one token of ``client``'s bucket: 0 when there was one, else the seconds until there is."""
        now = self.clock()
        rate = self.count / self.period
        tokens, then = self.buckets.get(client, (float(self.count), now))
        tokens = min(float(self.count), tokens + (now - then) * rate)
        if tokens >= 1:
            self.buckets[client] = (tokens - 1, now)
            if len(self.buckets) > self.max_clients:
                self._forget_full(now, rate)
            return 0.0
        self.buckets[client] = (tokens, now)
        return (1 - tokens) / rate

    def _forget_full(self, now: float, rate: float) -> None:
        """Drop the buckets that have refilled (as good as new), so many addresses cannot grow memory without end."""
        for client, (tokens, then) in list(self.buckets.items()):
            if tokens + (now - then) * rate >= self.count:
                del self.buckets[client]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in RATE_LIMITED or scope["method"] not in ("GET", "POST"):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown",))[0]
        wait = self.take(client)
        if not wait:
            await self.app(scope, receive, send)
            return
        retry = max(1, math.ceil(wait))
        per = {1.0: "second", 60.0: "minute", 3600.0: "hour"}.get(self.period, f"{self.period:g} seconds")
        message = (f"too many questions from {client}: this server answers at most {self.count} a {per} from one "
                   f"address (QA_RATE_LIMIT); try again in {retry} s")
        headers = {"Retry-After": str(retry)}
        if scope["path"].startswith("/v1/"):
            from fastapi.responses import JSONResponse

            response = JSONResponse({"error": {"message": message, "type": "requests", "param": None,
                                               "code": "rate_limit_exceeded"}}, status_code=429, headers=headers)
        else:
            from .errors import problem

            response = problem(Request(scope, receive), 429, message, headers=headers)
        await response(scope, receive, send)
