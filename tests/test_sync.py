"""Keeping the index in step with a folder: `qa index DIR --sync` and `qa watch DIR` (watchfiles)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest

from qa.sync import Watcher, sync


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def folder_of_articles(root):
    write(root / "a.txt", "Ferry workers went on strike on Monday over pay.")
    write(root / "b.txt", "The council approved the budget for schools.")
    write(root / "sub" / "c.md", "# Rink closes\n\nThe ice rink closes for repairs.")
    write(root / "data.json", json.dumps([{"id": "r1", "title": "One", "body": "First record about trams."},
                                          {"id": "r2", "title": "Two", "body": "Second record about buses."}]))
    return root


def ids(index):
    return {d.doc_id for d in index.documents()}


def test_sync_removes_articles_whose_files_are_gone(tmp_path, fake_index):
    root = folder_of_articles(tmp_path / "news")
    found, report, removed = sync(fake_index, [root])
    assert ids(fake_index) == {"a", "b", "c", "r1", "r2"} and removed == []
    fake_index.add_text("Pasted article about the harbour.", doc_id="pasted")  # no file: never synced
    (root / "b.txt").unlink()
    write(root / "data.json", json.dumps([{"id": "r1", "title": "One", "body": "First record about trams."}]))
    found, report, removed = sync(fake_index, [root])
    assert removed == ["b", "r2"]
    assert ids(fake_index) == {"a", "c", "r1", "pasted"}
    assert report.unchanged and not report.added
    # Another folder's articles are not this folder's business.
    other = folder_of_articles(tmp_path / "other")
    (other / "a.txt").rename(other / "a2.txt")
    sync(fake_index, [other / "b.txt"])
    assert sync(fake_index, [root])[2] == []
    assert "b" in ids(fake_index)


def test_a_watcher_applies_added_changed_and_deleted_files(tmp_path, fake_index):
    root = folder_of_articles(tmp_path / "news")
    seen = []
    watcher = Watcher(fake_index, root, report=seen.append)
    watcher.start()
    assert {str(a) for a in seen} == {"added a", "added b", "added c", "added r1", "added r2"}

    write(root / "d.txt", "A new article about the lighthouse.")
    write(root / "a.txt", "Ferry workers ended their strike on Friday.")
    (root / "b.txt").unlink()
    write(root / ".hidden.txt", "Not an article.")
    actions = [str(a) for a in watcher.apply([root / "d.txt", root / "a.txt", root / "b.txt", root / ".hidden.txt"])]
    assert sorted(actions) == ["added d", "removed b: its file is gone", "updated a"]
    assert fake_index.document("a")["text"] == "Ferry workers ended their strike on Friday."

    shutil.rmtree(root / "sub")  # a deleted folder takes its articles along
    assert [str(a) for a in watcher.apply([root / "sub"])] == ["removed c: its file is gone"]
    write(root / "data.json", json.dumps([{"id": "r2", "title": "Two", "body": "Second record about buses."}]))
    assert [str(a) for a in watcher.apply([root / "data.json"])] == ["removed r1: its file is gone"]
    write(root / "broken.txt", "")
    (skipped,) = watcher.apply([root / "broken.txt"])
    assert skipped.verb == "skipped" and "no text" in skipped.detail
    (root / "broken.txt").unlink()
    write(root / ".qaignore", "d.txt\n")  # a new ignore rule: the folder is synced again
    assert [str(a) for a in watcher.apply([root / ".qaignore"])] == ["removed d: its file is gone"]
    assert ids(fake_index) == {"a", "r2"}


def test_a_moved_file_or_record_keeps_its_article(tmp_path, fake_index):
    """A file moved to a subfolder, renamed to another type, or a record moved to another file in one save: its old
    path's articles were removed after the new path's were added (the article lost)."""
    root = folder_of_articles(tmp_path / "news")
    watcher = Watcher(fake_index, root, report=lambda action: None)
    watcher.start()
    (root / "deep").mkdir()
    (root / "a.txt").rename(root / "deep" / "a.txt")
    (root / "b.txt").rename(root / "b.md")
    write(root / "data.json", json.dumps([{"id": "r1", "title": "One", "body": "First record about trams."}]))
    write(root / "more.json", json.dumps([{"id": "r2", "title": "Two", "body": "Second record about buses."}]))
    changed = [root / "a.txt", root / "deep" / "a.txt", root / "b.txt", root / "b.md", root / "data.json",
               root / "more.json"]
    actions = sorted(str(a) for a in watcher.apply(changed))
    assert actions == ["updated a", "updated b", "updated r2"]  # the same articles, now stored under their new paths
    assert ids(fake_index) == {"a", "b", "c", "r1", "r2"}
    assert fake_index.document_paths()["a"] == str(root / "deep" / "a.txt")
    # So the new path's deletion, later, is the one that removes it.
    (root / "deep" / "a.txt").unlink()
    assert [str(a) for a in watcher.apply([root / "deep" / "a.txt"])] == ["removed a: its file is gone"]


def test_a_folder_that_appears_is_read_whole(tmp_path, fake_index):
    """Only the folder is reported when one is moved in or renamed: its files were never read."""
    root = folder_of_articles(tmp_path / "news")
    watcher = Watcher(fake_index, root, report=lambda action: None)
    watcher.start()
    (root / "sub").rename(root / "sub2")
    write(tmp_path / "outside" / "e.txt", "A new library opened downtown on Friday.")
    (tmp_path / "outside").rename(root / "moved")
    actions = sorted(str(a) for a in watcher.apply([root / "sub", root / "sub2", root / "moved"]))
    assert actions == ["added e", "updated c"] and ids(fake_index) == {"a", "b", "c", "e", "r1", "r2"}


def test_a_new_file_whose_id_another_file_holds_is_skipped(tmp_path, fake_index):
    """`sub/a.txt` beside `a.txt` replaced a's article (and its deletion then removed a); two such files in one batch
    were an IntegrityError that ended `qa watch`. As `qa index` does, the newcomer is refused with the reason."""
    root = folder_of_articles(tmp_path / "news")
    watcher = Watcher(fake_index, root, report=lambda action: None)
    watcher.start()
    write(root / "sub" / "a.txt", "Another story about the ferry strike.")
    (skipped,) = watcher.apply([root / "sub" / "a.txt"])
    assert skipped.verb == "skipped" and "document id 'a' is claimed by" in skipped.detail
    assert fake_index.document("a")["text"] == "Ferry workers went on strike on Monday over pay."
    (root / "sub" / "a.txt").unlink()
    assert watcher.apply([root / "sub" / "a.txt"]) == [] and "a" in ids(fake_index)
    write(root / "x.txt", "The tram line opens in May.")
    write(root / "sub" / "x.txt", "The bus line closes in June.")
    actions = [str(a) for a in watcher.apply([root / "x.txt", root / "sub" / "x.txt"])]
    assert actions[-1] == "added x" and actions[0].startswith("skipped ") and "claimed by" in actions[0]


@contextmanager
def watching(watcher):
    """``watcher.run`` in a thread (debounce 200 ms), once its watch is in place; stopped on the way out."""
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=watcher.run, kwargs={"debounce_ms": 200, "stop_event": stop,
                                                          "on_ready": ready.set}, daemon=True)
    thread.start()
    try:
        assert ready.wait(30)
        yield thread
    finally:
        stop.set()
        thread.join(10)


def test_a_bad_qaignore_is_reported_and_the_watch_goes_on(tmp_path, fake_index):
    """`[z-a]` in .qaignore (or a half-saved one) ended the watch for good; fixed, the next change applies."""
    root = folder_of_articles(tmp_path / "news")
    seen = []
    watcher = Watcher(fake_index, root, report=seen.append)
    watcher.start()
    with watching(watcher) as thread:
        write(root / ".qaignore", "[z-a]\n")
        assert poll(lambda: any(a.verb == "failed" and "[z-a]" in a.detail for a in seen))
        write(root / ".qaignore", "b.txt\n")
        assert poll(lambda: "b" not in ids(fake_index)) and thread.is_alive()


def test_sync_finds_articles_added_from_another_folder_and_through_links(tmp_path, fake_index, monkeypatch):
    """`qa add news/x.txt` stored the path as given: a sync run from another folder removed x. A link to a file
    outside the folder was never removed by a sync, even once listed in .qaignore or dangling."""
    from qa.ingest import collect

    root = folder_of_articles(tmp_path / "news")
    write(tmp_path / "elsewhere" / "story.txt", "The harbour reopens on Tuesday.")
    (root / "link.txt").symlink_to(tmp_path / "elsewhere" / "story.txt")
    monkeypatch.chdir(tmp_path)
    fake_index.add(collect([root.relative_to(tmp_path)], max_bytes=1 << 20).articles)
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert sync(fake_index, [root])[2] == []
    write(root / ".qaignore", "link.txt\n")
    assert sync(fake_index, [root])[2] == ["link"]
    assert ids(fake_index) == {"a", "b", "c", "r1", "r2"}
    # A link to a file the folder offers itself is that article, not a second one (folder, sync and watch alike).
    (root / "alias.txt").symlink_to(root / "a.txt")
    assert "alias" not in {a.doc_id for a in collect([root], max_bytes=1 << 20).articles}
    watcher = Watcher(fake_index, root, report=lambda action: None)
    assert watcher.apply([root / "alias.txt"]) == [] and ids(fake_index) == {"a", "b", "c", "r1", "r2"}


def test_watch_picks_up_files_as_they_change(tmp_path, fake_index):
    root = folder_of_articles(tmp_path / "news")
    seen = []
    watcher = Watcher(fake_index, root, report=seen.append)
    watcher.start()
    with watching(watcher):
        write(root / "late.txt", "A late article about the ferry timetable.")
        (root / "b.txt").unlink()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not ({"late"} <= ids(fake_index) and "b" not in ids(fake_index)):
            time.sleep(0.1)
        assert "late" in ids(fake_index) and "b" not in ids(fake_index)
        assert "added late" in [str(a) for a in seen] and "removed b: its file is gone" in [str(a) for a in seen]


def test_qa_index_sync_on_the_command_line(tmp_path, model_cache):
    root = tmp_path / "news"
    write(root / "a.txt", "Ferry workers went on strike on Monday over pay.")
    write(root / "b.txt", "The council approved the budget for schools.")
    folder = tmp_path / "index"
    folder.mkdir()
    if (model_cache / "onnx").exists():
        shutil.copytree(model_cache / "onnx", folder / "onnx")
    env = {**os.environ, "QA_INDEX_DIR": str(folder), "QA_READER": "off"}

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "qa.cli", *args], capture_output=True, text=True, env=env,
                              timeout=300, cwd=tmp_path)
        return proc.returncode, proc.stdout, proc.stderr

    code, out, err = run("index", "news", "--sync")
    assert code == 0, err
    (root / "b.txt").unlink()
    code, out, err = run("index", "news", "--sync")
    assert code == 0, err
    assert "removed b (its file is gone)" in out and "1 article removed" in out
    code, out, err = run("docs", "--json")
    assert [d["doc_id"] for d in json.loads(out)["documents"]] == ["a"]
    code, out, err = run("index", "news", "--sync", "--rebuild")
    assert code == 2 and "--sync" in err


def _one_article_and_an_empty_index(tmp_path, model_cache):
    """A news folder holding one article, and an index folder with the exported model but no index yet."""
    root = tmp_path / "news"
    write(root / "a.txt", "Ferry workers went on strike on Monday over pay.")
    folder = tmp_path / "index"
    folder.mkdir()
    if (model_cache / "onnx").exists():
        shutil.copytree(model_cache / "onnx", folder / "onnx")
    return root, folder


def test_qa_watch_logs_each_action(tmp_path, model_cache):
    import signal

    root, folder = _one_article_and_an_empty_index(tmp_path, model_cache)
    # PYTHONFAULTHANDLER: a watch that does not stop is made to say where each of its threads is (SIGABRT below)
    env = {**os.environ, "QA_INDEX_DIR": str(folder), "QA_READER": "off", "PYTHONFAULTHANDLER": "1"}
    # Ctrl-C as in a terminal: a test run started in the background of a non-interactive shell ignores SIGINT, and
    # a child would inherit that (Python keeps an ignored SIGINT ignored), so the watch is started with the default.
    proc = subprocess.Popen([sys.executable, "-m", "qa.cli", "watch", str(root), "--debounce", "200"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    import queue

    lines, incoming, errors = [], queue.Queue(), []
    threading.Thread(target=lambda: [incoming.put(line) for line in proc.stdout], daemon=True).start()
    # stderr is read too: a pipe nobody reads fills up (64 KB) and the process blocks on its next write
    threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True).start()

    def wait_for(text, seconds=120):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = incoming.get(timeout=0.5)
            except queue.Empty:
                continue
            lines.append(line.rstrip("\n"))
            if text in line:
                return
        raise AssertionError(f"{text!r} not in {lines}")

    try:
        wait_for("watching ")
        assert any(line.endswith(" added a") for line in lines)
        write(root / "late.txt", "A late article about the ferry timetable.")
        wait_for("added late")
        (root / "a.txt").unlink()
        wait_for("removed a: its file is gone")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(120)  # it stops after the batch under way: on a loaded machine that can take a while
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            proc.wait(30)
            time.sleep(0.5)
            raise AssertionError("qa watch did not stop on SIGINT:\n" + "".join(errors)[-6000:]) from None
    assert proc.returncode == 0, "".join(errors)[-2000:]


def poll(check, seconds=20.0):
    """``check()``'s first true value within ``seconds`` (None after that): the watch applies changes after its
    debounce, on a machine that may be busy."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_a_background_watch_runs_while_the_app_does(tmp_path, fake_index):
    from fastapi.testclient import TestClient

    from qa.sync import BackgroundWatch
    from web.app import create_app

    root = folder_of_articles(tmp_path / "news")
    watch = BackgroundWatch(Watcher(fake_index, root, report=lambda action: None), debounce_ms=200)
    assert not fake_index.exists()
    with TestClient(create_app(fake_index.settings, index=fake_index, watch=watch)) as client:
        # There was no index: the app started serving once the folder was indexed.
        assert {d["doc_id"] for d in client.get("/documents").json()} == {"a", "b", "c", "r1", "r2"}
        write(root / "late.txt", "A late article about the ferry timetable.")
        assert poll(lambda: client.get("/documents/late").status_code == 200)
    assert not watch._thread.is_alive()  # stopped with the app
    write(root / "later.txt", "Written after the server stopped.")
    time.sleep(0.5)
    assert "later" not in ids(fake_index)


@pytest.mark.slow
def test_qa_serve_watch_keeps_the_served_articles_in_step_with_the_folder(tmp_path, model_cache):
    import signal
    import socket
    import urllib.error
    import urllib.parse
    import urllib.request

    root, folder = _one_article_and_an_empty_index(tmp_path, model_cache)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "QA_INDEX_DIR": str(folder), "QA_READER": "off"}
    proc = subprocess.Popen([sys.executable, "-m", "qa.cli", "serve", "--port", str(port), "--watch", str(root),
                             "--debounce", "200"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)

    def get(path):
        try:
            with urllib.request.urlopen(base + path, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, None
        except OSError:
            return None, None

    def ask(question):
        status, body = get("/ask?" + urllib.parse.urlencode({"q": question, "k": 3}))
        return body if status == 200 else None

    try:
        # No index before: the server comes up with the folder's article (the model loads meanwhile).
        assert poll(lambda: get("/documents")[0] == 200 or proc.poll() is not None, 240)
        assert [d["doc_id"] for d in get("/documents")[1]] == ["a"]

        write(tmp_path / "rink.txt", "The ice rink on Harbour Street closes for roof repairs until October.")
        shutil.copy(tmp_path / "rink.txt", root / "rink.txt")  # a file copied in becomes answerable
        assert poll(lambda: get("/documents/rink")[0] == 200)
        body = ask("Why does the ice rink close?")
        assert body["passages"][0]["doc_id"] == "rink" and "roof repairs" in body["passages"][0]["text"]

        write(root / "rink.txt", "The ice rink on Harbour Street reopens on Saturday with a new cafe.")
        assert poll(lambda: (get("/documents/rink")[1] or {}).get("text", "").endswith("new cafe."))
        body = ask("When does the ice rink reopen?")
        rink = [p for p in body["passages"] if p["doc_id"] == "rink"]
        assert rink and "reopens on Saturday" in rink[0]["text"] and "roof" not in rink[0]["text"]

        (root / "rink.txt").unlink()  # gone from every route
        assert poll(lambda: get("/documents/rink")[0] == 404)
        assert "rink" not in [d["doc_id"] for d in get("/documents")[1]]
        assert "rink" not in [p["doc_id"] for p in ask("When does the ice rink reopen?")["passages"]]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            err = proc.communicate(timeout=60)[1]
        except subprocess.TimeoutExpired:
            proc.kill()
            err = proc.communicate()[1]
    assert "added rink" in err and "updated rink" in err and "removed rink: its file is gone" in err, err
    assert "Traceback" not in err and "did not stop" not in err, err
