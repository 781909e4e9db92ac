"""Indexing: our full build against the model's bare forward pass on the same chunks and against txtai indexing
the same chunks with the same model, each in its own process; plus a rebuild of an unchanged corpus."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

from . import txtai_peer
from .corpora import CORPORA
from .measure import OUT, PYTHON, ChildFailed, percentile, run_child, table


def backend() -> str:
    from qa.settings import Settings

    return Settings.from_env().backend


def index_dir(corpus: str) -> Path:
    return OUT / f"index-{corpus}-{backend()}"


def texts_file(corpus: str) -> Path:
    return OUT / f"texts-{corpus}-{backend()}.json"


def txtai_dir(corpus: str) -> Path:
    return OUT / f"txtai-{corpus}"


def _share_model(folder: Path) -> None:
    """Every bench index reads the ONNX model exported once into bench/out/model-cache, so no build pays (or
    times) the one-off export."""
    from qa.embedding import load_embedder
    from qa.settings import Settings

    cache = OUT / "model-cache"
    if not (cache / "onnx").exists() and backend() != "torch":
        load_embedder(Settings.from_env(index_dir=cache))
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "onnx"
    if (cache / "onnx").exists() and not link.exists():
        link.symlink_to((cache / "onnx").resolve(), target_is_directory=True)


def build(corpus: str) -> dict:
    """Index ``corpus`` from scratch in a child process; return its figures."""
    folder = index_dir(corpus)
    shutil.rmtree(folder, ignore_errors=True)
    _share_model(folder)
    result = run_child([PYTHON, "-m", "bench.worker", "build", json.dumps(
        {"corpus": corpus, "index_dir": str(folder), "texts": str(texts_file(corpus))})])
    return {**result.data, "peak_rss_mb": result.peak_rss_mb, "wall_s": result.wall_s}


def indexed(corpora: list[str]):
    """``(name, corpus, index folder)`` for each corpus whose data is here, its bench index built if missing."""
    for name in corpora:
        corpus = CORPORA[name]
        if corpus.available():
            yield name, corpus, ensure_index(name)


def ensure_index(corpus: str) -> Path:
    """The bench index of ``corpus``, built if a previous run left none."""
    folder = index_dir(corpus)
    if not (folder / "CURRENT").exists() or not texts_file(corpus).exists():
        build(corpus)
    return folder


def sample_texts(corpus: str, n: int) -> Path:
    """The embedded texts of ``corpus``, or a fixed random sample of ``n`` of them (0: all), as a file."""
    full = texts_file(corpus)
    if not n:
        return full
    texts = json.loads(full.read_text(encoding="utf-8"))
    if len(texts) <= n:
        return full
    picked = sorted(random.Random(0).sample(range(len(texts)), n))
    path = OUT / f"texts-{corpus}-{backend()}-sample{n}.json"
    path.write_text(json.dumps([texts[i] for i in picked]), encoding="utf-8")
    return path


def run(corpora: list[str], *, with_txtai: bool, results: dict, sample: int = 0) -> str:
    """``sample``: the bare model and txtai embed this many of the index's chunk texts (drawn at random), not
    all, to bound the run; 0 means all."""
    rows, rebuilds = [], []
    for name in corpora:
        corpus = CORPORA[name]
        if not corpus.available():
            print(f"  index: {corpus.path} is missing, {name} left out", flush=True)
            continue
        ours = build(name)
        chunks = ours["chunks"]
        same = sample_texts(name, sample)
        raw = run_child([PYTHON, "-m", "bench.worker", "raw", json.dumps(
            {"index_dir": str(index_dir(name)), "texts": str(same)})])
        raw_cps = raw.data["chunks"] / raw.data["embed_s"]
        ours_cps = chunks / ours["build_s"]
        peer_cps = peer_rss = float("nan")
        if with_txtai:
            try:
                shutil.rmtree(txtai_dir(name), ignore_errors=True)
                peer = txtai_peer.index_and_search(name, same, corpus.queries(200), save=txtai_dir(name))
                peer_cps, peer_rss = peer.data["chunks"] / peer.data["index_s"], peer.peak_rss_mb
                results.setdefault("txtai_search", {})[name] = {
                    "p50": percentile(peer.data["search_ms"], 50), "p99": percentile(peer.data["search_ms"], 99)}
            except ChildFailed as e:
                print(f"  txtai failed on {name}: {e}", flush=True)
        rows.append([corpus.label, ours["documents"], chunks, ours["build_s"], ours_cps, ours["peak_rss_mb"],
                     raw.data["chunks"], raw_cps, ours_cps / raw_cps, peer_cps, peer_rss, ours_cps / peer_cps])
        again = run_child([PYTHON, "-m", "bench.worker", "rebuild", json.dumps({"index_dir": str(index_dir(name))})])
        rebuilds.append([corpus.label, chunks, ours["build_s"], again.data["rebuild_s"], again.data["embedded"],
                         ours["build_s"] / again.data["rebuild_s"]])
        results.setdefault("index", {})[name] = {
            "documents": ours["documents"], "chunks": chunks, "build_s": ours["build_s"], "chunks_per_s": ours_cps,
            "peak_rss_mb": ours["peak_rss_mb"], "raw_chunks_per_s": raw_cps, "txtai_chunks_per_s": peer_cps,
            "txtai_peak_rss_mb": peer_rss, "skipped": ours["skipped"], "backend": ours["backend"],
            "vector_index": ours["vector_index"], "rebuild_s": again.data["rebuild_s"],
            "rebuild_embedded": again.data["embedded"]}
        print(f"  index {name}: {chunks} chunks, {ours_cps:.1f} chunks/s (raw {raw_cps:.1f}, txtai {peer_cps:.1f})",
              flush=True)
    be = backend()
    out = [table(["corpus", "articles", "chunks", "build s", "chunks/s", "peak RSS MB", "chunks compared",
                  f"raw model ({be}) chunks/s", "ours / raw", "txtai chunks/s", "txtai peak RSS MB",
                  "ours / txtai"], rows)]
    skipped = {n: r["skipped"] for n, r in results.get("index", {}).items() if r["skipped"] and n in corpora}
    for name, reasons in skipped.items():
        out.append(f"\nSkipped while indexing {name}: " + "; ".join(reasons))
    out.append("\nRebuilding an unchanged corpus (`qa index --rebuild`): vectors are looked up by the hash of the "
               "embedded text, so nothing is embedded again:\n")
    out.append(table(["corpus", "chunks", "first build s", "rebuild s", "chunks embedded again", "speed-up"],
                     rebuilds))
    return "\n".join(out)


def threads_note() -> str:
    return f"{os.cpu_count()} threads for the model (ONNX Runtime intra-op), 1 for FAISS queries"
