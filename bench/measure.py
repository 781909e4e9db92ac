"""Measuring tools shared by the benchmarks: percentiles, child processes with their peak memory, tables, and a
description of the machine and the versions the figures were taken with."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
PYTHON = sys.executable


def percentile(values, q: float) -> float:
    """The ``q``-th percentile (0–100) by linear interpolation; nan for no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def latency_ms(seconds: list[float]) -> dict:
    """p50, p99 and mean of a list of durations in seconds, as milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {"p50": percentile(ms, 50), "p99": percentile(ms, 99), "mean": sum(ms) / max(1, len(ms)), "n": len(ms)}


@dataclass
class ChildResult:
    """What a benchmark child process reported (its last stdout line, as JSON) and what it cost."""

    data: dict
    wall_s: float
    peak_rss_mb: float


class ChildFailed(RuntimeError):
    pass


def run_child(args: list[str], *, env: dict | None = None, timeout: float = 1800, cwd: Path = REPO) -> ChildResult:
    """Run a process to completion; return its last stdout line as JSON, its wall time and its peak RSS (which
    the child reports itself, see ``report``: its own peak, not the largest of all children so far)."""
    began = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ChildFailed(f"{' '.join(args[:4])} … ran past {timeout:.0f} s")
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise ChildFailed(f"{' '.join(args[:4])} … exited {proc.returncode}:\n{err[-3000:]}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise ChildFailed(f"{' '.join(args[:4])} … printed no result:\n{out[-2000:]}\n{err[-2000:]}")
    data = json.loads(lines[-1])
    return ChildResult(data, wall, float(data.get("peak_rss_mb", float("nan"))))


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    """This process's resident memory now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tree_rss_mb() -> float:
    """Resident memory of this process and all its children now (a store's server process counts), in MB."""
    import psutil

    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total / 1e6


def report(data: dict) -> None:
    """A child's result: one JSON line on stdout, with its peak memory added."""
    print(json.dumps({**data, "peak_rss_mb": round(peak_rss_mb(), 1)}), flush=True)


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table; floats get sensible precision."""
    def cell(v) -> str:
        if isinstance(v, float):
            if v != v:
                return "–"
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    """CPU, cores, memory, OS and the versions of what is measured."""
    cpu = "unknown CPU"
    flags = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = line
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    versions = []
    for name in ("onnxruntime", "tokenizers", "faiss-cpu", "numpy", "torch", "sentence-transformers", "fastapi",
                 "uvicorn"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    vnni = " (AVX-512 VNNI)" if "avx512_vnni" in flags else ""
    return (f"{cpu}{vnni}, {os.cpu_count()} cores, {mem_kb / 1024 / 1024:.0f} GiB; {platform.system()} "
            f"{platform.release()}; Python {platform.python_version()}; {', '.join(versions)}")
