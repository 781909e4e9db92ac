"""Scale: retrieval latency, memory and recall@10 (against exact search) at 100k and 1M vectors.

The vectors are synthesized from real ones: every synthetic vector is a real chunk embedding (BBC News and
MultiHop-RAG, from the indexes ``bench index`` built) plus Gaussian noise, renormalized, at a cosine of about 0.9
to its source; queries are real questions (MultiHop-RAG) embedded by the model. Uniform random vectors would say
nothing about IVF recall. Each index is built in one child process and served from its saved file by another, so
the memory figure is what a serving process holds."""

from __future__ import annotations

import json
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


def real_vectors(index_dirs: list[Path]) -> np.ndarray:
    """Every chunk vector stored in the given indexes' live generations."""
    found = []
    for root in index_dirs:
        current = root / "CURRENT"
        if not current.exists():
            continue
        db = sqlite3.connect(root / current.read_text().strip() / "qa.sqlite3")
        blobs = [row[0] for row in db.execute("SELECT vector FROM chunks")]
        db.close()
        found.append(np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), DIM))
    if not found:
        raise RuntimeError("no bench index with real vectors yet: run `python -m bench index` first")
    return np.vstack(found)


def synthetic_blocks(real: np.ndarray, n: int, seed: int = 7):
    """``n`` vectors near real ones, in blocks, the same for the same seed (so children rebuild the same set)."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, BLOCK):
        size = min(BLOCK, n - start)
        x = real[rng.integers(0, len(real), size=size)] + rng.normal(0.0, NOISE, size=(size, DIM)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield start, x.astype(np.float32)


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


def child(args: dict) -> dict:
    return {"build": _build, "serve": _serve}[args["step"]](args)


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
