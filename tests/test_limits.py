"""What keeps one client from holding the server: the per-client question rate limit (QA_RATE_LIMIT) and the
header read timeout `qa serve` runs uvicorn with."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn
from fastapi.testclient import TestClient

from qa.index import NewsIndex
from qa.ingest import article_from_text
from qa.settings import Settings
from web import server
from web.app import create_app
from web.guards import RateLimit

from conftest import FakeEmbedder

BASE = "http://localhost"


@pytest.fixture
def limited(tmp_path):
    index = NewsIndex(Settings.from_env(index_dir=tmp_path / "index", reader=False, rate_limit="2/minute"),
                      embedder=FakeEmbedder())
    index.rebuild([article_from_text("Ferry workers went on strike on Monday over pay.", doc_id="ferry")])
    with TestClient(create_app(index.settings, index=index), base_url=BASE) as client:
        yield client
    index.close()


def test_questions_over_the_rate_limit_get_429_with_retry_after(limited):
    for _ in range(2):
        assert limited.post("/ask", json={"question": "who went on strike?"}).status_code == 200
    refused = limited.get("/ask", params={"q": "who went on strike?"})
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 30
    assert "QA_RATE_LIMIT" in refused.json()["detail"]
    # The OpenAI route shares the budget and answers in OpenAI's shape; a browser gets the error page.
    v1 = limited.post("/v1/chat/completions", json={"model": "newsqa", "messages": [{"role": "user", "content": "hi"}]})
    assert v1.status_code == 429 and v1.headers["retry-after"] and v1.json()["error"]["code"] == "rate_limit_exceeded"
    page = limited.get("/ask", params={"q": "strike"}, headers={"accept": "text/html"})
    assert page.status_code == 429 and page.headers["retry-after"] and "text/html" in page.headers["content-type"]
    # Everything else is not counted.
    assert limited.get("/documents").status_code == 200 and limited.get("/health").status_code == 200
    assert "429" in limited.get("/openapi.json").json()["paths"]["/ask"]["post"]["responses"]


def test_the_bucket_refills_and_counts_each_address_apart():
    now = [0.0]
    limit = RateLimit(app=None, count=3, period=60.0, clock=lambda: now[0])
    assert [limit.take("a") for _ in range(3)] == [0, 0, 0]
    assert limit.take("a") == pytest.approx(20.0)
    assert limit.take("b") == 0  # another address has its own budget
    now[0] = 20.0
    assert limit.take("a") == 0 and limit.take("a") > 0


def test_no_rate_limit_by_default_and_a_malformed_one_is_an_error():
    assert Settings.from_env(rate_limit=None).rate is None
    assert Settings.from_env(rate_limit="30/minute").rate == (30, 60.0)
    with pytest.raises(ValueError, match="QA_RATE_LIMIT"):
        Settings.from_env(rate_limit="lots")


async def _hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def slow_server(monkeypatch):
    """uvicorn as `qa serve` runs it, the header read timeout cut to half a second."""
    monkeypatch.setattr(server.HeaderTimeoutProtocol, "header_timeout", 0.5)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(_hello, log_level="warning", lifespan="off", **server.uvicorn_options())
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.01)
    yield sock.getsockname()
    srv.should_exit = True
    thread.join(5)


def _closed_within(conn: socket.socket, seconds: float) -> bool:
    conn.settimeout(seconds)
    try:
        return conn.recv(1024) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def _response(conn: socket.socket) -> bytes:
    conn.settimeout(3)
    data = b""
    while not data.endswith(b"\r\n\r\nok"):
        chunk = conn.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def test_a_client_that_sends_headers_slowly_or_not_at_all_is_cut_off(slow_server):
    silent = socket.create_connection(slow_server)
    slow = socket.create_connection(slow_server)
    slow.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")  # and never the blank line
    began = time.monotonic()
    assert _closed_within(silent, 3) and _closed_within(slow, 3)
    assert time.monotonic() - began < 3
    # A whole request is answered, and the connection then stays open for the next one (keep-alive).
    ok = socket.create_connection(slow_server)
    ok.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert _response(ok).startswith(b"HTTP/1.1 200")
    time.sleep(0.8)  # past the header timeout: idle between requests is keep-alive's business (5 s)
    ok.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert _response(ok).startswith(b"HTTP/1.1 200")
    for conn in (silent, slow, ok):
        conn.close()


def test_qa_serve_passes_the_limits_to_uvicorn():
    options = server.uvicorn_options()
    assert options["http"] is server.HeaderTimeoutProtocol
    assert options["timeout_keep_alive"] == 5 and options["h11_max_incomplete_event_size"] == 64 * 1024
    uvicorn.Config(_hello, **options).load()  # uvicorn accepts them


@pytest.mark.parametrize("name, value", [
    ("QA_MAX_TOKENS", "12abc"), ("QA_MAX_TOKENS", "1000"), ("QA_MAX_TOKENS", "0"), ("QA_TITLE_TOKENS", "-1"),
    ("QA_OVERLAP_SENTENCES", "-1"), ("QA_MAX_QUESTION_CHARS", "-1"), ("QA_MAX_ARTICLE_BYTES", "0"),
    ("QA_THREADS", "-1"), ("QA_THREADS", "100000"), ("QA_EMBED_BATCH_TOKENS", "x")])
def test_a_numeric_setting_out_of_range_is_refused_by_name(monkeypatch, name, value):
    """Each was taken as given: 1,000 word pieces failed inside the model (it reads 512), -1 question characters
    refused every question, 100,000 threads kept `qa ask` busy for minutes; "12abc" gave int()'s own message."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"{name} must be a whole number from"):
        Settings.from_env()
