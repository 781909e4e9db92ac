"""Hybrid retrieval: dense (FAISS) and BM25 (FTS5) candidate lists fused into one ranking."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lexical import fts_query
from .locks import ReadWriteLock
from .records import Passage
from .store import Store
from .vectors import VectorIndex


@dataclass(frozen=True)
class RetrievalConfig:
    """How many candidates each retriever contributes and how they are fused."""

    candidates: int = 100
    rrf_k: int = 60
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    bm25_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # FTS5 columns: title, meta, body


def reciprocal_rank_fusion(
    lists: list[list[tuple[int, float]]], weights: list[float], k: int = 60
) -> list[tuple[int, float]]:
    """Fuse ranked ``(id, score)`` lists: each id scores ``sum(w / (k + rank))``; best first, ties by id."""
    fused: dict[int, float] = {}
    for ranked, weight in zip(lists, weights):
        for rank, (item, _) in enumerate(ranked, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


@dataclass
class Retrieved:
    """Ranked passages plus what answering needs: the query vector and the best dense similarity."""

    passages: list[Passage]
    query_vector: np.ndarray
    similarity: float


def hybrid_search(store: Store, vectors: VectorIndex, embedder, query: str, k: int,
                  config: RetrievalConfig, lock: ReadWriteLock) -> Retrieved:
    """Top ``k`` passages: FAISS and FTS5 candidates fused by reciprocal rank, texts cut from the articles."""
    qvec = embedder.encode([query])[0]
    with lock.read():
        dense = vectors.search(qvec, config.candidates)
    lexical = store.lexical_search(fts_query(query), config.candidates, config.bm25_weights)
    fused = reciprocal_rank_fusion([dense, lexical], [config.dense_weight, config.lexical_weight], config.rrf_k)[:k]
    rows = store.chunk_rows([cid for cid, _ in fused])
    passages: list[Passage] = []
    for cid, score in fused:
        row = rows.get(cid)
        if row is None:  # removed between the two reads
            continue
        passages.append(Passage(
            rank=len(passages) + 1, doc_id=row["doc_id"], title=row["title"], date=row["date"],
            chunk_no=row["chunk_no"], start=row["start"], end=row["end"], text=row["text"],
            score=round(score, 6), source=row["source"],
        ))
    return Retrieved(passages, qvec, max((s for _, s in dense), default=0.0))
