"""Scale: retrieval latency, memory and recall@10 (against exact search) at 100k and 1M vectors.

The vectors are synthesized from real ones: every synthetic vector is a real chunk embedding (BBC News and
MultiHop-RAG, from the indexes ``bench index`` built) plus Gaussian noise, renormalized, at a cosine of about 0.9
to its source; queries are real questions (MultiHop-RAG) embedded by the model. Uniform random vectors would say
nothing about IVF recall. Each index is built in one child process and served from its saved file by another, so
the memory figure is what a serving process holds.

`python -m bench.scale` (``main``) puts the same synthetic chunks, each with the text of the real chunk its
vector comes from, into whole stores (the embedded SQLite + FTS5 + FAISS store and Milvus Lite) through the
``Backend`` interface, and times dense candidates, their recall@10 and hybrid retrieval on each (docs/scale.md)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np

from .measure import OUT, PYTHON, latency_ms, rss_mb, run_child, table

DIM = 384
BLOCK = 50_000
# Per-dimension noise for a cosine of about 0.9 between a synthetic vector and the real one it comes from.
NOISE = 0.48 / np.sqrt(DIM)
NPROBES = (8, 16, 32, 64, 128)


def real_chunks(index_dirs: list[Path]) -> tuple[np.ndarray, list[tuple[str, str, str, str]]]:
    """Every chunk vector stored in the given indexes' live generations, and each chunk's ``(title, source, date,
    text)`` (the text cut from its article by the stored offsets), in the same order."""
    found, rows = [], []
    for root in index_dirs:
        current = root / "CURRENT"
        if not current.exists():
            continue
        db = sqlite3.connect(root / current.read_text().strip() / "qa.sqlite3")
        docs = {d: (t, s, dt, text) for d, t, s, dt, text in
                db.execute("SELECT doc_id, title, source, date, text FROM documents")}
        blobs = []
        for vector, doc_id, start, end in db.execute("SELECT vector, doc_id, start, end FROM chunks ORDER BY id"):
            blobs.append(vector)
            title, source, date, text = docs[doc_id]
            rows.append((title, source, date, text[start:end]))
        db.close()
        found.append(np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), DIM))
    if not found:
        raise RuntimeError("no bench index with real vectors yet: run `python -m bench index` first")
    return np.vstack(found), rows


def real_vectors(index_dirs: list[Path]) -> np.ndarray:
    """Every chunk vector stored in the given indexes' live generations."""
    return real_chunks(index_dirs)[0]


def synthetic_blocks(real: np.ndarray, n: int, seed: int = 7, *, sources: bool = False):
    """``n`` vectors near real ones, in blocks, the same for the same seed (so children rebuild the same set):
    ``(start, vectors)``, or ``(start, vectors, positions of the real vectors they come from)`` with ``sources``."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, BLOCK):
        size = min(BLOCK, n - start)
        picked = rng.integers(0, len(real), size=size)
        x = real[picked] + rng.normal(0.0, NOISE, size=(size, DIM)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield (start, x.astype(np.float32), picked) if sources else (start, x.astype(np.float32))


def exact_top(real: np.ndarray, queries: np.ndarray, n: int, k: int = 10) -> np.ndarray:
    """Ids (positions) of the exact ``k`` best vectors for each query, computed block by block."""
    best_ids = np.full((len(queries), k), -1, dtype=np.int64)
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    for start, block in synthetic_blocks(real, n):
        scores = queries @ block.T
        ids = np.broadcast_to(np.arange(start, start + len(block)), scores.shape)
        all_scores = np.hstack([best_scores, scores])
        all_ids = np.hstack([best_ids, ids])
        top = np.argsort(-all_scores, axis=1)[:, :k]
        best_scores = np.take_along_axis(all_scores, top, axis=1)
        best_ids = np.take_along_axis(all_ids, top, axis=1)
    return best_ids


# --- children ---------------------------------------------------------------------------------------------------


def _build(args: dict) -> dict:
    import faiss

    from qa.vectors import IndexPolicy, _all_threads, new_faiss_index

    real = np.load(args["real"])
    n, kind = args["n"], args["kind"]
    policy = IndexPolicy()
    began = time.perf_counter()
    training = None
    if kind != "flat":
        wanted = policy.nlist_for(n) * policy.train_points_per_cell if kind == "ivf" else BLOCK
        training = np.vstack([b for _, b in synthetic_blocks(real, min(n, wanted))])
    index = new_faiss_index(kind, DIM, training, policy, expected=n)
    del training
    for start, block in synthetic_blocks(real, n):
        with _all_threads():
            index.add_with_ids(block, np.arange(start, start + len(block), dtype=np.int64))
    build_s = time.perf_counter() - began
    faiss.write_index(index, args["path"])
    return {"build_s": build_s, "file_mb": Path(args["path"]).stat().st_size / 1e6}


def _serve(args: dict) -> dict:
    import faiss

    from qa.vectors import VectorIndex

    queries = np.load(args["queries"])
    truth = np.load(args["truth"])
    base = rss_mb()
    vectors = VectorIndex(DIM, faiss.read_index(args["path"]))
    loaded = rss_mb()
    probes = [0]
    if vectors.kind == "ivf":
        ivf = faiss.extract_index_ivf(vectors.index)
        default = ivf.nprobe
        probes = sorted(set(p for p in NPROBES if p <= ivf.nlist) | {default})
    rows = []
    for probe in probes:
        if probe:
            ivf.nprobe = probe
        for q in queries[:10]:
            vectors.search(q, 100)
        seconds, recalls = [], []
        for q, want in zip(queries, truth):
            began = time.perf_counter()
            got = vectors.search(q, 100)  # what hybrid retrieval asks for
            seconds.append(time.perf_counter() - began)
            recalls.append(len({i for i, _ in got[:10]} & set(want.tolist())) / len(want))
        rows.append({"nprobe": probe, "default": (probe == default) if probe else True,
                     "latency": latency_ms(seconds), "recall10": float(np.mean(recalls))})
    if probes != [0]:
        ivf.nprobe = default
    return {"describe": vectors.describe(), "base_rss_mb": base, "loaded_rss_mb": loaded, "rss_mb": rss_mb(),
            "rows": rows}


# --- the same synthetic vectors in a whole store (embedded or Milvus Lite), through the Backend interface -------

# Synthetic chunks per synthetic article: about BBC News' 2.65 (5,906 chunks / 2,225 articles), so the document and
# article-text rows (Milvus' documents and texts collections) are as many per chunk as in real news.
CHUNKS_PER_ARTICLE = 3


def synthetic_articles(real: np.ndarray, rows: list, n: int, batch: int, progress=None):
    """The ``n`` synthetic vectors of ``synthetic_blocks`` as articles of ``CHUNKS_PER_ARTICLE`` chunks, in lists
    of ``batch`` ``Upsert``s ready for ``Backend.apply``. Each chunk's text, title, source and date are those of
    the real chunk its vector comes from (so BM25 has real words to rank); chunk ``p`` is article
    ``p // CHUNKS_PER_ARTICLE``'s chunk ``p % CHUNKS_PER_ARTICLE``. ``progress(chunks)`` is called per batch."""
    import hashlib

    from qa.backends.base import Upsert
    from qa.ingest import readable_date
    from qa.records import Article

    def article(no: int, vecs: list, srcs: list) -> Upsert:
        bodies = [rows[i][3] for i in srcs]
        title, source, date, _ = rows[srcs[0]]
        text, spans = "", []
        for chunk_no, body in enumerate(bodies):
            text += "\n\n" if text else ""
            spans.append((chunk_no, len(text), len(text) + len(body)))
            text += body
        doc_id = f"syn-{no:07d}"
        meta = " ".join(x for x in (source, readable_date(date) if date else "") if x)
        first = no * CHUNKS_PER_ARTICLE
        return Upsert(Article(doc_id, text, title, date, source), hashlib.sha1((doc_id + text).encode()).hexdigest(),
                      spans, [(title, meta, b) for b in bodies],
                      [hashlib.sha1(f"synthetic\x1f{first + j}".encode()).hexdigest() for j in range(len(bodies))],
                      np.vstack(vecs))

    done, pending, vecs, srcs = 0, [], [], []
    for _, block, picked in synthetic_blocks(real, n, sources=True):
        for vec, src in zip(block, picked):
            vecs.append(vec)
            srcs.append(int(src))
            if len(vecs) == CHUNKS_PER_ARTICLE:
                pending.append(article(done // CHUNKS_PER_ARTICLE, vecs, srcs))
                done += len(vecs)
                vecs, srcs = [], []
                if len(pending) == batch:
                    yield pending
                    pending = []
                    if progress:
                        progress(done)
    if vecs:
        pending.append(article(done // CHUNKS_PER_ARTICLE, vecs, srcs))
        done += len(vecs)
    if pending:
        yield pending
        if progress:
            progress(done)


def _store_url(store: str, folder: Path) -> str:
    return "embedded" if store == "embedded" else f"milvus://{folder}/milvus.db"


def _build_store(args: dict) -> dict:
    """Write ``n`` synthetic chunks into a fresh store as a rebuild does (``NewsIndex``'s batches of articles, one
    ``Backend.apply`` each, then the embedded store's FAISS file or Milvus' flush); embedding is not part of it."""
    from qa.index import FORMAT_VERSION, NewsIndex
    from qa.settings import Settings

    real = np.load(args["real"])
    rows = json.loads(Path(args["rows"]).read_text())
    n, store, folder = args["n"], args["store"], Path(args["dir"])
    log = Path(args["progress"]).open("a")
    began = time.perf_counter()

    def progress(done: int) -> None:
        rss = rss_mb()
        log.write(f"{store} {n}: {done} chunks written after {time.perf_counter() - began:.1f} s, RSS {rss:.0f} MB\n")
        log.flush()
        # Stopped here rather than by the kernel's OOM killer, which may pick another process on a shared machine.
        if args.get("max_rss_mb") and rss > args["max_rss_mb"]:
            raise MemoryError(f"RSS {rss:.0f} MB over the {args['max_rss_mb']} MB cap after {done} chunks")

    meta = NewsIndex(Settings.from_env(index_dir=folder / "index")).expected_meta(DIM)
    if store == "embedded":
        from qa.backends.sqlite_faiss import SqliteFaissBackend
        from qa.store import DB_NAME, Store
        from qa.vectors import VectorIndex

        gen_dir = folder / "index" / "gen-000001"
        gen_dir.mkdir(parents=True)
        db = Store(gen_dir / DB_NAME)
        db.create(meta)
        backend = SqliteFaissBackend(gen_dir, db, VectorIndex(DIM), 0, {})
        for batch in synthetic_articles(real, rows, n, NewsIndex.batch_size, progress):
            backend.apply(batch, [], added_at={}, save_cache=False)
        backend.vectors.save(gen_dir, db.generation())
        db.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        (folder / "index" / "CURRENT").write_text(gen_dir.name + "\n")
    else:
        from qa.backends.milvus import MilvusBackend

        backend = MilvusBackend(_store_url(store, folder))
        backend.create({**meta, "format_version": FORMAT_VERSION})
        for batch in synthetic_articles(real, rows, n, NewsIndex.batch_size, progress):
            backend.apply(batch, [], added_at={})
        settle = time.perf_counter()
        backend.settle()
        log.write(f"{store} {n}: settled (flush) in {time.perf_counter() - settle:.1f} s\n")
        backend.close()
    build_s = time.perf_counter() - began
    log.close()
    return {"build_s": build_s, "disk_mb": _disk_mb(folder)}


def _disk_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def _serve_store(args: dict) -> dict:
    """Open the store afresh and time, per question: dense candidates (``Backend.dense``, k=10: recall@10 against
    exact search) and hybrid retrieval (``hybrid_search``: what ``/ask`` does once the question is embedded, with
    the default ``RetrievalConfig``, a period the question names included)."""
    from qa.backends import open_backend
    from qa.retrieval import RetrievalConfig, hybrid_search, question_period

    from .measure import tree_rss_mb

    queries, truth = np.load(args["queries"]), np.load(args["truth"])
    questions = json.loads(Path(args["questions"]).read_text())
    folder, store = Path(args["dir"]), args["store"]
    base = tree_rss_mb()
    began = time.perf_counter()
    if store == "embedded":
        root = folder / "index"
        backend = open_backend("embedded", gen_dir=root / (root / "CURRENT").read_text().strip())
    else:
        backend = open_backend(_store_url(store, folder))
        backend.open()
    open_s = time.perf_counter() - began
    index_info = backend.describe()
    if store != "embedded":
        described = backend.client.describe_index(backend.names["chunks"], "vec")
        index_info += f"; describe_index(vec): {json.dumps(described, default=str)}"
        # What AUTOINDEX became: Milvus Lite keeps one vector index file per sealed segment (``*.vec.*.idx``);
        # read back with FAISS, its class names the index (IndexHNSWFlat, or not FAISS: Lite's brute force).
        import faiss

        sidecars = sorted(folder.rglob("*.vec.*.idx"))
        kinds = set()
        for path in sidecars:
            try:
                kinds.add(type(faiss.downcast_index(faiss.read_index(str(path)))).__name__)
            except RuntimeError:
                kinds.add("not a FAISS index")
        index_info += f"; {len(sidecars)} segment index files: {', '.join(sorted(kinds)) or 'none'}"
        index_files = {"files": len(sidecars), "kinds": sorted(kinds)}
    else:
        index_files = {}
    config = RetrievalConfig()

    def hybrid(q, text):
        period = question_period(backend, text, None)
        return hybrid_search(backend, q, text, 5, config, None, period)

    for q, text in list(zip(queries, questions))[:5]:  # warm-up: first searches load what the store loads lazily
        backend.dense(q, 10)
        hybrid(q, text)
    dense_s, found = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(list(backend.dense(q, 10)))
        dense_s.append(time.perf_counter() - t)
    # Where hybrid retrieval's time goes: each Backend call it makes, timed (milliseconds per question).
    spent: dict[str, float] = {}

    def timed(name, method):
        def call(*a, **kw):
            t = time.perf_counter()
            try:
                return method(*a, **kw)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
        return call

    for name in ("dense", "lexical", "cosines", "chunk_rows", "chunk_texts", "page_starts", "sources",
                 "newest_date", "stamp"):
        setattr(backend, name, timed(name, getattr(backend, name)))
    hybrid_s = []
    asked = list(zip(queries, questions))[: args.get("hybrid") or len(questions)]
    for q, text in asked:
        t = time.perf_counter()
        hybrid(q, text)
        hybrid_s.append(time.perf_counter() - t)
    for name in list(spent):
        delattr(backend, name)
    calls_ms = {k: round(v * 1000 / len(asked), 2) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}
    # Store ids → synthetic positions, from the rows themselves (article number and chunk number).
    rows = backend.chunk_rows(sorted({i for ids in found for i in ids}), text=False)
    position = {i: int(r["doc_id"][4:]) * CHUNKS_PER_ARTICLE + r["chunk_no"] for i, r in rows.items()}
    recalls = [len({position[i] for i in ids if i in position} & set(want.tolist())) / len(want)
               for ids, want in zip(found, truth)]
    result = {"describe": index_info, "open_s": open_s, "dense": latency_ms(dense_s), "hybrid": latency_ms(hybrid_s),
              "recall10": float(np.mean(recalls)), "base_rss_mb": base, "rss_mb": tree_rss_mb(),
              "counts": list(backend.counts()), "hybrid_calls_ms": calls_ms, "index_files": index_files}
    backend.close()
    return result


def child(args: dict) -> dict:
    return {"build": _build, "serve": _serve, "build_store": _build_store, "serve_store": _serve_store}[
        args["step"]](args)


# --- the benchmark ----------------------------------------------------------------------------------------------


def run(sizes: dict[str, int], queries_at: dict[str, int], index_dirs: list[Path], embed_queries,
        results: dict) -> str:
    """Build flat, SQ8 and IVF indexes at each size, serve each from a fresh process; markdown tables."""
    from qa.vectors import IndexPolicy

    work = OUT / "scale"
    work.mkdir(parents=True, exist_ok=True)
    real = real_vectors(index_dirs)
    np.save(work / "real.npy", real)
    policy = IndexPolicy()
    rows, sweep = [], []
    for label, n in sizes.items():
        queries = embed_queries(queries_at[label])
        np.save(work / "queries.npy", queries)
        began = time.perf_counter()
        truth = exact_top(real, queries, n)
        truth_s = time.perf_counter() - began
        np.save(work / "truth.npy", truth)
        for kind in ("flat", "sq8", "ivf"):
            path = work / f"{label}-{kind}.faiss"
            built = run_child([PYTHON, "-m", "bench.worker", "scale", json.dumps(
                {"step": "build", "real": str(work / "real.npy"), "n": n, "kind": kind, "path": str(path)})])
            served = run_child([PYTHON, "-m", "bench.worker", "scale", json.dumps(
                {"step": "serve", "path": str(path), "queries": str(work / "queries.npy"),
                 "truth": str(work / "truth.npy")})])
            path.unlink(missing_ok=True)
            s = served.data
            chosen = policy.kind_for(n) == kind
            main = next(r for r in s["rows"] if r["default"])
            if chosen:
                results.setdefault("scale", {})[label] = {
                    "describe": s["describe"], "p50": main["latency"]["p50"], "p99": main["latency"]["p99"],
                    "recall10": main["recall10"], "rss_mb": s["rss_mb"], "build_s": built.data["build_s"]}
            rows.append([label, s["describe"] + (" ← chosen" if chosen else ""), len(queries), main["latency"]["p50"],
                         main["latency"]["p99"], main["recall10"], s["rss_mb"], s["rss_mb"] - s["base_rss_mb"],
                         built.data["build_s"], built.peak_rss_mb])
            for r in s["rows"]:
                if r["nprobe"]:
                    sweep.append([label, r["nprobe"] if not r["default"] else f"**{r['nprobe']}** (default)",
                                  r["latency"]["p50"], r["latency"]["p99"], r["recall10"]])
        print(f"  scale {label}: exact ground truth for {len(queries)} queries in {truth_s:.1f} s", flush=True)
    sources = ", ".join(d.name.split("-")[1] for d in index_dirs)
    out = [f"{len(real):,} real chunk vectors ({sources}) as seeds for the synthetic ones.\n"]
    out += [table(["vectors", "index (as served)", "queries", "p50 ms", "p99 ms", "recall@10", "serving RSS MB",
                  "of which index MB", "build s", "build peak RSS MB"], rows)]
    out.append("\nIVF cells scanned per query (nprobe) against recall, on the same vectors and queries:\n")
    out.append(table(["vectors", "nprobe", "p50 ms", "p99 ms", "recall@10"], sweep))
    return "\n".join(out)


# --- stores: the embedded store beside Milvus Lite on the same synthetic chunks (docs/scale.md) --------------------

QUERIES_AT = {"100k": 200, "1M": 100}  # as the FAISS-only run above (``python -m bench scale``)


def parse_size(label: str) -> int:
    """``100k`` → 100,000; ``1M`` → 1,000,000; ``3000`` → 3,000."""
    scale = {"k": 1_000, "M": 1_000_000}.get(label[-1:], 1)
    number = label[:-1] if scale > 1 else label
    if not number.isdigit() or int(number) <= 0:
        raise ValueError(f"not a size: {label!r} (examples: 100k, 1M, 3000)")
    return int(number) * scale


def run_stores(sizes: list[str], stores: list[str], index_dirs: list[Path], queries_at: dict[str, int],
               timeout: float, hybrid: int | None = None, max_rss_mb: float | None = None) -> list[dict]:
    """Each store at each size: built by one process (``_build_store``), served by another (``_serve_store``).
    Rows go to bench/out/scale-stores.json as they come, so a run stopped midway keeps what it measured; a build
    that fails or runs past ``timeout`` is recorded with how far it got (its progress log's last line)."""
    from .__main__ import _query_embedder
    from .corpora import CORPORA
    from .measure import ChildFailed

    work = OUT / "scale"
    work.mkdir(parents=True, exist_ok=True)
    real, rows = real_chunks(index_dirs)
    np.save(work / "real.npy", real)
    (work / "rows.json").write_text(json.dumps(rows))
    embed = _query_embedder()
    results_path = OUT / "scale-stores.json"
    results: list[dict] = []
    for label in sizes:
        n = parse_size(label)
        questions = CORPORA["multihop"].queries(queries_at.get(label, 200), seed=1)
        np.save(work / "queries.npy", embed(len(questions)))
        (work / "questions.json").write_text(json.dumps(questions))
        began = time.perf_counter()
        np.save(work / "truth.npy", exact_top(real, np.load(work / "queries.npy"), n))
        print(f"  {label}: exact top 10 of {len(questions)} questions in {time.perf_counter() - began:.1f} s",
              flush=True)
        for store in stores:
            folder = work / f"{label}-{store}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            progress = work / f"{label}-{store}.progress"
            progress.unlink(missing_ok=True)
            row = {"size": label, "n": n, "store": store, "queries": len(questions), "real_vectors": len(real),
                   "load_before": os.getloadavg()[0]}
            try:
                built = run_child([PYTHON, "-m", "bench.worker", "scale", json.dumps(
                    {"step": "build_store", "real": str(work / "real.npy"), "rows": str(work / "rows.json"), "n": n,
                     "store": store, "dir": str(folder), "progress": str(progress), "max_rss_mb": max_rss_mb})],
                    timeout=timeout)
                row.update(build_s=built.data["build_s"], build_peak_rss_mb=built.peak_rss_mb,
                           disk_mb=built.data["disk_mb"])
                served = run_child([PYTHON, "-m", "bench.worker", "scale", json.dumps(
                    {"step": "serve_store", "dir": str(folder), "store": store, "queries": str(work / "queries.npy"),
                     "truth": str(work / "truth.npy"), "questions": str(work / "questions.json"),
                     "hybrid": hybrid})], timeout=timeout)
                row.update(served.data)
            except ChildFailed as e:
                lines = progress.read_text().splitlines() if progress.exists() else []
                said = [line for line in str(e).splitlines() if line.strip()]
                row.update(failed=" … ".join(dict.fromkeys([said[0], said[-1]])),
                           got_to=lines[-1] if lines else "nothing written")
            row["load_after"] = os.getloadavg()[0]
            results.append(row)
            print(json.dumps(row), flush=True)
            results_path.write_text(json.dumps(results, indent=1) + "\n")
            shutil.rmtree(folder, ignore_errors=True)
    return results


def _index_words(r: dict) -> str:
    """The vector index a row's store searched, in a few words."""
    if r["store"] == "embedded":
        return f"FAISS {r['describe']}"
    files = r.get("index_files") or {}
    return f"AUTOINDEX = {' / '.join(files.get('kinds', [])) or '?'}, {files.get('files', 0)} segment(s)"


def stores_table(results: list[dict]) -> str:
    """The rows of ``run_stores`` as a markdown table."""
    out = []
    for r in results:
        store = "embedded (SQLite + FTS5 + FAISS)" if r["store"] == "embedded" else "Milvus Lite"
        if "failed" in r:
            out.append([r["size"], store, "–", "–", "–", "–", "–", "–", "–", "–",
                        f"did not finish: {r['failed']} ({r['got_to']})"])
            continue
        out.append([r["size"], store, r["build_s"], r["dense"]["p50"], r["dense"]["p99"], r["recall10"],
                    r["hybrid"]["p50"], r["hybrid"]["p99"], r["rss_mb"], r["disk_mb"], _index_words(r)])
    return table(["chunks", "store", "build s", "dense k=10 p50 ms", "p99 ms", "recall@10", "hybrid p50 ms",
                  "p99 ms", "serving RSS MB", "disk MB", "vector index"], out)


HNSW_EFS = (64, 128, 256, 512)  # 64: Milvus Lite's default search list when a search names none


def hnsw_sweep(n: int, index_dirs: list[Path], questions: int) -> str:
    """What Milvus Lite's AUTOINDEX (FAISS ``IndexHNSWFlat``, M 16, efConstruction 200, inner product) gives on the
    same synthetic vectors and questions with FAISS alone: recall@10 against exact search at each search list size
    ``ef``, and the time a query takes in one batch (no gRPC, no Python around it)."""
    import faiss

    from .__main__ import _query_embedder

    real = real_vectors(index_dirs)
    queries = _query_embedder()(questions)
    truth = exact_top(real, queries, n)
    index = faiss.IndexHNSWFlat(DIM, 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 200
    began = time.perf_counter()
    for _, block in synthetic_blocks(real, n):
        index.add(block)
    rows = []
    build_s = time.perf_counter() - began
    for ef in HNSW_EFS:
        index.hnsw.efSearch = ef
        began = time.perf_counter()
        _, found = index.search(queries, 10)
        per_query = (time.perf_counter() - began) / len(queries)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found.tolist(), truth.tolist())])
        rows.append([ef, float(recall), per_query * 1000])
    return (f"FAISS IndexHNSWFlat (M 16, efConstruction 200) on {n:,} synthetic vectors, built in {build_s:.1f} s; "
            f"{len(queries)} questions:\n\n" + table(["ef", "recall@10", "ms a query (batched)"], rows))


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.scale --stores embedded,milvus --sizes 100k,1M`: the store comparison alone."""
    import argparse

    from .indexing import ensure_index, index_dir

    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=main.__doc__)
    parser.add_argument("--stores", default="embedded,milvus")
    parser.add_argument("--sizes", default="100k,1M")
    parser.add_argument("--queries", type=int, help="questions per size (default: 200 at 100k, 100 at 1M)")
    parser.add_argument("--hybrid", type=int, help="time hybrid retrieval on the first N questions only "
                                                   "(default: all; the same N on every store)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds a build or a serving run may take")
    parser.add_argument("--max-rss-mb", type=float, help="stop a build whose process grows past this many MB")
    parser.add_argument("--seeds-from", metavar="INDEX_DIR", action="append",
                        help="index folder(s) whose chunks seed the synthetic ones (default: the BBC News and "
                             "MultiHop-RAG bench indexes, BBC News built if neither is)")
    parser.add_argument("--hnsw-sweep", metavar="SIZE",
                        help="instead: recall@10 of Milvus Lite's HNSW at several ef, with FAISS alone, at SIZE")
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    try:
        [parse_size(s) for s in sizes]
    except ValueError as e:
        parser.error(str(e))
    if any(s not in ("embedded", "milvus") for s in stores):
        parser.error(f"stores are embedded and milvus, not {args.stores!r}")
    if args.seeds_from:
        dirs = [Path(d) for d in args.seeds_from]
    else:
        dirs = [index_dir(c) for c in ("bbc", "multihop") if (index_dir(c) / "CURRENT").exists()]
        dirs = dirs or [ensure_index("bbc")]
    if args.hnsw_sweep:
        try:
            n = parse_size(args.hnsw_sweep)
        except ValueError as e:
            parser.error(str(e))
        print(hnsw_sweep(n, dirs, args.queries or 200))
        return 0
    queries_at = {s: args.queries for s in sizes} if args.queries else QUERIES_AT
    results = run_stores(sizes, stores, dirs, queries_at, args.timeout, args.hybrid, args.max_rss_mb)
    print(stores_table(results))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
