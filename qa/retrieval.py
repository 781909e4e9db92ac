"""Hybrid retrieval: dense (FAISS) and BM25 (FTS5) candidates put on one scale and fused by weight, nudged towards
articles whose publisher or date the question names, then chosen so that one article or repeated text cannot fill
the list.

Why not equal-weight reciprocal rank fusion: it throws the scores away, so a chunk that BM25 ranks first by a wide
margin counts no more than a dense near-miss. On entity-heavy news questions that hurts (BM25 alone beats RRF on
MultiHop-RAG). Here every candidate from either list gets both scores exactly (its BM25 score is asked of FTS5, its
cosine is computed from its stored vector), each score is min-max normalized over the candidates, and the two are
mixed with a weight chosen on held-out data (docs/quality.md).
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field, fields, replace

import numpy as np

from .lexical import date_cues, fts_query, source_aliases
from .records import Passage
from .store import Store
from .vectors import VectorIndex

MODES = ("hybrid", "dense", "bm25")
FUSIONS = ("convex", "rrf")


@dataclass(frozen=True)
class RetrievalConfig:
    """How candidates are gathered, scored and chosen. The defaults are the settings chosen in docs/quality.md."""

    mode: str = "hybrid"  # "hybrid", or one retriever alone ("dense", "bm25") for comparison
    candidates: int = 100  # taken from each retriever
    fusion: str = "convex"  # "convex": weighted normalized scores; "rrf": reciprocal rank fusion (the old way)
    lexical_weight: float = 0.6  # share of the BM25 score in the convex mix
    rrf_k: int = 60
    bm25_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # FTS5 columns: title, meta, body
    source_boost: float = 0.3  # added when the chunk's publisher is named in the question
    date_boost: float = 0.2  # added when the chunk's article is dated on a day the question names
    per_article: int = 3  # at most this many chunks of one article before other articles have had a turn (0: no cap)
    duplicate_overlap: float = 0.7  # drop a chunk sharing this much of its word 5-grams with one ranked above (1: off)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, not {self.fusion!r}")

    def with_(self, **changes) -> "RetrievalConfig":
        """A copy with some fields changed (values given as strings are converted to the field's type)."""
        types = {f.name: type(getattr(self, f.name)) for f in fields(self)}
        converted = {}
        for key, value in changes.items():
            if key not in types:
                raise ValueError(f"unknown retrieval setting {key!r}; known: {', '.join(sorted(types))}")
            if isinstance(value, str) and types[key] is not str:
                if types[key] is tuple:
                    value = tuple(float(v) for v in value.split(","))
                else:
                    value = types[key](value)
            converted[key] = value
        return replace(self, **converted)


def reciprocal_rank_fusion(
    lists: list[list[tuple[int, float]]], weights: list[float], k: int = 60
) -> list[tuple[int, float]]:
    """Fuse ranked ``(id, score)`` lists: each id scores ``sum(w / (k + rank))``; best first, ties by id."""
    fused: dict[int, float] = {}
    for ranked, weight in zip(lists, weights):
        for rank, (item, _) in enumerate(ranked, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


def min_max(scores: dict[int, float]) -> dict[int, float]:
    """Scores mapped onto [0, 1] (all 1.0 when they are equal)."""
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi - lo < 1e-12:
        return {i: 1.0 for i in scores}
    return {i: (s - lo) / (hi - lo) for i, s in scores.items()}


def convex_fusion(dense: dict[int, float], lexical: dict[int, float], lexical_weight: float) -> dict[int, float]:
    """``(1 - w) * normalized cosine + w * normalized BM25`` for every id that has both scores. BM25 is scaled by
    its best score (0 is its natural floor: no query word), the cosine min-max over the candidates."""
    top = max(lexical.values(), default=0.0)
    lex = {i: (s / top if top > 0 else 0.0) for i, s in lexical.items()}
    den = min_max(dense)
    return {i: (1 - lexical_weight) * den.get(i, 0.0) + lexical_weight * lex.get(i, 0.0) for i in set(den) | set(lex)}


@dataclass
class Retrieved:
    """Ranked passages plus what answering needs: the query vector, each passage's cosine with the question and
    the best cosine over all candidates."""

    passages: list[Passage]
    query_vector: np.ndarray
    similarity: float
    similarities: list[float] = field(default_factory=list)


# --- what the question names: publishers known to the index -------------------------------------------------------
_SOURCES: "weakref.WeakKeyDictionary[Store, tuple[int, list[tuple[re.Pattern, str]]]]" = weakref.WeakKeyDictionary()


def _source_patterns(store: Store) -> list[tuple[re.Pattern, str]]:
    """``(pattern, source)`` for every publisher in the index, cached until the index changes."""
    generation = store.generation()
    cached = _SOURCES.get(store)
    if cached is not None and cached[0] == generation:
        return cached[1]
    names = [r[0] for r in store.db.execute("SELECT DISTINCT source FROM documents WHERE source != ''")]
    patterns = []
    for name in names:
        for alias in source_aliases(name):
            patterns.append((re.compile(r"(?<!\w)" + re.escape(alias) + r"(?!\w)", re.IGNORECASE), name))
    _SOURCES[store] = (generation, patterns)
    return patterns


def named_sources(store: Store, question: str) -> set[str]:
    """The publishers in the index that the question names ("according to TechCrunch"). A one-word name must be
    written with a capital, since many are also ordinary words ("Fortune", "Wired")."""
    found = set()
    for pattern, name in _source_patterns(store):
        for m in pattern.finditer(question):
            if " " in m.group(0) or m.group(0)[0].isupper():
                found.add(name)
                break
    return found


# --- scoring --------------------------------------------------------------------------------------------------------
def _cosines(vectors: VectorIndex, qvec: np.ndarray, ids: list[int]) -> dict[int, float]:
    """Exact cosines for chunks the dense list did not reach, from their stored vectors."""
    out: dict[int, float] = {}
    for i in ids:
        try:
            out[i] = float(np.dot(vectors.index.reconstruct(int(i)), qvec))
        except RuntimeError:  # removed between the two reads
            continue
    return out


def _bm25_of(store: Store, match: str, ids: list[int], weights: tuple[float, float, float]) -> dict[int, float]:
    """Exact BM25 scores of particular chunks for the same match expression (0 for a chunk without any term)."""
    if not ids or not match:
        return {i: 0.0 for i in ids}
    marks = ",".join("?" * len(ids))
    rows = store.db.execute(
        f"SELECT rowid, bm25(chunks_fts, ?, ?, ?) FROM chunks_fts WHERE chunks_fts MATCH ? AND rowid IN ({marks})",
        (*weights, match, *ids),
    ).fetchall()
    found = {rowid: -score for rowid, score in rows}
    return {i: found.get(i, 0.0) for i in ids}


_WORDS = re.compile(r"\w+")


def _shingles(text: str, n: int = 5) -> set[int]:
    words = _WORDS.findall(text.lower())
    if len(words) < n:
        return {hash(" ".join(words))} if words else set()
    return {hash(" ".join(words[i:i + n])) for i in range(len(words) - n + 1)}


def select(ranked: list[dict], k: int, per_article: int, duplicate_overlap: float) -> list[dict]:
    """The top ``k`` of ``ranked`` (best first) with two kinds of repetition kept out: a chunk whose word 5-grams
    are mostly in a chunk already chosen (another copy of the same text) is dropped, and an article that already
    has ``per_article`` chunks waits until every other candidate has had its turn."""
    chosen: list[dict] = []
    waiting: list[dict] = []
    per_doc: dict[str, int] = {}
    kept: list[set[int]] = []

    def duplicate(row: dict) -> bool:
        if duplicate_overlap >= 1.0:
            return False
        grams = row.setdefault("_shingles", _shingles(row["text"]))
        if not grams:
            return False
        for other in kept:
            if other and len(grams & other) >= duplicate_overlap * min(len(grams), len(other)):
                return True
        return False

    for row in ranked:
        if len(chosen) >= k:
            break
        if per_article and per_doc.get(row["doc_id"], 0) >= per_article:
            waiting.append(row)
            continue
        if duplicate(row):
            continue
        chosen.append(row)
        kept.append(row["_shingles"] if duplicate_overlap < 1.0 else set())
        per_doc[row["doc_id"]] = per_doc.get(row["doc_id"], 0) + 1
    for row in waiting:
        if len(chosen) >= k:
            break
        if not duplicate(row):
            chosen.append(row)
            kept.append(row["_shingles"] if duplicate_overlap < 1.0 else set())
    return chosen


def hybrid_search(store: Store, vectors: VectorIndex, query_vector: np.ndarray, query: str, k: int,
                  config: RetrievalConfig) -> Retrieved:
    """Top ``k`` passages for ``query`` (whose embedding is ``query_vector``); texts are cut from the articles by
    their stored offsets. The caller holds the index's read lock, so the store and vectors stay put meanwhile."""
    qvec = query_vector
    match = fts_query(query)
    dense: dict[int, float] = {}
    lexical: dict[int, float] = {}
    if config.mode != "bm25":
        dense = dict(vectors.search(qvec, config.candidates))
    if config.mode != "dense":
        lexical = dict(store.lexical_search(match, config.candidates, config.bm25_weights))
    if config.mode == "hybrid" and config.fusion == "convex":
        dense.update(_cosines(vectors, qvec, [i for i in lexical if i not in dense]))
        lexical.update(_bm25_of(store, match, [i for i in dense if i not in lexical], config.bm25_weights))
        fused = convex_fusion(dense, lexical, config.lexical_weight)
    elif config.mode == "hybrid":
        fused = dict(reciprocal_rank_fusion([sorted(dense.items(), key=lambda kv: -kv[1]),
                                             sorted(lexical.items(), key=lambda kv: -kv[1])],
                                            [1 - config.lexical_weight, config.lexical_weight], config.rrf_k))
    elif config.mode == "dense":
        fused = min_max(dense)
    else:
        top = max(lexical.values(), default=0.0)
        fused = {i: (s / top if top > 0 else 0.0) for i, s in lexical.items()}

    rows = store.chunk_rows(list(fused))
    sources = named_sources(store, query) if config.source_boost else set()
    dates = date_cues(query) if config.date_boost else set()
    ranked = []
    for cid, score in fused.items():
        row = rows.get(cid)
        if row is None:  # removed between the reads
            continue
        if row["source"] in sources:
            score += config.source_boost
        if row["date"] and row["date"][:10] in dates:
            score += config.date_boost
        row["score"] = score
        ranked.append(row)
    ranked.sort(key=lambda r: (-r["score"], r["id"]))
    chosen = select(ranked, k, config.per_article, config.duplicate_overlap)
    dense.update(_cosines(vectors, qvec, [r["id"] for r in chosen if r["id"] not in dense]))
    passages = [
        Passage(rank=n, doc_id=r["doc_id"], title=r["title"], date=r["date"], chunk_no=r["chunk_no"], start=r["start"],
                end=r["end"], text=r["text"], score=round(r["score"], 6), source=r["source"])
        for n, r in enumerate(chosen, start=1)
    ]
    similarities = [dense.get(r["id"], 0.0) for r in chosen]
    return Retrieved(passages, qvec, max(dense.values(), default=0.0), similarities)
