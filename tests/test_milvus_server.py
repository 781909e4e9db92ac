"""Milvus as a server (``QA_STORE=http://127.0.0.1:PORT``; a server process started here, tests/milvus_server.py):
writers and answerers are separate processes with index folders of their own, as `qa` nodes on separate machines
would be, and the Milvus code path is the one a Milvus Standalone or Distributed server gets. Real model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import REPO, RETALIATION_DOC, SEEDS, free_port, kill_after_first_write
from milvus_server import milvus_server, server_binary
from qa.errors import NotFound
from qa.index import NewsIndex
from qa.ingest import collect
from qa.records import Article
from qa.settings import Settings
from web.app import create_app

WORDS = ("strike union ferry harbour tariff minister budget election court ruling steel farm flood bank rate "
         "wheat rail pilot council grid").split()


@pytest.fixture
def server(tmp_path):
    with milvus_server(tmp_path / "server") as url:
        yield url


def _node(tmp_path, name: str, url: str, model_cache: Path, embedder=None) -> NewsIndex:
    """A `qa` node: its own index folder (the exported model copied in), the shared server as its store."""
    folder = tmp_path / name
    if not (folder / "onnx").exists():
        shutil.copytree(model_cache / "onnx", folder / "onnx")
    return NewsIndex(Settings.from_env(index_dir=folder, seeds_dir=SEEDS, store=url), embedder=embedder)


def _article(n: int) -> str:
    words = [WORDS[(n * 7 + i * 3) % len(WORDS)] for i in range(400)]
    sentences = [" ".join(words[i:i + 10]).capitalize() + "." for i in range(0, len(words), 10)]
    return f"Report {n}: {WORDS[n % len(WORDS)]} news\n\n" + " ".join(sentences)


def _qa_index(tmp_path, node: str, url: str, model_cache: Path, folder: Path | None, setup: str = "pass",
              ) -> subprocess.Popen:
    """`qa index FOLDER` (`qa index --rebuild` when ``folder`` is None) in a process of its own, as node ``node``
    (its own index folder) writing into ``url``; ``setup`` is Python run first (smaller batches, a pause after
    each write)."""
    node_dir = tmp_path / node
    if not (node_dir / "onnx").exists():
        shutil.copytree(model_cache / "onnx", node_dir / "onnx")
    env = {**os.environ, "QA_STORE": url, "QA_INDEX_DIR": str(node_dir), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    code = f"import sys, time; from qa.index import NewsIndex; from qa.cli import main; {setup}; " \
           "sys.exit(main(sys.argv[1:]))"
    args = ["index", "--rebuild"] if folder is None else ["index", str(folder)]
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _assert_each_article_once(tmp_path, reader: NewsIndex, folder: Path, embedder) -> None:
    """The server holds every article of ``folder`` once, chunked as an embedded index of them chunks them, with
    exact citations."""
    reference = NewsIndex(Settings.from_env(index_dir=tmp_path / "reference"), embedder=embedder)
    reference.rebuild(collect([folder], max_bytes=10**7).articles)
    docs = [d.doc_id for d in reader.documents()]
    assert sorted(docs) == sorted(d.doc_id for d in reference.documents())  # every article, each once
    for doc_id in docs:
        assert reader.live().chunk_spans(doc_id) == reference.live().chunk_spans(doc_id)
    assert reader.stats()["chunks"] == reference.stats()["chunks"]
    for p in reader.search("ferry strike over wheat", k=10):
        assert reader.document(p.doc_id)["text"][p.start:p.end] == p.text
    reference.close()


def test_several_qa_index_processes_writing_into_one_server_at_once_store_every_article_exactly_once(
        tmp_path, server, model_cache, embedder):
    # Three overlapping folders of one collection of 24 articles, indexed at the same moment by three `qa index`
    # processes, each writing two articles per batch, into a server none of them has written to before.
    union = tmp_path / "articles" / "all"
    union.mkdir(parents=True)
    folders = {name: tmp_path / "articles" / name for name in "abc"}
    for n in range(24):
        (union / f"report{n:02d}.txt").write_text(_article(n), encoding="utf-8")
        for name in "abc"[: 1 + n % 3]:
            folders[name].mkdir(parents=True, exist_ok=True)
            (folders[name] / f"report{n:02d}.txt").write_text(_article(n), encoding="utf-8")
    procs = [_qa_index(tmp_path, f"node-{name}", server, model_cache, folder, "NewsIndex.batch_size = 2")
             for name, folder in folders.items()]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    reader = _node(tmp_path, "reader", server, model_cache, embedder)
    assert reader.stats()["documents"] == 24
    _assert_each_article_once(tmp_path, reader, union, embedder)
    reader.close()


def _articles_folder(tmp_path, count: int):
    """A folder of ``count`` articles (report00.txt, …) as _article writes them."""
    folder = tmp_path / "articles"
    folder.mkdir()
    for n in range(count):
        (folder / f"report{n:02d}.txt").write_text(_article(n), encoding="utf-8")
    return folder


def test_a_qa_index_killed_between_its_writes_then_run_again_leaves_every_article_exactly_once(
        tmp_path, server, model_cache, embedder):
    folder = _articles_folder(tmp_path, 12)
    # One article a write, a pause after each, so the poll below sees the server between writes.
    setup = ("NewsIndex.batch_size = 1; write = NewsIndex._write; "
             "NewsIndex._write = lambda self, *a, **k: (write(self, *a, **k), time.sleep(0.3))[0]")
    reader = _node(tmp_path, "reader", server, model_cache, embedder)
    proc = _qa_index(tmp_path, "writer", server, model_cache, folder, setup)
    held = kill_after_first_write(proc, reader)
    assert 1 <= held < 12  # SIGKILLed between writes, after the first
    again = _qa_index(tmp_path, "writer", server, model_cache, folder)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and "unchanged" in out, out
    _assert_each_article_once(tmp_path, reader, folder, embedder)
    reader.close()


def test_a_first_write_that_looked_before_another_nodes_first_write_drops_none_of_its_articles(
        tmp_path, server, model_cache, embedder):
    seeds = sorted(SEEDS.glob("*.txt"))
    first = _node(tmp_path, "first", server, model_cache, embedder)
    first.add_paths(seeds[:3])
    second = _node(tmp_path, "second", server, model_cache, embedder)
    looked = iter([False])  # its check for an index came before the first node's collections were there
    second.exists = lambda: next(looked, True)
    report = second.add_paths(seeds[3:])
    assert report.created and sorted(report.added) == sorted(p.stem for p in seeds[3:])
    assert sorted(d.doc_id for d in second.documents()) == sorted(p.stem for p in seeds)
    assert second.stats()["chunks"] == first.stats()["chunks"] and second.stats()["documents"] == 5
    first.close()
    second.close()


def test_one_node_writes_and_another_answers_at_once_with_exact_citations(tmp_path, server, model_cache, embedder):
    writer = _node(tmp_path, "writer", server, model_cache, embedder)
    writer.add_paths(sorted(SEEDS.glob("*.txt")))
    asker = _node(tmp_path, "asker", server, model_cache, embedder)
    answer = asker.ask("which countries retaliated?", k=3)
    assert answer.answerable and answer.passages[0].doc_id == RETALIATION_DOC and "China" in answer.answer
    for p in answer.passages:
        assert asker.document(p.doc_id)["text"][p.start:p.end] == p.text
    # A write on one node is in the next answer of the other (consistency level Strong), and so is a removal.
    added = writer.add_text("The Glenmore curling club cancelled its winter bonspiel because the ice plant failed.",
                            title="Bonspiel cancelled").added[0]
    assert asker.search("why was the bonspiel cancelled?", k=1)[0].doc_id == added
    writer.remove(added)
    assert all(p.doc_id != added for p in asker.search("why was the bonspiel cancelled?", k=10))
    with pytest.raises(NotFound):
        asker.document(added)
    writer.close()
    asker.close()


def test_the_server_ranks_the_seed_questions_as_the_embedded_default(tmp_path, server, model_cache, embedder,
                                                                   seed_index):
    node = _node(tmp_path, "node", server, model_cache, embedder)
    node.add_paths(sorted(SEEDS.glob("*.txt")))
    asked = [q for q in (json.loads(line) for line in (REPO / "tests" / "data" / "seed_questions.jsonl")
                         .read_text().splitlines() if line.strip()) if q["kind"] in ("answerable", "offtopic")]
    key = lambda p: (p.doc_id, p.start, p.end)  # noqa: E731
    same = sum(key(node.search(q["question"], k=3)[0]) == key(seed_index.search(q["question"], k=3)[0])
               for q in asked)
    print(f"\nMilvus server vs embedded: same top passage on {same}/{len(asked)} seed questions")
    assert same >= len(asked) - 2  # measured: 63/64, as Milvus Lite in process (tests/test_stores.py)
    node.close()


def _texts(index: NewsIndex) -> dict[str, str]:
    return {d.doc_id: index.document(d.doc_id)["text"] for d in index.documents()}


def test_a_rebuild_killed_midway_loses_nothing_and_every_node_follows_a_finished_one(
        tmp_path, server, model_cache, embedder):
    folder = _articles_folder(tmp_path, 6)
    writer = _node(tmp_path, "writer", server, model_cache, embedder)
    writer.add_paths([folder])
    reader = _node(tmp_path, "reader", server, model_cache, embedder)  # another machine answering meanwhile
    texts, chunks = _texts(reader), reader.stats()["chunks"]
    assert len(texts) == 6
    # `qa index --rebuild` (from the stored articles) SIGKILLed after its first write.
    setup = ("NewsIndex.batch_size = 1; write = NewsIndex._write; NewsIndex._write = lambda self, *a, **k: "
             "(write(self, *a, **k), print('wrote', flush=True), time.sleep(5))[0]")
    proc = _qa_index(tmp_path, "rebuilder", server, model_cache, None, setup)
    try:
        for line in proc.stdout:
            if line.strip() == "wrote":
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _texts(reader) == texts and reader.stats()["chunks"] == chunks  # nothing lost, nothing half-built seen
    for p in reader.search("ferry strike over wheat", k=5):
        assert texts[p.doc_id][p.start:p.end] == p.text
    # A rebuild that finishes, on another node: the reader, opened before it, follows it to the new collections,
    # and so do its writes; one generation is left.
    assert sorted(writer.rebuild().added) == sorted(texts)
    assert _texts(reader) == texts and reader.stats()["chunks"] == chunks
    for p in reader.search("ferry strike over wheat", k=5):
        assert texts[p.doc_id][p.start:p.end] == p.text
    added = reader.add_text("The Glenmore curling club cancelled its bonspiel because the ice plant failed.",
                            title="Bonspiel cancelled").added[0]
    assert writer.search("why was the bonspiel cancelled?", k=1)[0].doc_id == added
    live = writer.live()
    assert sorted(live.client.list_collections()) == sorted([*live.names.values(), live.pointer])
    writer.close()
    reader.close()


def test_two_nodes_updating_one_article_at_once_leave_it_whole(tmp_path, server, model_cache, embedder):
    """Each write deleted every version of the article but its own: when node B's whole update fell between node
    A's chunk rows and A's document row, B deleted A's new rows and A's document row then named them (the article
    listed, with no text and no chunks). Now a write deletes only the version it replaced."""
    a = _node(tmp_path, "a", server, model_cache, embedder)
    b = _node(tmp_path, "b", server, model_cache, embedder)
    a.add([Article("mill", "Version zero: the Orvel mill closed in May.", title="Mill")])
    live = a.live()
    texts_written, b_done = threading.Event(), threading.Event()
    upsert = live.client.upsert

    def pausing(collection, rows, **kwargs):
        result = upsert(collection, rows, **kwargs)
        if collection.endswith("_texts"):  # A's chunks and text are written, its document row not yet
            texts_written.set()
            b_done.wait(60)
        return result

    live.client.upsert = pausing
    version_a = "Version A: the Orvel mill reopened in June under Kestrel Foods."
    writer = threading.Thread(target=a.add, args=([Article("mill", version_a, title="Mill")],))
    writer.start()
    assert texts_written.wait(120)
    b.add([Article("mill", "Version B: the Orvel mill was sold to Brannock Ltd in July.", title="Mill")])
    b_done.set()
    writer.join(120)
    reader = _node(tmp_path, "reader", server, model_cache, embedder)
    doc = reader.document("mill")  # A's document row came last: A's version, whole
    assert doc["text"] == version_a and doc["chunks"]
    (passage,) = [p for p in reader.search("Orvel mill", 3) if p.doc_id == "mill"]
    assert passage.text == version_a[passage.start:passage.end]
    for node in (a, b, reader):
        node.close()


def _serve(folder: Path, port: int) -> subprocess.Popen:
    """A Milvus server on ``port`` keeping its data in ``folder``: started again there, it is the same store at
    the same URL (tests/milvus_server.py picks a new port each time)."""
    binary = server_binary()
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [str(binary.parent),
                                                                        os.environ.get("LD_LIBRARY_PATH")]))}
    proc = subprocess.Popen([str(binary), str(folder / "milvus.db"), f"127.0.0.1:{port}", "ERROR"], cwd=folder,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop(proc)
                raise RuntimeError(f"the Milvus server did not listen on port {port}")
            time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_while_the_server_is_down_the_api_answers_503_naming_it_and_answers_again_once_it_is_back(
        tmp_path, model_cache, embedder):
    folder, port = tmp_path / "server", free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(folder, port)
    try:
        node = _node(tmp_path, "node", url, model_cache, embedder)
        node.add_text("Ferry workers went on strike on Monday over pay.", title="Ferry strike")
        question = {"question": "why did ferry workers strike?"}
        with TestClient(create_app(node.settings, index=node), base_url="http://localhost:8000") as client:
            assert client.post("/ask", json=question).status_code == 200
            _stop(proc)
            for reply in (client.post("/ask", json=question), client.get("/health"),
                          client.get("/documents", headers={"accept": "application/json"})):
                assert reply.status_code == 503, reply.text
                assert url in reply.json()["detail"] and "cannot be reached" in reply.json()["detail"]
            proc = _serve(folder, port)
            deadline = time.monotonic() + 60
            while (reply := client.post("/ask", json=question)).status_code == 503 and time.monotonic() < deadline:
                time.sleep(0.5)  # the server listens a moment before it serves
            assert reply.status_code == 200 and reply.json()["passages"][0]["text"].startswith("Ferry workers")
            assert client.get("/health").status_code == 200
        node.close()
    finally:
        _stop(proc)
