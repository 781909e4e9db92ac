"""How `qa serve` runs uvicorn: limits that keep slow or idle clients from holding the server.

- ``timeout_keep_alive`` (5 s): an idle kept-alive connection is closed.
- a header read timeout (10 s, ``HeaderTimeoutProtocol``): a request's line and headers must all arrive within 10 s
  of the connection opening or of the request's first byte, else the connection is closed. uvicorn has no such
  timeout of its own (a client that connects and sends nothing, or one header byte a second, would hold its
  connection for ever: slowloris).
- ``h11_max_incomplete_event_size`` (64 KiB): a request line and headers larger than that are refused (400).
- ``limit_concurrency`` (200): beyond that many connections and tasks at once, uvicorn answers 503 at once.
- ``timeout_graceful_shutdown`` (10 s): Ctrl-C waits at most that long for requests in flight.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

KEEP_ALIVE_S = 5
HEADERS_S = 10.0
MAX_HEADER_BYTES = 64 * 1024
MAX_CONCURRENCY = 200
GRACEFUL_S = 10


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a header read timeout: a connection whose request line and headers are not
    complete ``header_timeout`` seconds after it opened (or after the first byte of its next request) is closed."""

    header_timeout: float = HEADERS_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._headers_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # IDLE: h11 has not yet seen a whole request line and headers (a partial one is buffered).
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._headers_timer is None:
            self._headers_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _headers_late(self) -> None:
        self._headers_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def uvicorn_options() -> dict:
    """The keyword arguments `qa serve` gives ``uvicorn.run`` (see the module's docstring)."""
    return {
        "http": HeaderTimeoutProtocol,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "limit_concurrency": MAX_CONCURRENCY,
        "timeout_graceful_shutdown": GRACEFUL_S,
    }
