"""`/ask` over HTTP under a real load generator (wrk, Debian's package) against 127.0.0.1 only, side by side with
txtai's own API serving the same corpus; and `/ask` while the index is rebuilt or grows.

Every load run is bounded twice: a duration (``-d``) and a request budget enforced by the Lua script, which stops
the thread after that many responses. Questions rotate through real ones for the corpus."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from . import txtai_peer
from .corpora import CORPORA
from .indexing import ensure_index, indexed, txtai_dir
from .measure import OUT, PYTHON, REPO, latency_ms, table

LUA = r"""
local bodies = {%(bodies)s}
local paths = {%(paths)s}
local method = "%(method)s"
local budget = %(budget)d
local i = 0
local seen = 0
request = function()
  i = i %% #paths + 1
  if method == "POST" then
    return wrk.format("POST", paths[i], {["Content-Type"] = "application/json"}, bodies[i])
  end
  return wrk.format("GET", paths[i])
end
response = function(status, headers, body)
  seen = seen + 1
  if seen >= budget then wrk.thread:stop() end
end
done = function(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"mean_us": %%f, "connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout))
end
"""


def _lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def wrk_script(name: str, *, method: str, paths: list[str], bodies: list[str], budget: int) -> Path:
    path = OUT / f"wrk-{name}.lua"
    path.write_text(LUA % {"bodies": ", ".join(_lua_string(b) for b in bodies) or '""',
                           "paths": ", ".join(_lua_string(p) for p in paths), "method": method, "budget": budget})
    return path


def wrk(url: str, script: Path, *, clients: int, seconds: int) -> dict:
    """One bounded wrk run; latency p50/p99 in ms, requests/s, and errors of every kind."""
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url],
                         capture_output=True, text=True, timeout=seconds + 60)
    line = next((l for l in out.stdout.splitlines() if l.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    d = json.loads(line[len("WRKJSON "):])
    errors = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
    return {"requests": d["requests"], "rps": d["requests"] / (d["duration_us"] / 1e6), "p50": d["p50_us"] / 1000,
            "p99": d["p99_us"] / 1000, "errors": errors}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on 127.0.0.1 that is up once ``ready_path`` answers 200; stopped (and its peak memory
    read) on exit."""

    def __init__(self, cmd: list[str], env: dict, port: int, ready_path: str):
        self.cmd, self.env, self.port, self.ready_path = cmd, env, port, ready_path
        self.peak_rss_mb = float("nan")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Server":
        self.log = open(OUT / f"server-{self.port}.log", "w")
        self.proc = subprocess.Popen(self.cmd, env={**os.environ, **self.env}, cwd=REPO, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.close()
                raise RuntimeError(f"server exited {self.proc.returncode}: see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.__exit__(None, None, None)
        raise RuntimeError(f"server did not come up in 180 s: see {self.log.name}")

    def __exit__(self, *exc) -> None:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_mb = int(line.split()[1]) / 1024
        except OSError:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def ours(folder: Path, port: int, threads: int | None = None, reader: str | None = None) -> Server:
    env = {"QA_INDEX_DIR": str(folder), "HF_HUB_OFFLINE": "1", "QA_API_TOKEN": ""}
    if threads:
        env["QA_THREADS"] = str(threads)
    if reader:
        env["QA_READER"] = reader
    return Server([PYTHON, "-m", "qa.cli", "serve", "--port", str(port)], env, port, "/health")


def ask_script(name: str, questions: list[str], budget: int) -> Path:
    bodies = [json.dumps({"question": q, "k": 5}) for q in questions]
    return wrk_script(f"ask-{name}", method="POST", paths=["/ask"] * len(bodies), bodies=bodies, budget=budget)


def run(corpora: list[str], *, with_txtai: bool, results: dict, seconds: int = 10, budget: int = 5000) -> str:
    rows = []
    for name, corpus, folder in indexed(corpora):
        questions = corpus.queries(200)
        script = ask_script(name, questions, budget)
        # The default gives ONNX Runtime every core per query; one thread per query lets concurrent requests
        # use a core each instead of sharing both.
        for threads in (None, 1):
            with ours(folder, free_port(), threads) as server:
                # The first time a question is asked, the sentences of its candidate passages are embedded (and
                # cached): that pass is timed on its own, then the load runs over questions seen before.
                first = []
                for q in questions:
                    began = time.perf_counter()
                    _post(server.url + "/ask", {"question": q})
                    first.append(time.perf_counter() - began)
                if threads is None:
                    f = latency_ms(first)
                    results.setdefault("http", {}).setdefault(name, {})["ours_first"] = f
                    rows.append([corpus.label, "ours: first ask of each question (sequential, urllib)", 1,
                                 len(first), len(first) / sum(first), f["p50"], f["p99"], 0])
                for clients in (1, 8):
                    r = wrk(server.url, script, clients=clients, seconds=seconds)
                    key = f"ours_{clients}" if threads is None else f"ours_{clients}_threads{threads}"
                    results.setdefault("http", {}).setdefault(name, {})[key] = r
                    label = "ours: POST /ask (answer + 5 passages)" + (f", QA_THREADS={threads}" if threads else "")
                    rows.append([corpus.label, label, clients, r["requests"], r["rps"], r["p50"], r["p99"],
                                 r["errors"]])
        if with_txtai and (txtai_dir(name)).exists() and txtai_peer.available():
            paths = ["/search?" + urllib.parse.urlencode({"query": q, "limit": 10}) for q in questions]
            peer_script = wrk_script(f"txtai-{name}", method="GET", paths=paths, bodies=[], budget=budget)
            port = free_port()
            cmd, env = txtai_peer.server_command(txtai_dir(name), port)
            with Server(cmd, env, port, "/search?query=warm&limit=1") as server:
                for p in paths[:20]:
                    urllib.request.urlopen(server.url + p, timeout=30).read()
                for clients in (1, 8):
                    r = wrk(server.url, peer_script, clients=clients, seconds=seconds)
                    results.setdefault("http", {}).setdefault(name, {})[f"txtai_{clients}"] = r
                    rows.append([corpus.label, "txtai: GET /search (ids + scores)", clients, r["requests"], r["rps"],
                                 r["p50"], r["p99"], r["errors"]])
        print(f"  http {name}: done", flush=True)
    return table(["corpus", "server", "clients", "requests", "req/s", "p50 ms", "p99 ms", "errors"], rows)


def _post(url: str, body: dict, timeout: float = 600) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"{}")


def run_during_writes(results: dict, seconds: int = 15) -> str:
    """`/ask` with one client on a copy of the BBC index: alone, during a full rebuild (POST /index/rebuild) and
    while articles are added one by one over the API (each embedded as it arrives); with the reader off and on
    (``QA_READER``), each in a server of its own on a fresh copy."""
    source = ensure_index("bbc")
    questions = CORPORA["bbc"].queries(200)
    script = ask_script("writes", questions, 100_000)
    extra = json.loads(CORPORA["multihop"].path.read_text())[:400] if CORPORA["multihop"].available() else []
    rows = []
    for reader in ("off", "on"):
        rows += _during_writes(source, reader, questions, script, extra, results, seconds)
    return table(["reader", "while the server is also doing", "its duration s", "/ask requests", "p50 ms", "p99 ms",
                  "errors"], rows)


def _during_writes(source: Path, reader: str, questions: list[str], script: Path, extra: list[dict],
                   results: dict, seconds: int) -> list[list]:
    """The three phases of ``run_during_writes`` on one server (``QA_READER=reader``)."""
    folder = OUT / "index-bbc-during-writes"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(source, folder, symlinks=True)
    rows = []
    with ours(folder, free_port(), reader=reader) as server:
        for q in questions:  # every question asked once, so each phase below runs warm
            _post(server.url + "/ask", {"question": q})
        alone = wrk(server.url, script, clients=1, seconds=seconds)
        rows.append(["nothing else", "–", alone["requests"], alone["p50"], alone["p99"], alone["errors"]])

        done: dict = {}

        def rebuild() -> None:
            began = time.perf_counter()
            done["report"] = _post(server.url + "/index/rebuild", {})
            done["seconds"] = time.perf_counter() - began

        writer = threading.Thread(target=rebuild)
        writer.start()
        during = wrk(server.url, script, clients=1, seconds=seconds)
        writer.join()
        report = done.get("report", {})
        rows.append([f"POST /index/rebuild ({report.get('chunks', '?')} chunks, {report.get('embedded', '?')} "
                     f"embedded anew)", f"{done.get('seconds', float('nan')):.1f}", during["requests"],
                     during["p50"], during["p99"], during["errors"]])
        if extra:
            added = {"n": 0, "stop": False}

            def add() -> None:
                began = time.perf_counter()
                for a in extra:
                    if added["stop"]:
                        break
                    _post(server.url + "/documents", {"text": a["body"], "title": a["title"],
                                                      "date": a["published_at"][:10], "source": a["source"]})
                    added["n"] += 1
                added["seconds"] = time.perf_counter() - began

            writer = threading.Thread(target=add)
            writer.start()
            during_adds = wrk(server.url, script, clients=1, seconds=seconds)
            added["stop"] = True
            writer.join()
            rows.append([f"POST /documents, MultiHop-RAG articles one at a time ({added['n']} added while "
                         f"measuring)", f"{seconds}", during_adds["requests"], during_adds["p50"],
                         during_adds["p99"], during_adds["errors"]])
        results[f"during_writes_reader_{reader}"] = {"alone": alone, "rebuild": during, "rebuild_report": report,
                                                     "rebuild_s": done.get("seconds")}
    shutil.rmtree(folder, ignore_errors=True)
    return [[f"reader {reader}", *row] for row in rows]
