"""In-process query latency (ours and txtai's, same corpus, same questions) and the cold start of `qa ask`."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import time

from . import txtai_peer
from .corpora import CORPORA
from .indexing import ensure_index, indexed, texts_file, txtai_dir
from .measure import OUT, PYTHON, REPO, ChildFailed, percentile, run_child, table

QUERIES = 200


def run_queries(corpora: list[str], *, with_txtai: bool, results: dict) -> str:
    rows = []
    for name, corpus, folder in indexed(corpora):
        ours = run_child([PYTHON, "-m", "bench.worker", "query", json.dumps(
            {"index_dir": str(folder), "corpus": name, "n": QUERIES})]).data
        peer = {"p50": float("nan"), "p99": float("nan")}
        if with_txtai:
            try:
                queries = corpus.queries(QUERIES)
                if (txtai_dir(name) / "config.json").exists() or (txtai_dir(name) / "config").exists():
                    queries_file = OUT / f"queries-{name}.json"
                    queries_file.write_text(json.dumps(queries), encoding="utf-8")
                    got = run_child([str(txtai_peer.PYTHON), "-m", "bench.txtai_child", "search", json.dumps(
                        {"queries": str(queries_file), "save": str(txtai_dir(name))})],
                        env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}).data
                else:
                    got = txtai_peer.index_and_search(name, texts_file(name), queries, save=txtai_dir(name)).data
                peer = {"p50": percentile(got["search_ms"], 50), "p99": percentile(got["search_ms"], 99)}
            except ChildFailed as e:
                print(f"  txtai search failed on {name}: {e}", flush=True)
        results.setdefault("query", {})[name] = {**{k: ours[k] for k in ("embed", "search", "ask", "chunks")},
                                                 "txtai_search": peer, "vector_index": ours["vector_index"]}
        rows.append([corpus.label, ours["chunks"], ours["vector_index"], ours["queries"], ours["embed"]["p50"],
                     ours["search"]["p50"], ours["search"]["p99"], ours["ask"]["p50"], ours["ask"]["p99"],
                     peer["p50"], peer["p99"], peer["p50"] / ours["search"]["p50"]])
        print(f"  query {name}: search p50 {ours['search']['p50']:.2f} ms, txtai {peer['p50']:.2f} ms", flush=True)
    return table(["corpus", "chunks", "vector index", "queries", "embed p50 ms", "search p50 ms", "search p99 ms",
                  "ask p50 ms", "ask p99 ms", "txtai search p50 ms", "txtai search p99 ms", "txtai / ours (p50)"],
                 rows)


HEAVY = ("torch", "sentence_transformers", "transformers", "bs4", "sklearn", "scipy")


def run_cold(results: dict, runs: int = 5) -> str:
    """`qa ask` from a new process on the seed index: wall time, and what it imports (``-X importtime``)."""
    folder = ensure_index("seeds")
    question = CORPORA["seeds"].queries(1)[0]
    env = {**os.environ, "QA_INDEX_DIR": str(folder), "HF_HUB_OFFLINE": "1"}
    qa = str(REPO / ".venv" / "bin" / "qa") if (REPO / ".venv" / "bin" / "qa").exists() else None
    cmd = [qa, "ask", question] if qa else [PYTHON, "-m", "qa.cli", "ask", question]
    subprocess.run(cmd, env=env, capture_output=True, check=True)  # a first run warms the OS file cache
    walls = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(cmd, env=env, capture_output=True, check=True)
        walls.append(time.perf_counter() - began)
    profile = subprocess.run([PYTHON, "-X", "importtime", "-m", "qa.cli", "ask", question], env=env,
                             capture_output=True, text=True, check=True).stderr
    cumulative: dict[str, int] = {}
    for line in profile.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and not m.group(3).strip() and len(m.group(3)) <= 1:
            cumulative[m.group(4)] = int(m.group(2))
    imported = {re.match(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", l).group(1)
                for l in profile.splitlines() if re.match(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", l)}
    heavy = sorted(h for h in HEAVY if h in imported)
    top = sorted(cumulative.items(), key=lambda kv: -kv[1])[:8]
    median = statistics.median(walls)
    results["cold"] = {"median_s": median, "runs": walls, "heavy_imports": heavy,
                       "imports_s": sum(cumulative.values()) / 1e6}
    lines = [f"`qa ask \"{question}\"` on the seed index, {runs} runs after one warm-up: median **{median:.2f} s** "
             f"(min {min(walls):.2f}, max {max(walls):.2f}). Heavy packages imported on the query path: "
             f"{', '.join(heavy) if heavy else 'none (no torch, transformers, sentence-transformers, bs4)'}.",
             "", "Largest top-level imports (`python -X importtime -m qa.cli ask …`):", "",
             table(["module", "cumulative ms"], [[m, us / 1000] for m, us in top])]
    return "\n".join(lines)
