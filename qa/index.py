"""NewsIndex: the one object the CLI and the web app call — add, remove, rebuild, search, ask.

Layout on disk (``settings.index_dir``)::

    CURRENT              name of the live generation folder, replaced atomically
    write.lock           held by whichever process is writing
    gen-000003/          qa.sqlite3 (source of truth) + vectors-<generation>.faiss (cache)
    onnx/<model>/        the exported ONNX model (kept across rebuilds)

Incremental writes are SQLite transactions inside the live generation; a rebuild writes a new generation folder
and flips ``CURRENT``. Readers in this process never see a half-applied write (a readers-writer lock guards the
in-memory FAISS index), and readers in other processes notice new generations and reload.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sqlite3
from contextlib import contextmanager, nullcontext
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from . import answer as answering
from .chunking import Chunker, ChunkerConfig, load_tokenizer
from .errors import IndexCorrupt, IndexMismatch, IndexMissing, InvalidInput, NotFound, StorageFull, TooLarge
from .ingest import COLLECTION_SUFFIXES, article_from_text, collect, content_hash, readable_date, safe_doc_id
from .locks import ReadWriteLock, process_lock
from .records import AddReport, Answer, Article, Passage, has_lone_surrogate, strip_controls
from .retrieval import RetrievalConfig, Retrieved, hybrid_search, question_period
from .scope import Scope
from .settings import Settings, size_text
from .backends import is_embedded, open_backend
from .backends.base import Backend, Upsert
from .backends.sqlite_faiss import SqliteFaissBackend
from .store import DB_NAME, DOCUMENT_ORDER, FORMAT_VERSION, Store, StoreClosed, atomic_write_text
from .vectors import VectorIndex

CURRENT = "CURRENT"
# How often a reader re-reads CURRENT when it names a generation whose database is gone (another process's rebuild
# removed the old generation between the reader's read of CURRENT and its open): bounded, short sleeps.
SETTLE_TRIES = 8
SETTLE_SLEEP = 0.025
# progress(done, total): passages embedded so far, of those to embed (the web app's progress bar).
Progress = Callable[[int, int], None]
_PROGRESS_SLICE = 128  # passages embedded between two progress reports


def _disk_full(error: BaseException) -> bool:
    """SQLite's SQLITE_FULL, or ENOSPC from a file write (FAISS reports it as a RuntimeError with the message)."""
    if isinstance(error, sqlite3.OperationalError):
        return "database or disk is full" in str(error)
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(error, RuntimeError) and "No space left on device" in str(error)


# Free space below which a database that SQLite cannot open (a disk I/O error making its -shm or -wal file) is taken
# for a full disk rather than a damaged database: opening a WAL database needs a few tens of KB.
ROOM_NEEDED = 1 << 20


def _no_room(folder: Path) -> bool:
    """Is the file system holding ``folder`` (all but) full?"""
    try:
        info = os.statvfs(folder)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < ROOM_NEEDED


# Databases that passed ``PRAGMA quick_check`` in this process, by (path, inode): checked once per generation.
_CHECKED: set[tuple[str, int]] = set()
_CHECKED_LOCK = threading.Lock()


def integrity_problem(db: Path, *, force: bool = False) -> str | None:
    """Why the generation database ``db`` cannot be trusted (empty, not a database, failing ``quick_check``), or
    None; StorageFull when it cannot be opened because its disk is full. Never writes to it: an empty file is
    refused before any connection (connecting would make it a database), and the check runs on a connection that
    cannot create the file. FileNotFoundError when it is gone."""
    info = db.stat()
    if info.st_size == 0:
        return "its database file is empty"
    key = (str(db.resolve()), info.st_ino)
    if not force and key in _CHECKED:
        return None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=30)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
        finally:
            conn.close()
    except sqlite3.OperationalError as e:
        if "unable to open" in str(e) and not db.exists():
            raise FileNotFoundError(errno.ENOENT, "the index database is gone", str(db)) from e
        if "locked" in str(e) or "busy" in str(e):
            raise
        if _no_room(db.parent):
            # Not damage: SQLite could not make the files a WAL database is opened with. Repairing would write.
            raise StorageFull(
                f"the disk holding the index {db.parent.parent} is full: it cannot be opened until some space is "
                f"freed ({e})"
            ) from e
        return f"SQLite cannot read it ({e})"
    except sqlite3.DatabaseError as e:  # "file is not a database", "database disk image is malformed"
        return f"SQLite cannot read it ({e})"
    if rows != ["ok"]:
        return f"SQLite's check fails: {'; '.join(rows)[:300]}"
    with _CHECKED_LOCK:
        _CHECKED.add(key)
    return None


def embed_salt(settings: Settings) -> str:
    """What the hash of an embedded text is salted with: a vector is reused only for the same model and precision."""
    return f"{settings.model_name}|{settings.precision}|"


def chunk_article(article: Article, chunker: Chunker, salt: str) -> tuple[Upsert, list[str]]:
    """One article cut into chunks (offsets into its text), each with its BM25 row and the salted hash of the text
    its vector is made from; and those texts, in chunk order. The upsert's vectors are still empty. Pure: the local
    add and the Ray ingest (qa/ingest_ray.py) both prepare articles with it, so both store the same chunks."""
    prefix = chunker.title_prefix(article.title)
    chunks = chunker.chunk(article.text, article.title)
    meta_text = _meta_text(article)
    embed_texts = [chunker.embedding_text(prefix, c.text) for c in chunks]
    hashes = [hashlib.sha1((salt + t).encode("utf-8")).hexdigest() for t in embed_texts]
    upsert = Upsert(article, content_hash(article), [(c.chunk_no, c.start, c.end) for c in chunks],
                    [(article.title, meta_text, c.text) for c in chunks], hashes, np.zeros(0))
    return upsert, embed_texts


def _meta_text(article: Article) -> str:
    """What BM25 reads of an article besides its title and text: source, date in words, author."""
    return " ".join(x for x in (article.source, readable_date(article.date) if article.date else "",
                                article.author) if x)


def _built_with(meta: dict, wanted: dict) -> bool:
    """Was the store whose meta this is built with these settings (and this format)?"""
    return meta.get("format_version") == FORMAT_VERSION and all(meta.get(k) == v for k, v in wanted.items())


def stored_upserts(articles: list[Article], store: Store) -> dict[str, Upsert]:
    """Doc id → the upsert of each of these articles whose content hash matches its stored copy in ``store``,
    made from the stored chunk rows and vectors: what ``chunk_article`` and the embedder would give again when
    ``store`` was built with the same model, precision and chunker (the caller checks that). Text is cut from the
    article by the stored offsets, so citations stay exact; an article whose rows do not fit its text is left out
    (it is chunked again)."""
    stored = store.stored_chunks([a.doc_id for a in articles])
    found: dict[str, Upsert] = {}
    for article in articles:
        digest, rows = stored.get(article.doc_id, (None, []))
        if not rows or digest != content_hash(article):
            continue
        size = len(article.text)
        if any(not 0 <= start < end <= size for _, start, end, _, _ in rows):
            continue
        meta_text = _meta_text(article)
        found[article.doc_id] = Upsert(
            article, digest, [(no, start, end) for no, start, end, _, _ in rows],
            [(article.title, meta_text, article.text[start:end]) for _, start, end, _, _ in rows],
            [h for *_, h, _ in rows],
            np.frombuffer(b"".join(v for *_, v in rows), dtype=np.float32).reshape(len(rows), -1))
    return found


# The generation this process reads from: the embedded backend's view of it (gen_dir, store, vectors, generation,
# meta).
_Live = SqliteFaissBackend


class _Moved:
    """Whether an article whose content is unchanged was read from another file than the one stored, and that
    file no longer holds it (it was moved or renamed, or the record moved to another collection): it is written
    again, so that the stored path names the file (a sync or a watch finds an article by it, and deleted the
    article the moment its old path went away). While a stored one-article file exists, the same article read from
    a copy elsewhere keeps it: folders holding copies would otherwise take turns rewriting it. A collection
    (.json, .jsonl) that exists may no longer hold the record, so the newer path wins. The stored paths are read
    once, when first needed."""

    def __init__(self, live):
        self.live = live
        self.paths: dict[str, str] | None = None

    def __call__(self, doc_id: str, path: str) -> bool:
        if self.paths is None:
            self.paths = self.live.document_paths()
        stored = self.paths.get(doc_id, path)
        if stored == path:
            return False
        file = Path(stored)
        copy_held = (file.is_absolute() and file.suffix.lower() not in COLLECTION_SUFFIXES and file.is_file())
        return not copy_held


def _known_form(doc_id: str) -> None:
    """NotFound for an id no article can have: one holding bytes that were not UTF-8 (`qa remove $'\\xff'` failed in
    SQLite's text encoding with a message about surrogates)."""
    if has_lone_surrogate(doc_id):
        raise NotFound(f"no document with id {doc_id!r}: ids are UTF-8 text")


class NewsIndex:
    """A folder of news articles made answerable: chunks with exact offsets, vectors, BM25, cited answers."""

    # Articles chunked, embedded and committed together by add and rebuild: bounds memory, and what a crash loses.
    batch_size = 200
    # After embedding at least this many passages in one batch, the embedder gives back ONNX Runtime's memory
    # (``release``): its arena otherwise keeps growing across the batch shapes of a large build (BBC News peaked at
    # 513 MB). Reopening the session costs well under a second, against minutes of embedding for a batch this size;
    # a question or a short article embeds far fewer passages and keeps its session warm.
    release_after = 256

    def __init__(self, settings: Settings | None = None, *, embedder=None, reader=None,
                 retrieval: RetrievalConfig = RetrievalConfig(),
                 answering_config: answering.AnswerConfig = answering.AnswerConfig()):
        self.settings = settings or Settings.from_env()
        self.retrieval = retrieval
        self.answering = answering_config
        self._embedder = embedder
        self._reader = reader
        self._writer = None
        self._embedder_lock = threading.Lock()
        self._chunker: Chunker | None = None
        self._live: _Live | None = None
        self._remote: Backend | None = None  # a Milvus store (QA_STORE), connected on first use
        self._rw = ReadWriteLock()
        self._open_lock = threading.Lock()
        self._write_lock = threading.Lock()

    # --- parts, loaded on first use -----------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return Path(self.settings.index_dir)

    @property
    def embedder(self):
        """The embedding model, loaded on first use so listing documents never pays for it."""
        if self._embedder is None:
            with self._embedder_lock:
                if self._embedder is None:
                    from .embedding import load_embedder

                    self._embedder = load_embedder(self.settings)
        return self._embedder

    @property
    def reader(self):
        """The reader that chooses answer sentences (loaded on first use), or None with ``QA_READER=off``."""
        if self._reader is None and self.settings.reader:
            from .reader import load_reader

            self._reader = load_reader(self.settings)
        return self._reader if self.settings.reader else None

    @property
    def writer(self):
        """The local model that writes answers from the passages (qa/llm.py), or None without ``QA_LLM_URL``."""
        if self.settings.llm_url is None:
            return None
        if self._writer is None:
            from .llm import Writer

            reader = self.reader
            self._writer = Writer.from_settings(self.settings, reader=reader,
                                                embedder=None if reader is not None else self.embedder)
        return self._writer

    def llm_events(self, answer: Answer, history: Iterable[dict] = ()) -> Iterator[tuple[str, object]]:
        """Writing an extractive answer again with the local model, as it happens (``Writer.events``): draft
        pieces, checked sentences, then the final answer. Without ``QA_LLM_URL``, only the answer as it is."""
        writer = self.writer
        if writer is None:
            return iter([("answer", answer)])
        return writer.events(answer, list(history))

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            self._chunker = Chunker(load_tokenizer(str(self.settings.model_dir)), self.chunker_config)
        return self._chunker

    @property
    def chunker_config(self) -> ChunkerConfig:
        s = self.settings
        return ChunkerConfig(max_tokens=s.max_tokens, title_tokens=s.title_tokens, overlap_sentences=s.overlap_sentences)

    def expected_meta(self, dim: int) -> dict:
        """What an index built with these settings records; opening one that differs is an error."""
        return {
            "model": self.settings.model_name,
            "precision": self.settings.precision,
            "dim": dim,
            "chunker": self.chunker_config.as_dict(),
        }

    # --- opening -------------------------------------------------------------------------------------------------
    @property
    def embedded(self) -> bool:
        """Is the index the embedded SQLite + FAISS one (QA_STORE=embedded), whose generations this class keeps?"""
        return is_embedded(self.settings.store)

    @property
    def where(self) -> str:
        """The index's place in messages: its folder, or the Milvus URL."""
        return str(self.root) if self.embedded else self.settings.store

    def _milvus(self):
        """The Milvus backend QA_STORE names, connected (its settings not yet read)."""
        if self._remote is None:
            with self._open_lock:
                if self._remote is None:
                    self._remote = open_backend(self.settings.store)
        return self._remote

    def exists(self) -> bool:
        """Is there a built index at ``settings.index_dir`` (or in the Milvus QA_STORE names)?"""
        if not self.embedded:
            return self._milvus().exists()
        # CURRENT is written only once a generation is complete, so it means an index was built, even when the
        # generation it names has gone (a damaged index, which live() reports): "no index yet" would have `qa serve`
        # or `qa index` build a new one over the generations still there.
        return (self.root / CURRENT).exists()

    def _current_dir(self) -> Path | None:
        """The live generation's folder, or None when there is no index. CURRENT naming a folder whose database
        is gone is what a reader sees while another process's rebuild switches generations and removes the old
        one: CURRENT is read again (a few times, with short sleeps) before concluding there is no index."""
        for attempt in range(SETTLE_TRIES):
            try:
                name = (self.root / CURRENT).read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                return None
            gen_dir = self.root / name
            if (gen_dir / DB_NAME).exists():
                return gen_dir
            if attempt + 1 < SETTLE_TRIES:
                time.sleep(SETTLE_SLEEP * (attempt + 1))
        return None

    def _intact_generations(self) -> list[Path]:
        """Generation folders whose database passes SQLite's quick_check, newest first."""
        found = [p for p in self.root.glob("gen-*") if p.name[4:].isdigit() and (p / DB_NAME).exists()]
        return [p for p in sorted(found, key=lambda p: int(p.name[4:]), reverse=True)
                if integrity_problem(p / DB_NAME, force=True) is None]

    def _gone(self, older: list[Path] | None = None) -> IndexCorrupt | IndexMissing:
        """Why there is no live generation: none was ever built, or CURRENT names one that has gone (``older``: the
        intact generations, when the caller has them already)."""
        try:
            name = (self.root / CURRENT).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return IndexMissing(f"no index in {self.root} yet: run `qa index` first")
        older = self._intact_generations() if older is None else older
        return IndexCorrupt(
            f"the index in {self.root} is damaged (CURRENT names {name or 'nothing'}, which is missing): "
            + (f"run `qa doctor` to rebuild it from the articles of {older[0].name}, which is still there, or "
               if older else "run ")
            + "`qa index --rebuild PATHS` to build it again from the article files"
        )

    def _corrupt(self, gen_dir: Path, why: str) -> IndexCorrupt:
        return IndexCorrupt(
            f"the index in {gen_dir} is damaged ({why}): run `qa doctor` to repair it, or `qa index --rebuild "
            f"PATHS` to build it again from the article files"
        )

    @contextmanager
    def _storage_errors(self):
        """A write that fails for want of disk space (SQLITE_FULL, ENOSPC) is a StorageFull error naming the index;
        its transaction was rolled back (and a rebuild's unfinished generation removed), so the index is as it
        was."""
        try:
            yield
        except (OSError, sqlite3.OperationalError, RuntimeError) as e:
            if _disk_full(e):
                raise StorageFull(
                    f"the disk holding the index {self.root} is full: nothing was written; free some space and try "
                    f"again"
                ) from e
            raise

    def _check(self, meta: dict, gen_dir: Path) -> None:
        if meta.get("format_version") != FORMAT_VERSION:
            raise IndexMismatch(
                f"the index in {self.where} has format {meta.get('format_version')}, this version reads "
                f"{FORMAT_VERSION}: run `qa index --rebuild`"
            )
        dim = int(meta.get("dim", 0))
        wanted = self.expected_meta(dim)
        diffs = [f"{k} {meta.get(k)!r} (settings say {v!r})" for k, v in wanted.items() if meta.get(k) != v]
        if diffs:
            raise IndexMismatch(
                f"the index in {self.where} was built with {', '.join(diffs)}: run `qa index --rebuild`"
            )

    def live(self) -> _Live:
        """The current generation, reopened when another process (or a rebuild) has changed it.

        Reloads replace objects rather than change them, so a reader holding the previous ones is unaffected. An
        open that finds the generation's files gone (another process's rebuild removed them meanwhile) reads
        CURRENT again rather than reporting that there is no index. A Milvus store is opened once, its stored
        settings checked."""
        if not self.embedded:
            return self._live_remote()
        for attempt in range(SETTLE_TRIES):
            gen_dir = self._current_dir()
            if gen_dir is None:
                break
            try:
                return self._live_at(gen_dir)
            except (FileNotFoundError, sqlite3.OperationalError):
                if (gen_dir / DB_NAME).exists():
                    raise
                time.sleep(SETTLE_SLEEP * (attempt + 1))
        raise self._gone()

    def _live_remote(self) -> Backend:
        backend = self._milvus()
        if not backend.meta:
            if not backend.exists():
                raise IndexMissing(f"no index in {self.where} yet: run `qa index` first")
            meta = backend.open()
            try:
                self._check(meta, None)
            except BaseException:
                backend.meta = {}
                raise
        return backend

    def _live_at(self, gen_dir: Path) -> _Live:
        live = self._live
        try:
            if live is not None and live.gen_dir == gen_dir and live.store.generation() == live.generation:
                return live
        except StoreClosed:
            pass  # replaced by a rebuild meanwhile: self._live is the new one
        with self._open_lock:
            live = self._live
            if live is not None and live.gen_dir == gen_dir:
                generation = live.store.generation()
                if generation != live.generation:
                    live.vectors = VectorIndex.load(live.store, gen_dir, live.vectors.dim)
                    live.generation = generation
                return live
            fresh = self._live = self._open(gen_dir)
        if live is not None:
            # Another process switched generations: the old one's connections (whose files it deleted) are closed
            # once no read in this process can still be using them (outside _open_lock, which readers may want).
            self._rw.call_when_idle(live.close)
        return fresh

    def _open(self, gen_dir: Path) -> _Live:
        """Open a generation: its database checked first (once per generation in this process; an empty file is
        refused before anything connects to it), then its settings, then the FAISS cache."""
        db = gen_dir / DB_NAME
        why = integrity_problem(db)
        if why is not None:
            raise self._corrupt(gen_dir, why)
        def check(meta: dict) -> None:
            if "dim" not in meta or "generation" not in meta:
                raise self._corrupt(gen_dir, "its settings are missing")
            self._check(meta, gen_dir)

        try:
            return open_backend(self.settings.store, gen_dir=gen_dir, check=check,
                                bm25_memory=self.settings.bm25_memory)
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError):
                raise
            raise self._corrupt(gen_dir, f"SQLite cannot read it ({e})") from e

    def close(self) -> None:
        """Release the database connections (every thread's)."""
        if self._live is not None:
            self._live.close()
            self._live = None
        if self._remote is not None:
            self._remote.close()
            self._remote = None

    def _sweep(self, gen_dir: Path | None) -> None:
        """Remove what a writer killed mid-save left behind (``.vectors-*.tmp``, ``.CURRENT.*.tmp``). Called by
        writers under the process lock, so no other writer is saving one right now."""
        leftovers = list(self.root.glob(f".{CURRENT}.*.tmp"))
        if gen_dir is not None:
            leftovers += gen_dir.glob(".vectors-*.tmp")
        for path in leftovers:
            path.unlink(missing_ok=True)

    # --- reads ---------------------------------------------------------------------------------------------------
    def stats(self) -> dict:
        """Counts and the settings the index was built with."""
        with self._rw.read():
            live = self.live()
            docs, chunks = live.counts()
        return {
            "documents": docs,
            "chunks": chunks,
            "model": live.meta.get("model"),
            "precision": live.meta.get("precision"),
            "dim": live.meta.get("dim"),
            "vector_index": live.describe(),
            "generation": live.generation if self.embedded else 0,
            "path": live.location,
        }

    def documents(self, *, search: str = "", sort: str = "date", descending: bool = True, limit: int | None = None,
                  offset: int = 0):
        """The articles (id, title, date, source, url, chunk count, length, when it was added): those whose title,
        source or id contains ``search`` (any case), sorted by ``sort`` (date, title, source, chunks or added;
        InvalidInput for another), newest or last first unless ``descending`` is false, ``limit`` of them from
        ``offset`` (all by default)."""
        if sort not in DOCUMENT_ORDER:
            raise InvalidInput(f"sort must be one of {', '.join(DOCUMENT_ORDER)}, not {sort!r}")
        if (limit is not None and limit < 0) or offset < 0:
            raise InvalidInput("limit and offset must not be negative")
        with self._rw.read():
            return self.live().documents(search=search, sort=sort, descending=descending, limit=limit,
                                         offset=offset)

    def sources(self) -> list[str]:
        """The outlets the articles name (one spelling each, alphabetical): what a source filter can choose from."""
        with self._rw.read():
            return self.live().sources()

    def count_documents(self, *, search: str = "") -> int:
        """How many articles ``documents(search=...)`` lists without a limit."""
        with self._rw.read():
            return self.live().count_documents(search=search)

    def document_paths(self) -> dict[str, str]:
        """Doc id → the path of the file each article was read from, as it was given ('' for pasted ones)."""
        with self._rw.read():
            return self.live().document_paths()

    def document(self, doc_id: str) -> dict:
        """One article with its full text and chunk offsets; NotFound for an unknown id."""
        _known_form(doc_id)
        with self._rw.read():
            store = self.live()
            doc = store.document(doc_id)
            if doc is None:
                raise NotFound(f"no document with id {doc_id!r}")
            doc["chunks"] = [{"chunk_no": n, "start": s, "end": e} for n, s, e in store.chunk_spans(doc_id)]
            doc["pages"] = store.page_starts([doc_id]).get(doc_id, [])
        return doc

    def validate_question(self, question: str) -> str:
        """The question stripped (of control characters too, as articles are), or InvalidInput when it is empty, too
        long, or holds lone surrogates (bytes that were not UTF-8, as a terminal in another encoding sends them)."""
        if not isinstance(question, str) or not strip_controls(question).strip():
            raise InvalidInput("the question is empty")
        if has_lone_surrogate(question):
            raise InvalidInput("the question holds bytes that are not UTF-8 text: send it as UTF-8")
        # Counted as sent, spaces included: what the OpenAPI schema's maxLength says (web/routes/meta.py).
        if len(question) > self.settings.max_question_chars:
            raise InvalidInput(
                f"the question is {len(question)} characters long; the limit is {self.settings.max_question_chars}"
            )
        return strip_controls(question).strip()

    def _checked_embedder(self, live: _Live):
        """The embedder, after checking that it makes vectors of the size the index holds."""
        embedder = self.embedder
        if int(embedder.dim) != int(live.meta["dim"]):
            raise IndexMismatch(
                f"the index in {self.where} holds {live.meta['dim']}-dimensional vectors but the model makes "
                f"{embedder.dim}: run `qa index --rebuild`"
            )
        return embedder

    def warm(self) -> None:
        """Load what answering needs before the first question (a server starting): the index, the BM25
        postings it holds in memory, the model."""
        with self._rw.read():
            self.live().warm()
        self.embedder.encode(["warm up"])

    def _retrieve(self, query: str, k: int, *, query_vector: np.ndarray | None = None,
                  config: RetrievalConfig | None = None, scope: Scope | None = None,
                  periods: bool = False, period_text: str = "") -> Retrieved:
        """Top ``k`` for ``query`` among the articles ``scope`` admits, those dated in the period the query names
        first when ``periods`` is set (the period ``period_text`` names, when it names one: a follow-up is searched
        with the question it leans on, whose period must not win over the new question's); evaluation passes
        vectors it embedded in batches and settings it compares."""
        if query_vector is None:
            embedder = self._checked_embedder(self.live())
            query_vector = embedder.encode([query])[0]
        # Held for the whole read: a rebuild swaps generations (and deletes the old one) only between reads.
        with self._rw.read():
            live = self.live()
            period = None
            if periods:
                named = period_text and question_period(live, period_text) is not None
                period = question_period(live, period_text if named else query, scope)
            return hybrid_search(live, query_vector, query, k, config or self.retrieval, scope, period)

    def search(self, query: str, k: int = 5, *, since: str | None = None, until: str | None = None,
               sources: Iterable[str] | None = None, doc_ids: Iterable[str] | None = None) -> list[Passage]:
        """The ``k`` best passages for ``query`` (hybrid dense + BM25), each with its exact citation. ``since``
        and ``until`` (YYYY-MM-DD, inclusive), ``sources`` (outlet names) and ``doc_ids`` restrict the articles
        searched; a period the query names ("last week") is preferred."""
        query = self.validate_question(query)
        if not 1 <= int(k) <= 100:
            raise InvalidInput("k must be between 1 and 100")
        scope = Scope.of(since, until, sources, doc_ids)
        return self._retrieve(query, int(k), scope=scope, periods=True).passages

    def ask(self, question: str, k: int = 5, history: Iterable[dict] = (), *, since: str | None = None,
            until: str | None = None, sources: Iterable[str] | None = None,
            doc_ids: Iterable[str] | None = None, llm: bool = True) -> Answer:
        """Answer a question from the articles: answer sentences with ``[n]`` citations and the passages.

        ``history`` holds earlier turns (``{"question": ..., "answer": ...}``); a follow-up that leans on them
        ("and what did they say about it?") is searched together with the previous question, while the reader reads
        the question as asked, so the previous answer comes back only when it answers the new question too.
        ``since``/``until`` (YYYY-MM-DD, inclusive), ``sources`` and ``doc_ids`` restrict the articles cited
        (InvalidInput for a malformed date); a period the question names ("this week", "in March", "latest"),
        counted from the newest article's date, is preferred, and the answer's ``date_range`` says which. With
        ``QA_LLM_URL`` set (and ``llm``), the local model writes the answer from the passages, checked sentence by
        sentence (qa/llm.py); ``llm=False`` gives the extractive answer, for ``llm_events`` to stream."""
        history = list(history)
        began = time.perf_counter()
        question = self.validate_question(question)
        if not 1 <= int(k) <= 100:
            raise InvalidInput("k must be between 1 and 100")
        scope = Scope.of(since, until, sources, doc_ids)
        query = answering.resolve_followup(question, list(history))
        found = self._retrieve(query, int(k), scope=scope, periods=True, period_text=question)
        reader = self.reader
        if reader is not None:
            composed = answering.compose_read(question, found, reader, self.answering, query=query,
                                              said=answering.previous_answer(list(history)), embedder=self.embedder)
        else:
            composed = answering.compose(query, found, self.embedder, self.answering)
        passages = composed.passages if composed.passages is not None else found.passages
        if not composed.answerable:
            for p in passages:
                p.weak = True
        took = round((time.perf_counter() - began) * 1000, 2)
        answer = Answer(question, composed.text, composed.answerable, passages, composed.spans, took, query,
                        composed.read, date_range=found.period.to_dict() if found.period else None,
                        filters=scope.to_dict() if scope else None)
        if llm and self.writer is not None:
            return self.writer.write(answer, history)
        return answer

    # --- writes --------------------------------------------------------------------------------------------------
    def _prepare(self, articles: list[Article], cache: Backend | Store | None, show_progress: bool,
                 progress: Progress | None = None, *, same_settings: bool = False) -> tuple[list[Upsert], int]:
        """Chunk and embed (the slow part, done before any lock is taken). Vectors of chunks whose embedded text
        is unchanged are taken from the cache instead of being computed again. ``progress(done, total)`` hears
        how many of the passages to embed are done. ``same_settings``: the cache is a store built with these
        settings, so an article stored there unchanged keeps its chunks as they are (a rebuild then spends no
        Python time chunking it, time that readers answering meanwhile would wait for)."""
        chunker = self.chunker
        salt = embed_salt(self.settings)
        kept = stored_upserts(articles, cache) if same_settings and isinstance(cache, Store) else {}
        prepared: list[Upsert] = []
        fresh: list[Upsert] = []  # the chunked ones, whose vectors are looked up or embedded below
        texts: list[str] = []
        for article in articles:
            if article.doc_id in kept:
                prepared.append(kept[article.doc_id])
                continue
            upsert, embed_texts = chunk_article(article, chunker, salt)
            prepared.append(upsert)
            fresh.append(upsert)
            texts.extend(embed_texts)
        all_hashes = [h for p in fresh for h in p.hashes]
        cached = cache.vectors_by_hash(all_hashes) if cache is not None and all_hashes else {}
        missing = sorted({h: t for h, t in zip(all_hashes, texts) if h not in cached}.items())
        if missing:
            todo = [t for _, t in missing]
            if progress is None:
                vecs = self.embedder.encode(todo, batch_size=32, show_progress=show_progress)
            else:  # in slices, each followed by a progress report
                progress(0, len(todo))
                parts = []
                for start in range(0, len(todo), _PROGRESS_SLICE):
                    parts.append(self.embedder.encode(todo[start:start + _PROGRESS_SLICE], batch_size=32,
                                                      show_progress=show_progress))
                    progress(min(start + _PROGRESS_SLICE, len(todo)), len(todo))
                vecs = np.concatenate(parts)
            for (h, _), v in zip(missing, vecs):
                cached[h] = np.asarray(v, dtype=np.float32).tobytes()
            release = getattr(self.embedder, "release", None)
            if release is not None and len(missing) >= self.release_after:
                release()
        for p in fresh:
            p.vectors = np.frombuffer(b"".join(cached[h] for h in p.hashes), dtype=np.float32).reshape(len(p.hashes), -1)
        return prepared, len(missing)

    def _dim(self) -> int:
        return int(self.embedder.encode(["dimension probe"]).shape[1])

    def _write(self, backend: Backend, prepared: list[Upsert], remove: list[str], report: AddReport,
               added_at: dict[str, str] | None = None, *, save_cache: bool = True) -> None:
        """Apply prepared articles and removals as one batch (``Backend.apply``). ``added_at`` keeps the time
        articles were first added (a rebuild carries it over), else it is now. A rebuild's batches pass
        ``save_cache=False``: its generation is private until the switch, so the cache is saved once, after the
        last batch."""
        # Readers share the live backend's in-memory state; a rebuild's new generation is private until the switch.
        guard = self._rw.write if self._live is not None and backend is self._live else nullcontext
        extra = {} if save_cache else {"save_cache": False}
        report.chunks += backend.apply(prepared, remove, added_at=added_at, exclusive=guard, **extra)

    def add(self, articles: list[Article], *, show_progress: bool = False,
            progress: Progress | None = None) -> AddReport:
        """Add or update articles. Unchanged ones (same content hash) cost nothing; a changed one has its chunks
        replaced; only new chunk texts are embedded. Creates the index if there is none (``report.created``).
        ``progress(done, total)`` is called as passages are embedded; the total grows batch by batch
        (``batch_size`` articles each)."""
        began = time.perf_counter()
        report = AddReport()
        with self._storage_errors(), self._write_lock, process_lock(self.root / "write.lock"):
            # Whether there is an index is decided under both locks: two first adds (threads or processes) that
            # both looked before locking would each build a generation of their own articles, and the later
            # build would drop the earlier one's.
            if not self.exists():
                if self.embedded:
                    report = self._build_locked(list(articles), show_progress, progress)
                    report.created = True
                    report.seconds = round(time.perf_counter() - began, 3)
                    return report
                # Milvus: the write locks are this machine's, and writers on others may be creating it too: the
                # collections are made where missing, never dropped, and the articles added as to any index.
                self._create_remote()
                report.created = True
            live = self.live()
            if self.embedded:
                self._sweep(live.gen_dir)
            self._checked_embedder(live)
            todo = []
            moved = _Moved(live)
            for article in articles:
                old = live.content_hash(article.doc_id)
                if old == content_hash(article) and not moved(article.doc_id, article.path):
                    report.unchanged.append(article.doc_id)
                    continue
                (report.updated if old else report.added).append(article.doc_id)
                todo.append(article)
            # In batches, each its own transaction: a crash or a full disk loses at most the batch under way, and a
            # re-run skips what was committed (same content hash). An article's chunks are never split.
            for batch in _batches(todo, self.batch_size):
                prepared, embedded = self._prepare(batch, live, show_progress, _after(progress, report))
                self._write(live, prepared, [], report)
                report.embedded += embedded
            live.settle()
        report.seconds = round(time.perf_counter() - began, 3)
        return report

    def stored_hashes(self, doc_ids: Iterable[str]) -> dict[str, str | None]:
        """The stored content hash of each of ``doc_ids`` (None: not held); all None when there is no index yet.
        What an ingest compares before embedding, to skip articles already stored unchanged."""
        doc_ids = list(dict.fromkeys(doc_ids))
        if not self.exists():
            return dict.fromkeys(doc_ids)
        with self._rw.read():
            live = self.live()
            return {d: live.content_hash(d) for d in doc_ids}

    def write_prepared(self, prepared: list[Upsert], report: AddReport) -> None:
        """Write articles chunked and embedded elsewhere (``chunk_article`` plus the embedder, on Ray workers:
        qa/ingest_ray.py) as one batch under the write locks: one transaction, each article whole. Creates an empty
        index first when there is none, so every later batch commits on its own and a re-run after a crash keeps
        them. An article whose content hash is stored by now (a re-run, another writer) is counted unchanged and
        not written again; the others are counted added or updated in ``report``."""
        with self._storage_errors(), self._write_lock, process_lock(self.root / "write.lock"):
            if not self.exists():
                if self.embedded:
                    self._build_locked([], False)
                else:
                    self._create_remote()
                report.created = True
            live = self.live()
            if self.embedded:
                self._sweep(live.gen_dir)
            dim = int(live.meta["dim"])
            todo = []
            moved = _Moved(live)
            for p in prepared:
                if p.vectors.ndim != 2 or len(p.vectors) != len(p.spans) or (p.spans and p.vectors.shape[1] != dim):
                    raise IndexMismatch(
                        f"the index in {self.where} holds {dim}-dimensional vectors but {p.article.doc_id!r} came "
                        f"with {p.vectors.shape}: embed with the model the index was built with"
                    )
                old = live.content_hash(p.article.doc_id)
                if old == p.content_hash and not moved(p.article.doc_id, p.article.path):
                    report.unchanged.append(p.article.doc_id)
                    continue
                (report.updated if old else report.added).append(p.article.doc_id)
                todo.append(p)
            if todo:
                self._write(live, todo, [], report)

    def add_text(self, text: str, *, title: str = "", date: str = "", source: str = "", url: str = "",
                 doc_id: str = "", progress: Progress | None = None) -> AddReport:
        """Add one article given as text (the API's and the web form's way in)."""
        article = self.text_article(text, title=title, date=date, source=source, url=url, doc_id=doc_id)
        return self.add([article], progress=progress)

    def text_article(self, text: str, *, title: str = "", date: str = "", source: str = "", url: str = "",
                     doc_id: str = "") -> Article:
        """The article ``add_text`` would add, or the error its fields earn (empty, too large, a bad date or id),
        without writing anything: a background add checks its request before it is accepted."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("the article text is empty")
        if len(text.encode("utf-8")) > self.settings.max_article_bytes:
            raise TooLarge(f"the article is over the {size_text(self.settings.max_article_bytes)} limit")
        if not doc_id:
            basis = (title or text[:80]).lower()
            try:
                stem = safe_doc_id(basis)[:48].strip("-.")
            except InvalidInput:  # a title of punctuation alone ("…"): the text's hash names it
                stem = "article"
            doc_id = f"{stem}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:8]}"
        return article_from_text(text, doc_id=doc_id, title=title, date=date, source=source, url=url)

    def add_paths(self, paths: list[Path], *, date: str = "", ids: str = "stem", show_progress: bool = False) -> AddReport:
        """Add every readable article under ``paths``; unreadable files found in folders are reported as skipped."""
        found = collect(paths, max_bytes=self.settings.max_article_bytes, date=date, ids=ids)
        report = self.add(found.articles, show_progress=show_progress)
        report.skipped = found.skipped
        report.notes = [f"{a.doc_id}: {a.note}" for a in found.articles if a.note]
        return report

    def remove_many(self, doc_ids: Iterable[str]) -> list[str]:
        """Delete the articles among ``doc_ids`` that the index holds, in one transaction; returns their ids."""
        with self._storage_errors(), self._write_lock, process_lock(self.root / "write.lock"):
            live = self.live()
            if self.embedded:
                self._sweep(live.gen_dir)
            held = [d for d in dict.fromkeys(doc_ids) if live.content_hash(d) is not None]
            if held:
                self._write(live, [], held, AddReport())
        return held

    def remove(self, doc_id: str) -> None:
        """Delete an article from SQLite, BM25 and FAISS alike; NotFound for an unknown id."""
        _known_form(doc_id)
        with self._storage_errors(), self._write_lock, process_lock(self.root / "write.lock"):
            live = self.live()
            if self.embedded:
                self._sweep(live.gen_dir)
            if live.content_hash(doc_id) is None:
                raise NotFound(f"no document with id {doc_id!r}")
            self._write(live, [], [doc_id], AddReport())

    def stored_articles(self) -> list[Article]:
        """The articles held by the current index, read without checking its settings (for a rebuild).
        IndexCorrupt when its database is damaged (`qa doctor` recovers what it can)."""
        if not self.embedded:
            backend = self._milvus()
            if not backend.exists():
                return []
            backend.open()
            return backend.articles()
        gen_dir = self._current_dir()
        if gen_dir is None:
            if (self.root / CURRENT).exists():
                raise self._gone()  # never "no articles": a rebuild from them would empty the index
            return []
        why = integrity_problem(gen_dir / DB_NAME)
        if why is not None:
            raise self._corrupt(gen_dir, why)
        store = Store(gen_dir / DB_NAME)
        try:
            return SqliteFaissBackend(gen_dir, store, VectorIndex(1), 0, {}).articles()
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError):
                raise
            raise self._corrupt(gen_dir, f"SQLite cannot read it ({e})") from e
        finally:
            store.close()

    def _old_store(self, old_dir: Path | None) -> Store | None:
        """The generation a rebuild replaces, to reuse its vectors and keep its added_at times; None when there is
        none or it is damaged (a rebuild from paths is how a damaged index is replaced)."""
        if old_dir is None:
            return None
        try:
            if integrity_problem(old_dir / DB_NAME) is not None:
                return None
        except FileNotFoundError:
            return None
        return Store(old_dir / DB_NAME)

    def rebuild(self, articles: list[Article] | None = None, *, show_progress: bool = False,
                progress: Progress | None = None) -> AddReport:
        """Build a fresh generation from ``articles`` (default: the articles already stored) and switch to it
        atomically. Until the switch, readers keep answering from the previous generation; a crash before it
        leaves the previous generation untouched. Stored articles not among ``articles`` are listed in the
        report's ``dropped``."""
        began = time.perf_counter()
        articles = None if articles is None else list(articles)
        with self._storage_errors(), self._write_lock, process_lock(self.root / "write.lock"):
            # Read under the lock: stored articles read before it would miss an add that held it meanwhile,
            # and the rebuild would then delete that article with the old generation.
            if articles is None:
                articles = self.stored_articles()
            report = self._build_locked(articles, show_progress, progress)
        report.seconds = round(time.perf_counter() - began, 3)
        return report

    def _build_locked(self, articles: list[Article], show_progress: bool,
                      progress: Progress | None = None) -> AddReport:
        """A rebuild from ``articles`` on this index's store, with both write locks held."""
        if self.embedded:
            return self._rebuild_locked(articles, show_progress, progress)
        return self._rebuild_remote(articles, show_progress, progress)

    def _rebuild_locked(self, articles: list[Article], show_progress: bool,
                        progress: Progress | None = None, *, source: Path | None = None) -> AddReport:
        """The embedded rebuild itself, with both write locks held. ``source``: the generation the articles come
        from when it is not the current one (kept, and its vectors reused, until the new one is live)."""
        report = AddReport(added=[a.doc_id for a in articles])
        old_dir = source if source is not None else self._current_dir()
        self._sweep(None)
        numbers = [int(p.name[4:]) for p in self.root.glob("gen-*") if p.name[4:].isdigit()]
        gen_dir = self.root / f"gen-{max(numbers, default=0) + 1:06d}"
        for stale in self.root.glob("gen-*"):
            if stale != old_dir:
                shutil.rmtree(stale, ignore_errors=True)  # left behind by a crashed build
        gen_dir.mkdir(parents=True)
        old_store = self._old_store(old_dir)
        store = None
        try:
            if old_store is not None:
                kept = {a.doc_id for a in articles}
                report.dropped = sorted(d for (d,) in old_store.db.execute("SELECT doc_id FROM documents")
                                        if d not in kept)
            dim = self._dim()
            wanted = self.expected_meta(dim)
            same_settings = old_store is not None and _built_with(old_store.meta(), wanted)
            store = Store(gen_dir / DB_NAME)
            store.create(wanted)
            fresh_backend = SqliteFaissBackend(gen_dir, store, VectorIndex(dim), 0, {})
            added_at = dict(old_store.db.execute("SELECT doc_id, added_at FROM documents")) if old_store else {}
            # In batches, so only one batch's chunks and vectors are held at a time; the generation stays private
            # (and is deleted on failure) until CURRENT names it below.
            for batch in _batches(articles, self.batch_size) or [[]]:
                prepared, embedded = self._prepare(batch, old_store, show_progress, _after(progress, report),
                                                   same_settings=same_settings)
                self._write(fresh_backend, prepared, [], report, added_at, save_cache=False)
                report.embedded += embedded
            fresh_backend.vectors.save(gen_dir, store.generation())
            store.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            store.close()
        except BaseException:
            if store is not None:
                store.close()
            shutil.rmtree(gen_dir, ignore_errors=True)
            raise
        finally:
            if old_store is not None:
                old_store.close()
        atomic_write_text(self.root / CURRENT, gen_dir.name + "\n")
        fresh = self._open(gen_dir)
        with self._rw.write():  # no reader is between its reads while the old generation goes
            old, self._live = self._live, fresh
            if old is not None:
                old.close()  # every thread's connections: none may keep the deleted files open
            if old_dir is not None:
                shutil.rmtree(old_dir, ignore_errors=True)
        return report

    def _create_remote(self) -> None:
        """Create the Milvus collections where missing (another writer's stay as they are)."""
        self._milvus().create({**self.expected_meta(self._dim()), "format_version": FORMAT_VERSION}, replace=False)

    def _rebuild_remote(self, articles: list[Article], show_progress: bool,
                        progress: Progress | None = None) -> AddReport:
        """A Milvus store rebuilt as a new generation of collections (``MilvusBackend.begin_generation``), filled
        batch by batch while questions are answered from the current one, then switched to in one write and the
        old one dropped. A rebuild that fails or is killed before the switch leaves the index as it was (its
        unfinished generation is dropped, or ignored until the next rebuild drops it). Vectors of unchanged chunk
        texts are taken from the current generation rather than computed again."""
        report = AddReport(added=[a.doc_id for a in articles])
        backend = self._milvus()
        added_at: dict[str, str] = {}
        current = None
        if backend.exists():
            backend.open()
            current = backend
            kept = {a.doc_id for a in articles}
            held = backend.documents()
            report.dropped = sorted(d.doc_id for d in held if d.doc_id not in kept)
            added_at = {d.doc_id: d.added_at for d in held}
        fresh = backend.begin_generation({**self.expected_meta(self._dim()), "format_version": FORMAT_VERSION})
        try:
            for batch in _batches(articles, self.batch_size):
                prepared, embedded = self._prepare(batch, current, show_progress, _after(progress, report))
                self._write(fresh, prepared, [], report, added_at)
                report.embedded += embedded
            fresh.settle()
        except BaseException:
            backend.abandon(fresh)
            raise
        backend.switch_to(fresh)
        return report

    # --- repair --------------------------------------------------------------------------------------------------
    def doctor(self, *, show_progress: bool = False) -> dict:
        """Check the current generation and repair what can be repaired (``qa doctor``).

        Checks: SQLite's ``quick_check``, and that SQLite, FTS5 and the FAISS cache hold the same chunks. A
        missing or stale cache is rebuilt from the vectors in SQLite; an FTS table out of step means a rebuild from
        the stored articles. A damaged database is read article by article, each kept only when its content hash
        still matches, and a new generation is built from what was recovered. Returns what it found and did."""
        report: dict = {"path": "", "problems": [], "repaired": [], "recovered": None, "lost": None,
                        "checked": "SQLite, BM25 and vectors agree"}
        if not self.embedded:
            report["checked"] = "every chunk belongs to the stored version of its article"
            with self._write_lock, process_lock(self.root / "write.lock"):
                backend = self.live()
                report["path"] = backend.location
                swept = backend.sweep()
                if swept:
                    report["problems"].append(f"{swept} chunks of article versions no longer stored")
                    report["repaired"].append(f"removed those {swept} chunks")
                docs, chunks = backend.counts()
                report.update(documents=docs, chunks=chunks, fts=chunks)
            return report
        with self._storage_errors(), self._write_lock, process_lock(self.root / "write.lock"):
            gen_dir = self._current_dir()
            if gen_dir is None:
                older = self._intact_generations()
                gone = self._gone(older)
                if isinstance(gone, IndexMissing) or not older:
                    raise gone
                # The generation CURRENT names has gone; an older one is intact (kept by a crash, or restored): its
                # articles, each kept only when its content hash still matches, become a new generation.
                report["path"] = str(older[0])
                report["problems"].append(str(gone).split(": run", 1)[0])
                articles, lost = _salvage(older[0] / DB_NAME)
                report["recovered"], report["lost"] = len(articles), lost
                self._rebuild_locked(articles, show_progress, source=older[0])
                report["repaired"].append(f"rebuilt the index from the {len(articles)} articles of {older[0].name}, "
                                          f"an older generation: articles added after it are not in it")
                return report
            report["path"] = str(gen_dir)
            self._sweep(gen_dir)
            db = gen_dir / DB_NAME
            why = integrity_problem(db, force=True)
            if why is not None:
                report["problems"].append(f"the database is damaged: {why}")
                articles, lost = _salvage(db)
                report["recovered"], report["lost"] = len(articles), lost
                self._rebuild_locked(articles, show_progress)
                report["repaired"].append(f"rebuilt the index from the {len(articles)} recovered articles")
                return report
            store = Store(db)
            try:
                docs, chunks = store.counts()
                fts = store.db.execute("SELECT count(*) FROM chunks_fts").fetchone()[0]
                orphans = store.db.execute(
                    "SELECT count(*) FROM chunks WHERE doc_id NOT IN (SELECT doc_id FROM documents)").fetchone()[0]
                meta = store.meta()
                cache = VectorIndex.cache_problem(store, gen_dir, int(meta["dim"])) if "dim" in meta else None
            finally:
                store.close()
            report.update(documents=docs, chunks=chunks, fts=fts)
            if fts != chunks or orphans:
                report["problems"].append(f"{chunks} chunks but {fts} BM25 rows and {orphans} chunks without article")
                self._rebuild_locked(self.stored_articles(), show_progress)
                report["repaired"].append(f"rebuilt the index from its {docs} stored articles")
            elif cache is not None:
                report["problems"].append(cache)
                if self._live is not None:
                    self._live.close()
                    self._live = None
                store = Store(db)
                try:
                    dim = int(meta["dim"])
                    VectorIndex.rebuild_from(store, dim).save(gen_dir, store.generation())
                finally:
                    store.close()
                report["repaired"].append(f"rebuilt the vector cache from the {chunks} vectors in SQLite")
        return report


def _after(progress: Progress | None, report: AddReport) -> Progress | None:
    """``progress`` for the next batch: its counts follow the passages the earlier batches embedded."""
    if progress is None:
        return None
    base = report.embedded
    return lambda done, total: progress(base + done, base + total)


def _batches(items: list, size: int) -> list[list]:
    """``items`` in runs of at most ``size``."""
    size = max(1, int(size))
    return [items[i : i + size] for i in range(0, len(items), size)]


def _salvage(db: Path) -> tuple[list[Article], int]:
    """The articles still readable from a damaged database, one row at a time (a damaged page costs the rows on
    it, not the rest), each kept only if its content hash matches; and how many rows were lost."""
    if db.stat().st_size == 0:
        return [], 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=rw", uri=True)  # never creates it
    except sqlite3.Error:
        return [], 0
    cols = "doc_id, text, title, date, source, url, author, path, content_hash"
    found: dict[str, Article] = {}
    lost = 0
    try:
        try:
            top = conn.execute("SELECT max(rowid) FROM documents").fetchone()[0] or 0
        except sqlite3.DatabaseError:
            top = None
        rowid, misses, failed = 0, 0, 0
        # Without the largest rowid, walk on until a long run of missing rows.
        while (rowid < top) if top is not None else (misses < 5000):
            rowid += 1
            try:
                row = conn.execute(f"SELECT {cols} FROM documents WHERE rowid = ?", (rowid,)).fetchone()
            except sqlite3.DatabaseError:
                row, failed = None, failed + 1
            if row is None:
                misses += 1
                continue
            # Unreadable rows count as lost once a row after them is read (or the largest rowid says they
            # existed); the probes past the last row, when that is unknown, are not rows.
            misses, lost, failed = 0, lost + failed, 0
            try:
                article = Article(*row[:8])
            except (TypeError, ValueError):
                lost += 1
                continue
            if content_hash(article) == row[8] and article.doc_id not in found:
                found[article.doc_id] = article
            else:
                lost += 1
    finally:
        conn.close()
    return list(found.values()), lost + (failed if top is not None else 0)

