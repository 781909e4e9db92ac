"""`qa index PATHS --ray`: reading, chunking and embedding on a real (local) Ray cluster store what `qa index` stores,
and a re-run, after a clean run or a crash, adds each article exactly once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import ray

from conftest import REPO, RETALIATION_DOC, SEEDS, STORES, kill_after_first_write, store_settings
from qa.cli import main
from qa.index import NewsIndex
from qa.ingest_ray import index_with_ray, worker_env

pytestmark = pytest.mark.slow  # the real model on a real (local) Ray cluster

QUESTIONS = ["which countries retaliated?", "steel tariffs doubled", "APEC summit in South Korea"]


@pytest.fixture(scope="module")
def ray_cluster():
    """A two-CPU Ray cluster on this machine, shut down after the module."""
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=worker_env(), log_to_driver=False)
    yield
    ray.shutdown()


def _ray_index(folder, embedder, model_cache, store: str = "embedded") -> NewsIndex:
    """No index yet on ``store`` (files under ``folder``); its Ray workers find the session's exported model in its
    index folder (rather than each exporting it)."""
    settings = store_settings(store, folder)
    shutil.copytree(model_cache / "onnx", settings.index_dir / "onnx")
    return NewsIndex(settings, embedder=embedder)


@pytest.fixture(scope="module")
def ray_built(ray_cluster, tmp_path_factory, embedder, model_cache):
    """The seed articles indexed once with --ray on two workers, and that run's report."""
    idx = _ray_index(tmp_path_factory.mktemp("ray"), embedder, model_cache)
    found, read, report = index_with_ray(idx, [SEEDS], workers=2)
    yield idx, found, read, report
    idx.close()


def _spans(idx: NewsIndex) -> dict:
    return {d.doc_id: [(c["chunk_no"], c["start"], c["end"]) for c in idx.document(d.doc_id)["chunks"]]
            for d in idx.documents()}


def test_ray_stores_the_documents_chunks_and_offsets_the_plain_path_stores(ray_built, seed_index):
    idx, found, read, report = ray_built
    assert report.created and sorted(report.added) == sorted(d.doc_id for d in seed_index.documents())
    assert found.summary(read) == "read 5 articles from 5 files (5 .txt)"
    assert idx.stats()["documents"] == seed_index.stats()["documents"] == 5
    assert idx.stats()["chunks"] == seed_index.stats()["chunks"] == report.chunks
    assert _spans(idx) == _spans(seed_index)
    for d in seed_index.documents():
        mine, theirs = idx.document(d.doc_id), seed_index.document(d.doc_id)
        assert {k: mine[k] for k in ("text", "title", "date", "source", "url", "author", "path")} == \
               {k: theirs[k] for k in ("text", "title", "date", "source", "url", "author", "path")}


def test_ray_workers_embed_as_the_local_embedder_does(ray_built, seed_index):
    idx, *_ = ray_built
    live_ray, live_plain = idx.live(), seed_index.live()
    hashes = [h for (h,) in live_plain.store.db.execute("SELECT embed_hash FROM chunks ORDER BY id")]
    ray_vecs, plain_vecs = live_ray.vectors_by_hash(hashes), live_plain.vectors_by_hash(hashes)
    assert set(ray_vecs) == set(plain_vecs) == set(hashes)  # same embedded texts, same salt
    a = np.stack([np.frombuffer(ray_vecs[h], dtype=np.float32) for h in hashes])
    b = np.stack([np.frombuffer(plain_vecs[h], dtype=np.float32) for h in hashes])
    # int8 activations are quantised per batch, so a chunk embedded beside other chunks may differ in the last bits.
    assert np.min(np.sum(a * b, axis=1)) > 0.999


def test_ray_index_gives_the_same_answers_with_exact_citations(ray_built, seed_index):
    idx, *_ = ray_built
    for question in QUESTIONS:
        mine, theirs = idx.search(question, k=3), seed_index.search(question, k=3)
        assert [(p.doc_id, p.start, p.end) for p in mine] == [(p.doc_id, p.start, p.end) for p in theirs]
        for p in mine:
            assert idx.document(p.doc_id)["text"][p.start:p.end] == p.text
    answer, expected = idx.ask(QUESTIONS[0]), seed_index.ask(QUESTIONS[0])
    assert answer.passages[0].doc_id == RETALIATION_DOC
    assert answer.answer == expected.answer


def test_a_rerun_adds_nothing(ray_built):
    idx, *_ = ray_built
    _, _, again = index_with_ray(idx, [SEEDS], workers=2)
    assert (again.added, again.updated, again.chunks, again.embedded) == ([], [], 0, 0)
    assert len(again.unchanged) == 5 and not again.created


@pytest.mark.parametrize("store", STORES)
def test_a_run_that_dies_midway_then_a_rerun_leaves_every_article_exactly_once(store, ray_cluster, tmp_path, embedder,
                                                                                  model_cache, seed_index):
    idx = _ray_index(tmp_path, embedder, model_cache, store)
    idx.batch_size = 2  # five articles: batches of 2, 2 and 1
    write, calls = idx.write_prepared, []

    def dies_at_the_second_batch(prepared, report):
        calls.append(len(prepared))
        if len(calls) == 2:
            raise RuntimeError("killed")
        write(prepared, report)

    idx.write_prepared = dies_at_the_second_batch
    with pytest.raises(RuntimeError, match="killed"):
        index_with_ray(idx, [SEEDS], workers=1)
    assert idx.stats()["documents"] == 2  # the first batch, whole
    del idx.write_prepared

    _, _, report = index_with_ray(idx, [SEEDS], workers=1)
    assert len(report.unchanged) == 2 and len(report.added) == 3  # skipped before embedding, not re-embedded
    docs = [d.doc_id for d in idx.documents()]
    assert sorted(docs) == sorted(set(docs)) == sorted(d.doc_id for d in seed_index.documents())
    assert idx.stats()["chunks"] == seed_index.stats()["chunks"]
    assert _spans(idx) == _spans(seed_index)
    idx.close()


def test_qa_index_ray_prints_what_it_read_and_wrote(ray_cluster, tmp_path, model_cache, capsys, monkeypatch):
    folder = tmp_path / "index"
    shutil.copytree(model_cache / "onnx", folder / "onnx")
    monkeypatch.setenv("QA_INDEX_DIR", str(folder))
    assert main(["index", str(SEEDS), "--ray", "--workers", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "read 5 articles from 5 files (5 .txt)"
    assert out[1].startswith("built: 5 added, 0 updated, 0 unchanged;")


@pytest.mark.parametrize("argv, message", [
    (["index", "--ray", str(SEEDS)], "--ray takes a Ray address"),
    (["index", str(SEEDS), "--ray", "--rebuild"], "does not --rebuild or --sync"),
    (["index", str(SEEDS), "--workers", "2"], "--workers is for --ray"),
])
def test_qa_index_ray_refuses_what_it_cannot_do_in_one_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("QA_INDEX_DIR", str(tmp_path / "index"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_ray_reads_folders_as_qa_index_does(ray_cluster, tmp_path, embedder, model_cache, monkeypatch):
    from qa.errors import Conflict, UnsupportedFile
    from qa.ingest import collect

    folder = tmp_path / "news"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    (folder / "a" / "rink.txt").write_text("Rink closes\n\nThe town rink closes for repairs on Monday.\n")
    (folder / "b" / "rink.txt").write_text("Rink reopens\n\nThe town rink reopens in May after repairs.\n")
    (folder / "b" / "latin.txt").write_bytes("Caf\xe9 prices\n\nA coffee costs \xa33.".encode("latin-1"))
    idx = _ray_index(tmp_path / "store", embedder, model_cache)
    with pytest.raises(Conflict, match="claimed by"):  # as collect: before anything is embedded or written
        index_with_ray(idx, [folder], workers=1)
    assert not idx.exists()

    found, read, report = index_with_ray(idx, [folder], workers=1, ids="path")
    plain = collect([folder], max_bytes=idx.settings.max_article_bytes, ids="path")
    assert found.summary(read) == plain.summary() == "read 2 articles from 2 files (2 .txt); 1 skipped"
    assert report.skipped == plain.skipped and "not UTF-8" in report.skipped[0]
    assert sorted(report.added) == ["a-rink", "b-rink"]
    assert idx.document("b-rink")["path"] == str(folder / "b" / "rink.txt")
    # A file named directly that cannot be read is an error naming it as given, as collect names it.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsupportedFile) as raised:
        index_with_ray(idx, [Path("news/b/latin.txt")], workers=1)
    with pytest.raises(UnsupportedFile) as plain_raised:
        collect([Path("news/b/latin.txt")], max_bytes=idx.settings.max_article_bytes)
    assert str(raised.value) == str(plain_raised.value) and str(raised.value).startswith("news/b/latin.txt")
    idx.close()


def test_a_killed_ray_ingest_then_a_rerun_leaves_every_article_exactly_once(ray_cluster, tmp_path, embedder,
                                                                              model_cache, seed_index):
    idx = _ray_index(tmp_path, embedder, model_cache)
    # `qa index --ray` joining this cluster, one article per embedding call and per write: five commits to land among.
    # Each write is followed by a pause, so the 20 ms poll below sees the index between commits even when the
    # machine is idle and the five writes would otherwise land within one poll.
    code = ("import sys, time; import qa.ingest_ray as r; from qa.index import NewsIndex; from qa.cli import main; "
            "NewsIndex.batch_size = 1; r.EMBED_ARTICLES_PER_CALL = 1; write = NewsIndex.write_prepared; "
            "NewsIndex.write_prepared = lambda self, *a, **k: (write(self, *a, **k), time.sleep(0.3))[0]; "
            "sys.exit(main(sys.argv[1:]))")
    address = ray.get_runtime_context().gcs_address
    env = {**os.environ, "QA_INDEX_DIR": str(idx.settings.index_dir),
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.Popen([sys.executable, "-c", code, "index", str(SEEDS), "--ray", address, "--workers", "1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    held = kill_after_first_write(proc, idx)
    assert 1 <= held < 5  # killed between commits, after the first

    _, _, report = index_with_ray(idx, [SEEDS], workers=1)
    assert len(report.unchanged) >= held and len(report.unchanged) + len(report.added) == 5
    docs = [d.doc_id for d in idx.documents()]
    assert sorted(docs) == sorted(set(docs)) == sorted(d.doc_id for d in seed_index.documents())
    assert _spans(idx) == _spans(seed_index)
    idx.close()
