"""Measuring retrieval and answers on labelled data that no one here wrote: BEIR collections (SciFact), MultiHop-RAG,
and our own question files over a folder of articles.

Every run builds a throwaway index in a temporary folder, never the user's. Embeddings go through a persistent
cache keyed by the hash of the embedded text, the model and the precision, so a second run with other retrieval
settings re-embeds nothing and takes seconds.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InvalidInput, NotFound
from .records import Article

# --- the embedding cache --------------------------------------------------------------------------------------------


class EmbeddingCache:
    """Vectors in an SQLite file, keyed by ``sha1(model|precision|text)`` (the index's own chunk hash)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")

    @staticmethod
    def key(salt: str, text: str) -> str:
        return hashlib.sha1((salt + text).encode("utf-8")).hexdigest()

    def get(self, keys: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            marks = ",".join("?" * len(part))
            found.update(self.db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", part).fetchall())
        return found

    def put(self, items: list[tuple[str, bytes]]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO vectors(key, vector) VALUES (?, ?)", items)
        self.db.execute("COMMIT")

    def __len__(self) -> int:
        return self.db.execute("SELECT count(*) FROM vectors").fetchone()[0]

    def close(self) -> None:
        self.db.close()


class CachedEmbedder:
    """An embedder that looks every text up in the cache first and stores what it had to compute, block by block,
    so an interrupted run keeps its progress."""

    def __init__(self, embedder, cache: EmbeddingCache, model_name: str, precision: str, *, progress: bool = False):
        self.embedder = embedder
        self.cache = cache
        self.salt = f"{model_name}|{precision}|"
        self.progress = progress
        self.computed = 0

    @property
    def dim(self) -> int:
        return int(self.embedder.dim)

    def encode(self, texts: list[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        keys = [EmbeddingCache.key(self.salt, t) for t in texts]
        found = self.cache.get(list(dict.fromkeys(keys)))
        missing = list({k: t for k, t in zip(keys, texts) if k not in found}.items())
        block = 512
        for i in range(0, len(missing), block):
            part = missing[i:i + block]
            vectors = self.embedder.encode([t for _, t in part], batch_size=batch_size)
            items = [(k, np.asarray(v, dtype=np.float32).tobytes()) for (k, _), v in zip(part, vectors)]
            self.cache.put(items)
            found.update(items)
            self.computed += len(part)
            if self.progress and len(missing) > 64:
                print(f"  embedded {min(i + block, len(missing))}/{len(missing)} new texts", file=sys.stderr, flush=True)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.frombuffer(b"".join(found[k] for k in keys), dtype=np.float32).reshape(len(texts), -1).copy()


# --- data sets ------------------------------------------------------------------------------------------------------


@dataclass
class BeirData:
    """A BEIR collection: articles, queries by id and graded judgements ``qrels[query][doc] = grade``."""

    articles: list[Article]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise InvalidInput(f"{path}:{n}: not JSON ({e.msg})") from None
    return rows


def _need(path: Path) -> Path:
    if not path.exists():
        raise NotFound(f"{path} does not exist")
    return path


def load_beir(folder: Path, split: str = "test") -> BeirData:
    """``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv`` of a BEIR folder; only judged queries kept."""
    folder = Path(folder)
    qrels: dict[str, dict[str, int]] = {}
    with open(_need(folder / "qrels" / f"{split}.tsv"), encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t"):
            if len(row) < 3 or row[0] == "query-id":
                continue
            if int(row[2]) > 0:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    queries = {str(q["_id"]): q["text"] for q in _read_jsonl(_need(folder / "queries.jsonl")) if str(q["_id"]) in qrels}
    articles = [
        Article(doc_id=str(d["_id"]), text=d.get("text") or "", title=d.get("title") or "")
        for d in _read_jsonl(_need(folder / "corpus.jsonl"))
        if (d.get("text") or "").strip()
    ]
    return BeirData(articles, queries, {q: r for q, r in qrels.items() if q in queries})


@dataclass
class MultiHopQuery:
    """One MultiHop-RAG query: its gold evidence facts (none for a null query) and its position in the file."""

    number: int
    query: str
    question_type: str
    facts: list[str]
    answer: str


def load_multihop(folder: Path) -> tuple[list[Article], list[MultiHopQuery]]:
    """``corpus.json`` (articles with title, source, published_at, author, url, body) and ``MultiHopRAG.json``."""
    from .ingest import parse_date

    folder = Path(folder)
    corpus = json.loads(_need(folder / "corpus.json").read_text(encoding="utf-8"))
    articles = [
        Article(doc_id=f"mh-{n:04d}", text=a["body"], title=a.get("title") or "",
                date=parse_date(a.get("published_at") or ""), source=a.get("source") or "", url=a.get("url") or "",
                author=a.get("author") or "")
        for n, a in enumerate(corpus)
    ]
    raw = json.loads(_need(folder / "MultiHopRAG.json").read_text(encoding="utf-8"))
    queries = [
        MultiHopQuery(n, q["query"], q["question_type"], [e["fact"] for e in q.get("evidence_list") or []],
                      q.get("answer") or "")
        for n, q in enumerate(raw)
    ]
    return articles, queries


@dataclass
class Question:
    """A question of our own format (tests/data/seed_questions.jsonl): ``kind`` is answerable, offtopic or
    followup; ``answer`` is an exact substring of article ``doc_id``; ``also`` lists articles that state the same
    answer in other words; ``history`` holds earlier turns of a follow-up."""

    id: str
    kind: str
    question: str
    split: str
    doc_id: str = ""
    answer: str = ""
    also: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)


KINDS = ("answerable", "offtopic", "followup")


def load_questions(path: Path) -> list[Question]:
    """Questions from a JSON Lines file, checked: a known kind, and an answer and article for all but off-topic."""
    out = []
    for n, row in enumerate(_read_jsonl(_need(Path(path))), start=1):
        kind = row.get("kind")
        if kind not in KINDS or not row.get("question") or not row.get("id"):
            raise InvalidInput(f"{path}:{n}: needs id, question and kind ({', '.join(KINDS)})")
        if kind != "offtopic" and not (row.get("doc_id") and row.get("answer")):
            raise InvalidInput(f"{path}:{n}: an {kind} question needs doc_id and answer")
        out.append(Question(row["id"], kind, row["question"], row.get("split", "test"), row.get("doc_id", ""),
                            row.get("answer", ""), list(row.get("also") or []), list(row.get("history") or [])))
    return out


# --- splits ---------------------------------------------------------------------------------------------------------

DEV_SEED = "qa-dev-2025"
DEV_FRACTION = 0.3


def in_dev(key: str, seed: str = DEV_SEED, fraction: float = DEV_FRACTION) -> bool:
    """Is this item in the held-out tuning part? A fixed hash, so the parts never change with ``--limit``."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def pick_split(items: list, key, split: str) -> list:
    """``dev`` (the tuning part), ``test`` (the rest) or ``all``."""
    if split == "all":
        return list(items)
    if split not in ("dev", "test"):
        raise InvalidInput(f"split must be dev, test or all, not {split!r}")
    return [x for x in items if in_dev(key(x)) == (split == "dev")]


# --- metrics --------------------------------------------------------------------------------------------------------


def ndcg_at_k(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    """nDCG@k with linear gains (as trec_eval and BEIR compute it)."""
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    """Share of the relevant documents in the top ``k``."""
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & set(relevant)) / len(relevant)


def mrr_at_k(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    """1 / rank of the first relevant document in the top ``k`` (0 when there is none)."""
    for i, d in enumerate(ranked[:k], start=1):
        if relevant.get(d, 0) > 0:
            return 1.0 / i
    return 0.0


def squeeze(text: str) -> str:
    """The MultiHop-RAG comparison form: spaces and newlines removed."""
    return text.replace(" ", "").replace("\n", "")


def multihop_scores(retrieved: list[str], facts: list[str]) -> dict[str, float]:
    """One query's scores under the MultiHop-RAG protocol: a retrieved chunk is a hit when it contains a gold fact
    (spaces and newlines removed). Hits@4/@10 and MRR@10 as in the paper; MAP@10 adds, at each hit rank, the number
    of facts found there for the first time divided by the rank, over ``min(#facts, 10)``; evidence recall@10 is the
    share of facts contained in the top 10, all-evidence@10 whether every fact is."""
    gold = [squeeze(f) for f in facts]
    found: set[int] = set()
    first = 0
    ap = 0.0
    hits4 = False
    for rank, text in enumerate(retrieved[:10], start=1):
        chunk = squeeze(text)
        inside = {i for i, g in enumerate(gold) if g in chunk}
        if not inside:
            continue
        first = first or rank
        hits4 = hits4 or rank <= 4
        ap += len(inside - found) / rank
        found |= inside
    n = len(gold)
    return {
        "Hits@4": float(hits4),
        "Hits@10": float(first > 0),
        "MAP@10": ap / min(n, 10) if n else 0.0,
        "MRR@10": 1.0 / first if first else 0.0,
        "evidence recall@10": len(found) / n if n else 0.0,
        "all-evidence@10": float(n > 0 and len(found) == n),
    }


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    if not rows:
        return {}
    return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A markdown table; floats printed with three decimals."""
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# --- the throwaway index --------------------------------------------------------------------------------------------


def default_cache(settings) -> Path:
    """The embedding cache's default place: inside the index folder, beside (never inside) the index itself."""
    return Path(settings.index_dir) / "eval-cache" / "embeddings.sqlite3"


class EvalIndex:
    """A temporary index over ``articles`` whose embeddings go through the persistent cache; removed on close."""

    def __init__(self, settings, articles: list[Article], cache_path: Path, *, progress: bool = False, embedder=None,
                 answering=None):
        from .embedding import load_embedder
        from .index import NewsIndex

        self.cache = EmbeddingCache(cache_path)
        base = embedder if embedder is not None else load_embedder(settings)
        self.embedder = CachedEmbedder(base, self.cache, settings.model_name, settings.precision, progress=progress)
        self.folder = Path(tempfile.mkdtemp(prefix="qa-eval-"))
        try:
            self.index = NewsIndex(settings.with_(index_dir=self.folder / "index"), embedder=self.embedder)
            if answering is not None:
                self.index.answering = answering
            began = time.perf_counter()
            report = self.index.rebuild(articles)
            self.build_seconds = time.perf_counter() - began
            self.chunks = report.chunks
            self.embedded = self.embedder.computed  # the rest came from the cache
        except BaseException:
            self.close()
            raise

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.embedder.encode(texts)

    def search(self, query: str, vector: np.ndarray, k: int, config, *, read: bool = False):
        """Top ``k``; with ``read``, the reader re-ranks them as ``NewsIndex.ask`` does."""
        found = self.index._retrieve(query, k, query_vector=vector, config=config)
        if read and self.index.reader is not None:
            from .answer import compose_read

            found.passages = compose_read(query, found, self.index.reader, self.index.answering).passages
        return found

    def close(self) -> None:
        index = getattr(self, "index", None)
        if index is not None:
            index.close()
        self.cache.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- runs -----------------------------------------------------------------------------------------------------------


@dataclass
class Report:
    """What a run prints: a title, markdown tables and notes."""

    title: str
    tables: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n\n".join([f"## {self.title}", *self.tables, *self.notes]) + "\n"


def rank_documents(passages, depth: int) -> list[str]:
    """Documents in the order of their best passage."""
    seen: dict[str, None] = {}
    for p in passages:
        seen.setdefault(p.doc_id, None)
        if len(seen) >= depth:
            break
    return list(seen)


def evaluate_beir(run: EvalIndex, data: BeirData, configs: dict, limit: int = 0) -> list[list]:
    """Rows ``[name, nDCG@10, Recall@10, Recall@100, MRR@10, queries, seconds]`` for each retrieval config.
    A document ranks by its best chunk. The top-10 metrics use the config as the app runs it; Recall@100 asks
    each retriever for 300 candidates so that 100 distinct documents can be ranked."""
    ids = sorted(data.queries, key=lambda q: (len(q), q))[: limit or None]
    vectors = run.encode([data.queries[q] for q in ids])
    rows = []
    for name, config in configs.items():
        began = time.perf_counter()
        deep = config.with_(candidates=max(config.candidates, 300))
        scores = []
        for q, vec in zip(ids, vectors):
            rel = data.qrels[q]
            top = rank_documents(run.search(data.queries[q], vec, 30, config, read=name == READER_ROW).passages, 10)
            wide = rank_documents(run.search(data.queries[q], vec, 400, deep).passages, 100)
            scores.append((ndcg_at_k(top, rel), recall_at_k(top, rel, 10), recall_at_k(wide, rel, 100),
                           mrr_at_k(top, rel)))
        n = len(scores)
        rows.append([name, *(sum(s[i] for s in scores) / n for i in range(4)), n,
                     f"{time.perf_counter() - began:.1f}"])
    return rows


def evaluate_multihop(run: EvalIndex, queries: list[MultiHopQuery], configs: dict) -> tuple[list[list], dict]:
    """Rows of the MultiHop-RAG metrics for each config over the non-null queries, and per-type scores of each."""
    keys = ["Hits@4", "Hits@10", "MAP@10", "MRR@10", "evidence recall@10", "all-evidence@10"]
    answerable = [q for q in queries if q.facts]
    vectors = run.encode([q.query for q in answerable])
    rows, by_type = [], {}
    for name, config in configs.items():
        began = time.perf_counter()
        per_query = []
        for q, vec in zip(answerable, vectors):
            texts = [p.text for p in run.search(q.query, vec, 10, config, read=name == READER_ROW).passages]
            per_query.append((q.question_type, multihop_scores(texts, q.facts)))
        means = mean_scores([s for _, s in per_query])
        rows.append([name, *(means[k] for k in keys), len(per_query), f"{time.perf_counter() - began:.1f}"])
        by_type[name] = {t: mean_scores([s for qt, s in per_query if qt == t]) for t in sorted({t for t, _ in per_query})}
    return rows, by_type


def fact_ceiling(run: EvalIndex, queries: list[MultiHopQuery]) -> float:
    """Share of gold facts that some chunk of the index contains: what chunking leaves reachable at all."""
    chunks = [squeeze(t) for t in run.index.live().all_chunk_texts()]
    facts = [squeeze(f) for q in queries for f in q.facts]
    joined = "\x00".join(chunks)
    return sum(1 for f in facts if f in joined) / len(facts) if facts else 0.0


def abstention(run: EvalIndex, items: list[tuple[str, bool]], k: int = 5) -> dict[str, float]:
    """``items`` are ``(question, should_answer)``. Counts false abstentions (answerable questions the app declined)
    and false answers (questions it should have declined but answered)."""
    from . import answer as answering

    vectors = run.encode([q for q, _ in items])
    index = run.index
    false_abstain = false_answer = n_yes = n_no = 0
    for (question, should), vec in zip(items, vectors):
        found = run.search(question, vec, k, index.retrieval)
        if index.reader is not None:
            decision = answering.compose_read(question, found, index.reader, index.answering)
        else:
            decision = answering.compose(question, found, run.embedder, index.answering)
        if should:
            n_yes += 1
            false_abstain += not decision.answerable
        else:
            n_no += 1
            false_answer += decision.answerable
    return {
        "answerable": n_yes, "false abstentions": false_abstain,
        "unanswerable": n_no, "false answers": false_answer,
    }


def _holds(passage, q: Question) -> bool:
    """Does the passage hold the expected answer (or come from an article that states it in other words)?"""
    flat = " ".join(passage.text.split())
    return (passage.doc_id == q.doc_id and " ".join(q.answer.split()) in flat) or passage.doc_id in q.also


def _answer_hit(index, answer, q: Question) -> bool:
    """Does an answer sentence overlap at least half of the expected answer in its article?"""
    text = index.document(q.doc_id)["text"]
    start = text.find(q.answer)
    end = start + len(q.answer)
    for span in answer.answer_spans:
        if span.doc_id == q.doc_id and min(end, span.end) - max(start, span.start) >= 0.5 * len(q.answer):
            return True
        if span.doc_id in q.also:
            return True
    return False


def answered_history(index, history: list[dict], k: int = 5) -> list[dict]:
    """The conversation as the app would hold it: each earlier turn without an answer is asked (with the turns
    before it) and given the answer the index gives, so a follow-up is judged after the answers it follows."""
    turns: list[dict] = []
    for turn in history:
        if not turn.get("answer"):
            turn = {**turn, "answer": index.ask(turn["question"], k=k, history=list(turns)).answer}
        turns.append(turn)
    return turns


def evaluate_questions(index, questions: list[Question], k: int = 5) -> tuple[list[list], list[str]]:
    """Rows per kind for our own question format, asked through ``NewsIndex.ask`` exactly as the app does, and
    the ids of the questions that missed (to read, not to tune on)."""
    stats: dict[str, dict[str, float]] = {}
    misses: list[str] = []
    for q in questions:
        got = index.ask(q.question, k=k, history=answered_history(index, q.history, k))
        s = stats.setdefault(q.kind, {"n": 0, "top1": 0, "top3": 0, "answer": 0, "answered": 0})
        s["n"] += 1
        s["answered"] += got.answerable
        if q.kind == "offtopic":
            if got.answerable:
                misses.append(f"{q.id}: answered an off-topic question")
            continue
        top1 = bool(got.passages) and _holds(got.passages[0], q)
        top3 = any(_holds(p, q) for p in got.passages[:3])
        hit = got.answerable and _answer_hit(index, got, q)
        s["top1"] += top1
        s["top3"] += top3
        s["answer"] += hit
        if not top1:
            misses.append(f"{q.id}: top passage lacks the answer" + ("" if top3 else " (and the top 3)"))
        elif not hit:
            misses.append(f"{q.id}: answer sentences miss the expected answer")
    rows = []
    for kind in KINDS:
        s = stats.get(kind)
        if not s:
            continue
        n = s["n"]
        declined = f"{n - s['answered']}/{n}"
        if kind == "offtopic":
            rows.append([kind, n, "–", "–", "–", declined])
        else:
            rows.append([kind, n, s["top1"] / n, s["top3"] / n, s["answer"] / n, declined])
    return rows, misses


# --- what `qa eval` runs --------------------------------------------------------------------------------------------


READER_ROW = "hybrid + reader re-rank (as answers are shown)"


def retrieval_variants(config, ablation: bool, reader: bool = False) -> dict:
    """The rows of a retrieval table: each retriever alone (no cues, parts or diversity), the hybrid as
    configured, and with ``ablation`` the hybrid with one part taken away at a time (and the old equal-weight
    RRF without any of them)."""
    alone = dict(source_boost=0.0, date_boost=0.0, part_weight=0.0, per_article=0, duplicate_overlap=1.0)
    variants = {
        "dense alone": config.with_(mode="dense", **alone),
        "BM25 alone": config.with_(mode="bm25", **alone),
        "hybrid": config,
    }
    if reader:
        variants[READER_ROW] = config
    if ablation:
        variants.update({
            "hybrid, the old recipe: equal-weight RRF only": config.with_(
                fusion="rrf", lexical_weight=0.5, source_boost=0.0, date_boost=0.0, part_weight=0.0, per_article=0,
                duplicate_overlap=1.0),
            "hybrid, weighted fusion only": config.with_(
                source_boost=0.0, date_boost=0.0, part_weight=0.0, per_article=0, duplicate_overlap=1.0),
            "hybrid without publisher/date cues": config.with_(source_boost=0.0, date_boost=0.0),
            "hybrid without question parts": config.with_(part_weight=0.0),
            "hybrid without the per-article cap": config.with_(per_article=0),
            "hybrid without near-duplicate removal": config.with_(duplicate_overlap=1.0),
        })
    return variants


def run_beir(settings, folder: Path, *, split: str, limit: int, cache: Path, config, ablation: bool,
             progress: bool, answering=None) -> Report:
    began = time.perf_counter()
    data = load_beir(folder, split)
    report = Report(f"BEIR {Path(folder).name} ({split} qrels)")
    with EvalIndex(settings, data.articles, cache, progress=progress, answering=answering) as run:
        rows = evaluate_beir(run, data, retrieval_variants(config, ablation, settings.reader), limit)
        report.tables.append(markdown_table(
            ["retrieval", "nDCG@10", "Recall@10", "Recall@100", "MRR@10", "queries", "seconds"], rows))
        report.notes.append(
            f"{len(data.articles)} documents, {run.chunks} chunks ({run.embedded} embedded now, the rest from the "
            f"cache); index built in {run.build_seconds:.1f} s; total {time.perf_counter() - began:.1f} s.")
    return report


def run_multihop(settings, folder: Path, *, split: str, limit: int, cache: Path, config, ablation: bool,
                 abstain: bool, progress: bool, answering=None) -> Report:
    began = time.perf_counter()
    articles, queries = load_multihop(folder)
    chosen = pick_split(queries, lambda q: f"multihop:{q.number}", split)[: limit or None]
    report = Report(f"MultiHop-RAG ({split} part, {sum(1 for q in chosen if q.facts)} queries with evidence)")
    keys = ["Hits@4", "Hits@10", "MAP@10", "MRR@10", "evidence recall@10", "all-evidence@10"]
    with EvalIndex(settings, articles, cache, progress=progress, answering=answering) as run:
        rows, by_type = evaluate_multihop(run, chosen, retrieval_variants(config, ablation, settings.reader))
        report.tables.append(markdown_table(["retrieval", *keys, "queries", "seconds"], rows))
        hybrid = by_type["hybrid"]
        report.tables.append(markdown_table(
            ["hybrid, by question type", *keys], [[t, *(s[k] for k in keys)] for t, s in hybrid.items()]))
        if abstain:
            items = [(q.query, bool(q.facts)) for q in chosen]
            a = abstention(run, items)
            report.tables.append(markdown_table(
                ["abstention", "answerable", "false abstentions", "null queries", "false answers"],
                [["MultiHop-RAG", a["answerable"], f"{a['false abstentions']} ({a['false abstentions'] / max(1, a['answerable']):.1%})",
                  a["unanswerable"], f"{a['false answers']} ({a['false answers'] / max(1, a['unanswerable']):.1%})"]]))
        report.notes.append(
            f"{len(articles)} articles, {run.chunks} chunks ({run.embedded} embedded now, the rest from the cache); "
            f"{fact_ceiling(run, chosen):.1%} of the gold facts lie whole inside some chunk; index built in "
            f"{run.build_seconds:.1f} s; total {time.perf_counter() - began:.1f} s.")
    return report


def run_questions(settings, path: Path, articles_dir: Path, *, split: str, cache: Path, config,
                  progress: bool, answering=None) -> Report:
    from .ingest import collect

    began = time.perf_counter()
    if split not in ("dev", "test", "all"):
        raise InvalidInput(f"split must be dev, test or all, not {split!r}")
    questions = [q for q in load_questions(path) if split in ("all", q.split)]
    found = collect([Path(articles_dir)], max_bytes=settings.max_article_bytes)
    report = Report(f"{Path(path).name} over {articles_dir} ({split})")
    with EvalIndex(settings, found.articles, cache, progress=progress, answering=answering) as run:
        run.index.retrieval = config
        rows, misses = evaluate_questions(run.index, questions)
        report.tables.append(markdown_table(
            ["kind", "questions", "top passage holds it", "top 3 hold it", "answer sentence right", "declined"],
            rows))
        report.notes.append("Misses: " + ("; ".join(misses) if misses else "none"))
        report.notes.append(f"{len(found.articles)} articles; total {time.perf_counter() - began:.1f} s.")
    return report
