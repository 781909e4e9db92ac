"""`python -m bench.ray_ingest`: chunks per second of `qa index --ray` with 1 and 2 workers beside the plain `qa index`
on the same BBC News articles; prints a markdown table (docs/scale.md, "Ingest on Ray").

Each run is a fresh `qa` process indexing into a fresh folder, timed from start to exit (Ray's local cluster start
included); the exported ONNX model is copied in beforehand, so no run pays for the export.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
BBC = REPO.parent / "shared" / "data" / "bbc-news"
DONE = re.compile(r"(\d+) chunks? written, (\d+) embedded in ([\d.]+) s")


def sample(folder: Path, n: int, out: Path) -> int:
    """The first ``n / categories`` articles of each category (by file name), copied under ``out``."""
    cats = sorted(p for p in folder.iterdir() if p.is_dir())
    per = max(1, n // len(cats))
    count = 0
    for cat in cats:
        for f in sorted(cat.glob("*.txt"))[:per]:
            (out / cat.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, out / cat.name / f.name)
            count += 1
    return count


def run(args: list[str], index_dir: Path, onnx: Path, threads: int) -> dict:
    """One `qa index` run into a fresh ``index_dir``; its wall time and what it reported."""
    shutil.rmtree(index_dir, ignore_errors=True)
    shutil.copytree(onnx, index_dir / "onnx")
    env = {**os.environ, "QA_INDEX_DIR": str(index_dir), "QA_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    load = os.getloadavg()[0]
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "qa.cli", "index", *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"qa index {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    m = DONE.search(done.stdout)
    chunks, seconds = int(m.group(1)), float(m.group(3))
    return {"chunks": chunks, "seconds": seconds, "wall": wall, "load": load}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ray_ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=BBC, help="the BBC News folder (category/NNN.txt)")
    parser.add_argument("--articles", type=int, default=300, help="articles to index, spread over the categories")
    parser.add_argument("--workers", default="1,2", help="comma-separated Ray worker counts")
    args = parser.parse_args(argv)
    from qa.embedding import load_embedder
    from qa.settings import Settings

    with tempfile.TemporaryDirectory(prefix="qa-bench-ray-") as tmp:
        tmp = Path(tmp)
        n = sample(args.data, args.articles, tmp / "articles")
        load_embedder(Settings.from_env(index_dir=tmp / "model"))  # the ONNX export, once
        onnx = tmp / "model" / "onnx"
        threads = os.cpu_count() or 1
        paths = [str(tmp / "articles"), "--ids", "path"]  # category/001.txt and another/001.txt are two articles
        rows = [("plain `qa index`", f"{threads} threads", run(paths, tmp / "index", onnx, threads))]
        for w in [int(x) for x in args.workers.split(",") if x.strip()]:
            result = run([*paths, "--ray", "--workers", str(w)], tmp / "index", onnx, threads)
            rows.append((f"`qa index --ray --workers {w}`", f"{w} × 1 thread", result))
    print(f"{n} BBC News articles, {os.cpu_count()} cores\n")
    print("| run | embedding | chunks | wall s | chunks/s (wall) | qa's own s | chunks/s (qa's) | load avg at start |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, how, r in rows:
        print(f"| {name} | {how} | {r['chunks']} | {r['wall']:.1f} | {r['chunks'] / r['wall']:.1f} | "
              f"{r['seconds']:.1f} | {r['chunks'] / r['seconds']:.1f} | {r['load']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
