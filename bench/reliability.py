"""`python -m bench reliability [SECTION ...]`: the long versions of the reliability tests, with figures.

Real parts throughout: `qa` and `qa serve` processes with the real model, on 127.0.0.1 only, each on its own copy
of a small index built from the seed articles (plus the articles each section writes). Every section is bounded by
a size knob (defaults finish in minutes on two cores) and writes its table into docs/reliability.md with the command
that reproduces it; a partial run keeps the other sections' figures.

Sections: schema (schemathesis over every operation of the OpenAPI schema), kills (SIGKILL at random moments of CLI
and HTTP writes), readers (8 readers and 1 writer), servers (two server processes on one index), disk (a full
disk, on a small tmpfs; needs root), corrupt (damaged files), soak (memory and descriptors over time), rebuild
(/ask latency while POST /index/rebuild runs, on BBC News when its bench index is there).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from .http_load import Server, free_port
from .measure import OUT, PYTHON, REPO, machine, percentile, table

SECTIONS = ("schema", "kills", "readers", "servers", "disk", "corrupt", "soak", "rebuild")
WORK = OUT / "reliability"
SEEDS = REPO / "seeds"

# Size knobs: the defaults, and the smallest sizes (--smallest, what the test suite runs).
DEFAULTS = {"examples": 5, "kills": 10, "readers": 8, "rw_seconds": 20, "rounds": 5, "soak_seconds": 60,
            "rebuild_seconds": 20}
SMALLEST = {"examples": 1, "kills": 2, "readers": 2, "rw_seconds": 3, "rounds": 2, "soak_seconds": 5,
            "rebuild_seconds": 3}
KNOB_FLAGS = {"examples": "--examples", "kills": "--kills", "readers": "--readers", "rw_seconds": "--rw-seconds",
              "rounds": "--rounds", "soak_seconds": "--soak-seconds", "rebuild_seconds": "--rebuild-seconds"}
SECTION_KNOBS = {"schema": ["examples"], "kills": ["kills"], "readers": ["readers", "rw_seconds"],
                 "servers": ["rounds"], "disk": [], "corrupt": [], "soak": ["soak_seconds"],
                 "rebuild": ["rebuild_seconds"]}

WORDS = ("harbour ferry council tariff lumber quota strike union budget rail port fishing storm bridge school "
         "hospital election minister court river festival museum airport vaccine drought").split()


# --- shared parts ------------------------------------------------------------------------------------------------
def env_for(folder: Path) -> dict:
    """The environment of a `qa` process on ``folder``: offline, no token, no rate limit."""
    return {**os.environ, "QA_INDEX_DIR": str(folder), "HF_HUB_OFFLINE": "1", "QA_API_TOKEN": "",
            "QA_RATE_LIMIT": "", "PYTHONPATH": str(REPO)}


def qa(folder: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `qa ARGS` on ``folder`` to completion."""
    return subprocess.run([PYTHON, "-m", "qa.cli", *args], env=env_for(folder), cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def template() -> Path:
    """The seed articles indexed once with the real model (its exported ONNX model kept beside it)."""
    folder = WORK / "template"
    if not (folder / "CURRENT").exists():
        shutil.rmtree(folder, ignore_errors=True)
        done = qa(folder, "index", str(SEEDS))
        if done.returncode != 0:
            raise RuntimeError(f"could not build the template index: {done.stderr[-2000:]}")
    return folder


def fresh(name: str) -> Path:
    """A private copy of the template index; its ONNX folder is a link to the template's (never written)."""
    source, folder = template(), WORK / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for item in source.iterdir():
        if item.name == "onnx":
            (folder / "onnx").symlink_to(item.resolve(), target_is_directory=True)
        elif item.is_dir():
            shutil.copytree(item, folder / item.name)
        elif item.name != "write.lock":
            shutil.copy2(item, folder / item.name)
    return folder


def state(folder: Path) -> dict:
    """Does the index open, and what it holds: documents, chunks, BM25 rows, vectors, articles without chunks."""
    from qa.index import NewsIndex
    from qa.settings import Settings

    index = NewsIndex(Settings.from_env(index_dir=folder))
    try:
        live = index.live()
        db = live.store.db
        ids = {d for (d,) in db.execute("SELECT doc_id FROM documents")}
        chunks = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        fts = db.execute("SELECT count(*) FROM chunks_fts").fetchone()[0]
        bare = db.execute("SELECT count(*) FROM documents WHERE doc_id NOT IN (SELECT doc_id FROM chunks)"
                          ).fetchone()[0]
        return {"opens": True, "ids": ids, "chunks": chunks, "fts": fts, "vectors": live.vectors.size, "bare": bare,
                "consistent": chunks == fts == live.vectors.size and bare == 0}
    except Exception as e:  # noqa: BLE001 -- an index that does not open is the finding
        return {"opens": False, "error": f"{type(e).__name__}: {e}", "ids": set(), "consistent": False}
    finally:
        index.close()


def article(tag: str, i: int, words: int = 120) -> dict:
    """A made-up article with a unique id and words the readers' questions find."""
    rng = random.Random(f"{tag}-{i}")
    body = " ".join(rng.choice(WORDS) for _ in range(words))
    return {"doc_id": f"{tag}-{i}", "title": f"The {WORDS[i % len(WORDS)]} report {tag} {i}",
            "text": f"The {WORDS[i % len(WORDS)]} council met on Monday. {body.capitalize()}."}


def call(method: str, url: str, body: dict | None = None, timeout: float = 120) -> tuple[int, bytes]:
    """An HTTP request; (status, body), never raising for an HTTP status (0 when the connection failed)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def server(folder: Path, **extra: str) -> Server:
    """`qa serve` on ``folder`` at a free loopback port; ``extra`` adds environment variables (QA_READER=...)."""
    port = free_port()
    env = {k: v for k, v in {**env_for(folder), **extra}.items() if k.startswith(("QA_", "HF_", "PYTHONPATH"))}
    return Server([PYTHON, "-m", "qa.cli", "serve", "--host", "127.0.0.1", "--port", str(port)], env, port,
                  "/health")


def one_line(text: str) -> str:
    """The last line of ``text``, with this run's folders shortened, for a table cell."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    line = re.sub(re.escape(str(WORK)) + r"/[\w.-]+", "INDEX", lines[-1] if lines else "")
    return line.replace("|", "\\|")[:200]


def traceback_in(text: str) -> bool:
    return "Traceback (most recent call last)" in text


# --- schema ------------------------------------------------------------------------------------------------------
def run_schema(knobs: dict, figures: dict) -> str:
    """schemathesis over every operation, valid and invalid data, against a real server: cases sent, server
    errors (5xx), and replies that do not match the schema (status, content type, body, headers)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings as hsettings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode, checks

    conformance = [checks.status_code_conformance, checks.content_type_conformance,
                   checks.response_schema_conformance, checks.response_headers_conformance,
                   checks.negative_data_rejection, checks.unsupported_method]
    folder = fresh("schema")
    rows, total = [], {"cases": 0, "server_errors": 0, "mismatches": 0}
    samples: list[str] = []
    with server(folder) as srv:
        schema = schemathesis.openapi.from_url(srv.url + "/openapi.json")
        for result in schema.get_all_operations():
            operation = result.ok()
            counts = {"cases": 0, "server_errors": 0, "mismatches": 0}
            for mode in GenerationMode:
                wanted = [c for c in conformance if not (operation.method.upper() == "GET"
                                                         and c is checks.negative_data_rejection)]

                @given(case=operation.as_strategy(generation_mode=mode))
                @hsettings(max_examples=knobs["examples"], deadline=None, database=None, derandomize=True,
                           suppress_health_check=list(HealthCheck))
                def one(case):
                    counts["cases"] += 1
                    response = case.call(timeout=120)
                    if response.status_code >= 500:
                        counts["server_errors"] += 1
                        samples.append(f"{operation.label}: {response.status_code}")
                        return
                    try:
                        case.validate_response(response, checks=wanted)
                    except Exception as e:  # noqa: BLE001 -- counted: each failure is a schema mismatch
                        counts["mismatches"] += 1
                        samples.append(f"{operation.label} ({mode.value}): {one_line(str(e))}")

                try:
                    one()
                except Unsatisfiable:
                    continue
            rows.append([operation.label, counts["cases"], counts["server_errors"], counts["mismatches"]])
            for key in total:
                total[key] += counts[key]
    figures["schema"] = {**total, "examples_per_mode": knobs["examples"]}
    rows.append(["**all operations**", total["cases"], total["server_errors"], total["mismatches"]])
    text = (f"{knobs['examples']} generated examples per operation and generation mode (valid and invalid data), "
            f"sent over HTTP to `qa serve` on a copy of the seed index; writes included.\n\n"
            + table(["operation", "cases", "server errors (5xx)", "schema mismatches"], rows))
    if samples:
        text += "\n\nFirst findings:\n\n" + "\n".join(f"- {s}" for s in samples[:10])
    return text


# --- kills -------------------------------------------------------------------------------------------------------
def _write_files(folder: Path, tag: str, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        a = article(tag, i, words=random.randint(80, 1500))
        path = folder / f"{a['doc_id']}.txt"
        path.write_text(f"{a['title']}\n\n{a['text']}\n", encoding="utf-8")
        paths.append(path)
    return paths


def _check_after_kill(folder: Path, must_have: set[str], must_not_have: set[str]) -> dict:
    s = state(folder)
    return {"opens": s["opens"], "consistent": s["consistent"], "lost": len(must_have - s["ids"]),
            "resurrected": len(must_not_have & s["ids"]), "error": s.get("error", ""), "ids": s["ids"]}


def run_kills(knobs: dict, figures: dict) -> str:
    """SIGKILL at a random moment of a write, half through the CLI (`qa add`, `qa remove`, `qa index
    --rebuild`), half through the server (POST /documents, DELETE, POST /index/rebuild): afterwards the index
    opens, SQLite, BM25 and FAISS hold the same chunks, no acknowledged article is lost and no acknowledged delete
    comes back."""
    rng = random.Random(8)
    folder = fresh("kills")
    files = WORK / "kills-files"
    shutil.rmtree(files, ignore_errors=True)
    results = []
    # How long an uncut `qa add` of 20 articles takes here: the kills land at random moments within it.
    began = time.perf_counter()
    calibrate = qa(folder, "add", *map(str, _write_files(files / "calibrate", "cal", 20)))
    if calibrate.returncode != 0:
        raise RuntimeError(calibrate.stderr[-2000:])
    span = time.perf_counter() - began
    cli_kills = (knobs["kills"] + 1) // 2
    for k in range(cli_kills):
        before = state(folder)["ids"]
        op = rng.choice(["add", "add", "remove", "rebuild"])
        gone: set[str] = set()
        if op == "add":
            args = ["add", *map(str, _write_files(files / f"k{k}", f"cli{k}", rng.randint(5, 40)))]
        elif op == "remove":
            victim = sorted(before)[rng.randrange(len(before))] if before else "nothing"
            args, gone = ["remove", victim], set()  # not acknowledged: may or may not be gone
            before = before - {victim}
        else:
            args = ["index", "--rebuild"]
        proc = subprocess.Popen([PYTHON, "-m", "qa.cli", *args], env=env_for(folder), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        delay = rng.uniform(0, span * 1.2)
        try:
            proc.wait(timeout=delay)
            outcome = "finished first"
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            outcome = "killed"
        check = _check_after_kill(folder, before, gone)
        results.append({"via": "CLI", "op": f"qa {' '.join(args[:2]) if op == 'rebuild' else op}", "at_s": delay, "outcome": outcome, **check})
    http_kills = knobs["kills"] - cli_kills
    for k in range(http_kills):
        acked: set[str] = set(state(folder)["ids"])
        deleted: set[str] = set()
        stop = threading.Event()
        srv = server(folder).__enter__()
        try:
            def write(k=k) -> None:
                i = 0
                while not stop.is_set():
                    choice = rng.random()
                    if choice < 0.75:
                        a = article(f"http{k}", i, words=rng.randint(80, 3000))
                        i += 1
                        status, _ = call("POST", srv.url + "/documents", a)
                        if status == 201 and not stop.is_set():
                            acked.add(a["doc_id"])
                    elif choice < 0.9 and acked - deleted:
                        victim = rng.choice(sorted(acked - deleted))
                        status, _ = call("DELETE", srv.url + f"/documents/{victim}")
                        if status == 204 and not stop.is_set():
                            deleted.add(victim)
                    else:
                        call("POST", srv.url + "/index/rebuild", {})

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            delay = rng.uniform(0.2, 4.0)
            time.sleep(delay)
            # The acknowledgements counted are those received before the kill.
            snapshot_acked, snapshot_deleted = set(acked), set(deleted)
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait()
            stop.set()
            writer.join(150)
        finally:
            srv.__exit__(None, None, None)
        check = _check_after_kill(folder, snapshot_acked - snapshot_deleted, snapshot_deleted)
        results.append({"via": "HTTP", "op": "POST /documents, DELETE, rebuild", "at_s": delay, "outcome": "killed",
                        **check})
    final = qa(folder, "add", *map(str, _write_files(files / "final", "final", 3)))
    after = state(folder)
    figures["kills"] = {
        "kills": len(results), "killed": sum(r["outcome"] == "killed" for r in results),
        "opens": sum(r["opens"] for r in results), "consistent": sum(r["consistent"] for r in results),
        "lost": sum(r["lost"] for r in results), "resurrected": sum(r["resurrected"] for r in results),
        "next_write_ok": final.returncode == 0 and after["consistent"], "calibration_s": round(span, 2),
    }
    rows = [[r["via"], r["op"], f"{r['at_s']:.2f}", r["outcome"], "yes" if r["opens"] else f"no: {r['error']}",
             "yes" if r["consistent"] else "no", r["lost"], r["resurrected"], len(r["ids"])] for r in results]
    f = figures["kills"]
    return (f"{f['kills']} writes ({f['killed']} killed mid-way), CLI kills at a uniform random moment within "
            f"1.2 × an uncut `qa add` of 20 articles ({span:.1f} s here), HTTP kills 0.2–4 s after the server "
            f"was ready. After each: the index opened {f['opens']}/{f['kills']}, SQLite = BM25 = FAISS chunk counts "
            f"{f['consistent']}/{f['kills']}, acknowledged articles lost {f['lost']}, acknowledged deletes come back "
            f"{f['resurrected']}; a write after the last kill "
            f"{'succeeded' if f['next_write_ok'] else 'FAILED'}.\n\n"
            + table(["via", "write", "kill at s", "outcome", "opens", "counts equal", "lost", "deleted back",
                     "articles after"], rows))


# --- readers and a writer ----------------------------------------------------------------------------------------
def run_readers(knobs: dict, figures: dict) -> str:
    """N readers asking continuously while one writer adds and deletes articles: errors, latency, and citations
    of an article whose delete had been acknowledged before the question was sent."""
    folder = fresh("readers")
    seconds, n = knobs["rw_seconds"], knobs["readers"]
    latencies: list[float] = []
    errors: list[str] = []
    stale: list[str] = []
    deleted_at: dict[str, float] = {}
    lock = threading.Lock()
    writes = {"added": 0, "deleted": 0, "failed": 0}
    with server(folder) as srv:
        call("POST", srv.url + "/ask", {"question": "warm up"})
        stop = time.monotonic() + seconds

        def reader(r: int) -> None:
            rng = random.Random(r)
            while time.monotonic() < stop:
                question = f"What did the {rng.choice(WORDS)} council decide about the {rng.choice(WORDS)}?"
                sent = time.monotonic()
                status, body = call("POST", srv.url + "/ask", {"question": question, "k": 5})
                took = time.monotonic() - sent
                with lock:
                    latencies.append(took)
                    if status != 200:
                        errors.append(f"{status} {body[:120]!r}")
                        continue
                    for p in json.loads(body)["passages"]:
                        when = deleted_at.get(p["doc_id"])
                        if when is not None and when < sent:
                            stale.append(p["doc_id"])

        def writer() -> None:
            i, live = 0, []
            while time.monotonic() < stop:
                a = article("rw", i)
                i += 1
                status, _ = call("POST", srv.url + "/documents", a)
                if status == 201:
                    writes["added"] += 1
                    live.append(a["doc_id"])
                else:
                    writes["failed"] += 1
                if len(live) > 3:
                    victim = live.pop(0)
                    status, _ = call("DELETE", srv.url + f"/documents/{victim}")
                    if status == 204:
                        with lock:
                            deleted_at[victim] = time.monotonic()
                        writes["deleted"] += 1
                    else:
                        writes["failed"] += 1

        threads = [threading.Thread(target=reader, args=(r,)) for r in range(n)] + [threading.Thread(target=writer)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    ms = [s * 1000 for s in latencies]
    figures["readers"] = {"readers": n, "seconds": seconds, "asks": len(ms), "errors": len(errors),
                          "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
                          "stale_citations": len(stale), **writes}
    f = figures["readers"]
    text = table(["readers", "seconds", "/ask answered", "errors", "p50 ms", "p99 ms", "citations of deleted articles",
                  "articles added", "deleted", "failed writes"],
                 [[n, seconds, f["asks"], f["errors"], f["p50_ms"], f["p99_ms"], f["stale_citations"], f["added"],
                   f["deleted"], f["failed"]]])
    if errors:
        text += "\n\nFirst errors: " + "; ".join(errors[:3])
    return text


# --- two servers -------------------------------------------------------------------------------------------------
def run_servers(knobs: dict, figures: dict) -> str:
    """Two `qa serve` processes on one index: an article added through one, how long until the other serves it
    (GET /documents/{id} and /ask citing it); a delete through the other, how long until the first says 404."""
    folder = fresh("servers")
    add_delay, ask_delay, delete_delay, failures = [], [], [], []
    with server(folder) as a, server(folder) as b:
        for i in range(knobs["rounds"]):
            doc = article("two", i)
            doc["text"] += f" Codeword zebra{i}quartz."
            status, _ = call("POST", a.url + "/documents", doc)
            acked = time.monotonic()
            if status != 201:
                failures.append(f"add {status}")
                continue
            seen = _until(lambda: call("GET", b.url + f"/documents/{doc['doc_id']}")[0] == 200)
            add_delay.append((seen - acked) if seen else None)
            cited = _until(lambda: doc["doc_id"] in call("POST", b.url + "/ask", {
                "question": f"What is codeword zebra{i}quartz?", "k": 3})[1].decode(errors="replace"))
            ask_delay.append((cited - acked) if cited else None)
            status, _ = call("DELETE", b.url + f"/documents/{doc['doc_id']}")
            acked = time.monotonic()
            if status != 204:
                failures.append(f"delete {status}")
                continue
            gone = _until(lambda: call("GET", a.url + f"/documents/{doc['doc_id']}")[0] == 404)
            delete_delay.append((gone - acked) if gone else None)
    rows = []
    figures["servers"] = {"rounds": knobs["rounds"], "failures": failures}
    for name, values in (("added through A, GET on B", add_delay), ("added through A, cited by /ask on B", ask_delay),
                         ("deleted through B, 404 on A", delete_delay)):
        ok = [v * 1000 for v in values if v is not None]
        figures["servers"][name] = {"p50_ms": percentile(ok, 50), "max_ms": max(ok, default=float("nan")),
                                    "never": len(values) - len(ok)}
        rows.append([name, len(values), percentile(ok, 50), max(ok, default=float("nan")), len(values) - len(ok)])
    return ("Visibility delay: from the writer's acknowledgement to the other server's first reply that shows the "
            "change (polled every 10 ms, 10 s at most).\n\n"
            + table(["change", "rounds", "p50 ms", "max ms", "never seen"], rows)
            + (f"\n\nFailed writes: {', '.join(failures)}" if failures else ""))


def _until(predicate, timeout: float = 10.0, every: float = 0.01) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(every)
    return None


# --- disk full ---------------------------------------------------------------------------------------------------
def run_disk(knobs: dict, figures: dict) -> str:
    """The index on a small tmpfs that is full (with some free space left, from none to 256 KB): `qa add` of a
    large article fails with one line and exit code 2, and the index is as it was; with space again, it works."""
    if os.geteuid() != 0:
        figures["disk"] = {"skipped": "not root: cannot mount a tmpfs"}
        return "Skipped: mounting a small tmpfs needs root."
    mount = WORK / "tmpfs"
    mount.mkdir(parents=True, exist_ok=True)
    source = fresh("disk-source")
    size_mb = 4 + sum(p.stat().st_size for p in source.rglob("*") if p.is_file() and "onnx" not in p.parts) // 2**20
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        figures["disk"] = {"skipped": f"mount failed: {one_line(done.stderr)}"}
        return f"Skipped: `mount -t tmpfs` failed ({one_line(done.stderr)})."
    rows, results = [], []
    try:
        folder = mount / "index"
        shutil.copytree(source, folder, symlinks=True)
        big = WORK / "disk-article.txt"
        big.write_text("Flood report\n\n" + " ".join(article("disk", 0, words=6000)["text"].split()) + "\n")
        for free_kb in (0, 16, 64, 256):
            before = state(folder)
            filler = mount / "filler"
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
            filler_size = filler.stat().st_size
            os.truncate(filler, max(0, filler_size - free_kb * 1024))
            done = qa(folder, "add", str(big))
            reads = qa(folder, "docs")  # while the disk is still full
            filler.unlink()
            after = state(folder)  # with space again: is it the index it was?
            unchanged = after["opens"] and after["ids"] == before["ids"] and after.get("chunks") == before.get("chunks")
            result = {"free_kb": free_kb, "exit": done.returncode, "lines": len(done.stderr.strip().splitlines()),
                      "traceback": traceback_in(done.stderr + reads.stderr), "unchanged": unchanged,
                      "consistent": after["consistent"], "added": "disk-article" in after["ids"],
                      "docs_while_full": reads.returncode}
            results.append(result)
            rows.append([free_kb, done.returncode, result["lines"], "yes" if result["traceback"] else "no",
                         "added" if result["added"] else ("yes" if unchanged else "NO"),
                         "yes" if after["consistent"] else "no", one_line(done.stderr) or one_line(done.stdout),
                         reads.returncode, one_line(reads.stderr) if reads.returncode else "(lists the articles)"])
            if result["added"]:
                qa(folder, "remove", "disk-article")
        again = qa(folder, "add", str(big))
        recovered = again.returncode == 0 and "disk-article" in state(folder)["ids"]
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
    figures["disk"] = {"cases": results, "add_after_freeing_space": recovered, "tmpfs_mb": size_mb}
    return (f"The seed index on a {size_mb} MB tmpfs filled with a file, then that file shortened to leave the free "
            f"space shown; `qa add` of a {big.stat().st_size // 1024} KB article. With space again the same add "
            f"{'succeeds' if recovered else 'FAILS'}.\n\n"
            + table(["free KB", "qa add exit", "stderr lines", "traceback", "index unchanged (space freed)",
                     "counts equal", "qa add says", "qa docs while full", "qa docs says"], rows))


# --- corrupt files -----------------------------------------------------------------------------------------------
def _damage(folder: Path, how: str) -> None:
    gen = folder / (folder / "CURRENT").read_text().strip()
    db = gen / "qa.sqlite3"
    if how == "empty database":
        db.write_bytes(b"")
    elif how == "database bytes overwritten":
        data = bytearray(db.read_bytes())
        rng = random.Random(3)
        for _ in range(40):
            at = rng.randrange(4096, len(data) - 64)
            data[at:at + 64] = bytes(rng.randrange(256) for _ in range(64))
        db.write_bytes(bytes(data))
    elif how == "database cut in half":
        with open(db, "r+b") as f:
            f.truncate(db.stat().st_size // 2)
    elif how == "not a database":
        db.write_text("this is not a database\n" * 100)
    elif how == "vector cache overwritten":
        for cache in gen.glob("vectors-*.faiss"):
            cache.write_bytes(os.urandom(cache.stat().st_size))
    elif how == "vector cache deleted":
        for cache in gen.glob("vectors-*.faiss"):
            cache.unlink()
    elif how == "CURRENT names a missing generation":
        (folder / "CURRENT").write_text("gen-999999\n")
    elif how == "crash leftovers (.tmp files)":
        (gen / ".vectors-000099.faiss.1234.tmp").write_bytes(b"half")
        (folder / ".CURRENT.1234.tmp").write_text("gen-")


CORRUPTIONS = ("empty database", "database bytes overwritten", "database cut in half", "not a database",
               "vector cache overwritten", "vector cache deleted", "CURRENT names a missing generation",
               "crash leftovers (.tmp files)")


def run_corrupt(knobs: dict, figures: dict) -> str:
    """Damaged files: what `qa docs` says (one line, exit 2, no traceback), what `qa doctor` does, and whether
    the index answers afterwards (or `qa index --rebuild seeds/` is needed)."""
    rows, results = [], []
    for how in CORRUPTIONS:
        folder = fresh("corrupt")
        _damage(folder, how)
        first = qa(folder, "docs")
        doctor = qa(folder, "doctor")
        after = qa(folder, "docs")
        rebuilt = None
        if after.returncode != 0:
            rebuilt = qa(folder, "index", "--rebuild", str(SEEDS)).returncode == 0 and qa(folder, "docs").returncode == 0
        s = state(folder)
        result = {"damage": how, "docs_exit": first.returncode, "traceback": traceback_in(first.stderr + doctor.stderr
                                                                                          + after.stderr),
                  "doctor_exit": doctor.returncode, "after_exit": after.returncode, "rebuild_fixes": rebuilt,
                  "consistent_at_end": s["consistent"]}
        results.append(result)
        rows.append([how, first.returncode, one_line(first.stderr) if first.returncode else "(lists the articles)",
                     doctor.returncode, one_line(doctor.stdout + "\n" + doctor.stderr), after.returncode,
                     "–" if rebuilt is None else ("yes" if rebuilt else "NO"),
                     "yes" if result["traceback"] else "no", "yes" if s["consistent"] else "no"])
    figures["corrupt"] = results
    return table(["damage", "qa docs exit", "its message", "qa doctor exit", "doctor says", "qa docs after",
                  "needed --rebuild PATHS (and it worked)", "traceback", "consistent at the end"], rows)


# --- soak --------------------------------------------------------------------------------------------------------
def _proc_sample(pid: int) -> tuple[float, int, int]:
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fds, deleted = 0, 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        fds += 1
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith(" (deleted)"):
                deleted += 1
        except OSError:
            pass
    return rss, fds, deleted


def run_soak(knobs: dict, figures: dict) -> str:
    """A server asked, written to and rebuilt in a loop for a bounded time: its RSS and open descriptors sampled."""
    folder = fresh("soak")
    seconds = knobs["soak_seconds"]
    samples: list[tuple[float, float, int, int]] = []
    counts = {"asks": 0, "adds": 0, "deletes": 0, "rebuilds": 0, "errors": 0}
    with server(folder) as srv:
        pid = srv.proc.pid
        began = time.monotonic()
        next_sample, i = began, 0
        while time.monotonic() - began < seconds:
            if time.monotonic() >= next_sample:
                samples.append((time.monotonic() - began, *_proc_sample(pid)))
                next_sample += max(1.0, seconds / 20)
            a = article("soak", i)
            steps = [("asks", "POST", "/ask", {"question": f"What did the {WORDS[i % len(WORDS)]} council decide?"}),
                     ("adds", "POST", "/documents", a)]
            if i >= 3:
                steps.append(("deletes", "DELETE", f"/documents/soak-{i - 3}", None))
            if i % 10 == 9:
                steps.append(("rebuilds", "POST", "/index/rebuild", {}))
            for name, method, path, body in steps:
                status, _ = call(method, srv.url + path, body)
                counts[name] += 1
                if status not in (200, 201, 204):
                    counts["errors"] += 1
            i += 1
        samples.append((time.monotonic() - began, *_proc_sample(pid)))
    warm = samples[min(2, len(samples) - 1)]
    last = samples[-1]
    figures["soak"] = {"seconds": seconds, **counts, "rss_mb_after_warmup": warm[1], "rss_mb_last": last[1],
                       "rss_mb_max": max(s[1] for s in samples), "fds_after_warmup": warm[2], "fds_last": last[2],
                       "fds_max": max(s[2] for s in samples), "deleted_fds_last": last[3]}
    f = figures["soak"]
    rows = [[f"{t:.0f}", f"{rss:.0f}", fds, deleted] for t, rss, fds, deleted in samples]
    return (f"{seconds} s: {f['asks']} questions, {f['adds']} adds, {f['deletes']} deletes, {f['rebuilds']} rebuilds, "
            f"{f['errors']} errors. RSS {f['rss_mb_after_warmup']:.0f} MB after warm-up, {f['rss_mb_last']:.0f} MB at "
            f"the end (max {f['rss_mb_max']:.0f}); descriptors {f['fds_after_warmup']} → {f['fds_last']} (max "
            f"{f['fds_max']}), {f['deleted_fds_last']} on deleted files at the end.\n\n"
            + table(["s", "RSS MB", "open descriptors", "on deleted files"], rows))


# --- /ask during rebuilds ----------------------------------------------------------------------------------------
def run_rebuild(knobs: dict, figures: dict, index: Path | None = None, readers: tuple[str, ...] = ("off", "on")
                ) -> str:
    """One client asking continuously on a copy of the BBC News index (bench/out's, or ``--rebuild-index``),
    alone and then while POST /index/rebuild runs back to back: p50, p99 and errors of each phase, with the reader
    off and on (``--reader``), each in a server of its own."""
    from .corpora import CORPORA
    from .indexing import index_dir

    source = index or index_dir("bbc")
    if (source / "CURRENT").exists():
        name, questions = "BBC News", CORPORA["bbc"].queries(200)
    else:
        source, name = template(), "the seed articles (no BBC News index in bench/out: `python -m bench index`)"
        questions = [q for q in (SEEDS / "questions.txt").read_text().splitlines() if q.strip()] \
            if (SEEDS / "questions.txt").exists() else [f"What did the {w} council decide?" for w in WORDS]
    seconds = knobs["rebuild_seconds"]
    runs = {}
    for reader in readers:
        folder = WORK / "rebuild"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(source, folder, symlinks=True, ignore=shutil.ignore_patterns("write.lock"))
        runs[reader] = _rebuild_run(folder, questions, seconds, reader)
        shutil.rmtree(folder, ignore_errors=True)
    figures["rebuild"] = {"corpus": name, "readers": runs}
    rows = [[f"reader {reader}", phase, d["asks"], d["p50_ms"], d["p99_ms"], d["max_ms"], d["errors"]]
            for reader, run in runs.items() for phase, d in run["phases"].items()]
    rebuilt = "; ".join(f"reader {reader}: {run['rebuilds']} rebuilds, {run['rebuild_s_p50']:.1f} s each at the "
                        f"median, {run['failed_rebuilds']} failed" for reader, run in runs.items())
    return (f"One client asks {name} questions continuously for {seconds} s alone, then for {seconds} s while "
            f"`POST /index/rebuild` runs back to back ({rebuilt}), in a fresh server for each reader setting "
            f"(`QA_READER`). Target: p99 ≤ 250 ms with 0 errors during rebuilds.\n\n"
            + table(["reader", "phase", "/ask answered", "p50 ms", "p99 ms", "max ms", "errors"], rows))


def _rebuild_run(folder: Path, questions: list[str], seconds: int, reader: str) -> dict:
    """The two phases of the rebuild section on one server (``QA_READER=reader``) over ``folder``."""
    phases = {}
    with server(folder, QA_READER=reader) as srv:
        for q in questions[:50]:
            call("POST", srv.url + "/ask", {"question": q})

        def asking(stop: threading.Event | None, until: float) -> dict:
            times, errors, i = [], 0, 0
            while (stop is None or not stop.is_set()) and time.monotonic() < until:
                sent = time.monotonic()
                status, _ = call("POST", srv.url + "/ask", {"question": questions[i % len(questions)]})
                times.append((time.monotonic() - sent) * 1000)
                errors += status != 200
                i += 1
            return {"asks": len(times), "p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99),
                    "max_ms": max(times, default=float("nan")), "errors": errors}

        phases["alone"] = asking(None, time.monotonic() + seconds)
        rebuilds = {"n": 0, "seconds": [], "failed": 0}
        stop = threading.Event()

        def rebuild() -> None:
            while not stop.is_set():
                began = time.perf_counter()
                status, _ = call("POST", srv.url + "/index/rebuild", {}, timeout=600)
                rebuilds["seconds"].append(time.perf_counter() - began)
                rebuilds["n"] += 1
                rebuilds["failed"] += status != 200

        writer = threading.Thread(target=rebuild)
        writer.start()
        try:
            phases["during rebuilds"] = asking(stop, time.monotonic() + seconds)
        finally:
            stop.set()
            writer.join()
    return {"phases": phases, "rebuilds": rebuilds["n"], "rebuild_s_p50": percentile(rebuilds["seconds"], 50),
            "failed_rebuilds": rebuilds["failed"]}


class Document:
    """docs/reliability.md: one marked block per section, replaced by each run that includes it; the notes block
    (``<!-- keep:notes -->``) is kept as written."""

    HEADINGS = {"schema": "Schema: schemathesis over every operation", "kills": "SIGKILL during writes",
                "readers": "Readers and a writer", "servers": "Two server processes on one index",
                "disk": "A full disk", "corrupt": "Damaged files", "soak": "Soak: memory and descriptors",
                "rebuild": "/ask while the index is rebuilt"}

    def __init__(self, path: str):
        self.path = REPO / path if not Path(path).is_absolute() else Path(path)
        self.new: dict[str, str] = {}

    def set(self, name: str, text: str, *, command: str, seconds: float, load: str) -> None:
        self.new[name] = (f"`{command}` — {time.strftime('%Y-%m-%d')}, {seconds:.0f} s, load average {load}\n\n"
                          f"{text.strip()}")

    def write(self) -> None:
        """The file with this run's blocks and the others as they are in it now."""
        old = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
        blocks = {m.group(1): m.group(2) for m in
                  re.finditer(r"<!-- reliability:(\w+) -->\n(.*?)\n<!-- /reliability:\1 -->", old, flags=re.S)}
        kept = re.search(r"<!-- keep:notes -->\n(.*?)\n<!-- /keep:notes -->", old, flags=re.S)
        blocks.update(self.new)
        blocks["machine"] = f"Machine: {machine()}."
        parts = ["# Reliability", "", INTRO, "", _block("machine", blocks["machine"]), ""]
        for name in SECTIONS:
            if name in blocks:
                doc = " ".join((RUNNERS[name].__doc__ or "").split())
                parts += [f"## {self.HEADINGS[name]}", "", doc, "", _block(name, blocks[name]), ""]
        if kept:  # written by hand: figures measured outside the harness, and what the sections found
            parts += ["<!-- keep:notes -->", kept.group(1), "<!-- /keep:notes -->", ""]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("\n".join(parts), encoding="utf-8")


def _block(name: str, body: str) -> str:
    return f"<!-- reliability:{name} -->\n{body.strip()}\n<!-- /reliability:{name} -->"


RUNNERS = {"schema": run_schema, "kills": run_kills, "readers": run_readers, "servers": run_servers,
           "disk": run_disk, "corrupt": run_corrupt, "soak": run_soak, "rebuild": run_rebuild}


def command(name: str, knobs: dict, smallest: bool, extra: str = "") -> str:
    """The command line that reproduces one section at the size it ran with."""
    if smallest:
        return f"python -m bench reliability {name} --smallest{extra}"
    flags = "".join(f" {KNOB_FLAGS[k]} {knobs[k]}" for k in SECTION_KNOBS[name] if knobs[k] != DEFAULTS[k])
    return f"python -m bench reliability {name}{flags}{extra}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench reliability", description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", metavar="SECTION", help=f"{', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--smallest", action="store_true", help="every knob at its smallest (a smoke test)")
    for knob, flag in KNOB_FLAGS.items():
        parser.add_argument(flag, type=int, dest=knob, default=None, help=f"default {DEFAULTS[knob]}")
    parser.add_argument("--rebuild-index", type=Path, default=None,
                        help="index folder to copy for the rebuild section (default: bench/out's BBC News index)")
    parser.add_argument("--reader", choices=["off", "on", "both"], default="both",
                        help="the reader setting(s) of the rebuild section's servers (default: both)")
    parser.add_argument("--output", default="docs/reliability.md", help="markdown file to update ('-': none)")
    args = parser.parse_args(argv)
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    knobs = {k: (getattr(args, k) if getattr(args, k) is not None else (SMALLEST if args.smallest else DEFAULTS)[k])
             for k in DEFAULTS}
    WORK.mkdir(parents=True, exist_ok=True)
    results_path = OUT / "reliability.json"
    figures_all = json.loads(results_path.read_text()) if results_path.exists() else {}
    report = None if args.output == "-" else Document(args.output)
    failures = 0
    for name in args.sections or SECTIONS:
        started = time.perf_counter()
        load_before = os.getloadavg()[0]
        print(f"## {name}", flush=True)
        figures: dict = {}
        try:
            if name == "rebuild":
                readers = ("off", "on") if args.reader == "both" else (args.reader,)
                text = run_rebuild(knobs, figures, args.rebuild_index, readers)
            else:
                text = RUNNERS[name](knobs, figures)
        except Exception as e:  # noqa: BLE001 -- a section that cannot run says why, the others still run
            failures += 1
            text = f"Did not finish: {type(e).__name__}: {one_line(str(e))}"
        print(text, flush=True)
        figures_all[name] = figures.get(name, figures)
        extra = ""
        if name == "rebuild":
            extra = (f" --rebuild-index {args.rebuild_index}" if args.rebuild_index else "") + \
                (f" --reader {args.reader}" if args.reader != "both" else "")
        if report is not None:
            load = f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after (1-minute, {os.cpu_count()} cores)"
            report.set(name, text, command=command(name, knobs, args.smallest, extra),
                       seconds=time.perf_counter() - started, load=load)
        results_path.write_text(json.dumps(figures_all, indent=1, default=sorted))
    if report is not None:
        report.write()
    return 1 if failures else 0


INTRO = ("Written by `python -m bench reliability` (each section's command is above its figures; a run of some "
         "sections replaces only their blocks). " + " ".join(__doc__.split("\n\n", 1)[1].split()))
