"""The index on Milvus (``QA_STORE=milvus:///path/to/file.db`` for Milvus Lite, ``QA_STORE=http://host:19530`` for
a Milvus Standalone or Distributed server: the same code). Everything lives server-side, so any number of stateless
``qa serve`` nodes can answer from one Milvus:

- ``<prefix>_chunks``: one row per chunk: its offsets, the chunk text itself (``body``, written as
  ``article.text[start:end]``, so ``article_text[start:end] == passage_text`` holds by construction), the citation
  fields, the dense vector (``vec``, inner product on normalized vectors = cosine) and ``lexical`` (title, metadata
  and body) with Milvus' built-in BM25 function filling the sparse field ``sparse``;
- ``<prefix>_documents``: one row per article (metadata, content hash, page offsets, counts);
- ``<prefix>_texts``: the article text in parts of at most ``TEXT_PART_CHARS`` characters (a VARCHAR holds at most
  64 KiB);
- ``<prefix>_meta``: the settings the index was built with, and a stamp that changes with every write.

Consistency: every collection is created, searched and queried at consistency level **Strong**, so a write is
visible to the next question on any node.

Milvus has no multi-row transactions, so a write is ordered to be safe instead: an article's new chunks and text
parts go in under ids derived from its content hash, then its document row (which names the current content hash)
is upserted, then the rows of other versions are deleted. Readers keep only chunks and parts whose content hash is
the one the document row names, so they see the old version or the new one, never a mix; a removed article's
document row goes first, which hides its chunks at once. Re-running a write that died midway duplicates nothing
(the same ids are upserted again).

Generations: ``qa index --rebuild`` never empties the collections readers use. It fills a new set named
``<prefix>_g<N>_chunks`` (and so on), then switches by writing ``N`` into ``<prefix>_generation`` (one row: the
only step readers see) and drops the old set; a rebuild killed before the switch leaves the old set whole and its
half-built set ignored (the next rebuild drops it). An index never rebuilt is generation 0, the unnumbered
``<prefix>_chunks`` set. Other processes notice the switch at their next write or when the old set is gone, and
follow it.

Milvus needs a vector field in every collection: the documents, texts, meta and generation collections carry a
constant two-dimensional ``pad`` vector that nothing searches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import unicodedata
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import numpy as np

from ..errors import QAError, TooLarge
from ..lexical import query_terms
from ..records import Article, DocumentInfo
from ..scope import source_key
from ..store import utc_now
from .base import Backend, Upsert, batched

PREFIX = "newsqa"
CONSISTENCY = "Strong"
# HNSW's search breadth (AUTOINDEX is HNSW on Milvus Lite and on a server). Lite's default, 64, found 0.878 of the
# exact top 10 on 100k synthetic chunks; 256 found 0.978 (512: 0.992); `python -m bench.scale
# --hnsw-sweep 100k`, docs/scale.md. Never below the number of candidates asked for.
SEARCH_EF = 256
TEXT_PART_CHARS = 16_000  # 4 bytes a character at most: a part stays under a VARCHAR's 65,535 bytes
VARCHAR_MAX = 65_535
# The most UTF-8 bytes a VARCHAR field holds (a server counts bytes, Milvus Lite characters: bytes hold on both);
# fields not named hold VARCHAR_MAX. ``apply`` checks every row against these before it writes anything.
VARCHAR_LIMITS = {"doc_id": 1024, "content_hash": 128, "embed_hash": 128, "date": 256, "added_at": 256, "day": 16}
IN_BATCH = 500  # ids per ``in [...]`` filter
# How deep each word's own BM25 list is read when the words are searched one by one (``lexical``): a chunk missing
# from a word's list loses that word's score, so the lists go deeper than the sum's top few. The depth retrieval
# reads the summed list to anyway (RetrievalConfig.lexical_depth).
WORD_DEPTH = 1000
# A word whose FTS5 IDF is within this fraction of Milvus' is scored with Milvus' (searched with the other such
# words in one query, which costs Milvus Lite far less than one query a word): its score moves by less than that.
IDF_TOLERANCE = 0.01
# Rows written since the last flush above which ``settle`` flushes: searches over that many unsealed rows are slow
# (on Milvus Lite, BBC News' 5,906 chunks: about 4 s a question before the flush, 0.7 s after; the flush 2.4 s).
SETTLE_ROWS = 1000
PAGE = 4096  # rows per page when reading a whole collection
_PAD = [1.0, 0.0]
# Milvus' own analyzer only splits and lower-cases: Milvus Lite ignores stemming and accent-folding filters (a
# server applies them), so the words are stemmed here instead (``analyzed``), the same way for the stored text and
# the question, and Lite and a server rank alike, and close to the embedded store's FTS5 tokenizer (porter
# unicode61 remove_diacritics).
ANALYZER = {"tokenizer": "standard", "filter": ["lowercase"]}
_WORDS = re.compile(r"\w+")
_STEMMERS = threading.local()


def analyzed(text: str) -> str:
    """``text`` as the words BM25 indexes: lower case, accents removed, each Porter-stemmed (as FTS5's porter
    unicode61 remove_diacritics tokenizer does), joined by spaces."""
    stemmer = getattr(_STEMMERS, "porter", None)
    if stemmer is None:
        import Stemmer

        stemmer = _STEMMERS.porter = Stemmer.Stemmer("porter")
    folded = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    return " ".join(stemmer.stemWords(_WORDS.findall(folded)))

def _limit(field: str) -> int:
    """The most bytes the VARCHAR field ``field`` holds (as the collections are created)."""
    return VARCHAR_LIMITS.get(field, VARCHAR_MAX)


_CHUNK_FIELDS = ["id", "doc_id", "chunk_no", "char_start", "char_end", "title", "date", "source", "content_hash"]



def fts5_idf_factor(rows: int, holding: int) -> float:
    """FTS5's IDF of a word held by ``holding`` of ``rows`` rows over Milvus' for the same counts. FTS5 (the
    embedded store) uses log((N - n + 0.5) / (n + 0.5)), floored at 1e-6, so a word in half the chunks all but
    drops out; Milvus uses log(1 + (N - n + 0.5) / (n + 0.5)), which keeps it. On the 17 chunks of the seed
    articles that difference alone set 8 of 64 seed questions' top passages apart from the embedded store's."""
    holding = min(holding, rows)  # counted a moment apart: a write in between may have added rows
    ratio = (rows - holding + 0.5) / (holding + 0.5)
    return max(math.log(ratio), 1e-6) / math.log1p(ratio)


class _LiteFailure(logging.Handler):
    """Keeps, for its thread, the exception Milvus Lite logs with a traceback when it cannot open a file (pymilvus
    then raises only "Open local milvus failed"), so the error names the cause in one line and nothing is
    printed."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.seen = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.seen.error = record.exc_info[1]

    def take(self) -> BaseException | None:
        """The exception logged in this thread since the last ``take``, if any."""
        error, self.seen.error = getattr(self.seen, "error", None), None
        return error


_LITE_FAILURES = _LiteFailure()


def _quiet() -> None:
    """pymilvus logs every failed call with its traceback (the errors are raised to the caller anyway, who reports
    them in one line), and Milvus Lite's in-process server logs the timestamp call it lacks, which pymilvus' query
    iterator tries before falling back to a client-side timestamp. Set after pymilvus is imported: it sets its
    logger's level on import. Milvus Lite's failure to open a file is kept (``_LITE_FAILURES``), not printed."""
    for name in ("pymilvus", "grpc._server"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    lite = logging.getLogger("milvus_lite.server_manager")
    if _LITE_FAILURES not in lite.handlers:
        lite.addHandler(_LITE_FAILURES)
        lite.propagate = False


class MilvusUnavailable(QAError):
    """The Milvus named by QA_STORE cannot be reached or opened."""

    status = 503


def _open_failure(url: str, error: BaseException, cause: BaseException | None) -> str:
    """Why the Milvus at ``url`` could not be opened, in one line. ``cause``: what Milvus Lite logged meanwhile."""
    if cause is not None and type(cause).__name__ == "DataDirLockedError":
        return (f"cannot open Milvus at {url}: the file is in use by another process (Milvus Lite lets one process "
                f"open it at a time; stop the other one, or use a Milvus server)")
    return f"cannot open Milvus at {url}: {_why(cause if cause is not None else error)}"


def _why(error: BaseException) -> str:
    """An error's message in one line (pymilvus' own, without its ``<MilvusException: (code=...)>`` wrapping)."""
    text = str(getattr(error, "message", "") or error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def _unreachable(error: BaseException) -> bool:
    """Is ``error`` pymilvus (or gRPC) saying the server cannot be reached (down, restarting, the network gone)?"""
    from pymilvus.exceptions import (ConnectError, ConnectionNotExistException, MilvusException,
                                     MilvusUnavailableException)

    if isinstance(error, (ConnectError, ConnectionNotExistException, MilvusUnavailableException)):
        return True
    if isinstance(error, MilvusException):
        return getattr(error, "code", None) == _CONNECT_FAILED
    try:
        import grpc
    except ImportError:  # pragma: no cover - pymilvus depends on grpcio
        return False
    return isinstance(error, grpc.RpcError) and callable(getattr(error, "code", None)) and error.code() in (
        grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _collection_gone(error: BaseException) -> bool:
    """Is ``error`` Milvus saying the collection does not exist (dropped by another process's rebuild)?"""
    return getattr(error, "code", None) == _COLLECTION_NOT_FOUND


_CONNECT_FAILED = 2  # pymilvus.client.types.Status.CONNECT_FAILED
_COLLECTION_NOT_FOUND = 100  # pymilvus.exceptions.ErrorCode.COLLECTION_NOT_FOUND
_WRITES = frozenset({"upsert", "insert", "delete"})
_FOLLOWED = _WRITES | {"query", "query_iterator", "search", "get"}  # the calls on rows, not on collections


class _GenerationMoved(Exception):
    """A write found its collections dropped: another process's rebuild switched generations meanwhile, so the
    write is done again, whole, in the live generation."""


class _Guarded:
    """The MilvusClient as the backend calls it: a server that cannot be reached is ``MilvusUnavailable`` (a 503
    naming the URL, not a 500), and a collection another process's rebuild dropped is followed to the live
    generation (a read is asked again there; a write raises ``_GenerationMoved`` for ``apply`` to redo).
    Attributes set on it (tests replacing a method) take the place of the client's."""

    def __init__(self, client, backend: "MilvusBackend", *, follow: bool):
        self.raw = client
        self._backend = backend
        self._follow = follow

    def __getattr__(self, name: str):
        attr = getattr(self.raw, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except Exception as e:
                if _unreachable(e):
                    raise self._backend.unreachable(e) from e
                if not (self._follow and name in _FOLLOWED and _collection_gone(e) and args
                        and isinstance(args[0], str)):
                    raise
                moved = self._backend._moved(args[0])
                if moved is None:
                    raise
                if name in _WRITES:
                    raise _GenerationMoved(args[0]) from e
                return getattr(self, name)(moved, *args[1:], **kwargs)

        return call


# What a field is to a user, in the message refusing an article whose field is too long for Milvus.
_FIELD_WORDS = {"pages": "page list", "source_key": "source",
                "lexical": "title, source and author together (what each passage is searched by)",
                "body": "passage text"}


def _check_lengths(doc_id: str, row: dict) -> None:
    """TooLarge naming the article, the field and the limit when a string of ``row`` is longer than its
    VARCHAR holds (the embedded store takes any length; a Milvus field cannot)."""
    for field, value in row.items():
        if isinstance(value, str) and len(value) > _limit(field) // 4:  # the cheap test first: 4 bytes a char
            size = len(value.encode("utf-8"))
            if size > _limit(field):
                raise TooLarge(f"article {doc_id!r}: its {_FIELD_WORDS.get(field, field)} is {size:,} bytes long, "
                               f"more than the {_limit(field):,} a Milvus store holds (QA_STORE); nothing was "
                               f"written")


def _lit(value: str) -> str:
    """A string literal for a Milvus filter expression (JSON's escaping is what Milvus reads)."""
    return json.dumps(str(value), ensure_ascii=False)


def _in(field: str, values) -> str:
    return f"{field} in [{', '.join(_lit(v) if isinstance(v, str) else str(int(v)) for v in values)}]"


def chunk_id(doc_id: str, content_hash: str, chunk_no: int) -> int:
    """A chunk's id: from its article's id, content hash and position, so a re-run writes the same ids again and a
    new version of an article never reuses an old version's ids. 63 bits, positive."""
    digest = hashlib.sha1(f"{doc_id}\x1f{content_hash}\x1f{chunk_no}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def connect_args(url: str) -> dict:
    """MilvusClient arguments for ``milvus:///path/file.db`` (Milvus Lite) or ``http(s)://host:port``."""
    if url.startswith("milvus://"):
        path = url[len("milvus://"):]
        if not path.startswith("/"):
            raise ValueError(f"QA_STORE {url!r}: Milvus Lite needs an absolute path (milvus:///path/to/file.db)")
        Path(path).parent.mkdir(parents=True, exist_ok=True)  # Milvus Lite makes the file, not its folder
        return {"uri": path}
    return {"uri": url}


KEYS = ("chunks", "documents", "texts", "meta")


def collection_names(prefix: str, generation: int) -> dict[str, str]:
    """The collections of one generation: unnumbered for generation 0 (an index never rebuilt, and every index
    made before there were generations), ``<prefix>_g<N>_<key>`` after that."""
    tag = "" if generation == 0 else f"g{generation}_"
    return {k: f"{prefix}_{tag}{k}" for k in KEYS}


def _generation_of(name: str, prefix: str) -> int | None:
    """The generation a collection of this index belongs to, None for one that is not this index's."""
    found = re.fullmatch(rf"{re.escape(prefix)}_(?:g(\d+)_)?({'|'.join(KEYS)})", name)
    return None if found is None else int(found.group(1) or 0)


class MilvusBackend(Backend):
    """An index stored in Milvus; see the module's docstring for the layout and the write order."""

    def __init__(self, url: str, prefix: str = PREFIX):
        from pymilvus import MilvusClient

        _quiet()
        self.url = url
        self.location = url
        self.prefix = prefix
        self.pointer = f"{prefix}_generation"  # the live generation's number, once a rebuild has made one
        _LITE_FAILURES.take()  # what an earlier open in this thread left
        try:
            client = MilvusClient(**connect_args(url))
        except ValueError:
            raise
        except Exception as e:  # grpc, connection refused, a Lite file another process holds
            raise MilvusUnavailable(_open_failure(url, e, _LITE_FAILURES.take())) from e
        self._start(client, generation=0, follow=True)

    def _start(self, client, *, generation: int, follow: bool) -> None:
        """The state of a backend on ``client`` reading and writing ``generation``; ``follow``: move to the live
        generation when this one's collections are dropped (a live backend does; one building a rebuild's new
        generation must not)."""
        self.client = _Guarded(client, self, follow=follow)
        self.generation = generation
        self.names = collection_names(self.prefix, generation)
        self.meta: dict = {}
        self._unflushed = 0
        self._loaded = False
        self._pointer_loaded = False
        self._cache_lock = threading.Lock()
        self._doc_cache: tuple[object, list[str], str] | None = None  # (stamp, sources, newest date)
        # (write stamp, rows, word → rows holding it), for ``_idf_factors``
        self._term_cache: tuple[object, int | None, dict[str, int]] = (None, None, {})

    def unreachable(self, error: BaseException) -> MilvusUnavailable:
        """The error for a call that could not reach the server (a 503 naming it; it answers again once the
        server is back, with nothing to restart here)."""
        return MilvusUnavailable(f"Milvus at {self.url} cannot be reached: {_why(error)}")

    # --- lifecycle -------------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        """Are the collections there with their settings?"""
        self._resolve()
        if not all(self.client.has_collection(n) for n in self.names.values()):
            return False
        self._load()
        return self._meta_value("settings") is not None

    def open(self) -> dict:
        """Load the collections and read the stored settings (``meta``)."""
        self._resolve()
        self._load()
        value = self._meta_value("settings")
        self.meta = json.loads(value) if value else {}
        return self.meta

    def _load(self) -> None:
        if not self._loaded:
            for name in self.names.values():
                self.client.load_collection(name)
            self._loaded = True

    # --- generations -----------------------------------------------------------------------------------------------
    def _live_generation(self) -> int:
        """The generation readers use: the number the pointer collection holds, 0 when there is none."""
        if not self.client.has_collection(self.pointer):
            return 0
        if not self._pointer_loaded:
            self.client.load_collection(self.pointer)
            self._pointer_loaded = True
        rows = self.client.query(self.pointer, filter='key == "generation"', output_fields=["value"],
                                 consistency_level=CONSISTENCY)
        return int(rows[0]["value"]) if rows else 0

    def _resolve(self) -> None:
        """Read and write the live generation from now on (another process's rebuild may have switched it)."""
        generation = self._live_generation()
        if generation == self.generation:
            return
        self.generation, self.names, self._loaded = generation, collection_names(self.prefix, generation), False
        try:
            self._load()
            value = self._meta_value("settings")
        except Exception as e:
            if not _collection_gone(e):
                raise
            value = None  # not there (exists() says so): nothing to read
        if value:
            self.meta = json.loads(value)
        with self._cache_lock:
            self._doc_cache, self._term_cache = None, (None, None, {})

    def _moved(self, name: str) -> str | None:
        """The live generation's collection in place of ``name``, one of a generation a rebuild has since dropped;
        None when ``name`` is still the live one (the collection is missing for another reason)."""
        key = name.rsplit("_", 1)[-1]
        if key not in KEYS:
            return None
        self._resolve()
        return None if self.names[key] == name else self.names[key]

    def _generations(self) -> set[int]:
        """The generations any of whose collections exist (the live one, and any a crash left)."""
        found = (_generation_of(name, self.prefix) for name in self.client.list_collections())
        return {g for g in found if g is not None}

    def begin_generation(self, meta: dict) -> "MilvusBackend":
        """A backend on a new, empty generation for ``meta``'s settings, which readers do not see until
        ``switch_to``: what a rebuild fills. Generations other than the live one (left by a rebuild that died) are
        dropped first."""
        self._resolve()
        found = self._generations()
        for stale in sorted(found - {self.generation}):
            self._drop_names(collection_names(self.prefix, stale))
        fresh = object.__new__(MilvusBackend)
        fresh.url, fresh.location, fresh.prefix, fresh.pointer = self.url, self.location, self.prefix, self.pointer
        fresh._start(self.client.raw, generation=max(found | {self.generation}) + 1, follow=False)
        fresh.create(meta, replace=False)
        return fresh

    def switch_to(self, fresh: "MilvusBackend") -> None:
        """Make ``fresh`` (from ``begin_generation``, filled) the live generation: one row written, which readers
        everywhere see at once; then this backend reads it, and the old generation's collections are dropped."""
        from pymilvus import DataType

        if not self.client.has_collection(self.pointer):
            schema = self.client.create_schema(auto_id=False)
            schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=256)
            schema.add_field("value", DataType.VARCHAR, max_length=256)
            schema.add_field("pad", DataType.FLOAT_VECTOR, dim=len(_PAD))
            try:
                self.client.create_collection(self.pointer, schema=schema, index_params=self._pad_index(),
                                              consistency_level=CONSISTENCY)
            except Exception:
                if not self.client.has_collection(self.pointer):
                    raise
        self.client.load_collection(self.pointer)
        self._pointer_loaded = True
        self.client.upsert(self.pointer, [{"key": "generation", "value": str(fresh.generation), "pad": _PAD}])
        old = self.names
        self.generation, self.names, self.meta = fresh.generation, fresh.names, fresh.meta
        self._loaded, self._unflushed = True, fresh._unflushed
        with self._cache_lock:
            self._doc_cache, self._term_cache = None, (None, None, {})
        self._drop_names(old)

    def abandon(self, fresh: "MilvusBackend") -> None:
        """Drop a generation ``begin_generation`` made that will not be switched to (its rebuild failed); what a
        kill leaves instead is dropped by the next rebuild."""
        try:
            self._drop_names(fresh.names)
        except Exception:  # the server gone too: the next rebuild drops it
            pass

    def _drop_names(self, names: dict[str, str]) -> None:
        for name in names.values():
            try:
                if self.client.has_collection(name):
                    self.client.drop_collection(name)
            except Exception as e:
                if not _collection_gone(e):  # dropped a moment ago by another process: as wanted
                    raise

    def create(self, meta: dict, *, replace: bool = True) -> None:
        """Drop whatever collections this prefix has and create empty ones for vectors of ``meta['dim']``.
        ``replace=False`` (a first write, which other writers may be making at the same moment on other machines):
        drop nothing, create only the collections missing, and keep the settings another writer stored first."""
        from pymilvus import DataType, Function, FunctionType

        if replace:
            self.drop()
        c = self.client
        dim = int(meta["dim"])

        chunks = c.create_schema(auto_id=False)
        chunks.add_field("id", DataType.INT64, is_primary=True)
        chunks.add_field("doc_id", DataType.VARCHAR, max_length=_limit("doc_id"))
        chunks.add_field("content_hash", DataType.VARCHAR, max_length=_limit("content_hash"))
        chunks.add_field("chunk_no", DataType.INT64)
        chunks.add_field("char_start", DataType.INT64)
        chunks.add_field("char_end", DataType.INT64)
        chunks.add_field("embed_hash", DataType.VARCHAR, max_length=_limit("embed_hash"))
        chunks.add_field("title", DataType.VARCHAR, max_length=_limit("title"))
        chunks.add_field("date", DataType.VARCHAR, max_length=_limit("date"))
        chunks.add_field("day", DataType.VARCHAR, max_length=_limit("day"))
        chunks.add_field("source", DataType.VARCHAR, max_length=_limit("source"))
        chunks.add_field("source_key", DataType.VARCHAR, max_length=_limit("source_key"))
        chunks.add_field("body", DataType.VARCHAR, max_length=_limit("body"))
        chunks.add_field("lexical", DataType.VARCHAR, max_length=_limit("lexical"), enable_analyzer=True,
                         analyzer_params=ANALYZER)
        chunks.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        chunks.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
        chunks.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["lexical"],
                                     output_field_names=["sparse"]))
        index = c.prepare_index_params()
        # AUTOINDEX: Milvus chooses (on Milvus Lite 3.x with faiss-cpu: FAISS HNSW per sealed segment, M 16, which
        # dense() searches with SEARCH_EF; HNSW-like on a server); inner product on normalized vectors.
        index.add_index("vec", index_type="AUTOINDEX", metric_type="IP")
        # k1 and b as FTS5 uses them (Milvus Lite would take k1 1.5), so the lexical side differs from the embedded
        # store's only in its IDF formula and per-segment statistics (on the seed questions it changed nothing).
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                        params={"bm25_k1": 1.2, "bm25_b": 0.75})
        self._create_collection("chunks", chunks, index)

        docs = c.create_schema(auto_id=False)
        docs.add_field("doc_id", DataType.VARCHAR, is_primary=True, max_length=_limit("doc_id"))
        for name in ("title", "source", "url", "author", "path", "pages"):
            docs.add_field(name, DataType.VARCHAR, max_length=_limit(name))
        for name in ("date", "content_hash", "added_at"):
            docs.add_field(name, DataType.VARCHAR, max_length=_limit(name))
        docs.add_field("day", DataType.VARCHAR, max_length=_limit("day"))
        for name in ("chunks", "chars", "parts"):
            docs.add_field(name, DataType.INT64)
        docs.add_field("pad", DataType.FLOAT_VECTOR, dim=len(_PAD))
        self._create_collection("documents", docs, self._pad_index())

        texts = c.create_schema(auto_id=False)
        texts.add_field("key", DataType.VARCHAR, is_primary=True, max_length=2048)
        texts.add_field("doc_id", DataType.VARCHAR, max_length=_limit("doc_id"))
        texts.add_field("content_hash", DataType.VARCHAR, max_length=_limit("content_hash"))
        texts.add_field("part", DataType.INT64)
        texts.add_field("text", DataType.VARCHAR, max_length=_limit("text"))
        texts.add_field("pad", DataType.FLOAT_VECTOR, dim=len(_PAD))
        self._create_collection("texts", texts, self._pad_index())

        meta_schema = c.create_schema(auto_id=False)
        meta_schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=256)
        meta_schema.add_field("value", DataType.VARCHAR, max_length=VARCHAR_MAX)
        meta_schema.add_field("pad", DataType.FLOAT_VECTOR, dim=len(_PAD))
        self._create_collection("meta", meta_schema, self._pad_index())
        self._loaded = False
        self._load()
        if not replace:
            found = self._meta_value("settings")
            if found is not None:  # another writer created the index first: its settings stand
                self.meta = json.loads(found)
                return
        stored = {**meta, "created_at": utc_now()}
        c.upsert(self.names["meta"], [{"key": "settings", "value": json.dumps(stored), "pad": _PAD},
                                      {"key": "stamp", "value": uuid.uuid4().hex, "pad": _PAD}])
        self.meta = stored

    def _create_collection(self, key: str, schema, index) -> None:
        """Create one collection unless it is there; a writer that created it at the same moment is no error."""
        name = self.names[key]
        if self.client.has_collection(name):
            return
        try:
            self.client.create_collection(name, schema=schema, index_params=index, consistency_level=CONSISTENCY)
        except Exception:
            if not self.client.has_collection(name):
                raise

    def _pad_index(self):
        index = self.client.prepare_index_params()
        index.add_index("pad", index_type="AUTOINDEX", metric_type="IP")
        return index

    def drop(self) -> None:
        """Remove every collection of this index, of every generation; it is generation 0 again, with nothing."""
        for generation in self._generations():
            self._drop_names(collection_names(self.prefix, generation))
        if self.client.has_collection(self.pointer):
            self.client.drop_collection(self.pointer)
        self.generation, self.names = 0, collection_names(self.prefix, 0)
        self._loaded = self._pointer_loaded = False
        self._doc_cache = None

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # already closed
            pass

    # --- small helpers ---------------------------------------------------------------------------------------------
    def _meta_value(self, key: str) -> str | None:
        rows = self.client.query(self.names["meta"], filter=f"key == {_lit(key)}", output_fields=["value"],
                                 consistency_level=CONSISTENCY)
        return rows[0]["value"] if rows else None

    def _query(self, collection: str, expr: str, fields: list[str]) -> list[dict]:
        return list(self.client.query(self.names[collection], filter=expr, output_fields=fields,
                                      consistency_level=CONSISTENCY))

    def _scan(self, collection: str, fields: list[str], expr: str = "") -> Iterator[dict]:
        """Every row of a collection (matching ``expr``), page by page."""
        it = self.client.query_iterator(self.names[collection], batch_size=PAGE, filter=expr, output_fields=fields,
                                        consistency_level=CONSISTENCY)
        try:
            while True:
                try:
                    rows = it.next()
                except Exception as e:
                    if _unreachable(e):
                        raise self.unreachable(e) from e
                    raise
                if not rows:
                    break
                yield from rows
        finally:
            try:
                it.close()
            except Exception:  # the server gone meanwhile: the error above says so
                pass

    def _current_hashes(self, doc_ids) -> dict[str, str]:
        """Doc id → the content hash its document row names (the version readers may see)."""
        found: dict[str, str] = {}
        for part in batched(sorted(set(doc_ids)), IN_BATCH):
            for row in self._query("documents", _in("doc_id", part), ["doc_id", "content_hash"]):
                found[row["doc_id"]] = row["content_hash"]
        return found

    def _visible(self, rows: list[dict]) -> list[dict]:
        """The rows (chunks or text parts) of the version of their article that its document row names."""
        current = self._current_hashes(r["doc_id"] for r in rows)
        return [r for r in rows if current.get(r["doc_id"]) == r["content_hash"]]

    @staticmethod
    def _scope_expr(scope) -> str:
        """A filter on chunk rows for a qa.scope.Scope ('' when it filters nothing)."""
        if not scope:
            return ""
        terms = []
        if scope.since or scope.until:
            terms.append('day != ""')
        if scope.since:
            terms.append(f"day >= {_lit(scope.since)}")
        if scope.until:
            terms.append(f"day <= {_lit(scope.until)}")
        if scope.sources:
            terms.append(_in("source_key", [source_key(s) for s in scope.sources]))
        if scope.doc_ids:
            terms.append(_in("doc_id", scope.doc_ids))
        return " and ".join(terms)

    # --- writes ----------------------------------------------------------------------------------------------------
    def apply(self, upserts: list[Upsert], deletes: list[str], *, added_at: dict[str, str] | None = None,
              exclusive: Callable[[], ContextManager] = nullcontext) -> int:
        # Every row is built and checked first: a field too long for Milvus is refused with nothing written.
        rows = self._rows(upserts)
        for _ in range(3):
            if self.client._follow:
                self._resolve()  # another process's rebuild may have switched generations since the last write
            try:
                return self._write_rows(upserts, deletes, *rows, added_at)
            except _GenerationMoved:
                continue  # its collections were dropped midway: the whole write again, in the live generation
        raise MilvusUnavailable(f"Milvus at {self.url}: rebuilds kept replacing the index during this write; try "
                                f"again")

    def _rows(self, upserts: list[Upsert]) -> tuple[list[dict], list[dict], list[dict]]:
        """The chunk, text and document rows of ``upserts`` (document rows without ``added_at``, read when they
        are written). TooLarge, naming the article and the field, for a value longer than its VARCHAR holds."""
        chunk_rows, text_rows, doc_rows = [], [], []
        for p in upserts:
            a = p.article
            doc = {
                "doc_id": a.doc_id, "title": a.title, "source": a.source, "url": a.url, "author": a.author,
                "path": a.path, "pages": json.dumps(a.pages or []), "date": a.date, "day": a.date[:10],
                "content_hash": p.content_hash, "chunks": len(p.spans), "chars": len(a.text), "pad": _PAD,
            }
            _check_lengths(a.doc_id, doc)
            chunks = []
            for (chunk_no, start, end), (title, meta, _), h, vec in zip(p.spans, p.fts_rows, p.hashes, p.vectors):
                body = a.text[start:end]
                chunks.append({
                    "id": chunk_id(a.doc_id, p.content_hash, chunk_no), "doc_id": a.doc_id,
                    "content_hash": p.content_hash, "chunk_no": chunk_no, "char_start": start, "char_end": end,
                    "embed_hash": h, "title": a.title, "date": a.date, "day": a.date[:10], "source": a.source,
                    "source_key": source_key(a.source), "body": body,
                    "lexical": analyzed("\n".join(x for x in (title, meta, body) if x)),
                    "vec": np.asarray(vec, dtype=np.float32).tolist(),
                })
                _check_lengths(a.doc_id, chunks[-1])
            parts = [a.text[i:i + TEXT_PART_CHARS] for i in range(0, len(a.text), TEXT_PART_CHARS)] or [""]
            for no, text in enumerate(parts):
                text_rows.append({"key": f"{a.doc_id}\x1f{p.content_hash}\x1f{no}", "doc_id": a.doc_id,
                                  "content_hash": p.content_hash, "part": no, "text": text, "pad": _PAD})
            doc["parts"] = len(parts)
            chunk_rows += chunks
            doc_rows.append(doc)
        return chunk_rows, text_rows, doc_rows

    def _write_rows(self, upserts: list[Upsert], deletes: list[str], chunk_rows: list[dict], text_rows: list[dict],
                    doc_rows: list[dict], added_at: dict[str, str] | None) -> int:
        """Write the rows ``_rows`` built and the removals, in the order the module's docstring gives."""
        c, n = self.client, self.names
        # Removals: the document row first (its chunks are hidden from then on), then every other trace.
        for part in batched(list(dict.fromkeys(deletes)), IN_BATCH):
            c.delete(n["documents"], filter=_in("doc_id", part))
            c.delete(n["chunks"], filter=_in("doc_id", part))
            c.delete(n["texts"], filter=_in("doc_id", part))
        written = len(chunk_rows)
        if upserts:
            now = utc_now()
            # A rebuild (``added_at`` given) writes into collections of its own: nothing stored there to replace.
            stored = self._stored([p.article.doc_id for p in upserts]) if added_at is None else {}
            first_added = {d: added for d, (added, _) in stored.items()} if added_at is None else added_at
            for doc in doc_rows:
                doc["added_at"] = first_added.get(doc["doc_id"]) or now
            for rows in batched(chunk_rows, 256):
                c.upsert(n["chunks"], rows)
            for rows in batched(text_rows, 64):
                c.upsert(n["texts"], rows)
            for rows in batched(doc_rows, 256):
                c.upsert(n["documents"], rows)
            # The version each article had when this write began: replaced now that its document row names the
            # new one, so its rows go. Only that version: one another machine wrote meanwhile (the write locks are
            # per machine) may be named by a document row written after this one's, and deleting "every version but
            # mine" left such an article listed with no chunks (two machines updating it at once). Rows no
            # document row names (a write killed midway, the losing side of such a race) are what `qa doctor`
            # sweeps; readers never see them.
            new = {p.article.doc_id: p.content_hash for p in upserts}
            replaced = [(d, h) for d, (_, h) in stored.items() if h and h != new.get(d)]
            for part in batched(replaced, IN_BATCH):
                stale = " or ".join(f"(doc_id == {_lit(d)} and content_hash == {_lit(h)})" for d, h in part)
                c.delete(n["chunks"], filter=stale)
                c.delete(n["texts"], filter=stale)
        c.upsert(n["meta"], [{"key": "stamp", "value": uuid.uuid4().hex, "pad": _PAD}])
        self._unflushed += written
        return written

    def settle(self) -> None:
        """Seal what was written (Milvus' flush) once it is more than ``SETTLE_ROWS`` chunks: unsealed rows are
        searched slowly."""
        if self._unflushed >= SETTLE_ROWS:
            for name in self.names.values():
                self.client.flush(name)
            self._unflushed = 0

    def _stored(self, doc_ids: list[str]) -> dict[str, tuple[str, str]]:
        """For the articles among ``doc_ids`` that are stored: when each was first added, and its version (content
        hash) now."""
        found: dict[str, tuple[str, str]] = {}
        for part in batched(sorted(set(doc_ids)), IN_BATCH):
            found.update((r["doc_id"], (r["added_at"], r["content_hash"])) for r in self._query(
                "documents", _in("doc_id", part), ["doc_id", "added_at", "content_hash"]))
        return found

    def sweep(self) -> int:
        """Delete the chunks and text parts no document row names (what a write killed midway leaves behind);
        returns how many chunks went. Also drops the generations older than the live one that a rebuild killed
        after its switch left (never a newer one: another machine may be building it)."""
        self._resolve()
        for stale in sorted(g for g in self._generations() if g < self.generation):
            self._drop_names(collection_names(self.prefix, stale))
        current = {r["doc_id"]: r["content_hash"] for r in self._scan("documents", ["doc_id", "content_hash"])}
        stale_chunks = [r["id"] for r in self._scan("chunks", ["id", "doc_id", "content_hash"])
                        if current.get(r["doc_id"]) != r["content_hash"]]
        stale_texts = [r["key"] for r in self._scan("texts", ["key", "doc_id", "content_hash"])
                       if current.get(r["doc_id"]) != r["content_hash"]]
        for part in batched(stale_chunks, IN_BATCH):
            self.client.delete(self.names["chunks"], ids=part)
        for part in batched(stale_texts, IN_BATCH):
            self.client.delete(self.names["texts"], ids=part)
        if stale_chunks or stale_texts:
            self.client.upsert(self.names["meta"], [{"key": "stamp", "value": uuid.uuid4().hex, "pad": _PAD}])
        return len(stale_chunks)

    # --- candidates ------------------------------------------------------------------------------------------------
    def dense(self, query_vector: np.ndarray, n: int, scope=None) -> dict[int, float]:
        """Milvus' vector search, the scope as a filter expression (Milvus searches within it, so a narrow scope
        still yields ``n``)."""
        if n <= 0:
            return {}
        hits = self.client.search(
            self.names["chunks"], data=[np.asarray(query_vector, dtype=np.float32).tolist()], anns_field="vec",
            limit=min(int(n), 16_384), filter=self._scope_expr(scope), output_fields=["chunk_no"],
            search_params={"metric_type": "IP", "params": {"ef": max(SEARCH_EF, int(n))}},
            consistency_level=CONSISTENCY)
        return {int(h["id"]): float(h["distance"]) for h in hits[0]}

    def lexical(self, query: str, limit: int, weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
                scope=None) -> list[tuple[int, float]]:
        """Milvus' BM25 over title, metadata and body together (one field, so ``weights`` do not apply), for the
        question's content words, with FTS5's IDF (``fts5_idf_factor``): each word whose two IDFs differ is
        searched on its own (all in one call, one query per word) and its scores are scaled by FTS5's IDF over
        Milvus' before they are summed, so the lexical side ranks as the embedded store's does; the other words
        are one query, as Milvus scores them. Milvus Lite reports BM25 as a negative distance, a server as a
        positive score: the magnitude is the score either way."""
        words = list(dict.fromkeys(analyzed(" ".join(query_terms(query)[:64])).split()))
        if not words or limit <= 0:
            return []
        factors = self._idf_factors(words)
        if not factors:
            return []  # no chunk holds any of the words
        same = [w for w, f in factors.items() if f >= 1 - IDF_TOLERANCE]
        queries = ([(" ".join(same), 1.0)] if same else []) + [(w, f) for w, f in factors.items() if w not in same]
        depth = int(limit) if len(queries) == 1 else max(int(limit), WORD_DEPTH)
        hits = self._bm25([q for q, _ in queries], depth, self._scope_expr(scope))
        scores: dict[int, float] = {}
        for (_, factor), found in zip(queries, hits):
            for h in found:
                scores[int(h["id"])] = scores.get(int(h["id"]), 0.0) + factor * abs(float(h["distance"]))
        return sorted(scores.items(), key=lambda kv: -kv[1])[:limit]

    def _bm25(self, queries: list[str], limit: int, expr: str = ""):
        """Milvus' BM25 hits of each query (one search call), best first."""
        return self.client.search(
            self.names["chunks"], data=queries, anns_field="sparse", limit=min(int(limit), 16_384), filter=expr,
            output_fields=["chunk_no"], search_params={"metric_type": "BM25"}, consistency_level=CONSISTENCY)

    def _idf_factors(self, words: list[str]) -> dict[str, float]:
        """Word → FTS5's IDF over Milvus', from the rows of the collection and the rows holding the word: the
        length of the word's own BM25 list read ``WORD_DEPTH`` deep (one search call for the words not counted
        since the last write). Exact for words in fewer rows than that, so on every collection of up to
        ``WORD_DEPTH`` chunks; a word in more rows is counted as in ``WORD_DEPTH``, which keeps more of its weight
        than FTS5 gives it (at most Milvus' own), a difference that matters only for words in a large share of
        the chunks. (Counting with Milvus' TEXT_MATCH instead cost Milvus Lite about a second a word on BBC
        News' 5,906 chunks.) Words no row holds are left out."""
        stamp = self.stamp()
        with self._cache_lock:
            cached_stamp, rows, counts = self._term_cache
        if rows is None or cached_stamp != stamp:
            rows, counts = int(self._query("chunks", "", ["count(*)"])[0]["count(*)"]), {}
        todo = [w for w in words if w not in counts]
        if todo:
            for word, found in zip(todo, self._bm25(todo, WORD_DEPTH)):
                counts[word] = len(found)
        with self._cache_lock:
            self._term_cache = (stamp, rows, counts)
        return {w: fts5_idf_factor(rows, counts[w]) for w in words if counts[w]}

    def cosines(self, query_vector: np.ndarray, ids: list[int]) -> dict[int, float]:
        q = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        out: dict[int, float] = {}
        for part in batched(list(ids), IN_BATCH):
            for row in self._query("chunks", _in("id", part), ["id", "vec"]):
                out[int(row["id"])] = float(np.dot(np.asarray(row["vec"], dtype=np.float32), q))
        return out

    # --- rows ------------------------------------------------------------------------------------------------------
    def chunk_rows(self, ids: list[int], *, text: bool = True) -> dict[int, dict]:
        fields = _CHUNK_FIELDS + (["body"] if text else [])
        rows: list[dict] = []
        for part in batched(list(ids), IN_BATCH):
            rows += self._query("chunks", _in("id", part), fields)
        out = {}
        for r in self._visible(rows):
            row = {"id": int(r["id"]), "doc_id": r["doc_id"], "chunk_no": int(r["chunk_no"]),
                   "start": int(r["char_start"]), "end": int(r["char_end"]), "title": r["title"], "date": r["date"],
                   "source": r["source"]}
            if text:
                row["text"] = r["body"]
            out[row["id"]] = row
        return out

    def chunk_texts(self, ids: list[int]) -> dict[int, str]:
        return {i: r["text"] for i, r in self.chunk_rows(ids).items()}

    def all_chunk_texts(self) -> Iterator[str]:
        current = {r["doc_id"]: r["content_hash"] for r in self._scan("documents", ["doc_id", "content_hash"])}
        for r in self._scan("chunks", ["doc_id", "content_hash", "body"]):
            if current.get(r["doc_id"]) == r["content_hash"]:
                yield r["body"]

    def page_starts(self, doc_ids: list[str] | None = None) -> dict[str, list[int]]:
        if doc_ids is None:
            rows = list(self._scan("documents", ["doc_id", "pages"]))
        else:
            rows = []
            for part in batched(list(doc_ids), IN_BATCH):
                rows += self._query("documents", _in("doc_id", part), ["doc_id", "pages"])
        found = {r["doc_id"]: json.loads(r["pages"] or "[]") for r in rows}
        return {d: p for d, p in found.items() if p}

    def vectors_by_hash(self, hashes: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for part in batched(sorted(set(hashes)), IN_BATCH):
            # The matching rows first, then the vectors of those alone: a first write asks an empty collection,
            # and Milvus Lite 2.5's server fails a vector read there ("Growing segment loss raw data").
            matched = {int(r["id"]): r["embed_hash"] for r in self._query("chunks", _in("embed_hash", part),
                                                                          ["id", "embed_hash"])}
            for ids in batched(sorted(matched), IN_BATCH):
                for row in self._query("chunks", _in("id", ids), ["id", "vec"]):
                    found[matched[int(row["id"])]] = np.asarray(row["vec"], dtype=np.float32).tobytes()
        return found

    # --- documents -------------------------------------------------------------------------------------------------
    _DOC_FIELDS = ["doc_id", "title", "date", "source", "url", "author", "path", "added_at", "content_hash", "chunks",
                   "chars", "parts", "pages"]

    def documents(self, *, search: str = "", sort: str = "date", descending: bool = True, limit: int | None = None,
                  offset: int = 0) -> list[DocumentInfo]:
        # The same listing as SQLite's (store.Store.documents), done here: Milvus has no LIKE over three fields
        # nor ORDER BY; document rows are small, and one scan is what a listing costs on either backend.
        docs = self._listed(search)
        keys = {"date": lambda d: d.date, "title": lambda d: (d.title or d.doc_id).lower(),
                "source": lambda d: d.source.lower(), "chunks": lambda d: d.chunks, "added": lambda d: d.added_at}
        if sort not in keys:
            raise ValueError(f"cannot sort articles by {sort!r}")
        docs.sort(key=lambda d: (keys[sort](d), d.doc_id), reverse=descending)
        if sort == "date":
            docs.sort(key=lambda d: d.date == "")  # undated last whichever the direction (stable)
        return docs[offset:] if limit is None else docs[offset:offset + limit]

    def count_documents(self, *, search: str = "") -> int:
        return len(self._listed(search))

    def _listed(self, search: str) -> list[DocumentInfo]:
        """Articles whose title, source or id contains ``search`` (any case; all when it is blank)."""
        needle = " ".join((search or "").split()).lower()
        docs = [DocumentInfo(r["doc_id"], r["title"], r["date"], r["source"], r["url"], int(r["chunks"]),
                             int(r["chars"]), r["added_at"]) for r in self._scan("documents", self._DOC_FIELDS)]
        if needle:
            docs = [d for d in docs if needle in d.title.lower() or needle in d.source.lower()
                    or needle in d.doc_id.lower()]
        return docs

    def _text(self, doc_id: str, content_hash: str, parts: int) -> str | None:
        rows = self._query("texts", f"doc_id == {_lit(doc_id)} and content_hash == {_lit(content_hash)}",
                           ["part", "text"])
        if len(rows) != parts:
            return None
        return "".join(r["text"] for r in sorted(rows, key=lambda r: r["part"]))

    def document(self, doc_id: str) -> dict | None:
        for _ in range(3):  # an article replaced between the two reads: read its new version
            rows = self._query("documents", f"doc_id == {_lit(doc_id)}", self._DOC_FIELDS)
            if not rows:
                return None
            r = rows[0]
            text = self._text(doc_id, r["content_hash"], int(r["parts"]))
            if text is not None:
                return {"doc_id": r["doc_id"], "title": r["title"], "date": r["date"], "source": r["source"],
                        "url": r["url"], "author": r["author"], "path": r["path"], "text": text,
                        "added_at": r["added_at"]}
        return None

    def chunk_spans(self, doc_id: str) -> list[tuple[int, int, int]]:
        rows = self._visible(self._query("chunks", f"doc_id == {_lit(doc_id)}",
                                         ["doc_id", "content_hash", "chunk_no", "char_start", "char_end"]))
        return sorted((int(r["chunk_no"]), int(r["char_start"]), int(r["char_end"])) for r in rows)

    def content_hash(self, doc_id: str) -> str | None:
        return self._current_hashes([doc_id]).get(doc_id)

    def document_paths(self) -> dict[str, str]:
        return {r["doc_id"]: r["path"] for r in self._scan("documents", ["doc_id", "path"])}

    def articles(self) -> list[Article]:
        out = []
        for r in self._scan("documents", self._DOC_FIELDS):
            text = self._text(r["doc_id"], r["content_hash"], int(r["parts"]))
            if text is None:
                continue  # replaced meanwhile: the rebuild reads the articles under the write lock anyway
            out.append(Article(r["doc_id"], text, r["title"], r["date"], r["source"], r["url"], r["author"],
                               r["path"], pages=json.loads(r["pages"] or "[]")))
        return out

    def _doc_summary(self) -> tuple[list[str], str]:
        stamp = self.stamp()
        with self._cache_lock:
            if self._doc_cache is not None and self._doc_cache[0] == stamp:
                return self._doc_cache[1], self._doc_cache[2]
        # One spelling per outlet (the smallest, as SQLite's min() in store.Store.sources), alphabetical by lower case.
        spellings: dict[str, str] = {}
        newest = ""
        for r in self._scan("documents", ["doc_id", "source", "day"]):
            name = r["source"].strip()
            if name:
                key = name.lower()
                spellings[key] = min(spellings.get(key, name), name)
            newest = max(newest, r["day"])
        sources = [spellings[k] for k in sorted(spellings)]
        with self._cache_lock:
            self._doc_cache = (stamp, sources, newest)
        return sources, newest

    def sources(self) -> list[str]:
        return self._doc_summary()[0]

    def newest_date(self) -> str:
        return self._doc_summary()[1]

    # --- state -----------------------------------------------------------------------------------------------------
    def counts(self) -> tuple[int, int]:
        docs = self._query("documents", "", ["count(*)"])[0]["count(*)"]
        chunks = self._query("chunks", "", ["count(*)"])[0]["count(*)"]
        return int(docs), int(chunks)

    def stamp(self):
        return self._meta_value("stamp")

    def describe(self) -> str:
        kind = "Milvus Lite" if self.url.startswith("milvus://") else "Milvus"
        return f"{kind} (AUTOINDEX, inner product; BM25 function scaled to FTS5's IDF; consistency {CONSISTENCY})"
