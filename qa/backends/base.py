"""The storage seam: what ``NewsIndex``, retrieval and evaluation ask of wherever the articles, chunks and vectors
live. One ``Backend`` is one consistent view of an index: the embedded default (``sqlite_faiss``: one SQLite
generation with its FAISS cache) or a Milvus collection set (``milvus``, Lite or a server).

Chunks are known by integer ids the backend hands out; every chunk is an offset range ``start:end`` into its
article's stored text, and the text a backend returns for a chunk is always cut from the article by those offsets,
so ``article_text[start:end] == passage_text`` holds whatever stores it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterable, Iterator

import numpy as np

from ..records import Article, DocumentInfo


@dataclass
class Upsert:
    """An article chunked and embedded, ready to be written in one short batch."""

    article: Article
    content_hash: str
    spans: list[tuple[int, int, int]]  # (chunk_no, start, end)
    fts_rows: list[tuple[str, str, str]]  # (title, meta, body) per chunk: what BM25 reads
    hashes: list[str]  # per chunk: hash of the embedded text (the vector cache's key)
    vectors: np.ndarray


class Backend(ABC):
    """One index's storage. Reads may run in many threads at once; ``apply`` is called by one writer at a time
    (``NewsIndex`` holds its write locks around it)."""

    #: The settings the index was built with (model, precision, dim, chunker, format_version, ...).
    meta: dict
    #: Where it is, in words (``qa docs``, ``/health``): a generation folder or a Milvus URL.
    location: str

    # --- writes ----------------------------------------------------------------------------------------------------
    @abstractmethod
    def apply(self, upserts: list[Upsert], deletes: list[str], *, added_at: dict[str, str] | None = None,
              exclusive: Callable[[], ContextManager] = nullcontext) -> int:
        """Replace the articles in ``upserts`` (chunks, vectors, BM25 rows, pages) and delete the ``deletes``, as
        one batch: readers see all of it or none of it. ``added_at`` keeps the time an article was first added.
        ``exclusive()`` is entered around any change to state that this process's readers share. Returns the
        number of chunks written."""

    def settle(self) -> None:
        """After a bulk write (a rebuild, a large add): make the store fast to search again. A no-op by default."""

    def warm(self) -> None:
        """Before the first question (a server starting): load what searching needs. A no-op by default."""

    # --- candidates ------------------------------------------------------------------------------------------------
    @abstractmethod
    def dense(self, query_vector: np.ndarray, n: int, scope=None) -> dict[int, float]:
        """The ``n`` chunks nearest the query vector (cosine) among the articles ``scope`` (qa.scope.Scope)
        admits; a narrow scope still yields ``n`` when ``n`` chunks pass it."""

    @abstractmethod
    def lexical(self, query: str, limit: int, weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
                scope=None) -> list[tuple[int, float]]:
        """BM25 over the chunks for the words of ``query``: ``(chunk id, score)`` best first, higher is better.
        ``weights`` weigh the title, metadata and body where the backend keeps them apart."""

    @abstractmethod
    def cosines(self, query_vector: np.ndarray, ids: list[int]) -> dict[int, float]:
        """Exact cosines of these chunks' stored vectors with the query (ids gone meanwhile are left out)."""

    # --- rows ------------------------------------------------------------------------------------------------------
    @abstractmethod
    def chunk_rows(self, ids: list[int], *, text: bool = True) -> dict[int, dict]:
        """Chunk id → ``id, doc_id, chunk_no, start, end, title, date, source`` and (with ``text``) ``text``, cut
        from the article by the stored offsets."""

    @abstractmethod
    def chunk_texts(self, ids: list[int]) -> dict[int, str]:
        """Chunk id → its text, cut from the article by the stored offsets."""

    @abstractmethod
    def all_chunk_texts(self) -> Iterator[str]:
        """Every chunk's text (evaluation: which facts chunking leaves reachable)."""

    @abstractmethod
    def page_starts(self, doc_ids: list[str] | None = None) -> dict[str, list[int]]:
        """Doc id → its page start offsets, for the paged (PDF) ones among ``doc_ids`` (all when None)."""

    @abstractmethod
    def vectors_by_hash(self, hashes: list[str]) -> dict[str, bytes]:
        """Stored float32 vectors by embedded-text hash: spares re-embedding unchanged chunks."""

    # --- documents -------------------------------------------------------------------------------------------------
    @abstractmethod
    def documents(self, *, search: str = "", sort: str = "date", descending: bool = True, limit: int | None = None,
                  offset: int = 0) -> list[DocumentInfo]:
        """The articles whose title, source or id contains ``search`` (any case), ordered by ``sort`` (one of
        ``store.DOCUMENT_ORDER``, checked by the caller), ``limit`` of them (all: None) from ``offset``."""

    @abstractmethod
    def count_documents(self, *, search: str = "") -> int:
        """How many articles ``documents(search=...)`` lists without a limit."""

    @abstractmethod
    def document(self, doc_id: str) -> dict | None:
        """``doc_id, title, date, source, url, author, path, text, added_at`` of one article, or None."""

    @abstractmethod
    def chunk_spans(self, doc_id: str) -> list[tuple[int, int, int]]:
        """``(chunk_no, start, end)`` of an article's chunks."""

    @abstractmethod
    def content_hash(self, doc_id: str) -> str | None:
        """The stored content hash of an article, None when it is not held."""

    @abstractmethod
    def document_paths(self) -> dict[str, str]:
        """Doc id → the path its file was read from ('' for pasted ones)."""

    @abstractmethod
    def articles(self) -> list[Article]:
        """Every stored article as ingested (for a rebuild)."""

    @abstractmethod
    def sources(self) -> list[str]:
        """The outlets the articles name, one spelling each (filters match without regard to case), alphabetical."""

    @abstractmethod
    def newest_date(self) -> str:
        """The newest article's date (YYYY-MM-DD), '' when none is dated."""

    # --- state -----------------------------------------------------------------------------------------------------
    @abstractmethod
    def counts(self) -> tuple[int, int]:
        """``(articles, chunks)``."""

    @abstractmethod
    def stamp(self):
        """A value that changes whenever the content does (what caches of sources and dates are keyed by)."""

    @abstractmethod
    def describe(self) -> str:
        """The vector index in words (``qa docs``, ``/health``)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


def batched(items: Iterable, size: int) -> Iterator[list]:
    """``items`` in lists of at most ``size``."""
    part: list = []
    for item in items:
        part.append(item)
        if len(part) >= size:
            yield part
            part = []
    if part:
        yield part
