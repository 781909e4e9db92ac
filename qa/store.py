"""The on-disk index: one SQLite database per generation, the single source of truth.

It holds the articles (verbatim text), their chunks as offsets into that text, each chunk's vector, an FTS5 table
for BM25 and the settings the index was built with. Every change is one SQLite transaction, so a crash leaves
either the old or the new state. The FAISS file beside it is only a cache (see ``vectors.py``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import weakref
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .records import DocumentInfo
from .scope import source_key

FORMAT_VERSION = 1
DB_NAME = "qa.sqlite3"
# A BM25 search filtered to at most this many chunks asks FTS5 for each of them; a wider filter ranks every match
# and keeps the admitted ones (measured crossover on MultiHop-RAG: docs/performance.md, "Filtered questions").
SCOPED_LOOKUP_CHUNKS = 16
# How chunks_fts splits text into tokens (qa.bm25 tokenizes questions and new chunks with it too).
FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"

# A PDF's page start offsets (a JSON list), for citing pages. An index built before this table existed gets it with
# its next write (Store.writer); until then readers find no pages.
_PAGES_SCHEMA = """
CREATE TABLE IF NOT EXISTS doc_pages (
    doc_id TEXT PRIMARY KEY REFERENCES documents(doc_id) ON DELETE CASCADE,
    starts TEXT NOT NULL
);
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    title TEXT NOT NULL DEFAULT '',
    date TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    url TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL DEFAULT '',
    content_hash TEXT NOT NULL,
    text TEXT NOT NULL,
    added_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    chunk_no INTEGER NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    embed_hash TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_id, chunk_no);
CREATE INDEX IF NOT EXISTS chunks_by_hash ON chunks(embed_hash);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    title, meta, body, tokenize = '%s'
);
""" % FTS_TOKENIZER + _PAGES_SCHEMA


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


# How the article list can be sorted: a key the caller names → the SQL it orders by (documents as ``d``).
DOCUMENT_ORDER = {
    "date": "d.date",
    "title": "lower(CASE WHEN d.title != '' THEN d.title ELSE d.doc_id END)",
    "source": "lower(d.source)",
    "chunks": "chunk_count",
    "added": "d.added_at",
}


def _document_search(search: str) -> tuple[str, list]:
    """The WHERE condition for articles whose title, source or id contains ``search`` (SQLite's LIKE: any case
    for ASCII letters; ``%``, ``_`` and ``\\`` in the search are matched as themselves)."""
    search = " ".join((search or "").split())
    if not search:
        return "1", []
    if "\x00" in search:  # LIKE ends its pattern at a NUL (matching too much); no stored field holds one
        return "0", []
    like = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return ("(d.title LIKE ? ESCAPE '\\' OR d.source LIKE ? ESCAPE '\\' OR d.doc_id LIKE ? ESCAPE '\\')",
            [like, like, like])


class StoreClosed(sqlite3.ProgrammingError):
    """A store used after ``close()``: its generation was replaced (and is being deleted) or the index closed."""


class _Connection(sqlite3.Connection):
    """A connection a store can track weakly: one a finished thread no longer holds is closed as it is freed."""


class Store:
    """SQLite access for one index generation. Reads use one connection per thread; writes go through
    ``transaction()`` on a dedicated connection, which the caller serializes. Every connection still open is
    tracked, so ``close()`` closes them all, whichever threads opened them."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        self._writer: sqlite3.Connection | None = None
        self._connections: weakref.WeakSet[sqlite3.Connection] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise StoreClosed(f"{self.path} is closed")
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None,
                                   factory=_Connection)
            self._connections.add(conn)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's reading connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None or self._closed:
            conn = self._local.conn = self._connect()
        return conn

    def create(self, meta: dict) -> None:
        """Create the schema and record the settings the index is built with."""
        conn = self.writer
        conn.executescript(_SCHEMA)
        with self.transaction() as tx:
            for key, value in {**meta, "format_version": FORMAT_VERSION, "generation": 0, "created_at": utc_now()}.items():
                tx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    @property
    def writer(self) -> sqlite3.Connection:
        if self._writer is None or self._closed:
            self._writer = self._connect()
            if self._writer.execute("SELECT 1 FROM sqlite_master WHERE name = 'documents'").fetchone():
                self._writer.executescript(_PAGES_SCHEMA)  # an index built before page offsets were kept
        return self._writer

    def transaction(self):
        """``with store.transaction() as tx:`` — BEGIN IMMEDIATE … COMMIT, rolled back on any error."""
        return _Transaction(self.writer)

    def read_transaction(self):
        """``with store.read_transaction() as db:`` — this thread's reads inside it see one state of the database
        (WAL: writers go on meanwhile)."""
        return _ReadTransaction(self.db)

    def close(self) -> None:
        """Close every connection this store opened, in any thread; using the store afterwards raises StoreClosed
        (never a new connection to a generation that may be gone). The caller makes sure no other thread is in
        the middle of a read on it (NewsIndex closes a replaced generation under its write lock)."""
        with self._lock:
            self._closed = True
            connections, self._connections = list(self._connections), weakref.WeakSet()
            self._writer = None
        self._local = threading.local()
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    # --- reads -------------------------------------------------------------------------------------------------
    def meta(self) -> dict:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}

    def generation(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(json.loads(row[0])) if row else 0

    def counts(self) -> tuple[int, int]:
        docs = self.db.execute("SELECT count(*) FROM documents").fetchone()[0]
        chunks = self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        return docs, chunks

    def content_hash(self, doc_id: str) -> str | None:
        row = self.db.execute("SELECT content_hash FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        return row[0] if row else None

    def documents(self, *, search: str = "", sort: str = "date", descending: bool = True, limit: int | None = None,
                  offset: int = 0) -> list[DocumentInfo]:
        """Article rows whose title, source or id contains ``search`` (any case), ordered by ``sort`` (a key of
        DOCUMENT_ORDER; undated articles last whichever the direction), ``limit`` of them from ``offset``."""
        if sort not in DOCUMENT_ORDER:
            raise ValueError(f"cannot sort articles by {sort!r}")
        where, params = _document_search(search)
        direction = "DESC" if descending else "ASC"
        # The ORDER BY column comes from the whitelist, never from the caller's text; ties go by id.
        undated_last = "d.date = '', " if sort == "date" else ""
        order = f"{undated_last}{DOCUMENT_ORDER[sort]} {direction}, d.doc_id {direction}"
        # LIMIT -1: all the rest (an offset alone was ignored: `?offset=2` listed every article).
        rows = self.db.execute(
            "SELECT d.doc_id, d.title, d.date, d.source, d.url, "
            "(SELECT count(*) FROM chunks c WHERE c.doc_id = d.doc_id) AS chunk_count, length(d.text), d.added_at "
            f"FROM documents d WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
            params + [-1 if limit is None else int(limit), int(offset)],
        )
        return [DocumentInfo(*row) for row in rows]

    def sources(self) -> list[str]:
        """The outlets the articles name, one spelling each (outlet filters match without regard to case), in
        alphabetical order."""
        # Grouped here, not by SQL: SQLite's lower() folds only A-Z, so "ÖSTERREICH Post" and "Österreich post"
        # were two outlets. The smallest spelling of each, in code point order (as SQLite's min() compared them).
        spellings: dict[str, str] = {}
        for name in self._stored_sources():
            name = name.strip()
            if name:
                key = source_key(name)
                spellings[key] = min(spellings.get(key, name), name)
        return [spellings[k] for k in sorted(spellings)]

    def _stored_sources(self) -> list[str]:
        """The distinct source fields of the articles, as stored (a few per index: matched in Python, see
        ``qa.scope.Scope.where``)."""
        return [row[0] for row in self.db.execute("SELECT DISTINCT source FROM documents")]

    def count_documents(self, *, search: str = "") -> int:
        """How many articles ``documents(search=...)`` would list without a limit."""
        where, params = _document_search(search)
        return self.db.execute(f"SELECT count(*) FROM documents d WHERE {where}", params).fetchone()[0]

    def document(self, doc_id: str) -> dict | None:
        row = self.db.execute(
            "SELECT doc_id, title, date, source, url, author, path, text, added_at FROM documents WHERE doc_id = ?",
            (doc_id,),
        ).fetchone()
        if row is None:
            return None
        keys = ("doc_id", "title", "date", "source", "url", "author", "path", "text", "added_at")
        return dict(zip(keys, row))

    def chunk_spans(self, doc_id: str) -> list[tuple[int, int, int]]:
        """``(chunk_no, start, end)`` of a document's chunks."""
        return self.db.execute(
            "SELECT chunk_no, start, end FROM chunks WHERE doc_id = ? ORDER BY chunk_no", (doc_id,)
        ).fetchall()

    def chunk_rows(self, ids: list[int], *, text: bool = True) -> dict[int, dict]:
        """Chunk id → its citation fields and (unless ``text`` is false) its text. The text is cut from the
        article by the stored offsets (SQLite's substr counts characters, like Python slicing), so it cannot drift
        from the citation. Ranking needs no text: reading it only for what is shown keeps retrieval cheap."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        cut = ", substr(d.text, c.start + 1, c.end - c.start)" if text else ""
        rows = self.db.execute(
            f"SELECT c.id, c.doc_id, c.chunk_no, c.start, c.end, d.title, d.date, d.source{cut} "
            f"FROM chunks c JOIN documents d USING (doc_id) WHERE c.id IN ({marks})",
            ids,
        )
        keys = ("id", "doc_id", "chunk_no", "start", "end", "title", "date", "source", "text")
        return {row[0]: dict(zip(keys, row)) for row in rows}

    def chunk_texts(self, ids: list[int]) -> dict[int, str]:
        """Chunk id → its text, cut from the article by the stored offsets."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        return dict(self.db.execute(
            "SELECT c.id, substr(d.text, c.start + 1, c.end - c.start) FROM chunks c JOIN documents d "
            f"USING (doc_id) WHERE c.id IN ({marks})", ids))

    def vectors_by_hash(self, hashes: list[str]) -> dict[str, bytes]:
        """Stored vectors for these embedding-text hashes: the cache that spares re-embedding unchanged chunks."""
        found: dict[str, bytes] = {}
        for i in range(0, len(hashes), 500):
            part = hashes[i : i + 500]
            marks = ",".join("?" * len(part))
            for h, blob in self.db.execute(
                f"SELECT embed_hash, vector FROM chunks WHERE embed_hash IN ({marks})", part
            ):
                found[h] = blob
        return found

    def stored_chunks(self, doc_ids: list[str]) -> dict[str, tuple[str, list[tuple]]]:
        """Document id → its content hash and its chunk rows ``(chunk_no, start, end, embed_hash, vector)`` in
        chunk order, for these documents (those with chunks). A rebuild with unchanged settings takes an unchanged
        article's chunks from here instead of chunking it again."""
        found: dict[str, tuple[str, list[tuple]]] = {}
        for i in range(0, len(doc_ids), 500):
            part = doc_ids[i : i + 500]
            marks = ",".join("?" * len(part))
            for doc_id, digest, *row in self.db.execute(
                "SELECT d.doc_id, d.content_hash, c.chunk_no, c.start, c.end, c.embed_hash, c.vector "
                f"FROM documents d JOIN chunks c USING (doc_id) WHERE d.doc_id IN ({marks}) "
                "ORDER BY d.doc_id, c.chunk_no", part
            ):
                found.setdefault(doc_id, (digest, []))[1].append(tuple(row))
        return found

    def chunk_ids(self) -> np.ndarray:
        """Every chunk id (read from an index, not the table: no vectors are read), to check a FAISS cache by."""
        rows = self.db.execute("SELECT id FROM chunks").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def all_vectors(self, dim: int, batch: int = 50_000):
        """Yield ``(ids, matrix)`` blocks of every chunk vector, for rebuilding the FAISS cache."""
        cursor = self.db.execute("SELECT id, vector FROM chunks ORDER BY id")
        while True:
            rows = cursor.fetchmany(batch)
            if not rows:
                break
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
            yield ids, mat

    def lexical_search(self, match: str, limit: int, weights: tuple[float, float, float],
                       admitted: frozenset[int] | None = None) -> list[tuple[int, float]]:
        """BM25 over chunks (FTS5). Returns ``(chunk id, score)`` best first, score higher is better. With
        ``admitted`` (the chunk ids a filter lets through) only those chunks are ranked, so a narrow filter still
        gets its ``limit`` matches; scores are the same as unfiltered (BM25 counts over the whole collection)."""
        if not match or admitted is not None and not admitted:
            return []
        sql = "SELECT rowid, bm25(chunks_fts, ?, ?, ?) AS s FROM chunks_fts WHERE chunks_fts MATCH ?"
        if admitted is None:
            rows = self.db.execute(sql + " ORDER BY s LIMIT ?", (*weights, match, limit)).fetchall()
        elif len(admitted) <= SCOPED_LOOKUP_CHUNKS:
            # FTS5 evaluates the whole query again for each rowid asked for: fine for a few chunks, seconds for
            # thousands (MultiHop-RAG, 7,433 chunks: 6.3 s for a filter admitting 6,983 of them).
            ids = sorted(admitted)
            rows = self.db.execute(sql + f" AND rowid IN ({','.join('?' * len(ids))}) ORDER BY s LIMIT ?",
                                   (*weights, match, *ids, limit)).fetchall()
        else:
            # Otherwise rank every match, as an unfiltered search does anyway, and keep the admitted ones.
            rows = []
            for rowid, score in self.db.execute(sql + " ORDER BY s", (*weights, match)):
                if rowid in admitted:
                    rows.append((rowid, score))
                    if len(rows) >= limit:
                        break
        return [(rowid, -score) for rowid, score in rows]

    def fts_rows(self, ids: list[int]) -> list[tuple[int, str, str, str]]:
        """``(rowid, title, meta, body)`` of these chunks as FTS5 holds them, rowids ascending."""
        rows = []
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            rows += self.db.execute(f"SELECT rowid, title, meta, body FROM chunks_fts WHERE rowid IN "
                                    f"({','.join('?' * len(part))})", part).fetchall()
        return sorted(rows)

    def scoped_chunk_ids(self, scope) -> list[int]:
        """The ids of the chunks of every article ``scope`` (qa.scope.Scope) admits."""
        where, params = scope.where("d", self._stored_sources() if scope.sources else None)
        return [r[0] for r in self.db.execute(
            f"SELECT c.id FROM chunks c JOIN documents d USING (doc_id) WHERE {where}", params)]

    def chunk_vectors(self, ids: list[int], dim: int):
        """Yield ``(ids, matrix)`` blocks of the stored vectors of these chunks (exact, whatever FAISS holds)."""
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            rows = self.db.execute(f"SELECT id, vector FROM chunks WHERE id IN ({marks})", part).fetchall()
            if rows:
                yield (np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
                       np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim))

    def page_starts(self, doc_ids: list[str] | None = None) -> dict[str, list[int]]:
        """Doc id → its page start offsets, for the paged (PDF) ones among ``doc_ids`` (all when None)."""
        try:
            if doc_ids is None:
                rows = self.db.execute("SELECT doc_id, starts FROM doc_pages").fetchall()
            else:
                rows = []
                for i in range(0, len(doc_ids), 500):
                    part = doc_ids[i : i + 500]
                    rows += self.db.execute(f"SELECT doc_id, starts FROM doc_pages WHERE doc_id IN "
                                            f"({','.join('?' * len(part))})", part).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return {}  # an index built before page offsets were kept, not written to since
            raise
        return {d: json.loads(s) for d, s in rows}

    def newest_date(self) -> str:
        """The newest article's date (YYYY-MM-DD), '' when no article is dated."""
        row = self.db.execute("SELECT max(substr(date, 1, 10)) FROM documents WHERE date != ''").fetchone()
        return (row[0] or "") if row else ""


class _Transaction:
    BEGIN = "BEGIN IMMEDIATE"

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute(self.BEGIN)
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (disk full, I/O error) may leave the transaction open: end it, or every later
                # BEGIN on this connection fails.
                self._rollback()
                raise
        else:
            self._rollback()

    def _rollback(self) -> None:
        if self.conn.in_transaction:  # SQLite rolls back by itself after some errors (SQLITE_FULL may)
            self.conn.execute("ROLLBACK")


class _ReadTransaction(_Transaction):
    """A read-only transaction: it writes nothing, so it ends without a COMMIT that a full disk could fail."""

    BEGIN = "BEGIN"

    def __exit__(self, exc_type, exc, tb) -> None:
        self._rollback()


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small file so that readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
