"""The embedded default behind the storage seam: one SQLite generation (``qa.store``, the source of truth) and its
FAISS cache (``qa.vectors``). Generations themselves (``CURRENT``, atomic rebuilds, repair) are kept by
``NewsIndex``; this is the view of one of them that retrieval reads and writers change."""

from __future__ import annotations

import json
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import numpy as np

from ..bm25 import MemoryBM25
from ..lexical import fts_query
from ..records import Article, DocumentInfo
from ..store import FTS_TOKENIZER, Store, utc_now
from ..vectors import VectorIndex, faiss_path
from .base import Backend, Upsert

# A filter admitting at most this many chunks is searched exactly (cosines of their stored vectors); a wider one
# over-fetches from FAISS first and falls back to the exact search when too few of the hits pass the filter.
EXACT_SCOPE_CHUNKS = 2000
# Filters whose chunk ids are kept (per write): a page of questions asked with the same filter and its periods.
SCOPES_KEPT = 8


def _exact_dense(store: Store, dim: int, query_vector: np.ndarray, ids: list[int], n: int) -> dict[int, float]:
    """The ``n`` best of ``ids`` by exact cosine with the query, from the vectors stored in SQLite."""
    best_ids, best_scores = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    q = np.asarray(query_vector, dtype=np.float32).reshape(-1)
    for block_ids, mat in store.chunk_vectors(ids, dim):
        best_ids = np.concatenate([best_ids, block_ids])
        best_scores = np.concatenate([best_scores, mat @ q])
        if len(best_ids) > 4 * n:
            keep = np.argsort(-best_scores, kind="stable")[:n]
            best_ids, best_scores = best_ids[keep], best_scores[keep]
    order = np.argsort(-best_scores, kind="stable")[:n]
    return {int(best_ids[i]): float(best_scores[i]) for i in order}


class SqliteFaissBackend(Backend):
    """One generation of the embedded index: its folder, SQLite store, in-memory FAISS index and settings."""

    def __init__(self, gen_dir: Path, store: Store, vectors: VectorIndex, generation: int, meta: dict,
                 bm25_memory: int = 0):
        self.gen_dir = gen_dir
        self.store = store
        self.vectors = vectors
        self.generation = generation
        self.meta = meta
        # The chunk ids of the last few filters asked: one question reads them up to five times (dense, BM25, the
        # BM25 of each part), and a wide filter's ids cost more than the search itself to read again.
        self._scopes: dict[tuple, frozenset[int]] = {}
        self._scopes_lock = threading.Lock()
        # BM25 from memory, the same scores as FTS5's (qa/bm25.py), for an index of at most ``bm25_memory`` chunks.
        self.bm25 = MemoryBM25(store, bm25_memory, FTS_TOKENIZER)

    @property
    def location(self) -> str:
        return str(self.gen_dir)

    # --- writes ----------------------------------------------------------------------------------------------------
    def apply(self, upserts: list[Upsert], deletes: list[str], *, added_at: dict[str, str] | None = None,
              exclusive: Callable[[], ContextManager] = nullcontext, save_cache: bool = True) -> int:
        """One SQLite transaction; the FAISS cache follows the commit. A rebuild's batches pass
        ``save_cache=False``: its generation is private until the switch, so the cache is saved once, after the
        last batch."""
        store, vectors, gen_dir = self.store, self.vectors, self.gen_dir
        changed = False
        written = 0
        try:
            with store.transaction() as tx:
                generation = int(tx.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
                dropped: list[int] = []
                for doc_id in deletes + [p.article.doc_id for p in upserts]:
                    ids = [r[0] for r in tx.execute("SELECT id FROM chunks WHERE doc_id = ?", (doc_id,))]
                    if ids:
                        tx.executemany("DELETE FROM chunks_fts WHERE rowid = ?", [(i,) for i in ids])
                    dropped.extend(ids)
                    tx.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
                    tx.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
                added_ids: list[int] = []
                added_vecs: list[np.ndarray] = []
                now = utc_now()
                for p in upserts:
                    a = p.article
                    tx.execute(
                        "INSERT INTO documents(doc_id, title, date, source, url, author, path, content_hash, text, "
                        "added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (a.doc_id, a.title, a.date, a.source, a.url, a.author, a.path, p.content_hash, a.text,
                         (added_at or {}).get(a.doc_id, now)),
                    )
                    if a.pages:
                        tx.execute("INSERT INTO doc_pages(doc_id, starts) VALUES (?, ?)",
                                   (a.doc_id, json.dumps(a.pages)))
                    for (chunk_no, start, end), fts, h, vec in zip(p.spans, p.fts_rows, p.hashes, p.vectors):
                        cur = tx.execute(
                            "INSERT INTO chunks(doc_id, chunk_no, start, end, embed_hash, vector) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            (a.doc_id, chunk_no, start, end, h, vec.tobytes()),
                        )
                        tx.execute("INSERT INTO chunks_fts(rowid, title, meta, body) VALUES (?, ?, ?, ?)",
                                   (cur.lastrowid, *fts))
                        added_ids.append(cur.lastrowid)
                        added_vecs.append(vec)
                    written += len(p.spans)
                tx.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation + 1),))
                changed = True
                with exclusive():
                    vectors.remove(dropped)
                    if added_ids:
                        vectors.add(np.asarray(added_ids, dtype=np.int64), np.vstack(added_vecs))
                # Saved before COMMIT: a crash in between leaves an extra cache file, never a missing one.
                if save_cache:
                    vectors.save(gen_dir, generation + 1, keep_older=True)
        except BaseException:
            if changed:
                # Rolled back (a failed COMMIT too: disk full), but the in-memory index may hold the change, under
                # chunk ids SQLite hands out again to the next add: reload it from the database, and drop the cache
                # file saved for the generation that did not happen.
                with exclusive():
                    vectors.index = VectorIndex.rebuild_from(store, vectors.dim, vectors.policy).index
                faiss_path(gen_dir, generation + 1).unlink(missing_ok=True)
            raise
        if save_cache:
            vectors.drop_older(gen_dir, generation + 1)
        if vectors.outgrown:
            # Grown (or shrunk) out of its kind's size range: rebuilt from the committed vectors, then swapped in.
            rebuilt = VectorIndex.rebuild_from(store, vectors.dim, vectors.policy)
            with exclusive():
                vectors.index = rebuilt.index
            if save_cache:
                vectors.save(gen_dir, generation + 1)
        self.generation = generation + 1
        return written

    # --- candidates ------------------------------------------------------------------------------------------------
    def dense(self, query_vector: np.ndarray, n: int, scope=None) -> dict[int, float]:
        """FAISS search; a filtered search asks FAISS for more, and when too few of its hits pass, compares the
        admitted chunks' stored vectors exactly."""
        vectors, store = self.vectors, self.store
        if not scope:
            return dict(vectors.search(query_vector, n))
        admitted = self.admitted(scope)
        if not admitted:
            return {}
        wanted = min(n, len(admitted))
        if len(admitted) > EXACT_SCOPE_CHUNKS and vectors.size:
            fetch = min(vectors.size, n * max(2, 2 * -(-vectors.size // len(admitted))))
            hits = [(i, s) for i, s in vectors.search(query_vector, fetch) if i in admitted]
            if len(hits) >= wanted:
                return dict(hits[:n])
        return _exact_dense(store, vectors.dim, query_vector, sorted(admitted), n)

    def lexical(self, query: str, limit: int, weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
                scope=None) -> list[tuple[int, float]]:
        """FTS5's BM25 over title, metadata and body, the question's words quoted (never parsed as FTS5 syntax):
        scored in memory when the index's postings are held there, by FTS5 itself otherwise."""
        admitted = self.admitted(scope) if scope else None
        found = self.bm25.search(query, limit, weights, self.stamp(), admitted)
        if found is not None:
            return found
        return self.store.lexical_search(fts_query(query), limit, weights, admitted)

    def warm(self) -> None:
        """Read the BM25 postings into memory now (unless the index is over ``QA_BM25_MEMORY`` chunks)."""
        self.bm25.warm(self.stamp())

    def admitted(self, scope) -> frozenset[int]:
        """The ids of the chunks of the articles ``scope`` admits, kept for the last few filters until the index
        changes."""
        key = (self.stamp(), scope)
        with self._scopes_lock:
            found = self._scopes.get(key)
        if found is None:
            found = frozenset(self.store.scoped_chunk_ids(scope))
            with self._scopes_lock:
                kept = [(k, v) for k, v in self._scopes.items() if k[0] == key[0]][-(SCOPES_KEPT - 1):]
                self._scopes = {**dict(kept), key: found}
        return found

    def cosines(self, query_vector: np.ndarray, ids: list[int]) -> dict[int, float]:
        out: dict[int, float] = {}
        for i in ids:
            try:
                out[i] = float(np.dot(self.vectors.index.reconstruct(int(i)), query_vector))
            except RuntimeError:  # removed between the two reads
                continue
        return out

    # --- rows ------------------------------------------------------------------------------------------------------
    def chunk_rows(self, ids: list[int], *, text: bool = True) -> dict[int, dict]:
        return self.store.chunk_rows(ids, text=text)

    def chunk_texts(self, ids: list[int]) -> dict[int, str]:
        return self.store.chunk_texts(ids)

    def all_chunk_texts(self) -> Iterator[str]:
        for (text,) in self.store.db.execute(
                "SELECT substr(d.text, c.start + 1, c.end - c.start) FROM chunks c JOIN documents d USING (doc_id)"):
            yield text

    def page_starts(self, doc_ids: list[str] | None = None) -> dict[str, list[int]]:
        return self.store.page_starts(doc_ids)

    def vectors_by_hash(self, hashes: list[str]) -> dict[str, bytes]:
        return self.store.vectors_by_hash(hashes)

    # --- documents -------------------------------------------------------------------------------------------------
    def documents(self, *, search: str = "", sort: str = "date", descending: bool = True, limit: int | None = None,
                  offset: int = 0) -> list[DocumentInfo]:
        return self.store.documents(search=search, sort=sort, descending=descending, limit=limit, offset=offset)

    def count_documents(self, *, search: str = "") -> int:
        return self.store.count_documents(search=search)

    def document(self, doc_id: str) -> dict | None:
        return self.store.document(doc_id)

    def chunk_spans(self, doc_id: str) -> list[tuple[int, int, int]]:
        return self.store.chunk_spans(doc_id)

    def content_hash(self, doc_id: str) -> str | None:
        return self.store.content_hash(doc_id)

    def document_paths(self) -> dict[str, str]:
        return dict(self.store.db.execute("SELECT doc_id, path FROM documents"))

    def articles(self) -> list[Article]:
        rows = self.store.db.execute("SELECT doc_id, text, title, date, source, url, author, path FROM documents")
        articles = [Article(*row) for row in rows]
        pages = self.store.page_starts()
        for article in articles:
            article.pages = pages.get(article.doc_id, [])
        return articles

    def sources(self) -> list[str]:
        return self.store.sources()

    def newest_date(self) -> str:
        return self.store.newest_date()

    # --- state -----------------------------------------------------------------------------------------------------
    def counts(self) -> tuple[int, int]:
        return self.store.counts()

    def stamp(self):
        return self.store.generation()

    def describe(self) -> str:
        return self.vectors.describe()

    def close(self) -> None:
        self.bm25.close()  # first: its background read uses a connection the store is about to close
        self.store.close()
