"""`python -m bench.rebuild_gil DIR [--rounds 2]`: `NewsIndex.ask` in one process while another thread rebuilds the
index in DIR (a copy: it is rebuilt), at Python's default GIL switch interval (5 ms) and at 0.5 ms, alternating;
one JSON line per rebuild (docs/reliability.md, "What the runs above found")."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from .corpora import CORPORA  # noqa: E402
from .measure import percentile  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from qa.index import NewsIndex
    from qa.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m bench.rebuild_gil", description=__doc__.splitlines()[0])
    parser.add_argument("index", type=Path, help="a BBC News index folder (rebuilt in place: pass a copy)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    index = NewsIndex(Settings.from_env(index_dir=args.index))
    questions = CORPORA["bbc"].queries(200)
    for q in questions[:20]:  # warm: model, reader, caches
        index.ask(q)
    for _ in range(args.rounds):
        for interval in (0.005, 0.0005):
            sys.setswitchinterval(interval)
            alone = []
            for q in questions[20:30]:
                began = time.perf_counter()
                index.ask(q)
                alone.append((time.perf_counter() - began) * 1000)
            rebuild = threading.Thread(target=index.rebuild)
            started = time.perf_counter()
            rebuild.start()
            during, i = [], 30
            while rebuild.is_alive():
                began = time.perf_counter()
                index.ask(questions[i % len(questions)])
                during.append((time.perf_counter() - began) * 1000)
                i += 1
            print(json.dumps({"interval_ms": interval * 1000, "rebuild_s": round(time.perf_counter() - started, 1),
                              "alone_p50": round(percentile(alone, 50)), "alone_p99": round(percentile(alone, 99)),
                              "during_n": len(during), "during_p50": round(percentile(during, 50)),
                              "during_p99": round(percentile(during, 99))}), flush=True)
    sys.setswitchinterval(0.005)
    return 0


if __name__ == "__main__":
    sys.exit(main())
