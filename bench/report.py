"""docs/performance.md: one marked block per benchmark, replaced by each run that includes it, and a targets
table recomputed from every figure on record."""

from __future__ import annotations

import re
import time
from pathlib import Path

from .measure import REPO, table

TITLE = "# Performance"

INTRO = """Written by `python -m bench` (`make bench` runs every benchmark; `python -m bench NAME` runs one and
replaces only its block). Figures are medians or percentiles over the runs stated, measured side by side in one
run on the machine below; the raw figures are in `bench/out/results.json`. Build and query figures use the
embedding backend the settings select (`QA_BACKEND`, default shown per table). Other processes may share the two
cores while a benchmark runs: compare ratios taken in the same run rather than absolute figures across runs."""

HEADINGS = {
    "targets": ("Targets", "The issue's targets against the latest figures."),
    "reader": ("The reader's cost", "`NewsIndex.ask` in one process with the reader on and off, over the same "
               "real questions, turns alternating so machine noise hits both alike (`bench/reader.py`); the reader "
               "reads at most 24 sentences per question (`AnswerConfig.reader_limit`)."),
    "index": ("Indexing", "Each build runs in a fresh process: collect, chunk, embed, write SQLite (text, offsets, "
              "vectors, FTS5) and FAISS. *raw model* is the embedder alone (tokenize, forward pass, pooling) on the "
              "exact strings the index embedded (a fixed random sample of them, *chunks compared*, to bound the run), "
              "batch 32: the difference is our overhead. txtai 9.14 indexes the same strings with the same model "
              "folder (mean pooling, 256 tokens at most), FAISS, in its own virtualenv "
              "(bench/.venv-txtai). Peak RSS is each process's high-water mark (VmHWM)."),
    "query": ("Queries in process", "Warm latency over real questions (seed question file, BBC headlines, "
              "MultiHop-RAG questions): *embed* is the query embedding alone, *search* is hybrid retrieval "
              "(dense + BM25, k=10) with citations, *ask* adds answer selection (each question asked once, so this "
              "includes embedding the sentences of its candidate passages). txtai's `search` (dense only, "
              "k=10, ids and scores) on the same chunks and questions."),
    "http": ("`/ask` over HTTP", "`qa serve` (uvicorn, one worker) on 127.0.0.1, loaded by `wrk -t1 -cN` with a "
             "Lua script rotating 200 real questions, bounded by time and by a request budget, after every question "
             "has been asked once (that first pass is timed separately: the first ask of a question embeds the "
             "sentences of its candidate passages, which are cached after). txtai's own API (`uvicorn txtai.api:app`, the same chunks) answers `GET /search` with ids "
             "and scores only, less work per request than our answer with five cited passages. The load "
             "generator shares the two cores with the server."),
    "writes": ("`/ask` while the index changes", "One client asks continuously (wrk) on a copy of the BBC index: "
               "first alone, then while `POST /index/rebuild` rebuilds it (a new generation; unchanged chunks "
               "reuse their vectors), then while articles are added one at a time through `POST /documents` "
               "(each embedded on arrival). Writes run off the event loop, so `/ask` keeps answering; on two "
               "cores it shares the CPU with the writer."),
    "cold": ("Cold start", "A new `qa ask` process on the seed index: import, open the index, load the ONNX "
             "model, embed, search, answer, print."),
    "scale": ("Scale: 100k and 1M vectors", "Vectors synthesized from real ones (see `bench/scale.py`): each "
              "is a real chunk embedding (BBC News and/or MultiHop-RAG, as stated) plus Gaussian noise (cosine about 0.9 to its "
              "source), renormalized; queries are real MultiHop-RAG questions embedded by the model; recall@10 is "
              "against exact inner-product search over the same vectors. Latency is one `VectorIndex.search` for "
              "100 candidates (what hybrid retrieval asks), one thread. Each index is built by one process and "
              "served from its saved file by another: *serving RSS* is that process's memory (Python, numpy, "
              "FAISS and the index), *of which index* the growth on loading it. ← marks the kind the automatic "
              "policy (`qa/vectors.py`, `IndexPolicy`) picks at that size."),
    "int8": ("int8 embeddings: quality and speed", "`qa eval` (the quality helper's harness: a throwaway index "
             "per run, SciFact test qrels and MultiHop-RAG's evidence rule) with `QA_BACKEND=onnx` (fp32) and "
             "`QA_BACKEND=onnx-int8` (ONNX Runtime dynamic quantization), plus the bare embedder's speed on the "
             "same 600 BBC chunks with each."),
}
ORDER = ("targets", "index", "query", "reader", "http", "writes", "cold", "scale", "int8")


def _block(name: str, body: str) -> str:
    return f"<!-- bench:{name} -->\n{body.strip()}\n<!-- /bench:{name} -->"


class Report:
    """The markdown file, read at start and rewritten with new blocks at the end."""

    def __init__(self, path: str):
        self.path = REPO / path if not Path(path).is_absolute() else Path(path)
        self.new: dict[str, str] = {}

    def _read(self) -> None:
        old = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
        self.blocks = {m.group(1): m.group(2) for m in
                       re.finditer(r"<!-- bench:(\w+) -->\n(.*?)\n<!-- /bench:\1 -->", old, flags=re.S)}
        # Paragraphs written by hand after a block, up to the next section or kept block: they stay with it.
        self.after = {m.group(1): m.group(2).strip() for m in
                      re.finditer(r"<!-- /bench:(\w+) -->\n(.*?)(?=\n## |\n<!-- keep:|\Z)", old, flags=re.S)
                      if m.group(2).strip()}
        self.static = {}
        for name in ("notes",):
            m = re.search(rf"<!-- keep:{name} -->\n(.*?)\n<!-- /keep:{name} -->", old, flags=re.S)
            if m:
                self.static[name] = m.group(1)

    def set(self, name: str, text: str, *, command: str, seconds: float, load: str = "") -> None:
        stamp = time.strftime("%Y-%m-%d")
        busy = f", load average {load}" if load else ""
        self.new[name] = f"`{command}` — {stamp}, {seconds:.0f} s{busy}\n\n{text.strip()}"

    def finish(self, results: dict, *, machine: str, total_s: float) -> None:
        """Write the file: the blocks it holds now (another run may have changed it meanwhile) with this run's."""
        self._read()
        self.blocks.update(self.new)
        computed = targets(results)
        # A partial run on a machine without earlier figures keeps the targets table it found.
        if computed != "No figures yet." or "targets" not in self.blocks:
            self.blocks["targets"] = computed
        self.blocks["machine"] = f"Machine: {machine}. txtai {results.get('txtai_version', '–')} (its own venv)."
        parts = [TITLE, "", INTRO, "", _block("machine", self.blocks["machine"]), ""]
        for name in ORDER:
            if name not in self.blocks:
                continue
            heading, text = HEADINGS[name]
            parts += [f"## {heading}", "", text, "", _block(name, self.blocks[name]), ""]
            if name in self.after:
                parts += [self.after[name], ""]
        if "notes" in self.static:
            parts += ["<!-- keep:notes -->", self.static["notes"], "<!-- /keep:notes -->", ""]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("\n".join(parts), encoding="utf-8")


def _get(d: dict, *path, default=float("nan")):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def _row(target: str, measured: str, ok, why: str = "") -> list:
    verdict = "–" if ok is None else ("met" if ok else "**missed**")
    return [target, measured, verdict, (why or "see the notes at the end") if ok is False else ""]


def targets(r: dict) -> str:
    rows = []
    one = _get(r, "http", "seeds", "ours_1", default={})
    eight = _get(r, "http", "seeds", "ours_8", default={})
    peer8 = _get(r, "http", "seeds", "txtai_8", default={})
    if one:
        rows.append(_row("`/ask` p50 ≤ 10 ms, 1 client, seed index", f"{one['p50']:.1f} ms", one["p50"] <= 10))
        rows.append(_row("`/ask` p99 ≤ 50 ms, 1 client, seed index", f"{one['p99']:.1f} ms", one["p99"] <= 50))
    if eight:
        rows.append(_row("≥ 100 req/s with 8 clients, no errors", f"{eight['rps']:.0f} req/s, {eight['errors']} "
                         f"errors", eight["rps"] >= 100 and eight["errors"] == 0))
    for name in ("seeds", "bbc"):
        o8, p8 = _get(r, "http", name, "ours_8", default={}), _get(r, "http", name, "txtai_8", default={})
        if o8 and p8:
            ratio = o8["rps"] / p8["rps"]
            rows.append(_row(f"≥ 2x txtai's query throughput ({name}, 8 clients over HTTP)",
                             f"{o8['rps']:.0f} vs {p8['rps']:.0f} req/s = {ratio:.2f}x", ratio >= 2,
                             "our /ask does hybrid retrieval, cited passages and answer selection; txtai's /search "
                             "returns dense ids and scores; see the notes"))
    for name in ("bbc", "multihop"):
        ours, peer = _get(r, "index", name, "chunks_per_s"), _get(r, "index", name, "txtai_chunks_per_s")
        if ours == ours and peer == peer:
            be = _get(r, "index", name, "backend", default="?")
            rows.append(_row(f"indexing ≥ 1.8x txtai's chunks/s ({name})",
                             f"{ours:.1f} vs {peer:.1f} chunks/s = {ours / peer:.2f}x ({be})", ours / peer >= 1.8,
                             "same model at fp32 for both (compute-bound); only int8 changes that; timings taken "
                             "under a changing load, see the notes"))
    cold = _get(r, "cold", "median_s")
    if cold == cold:
        heavy = _get(r, "cold", "heavy_imports", default=[])
        rows.append(_row("`qa ask` cold ≤ 1 s", f"{cold:.2f} s" + (f" (imports {', '.join(heavy)})" if heavy else ""),
                         cold <= 1.0, "see the cold-start import profile"))
    at = _get(r, "scale", "1M", default={})
    if at:
        rows.append(_row("1M chunks: retrieval p50 ≤ 20 ms", f"{at['p50']:.2f} ms ({at['describe']})",
                         at["p50"] <= 20))
        rows.append(_row("1M chunks: recall@10 ≥ 0.95 against exact", f"{at['recall10']:.3f}",
                         at["recall10"] >= 0.95))
        rows.append(_row("1M chunks: RSS ≤ 1.5 GB", f"{at['rss_mb']:.0f} MB serving", at["rss_mb"] <= 1536))
    q = _get(r, "int8", "quality", default={})
    if q:
        drops = {k: v["fp32"] - v["int8"] for k, v in q.items() if k.endswith("hybrid")}
        worst = max(drops.values()) if drops else float("nan")
        rows.append(["int8 default only if nDCG@10 and Hits@10 drop ≤ 0.005",
                     f"largest drop {worst:.4f} → int8 {'qualifies' if worst <= 0.005 else 'does not qualify'}",
                     "–", ""])
    return table(["target", "measured", "", "why missed"], rows) if rows else "No figures yet."
