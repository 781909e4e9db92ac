"""`python -m bench.embed_memory [--n 800] [--threads N] [--rounds 1] SETTING...`: the embedding session's peak
memory and speed with each setting, on BBC News's chunk texts as `qa index` embeds them (docs/reliability.md,
"Memory of a build"). A SETTING is ARENA:BATCH_TOKENS[:pattern], like on:0 (now), on:0:pattern (before: ONNX
Runtime's memory pattern on) or on:2048; each runs in a fresh process (VmHWM is per process), settings alternating
round by round, one JSON line each."""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from .corpora import CORPORA  # noqa: E402
from .measure import OUT, PYTHON, REPO, peak_rss_mb  # noqa: E402

TEXTS = OUT / "embed-memory-texts.json"


def _texts() -> list[str]:
    """Every BBC News chunk's embedded text (title prefix and passage), as the index builds them."""
    if not TEXTS.exists():
        from qa.index import NewsIndex
        from qa.ingest import collect
        from qa.settings import Settings

        settings = Settings.from_env(index_dir=OUT / "model-cache")
        chunker = NewsIndex(settings).chunker
        corpus = CORPORA["bbc"]
        found = collect([corpus.path], max_bytes=settings.max_article_bytes, ids=corpus.ids)
        texts = []
        for a in found.articles:
            prefix = chunker.title_prefix(a.title)
            texts += [chunker.embedding_text(prefix, c.text) for c in chunker.chunk(a.text, a.title)]
        OUT.mkdir(parents=True, exist_ok=True)
        TEXTS.write_text(json.dumps(texts))
    return json.loads(TEXTS.read_text())


def child(arena: bool, batch_tokens: int, n: int, pattern: bool = False) -> dict:
    """Embed a fixed sample of ``n`` texts in slices of 128, batch 32 (as `qa index` does): peak RSS, times."""
    import onnxruntime as ort

    from qa.embedding import load_embedder
    from qa.settings import Settings

    texts = _texts()
    random.Random(1).shuffle(texts)
    texts = texts[:n]
    settings = Settings.from_env(index_dir=OUT / "model-cache", embed_arena=arena, embed_batch_tokens=batch_tokens)
    embedder = load_embedder(settings)
    if pattern:  # the session as it was before: memory pattern on
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = arena
        options.enable_mem_pattern = True
        embedder._session = ort.InferenceSession(str(embedder.onnx_path), sess_options=options,
                                                 providers=["CPUExecutionProvider"])
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(texts), 128):
        embedder.encode(texts[start:start + 128], batch_size=32)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"arena": arena, "batch_tokens": batch_tokens, "mem_pattern": pattern, "n": n, "threads": settings.threads,
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "chunks_per_s": round(n / wall, 2),
            "peak_rss_mb": round(peak_rss_mb())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.embed_memory", description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="*", default=["on:0:pattern", "on:0"],
                        metavar="ARENA:BATCH_TOKENS[:pattern]")
    parser.add_argument("--n", type=int, default=800, help="texts embedded per run (default 800)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="QA_THREADS for the runs (1: no spinning)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        arena, tokens, *rest = args.child.split(":")
        print(json.dumps(child(arena == "on", int(tokens), args.n, rest == ["pattern"])), flush=True)
        return 0
    _texts()  # once, before the timed children
    env = {**os.environ, **({"QA_THREADS": str(args.threads)} if args.threads else {})}
    for _ in range(args.rounds):
        for setting in args.settings:
            done = subprocess.run([PYTHON, "-m", "bench.embed_memory", "--child", setting, "--n", str(args.n)],
                                  cwd=REPO, env=env, capture_output=True, text=True)
            print(done.stdout.strip() or done.stderr[-2000:], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
