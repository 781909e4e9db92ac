"""`python -m bench [NAME ...]`: run benchmarks, print markdown tables, write them into docs/performance.md.

Names: index, query, reader, http, writes, cold, scale, int8, txtai (sets up txtai's virtualenv only). No name runs them all
(what `make bench` does). `python -m bench reliability` is separate (bench/reliability.py, docs/reliability.md). Each section of docs/performance.md is replaced only by a run that includes it, so a
partial run keeps the other sections' figures; the targets table is recomputed from every figure on record
(bench/out/results.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from . import txtai_peer  # noqa: E402
from .measure import OUT, machine  # noqa: E402
from .report import Report  # noqa: E402

SECTIONS = ("index", "query", "reader", "http", "writes", "cold", "scale", "int8")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["reliability"]:  # its own sections, knobs and document (docs/reliability.md)
        from .reliability import main as reliability

        return reliability(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run: {', '.join(SECTIONS)}, txtai (default: all)")
    parser.add_argument("--corpora", default="seeds,bbc,multihop", help="comma-separated (default: all three)")
    parser.add_argument("--no-txtai", action="store_true", help="leave txtai out")
    parser.add_argument("--quick", action="store_true", help="scale at 100k only, shorter HTTP runs")
    parser.add_argument("--sample", type=int, default=1000,
                        help="chunks the bare model and txtai embed per corpus, drawn from the index's (0: all)")
    parser.add_argument("--output", default="docs/performance.md", help="markdown file to update")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in (*SECTIONS, "txtai")]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(SECTIONS)}, txtai")
    names = args.names or list(SECTIONS)
    corpora = [c.strip() for c in args.corpora.split(",") if c.strip()]
    OUT.mkdir(parents=True, exist_ok=True)
    results_path = OUT / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    with_txtai = not args.no_txtai
    if with_txtai and ("txtai" in names or {"index", "query", "http"} & set(names)):
        results["txtai_version"] = txtai_peer.ensure_venv()
    report = Report(args.output)
    began = time.perf_counter()
    for name in names:
        if name == "txtai":
            continue
        started = time.perf_counter()
        load_before = os.getloadavg()[0]
        print(f"## {name}", flush=True)
        before = {k: json.dumps(v, sort_keys=True) for k, v in results.items()}
        text = _section(name, corpora, with_txtai, args.quick, results, args.sample)
        print(text, flush=True)
        load = f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after (1-minute, {os.cpu_count()} cores)"
        report.set(name, text, command=_command(name, args), seconds=time.perf_counter() - started, load=load)
        changed = {k: v for k, v in results.items() if before.get(k) != json.dumps(v, sort_keys=True)}
        results = _save_results(results_path, changed)
    results = _save_results(results_path, {"machine": machine()})
    report.finish(results, machine=results["machine"], total_s=time.perf_counter() - began)
    print(f"\nwrote {args.output} in {time.perf_counter() - began:.0f} s", flush=True)
    return 0


def _save_results(path, changed: dict) -> dict:
    """Merge this run's new figures into the file as it is now (another partial run may have written it since
    this one started), merging one level deep so per-corpus figures of other corpora survive."""
    current = json.loads(path.read_text()) if path.exists() else {}
    for key, value in changed.items():
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            current[key] = {**current[key], **value}
        else:
            current[key] = value
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=1))
    tmp.replace(path)
    return current


def _command(name: str, args) -> str:
    extra = (f" --corpora {args.corpora}" if args.corpora != "seeds,bbc,multihop" else "") + \
            (" --no-txtai" if args.no_txtai else "") + (" --quick" if args.quick else "") + \
            (f" --sample {args.sample}" if name == "index" and args.sample != 1000 else "")
    return f"python -m bench {name}{extra}"


def _section(name: str, corpora: list[str], with_txtai: bool, quick: bool, results: dict, sample: int) -> str:
    if name == "index":
        from .indexing import run

        return run(corpora, with_txtai=with_txtai, results=results, sample=sample)
    if name == "query":
        from .latency import run_queries

        return run_queries(corpora, with_txtai=with_txtai, results=results)
    if name == "reader":
        from .reader import run

        return run(corpora, results)
    if name in ("http", "writes") and not shutil.which("wrk"):
        return "Not measured: the load generator `wrk` is missing (Debian: `apt-get install -y wrk`)."
    if name == "http":
        from .http_load import run

        return run([c for c in corpora if c in ("seeds", "bbc")], with_txtai=with_txtai, results=results,
                   seconds=5 if quick else 10)
    if name == "writes":
        from .http_load import run_during_writes

        return run_during_writes(results, seconds=8 if quick else 15)
    if name == "cold":
        from .latency import run_cold

        return run_cold(results)
    if name == "scale":
        from .indexing import ensure_index
        from .scale import run

        from .indexing import index_dir

        # Real vectors from whichever of the two larger corpora are indexed already (BBC is built if none is).
        dirs = [index_dir(c) for c in ("bbc", "multihop") if (index_dir(c) / "CURRENT").exists()]
        dirs = dirs or [ensure_index("bbc")]
        sizes = {"100k": 100_000} if quick else {"100k": 100_000, "1M": 1_000_000}
        return run(sizes, {"100k": 200, "1M": 100}, dirs, _query_embedder(), results)
    if name == "int8":
        from .quality import run

        return run(results)
    raise ValueError(name)


def _query_embedder():
    """Real questions (MultiHop-RAG's), embedded by the index's own model."""
    from qa.embedding import load_embedder
    from qa.settings import Settings

    from .corpora import CORPORA

    def embed(n: int):
        embedder = load_embedder(Settings.from_env(index_dir=OUT / "model-cache"))
        return embedder.encode(CORPORA["multihop"].queries(n, seed=1))

    return embed


if __name__ == "__main__":
    sys.exit(main())
