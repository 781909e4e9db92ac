"""Where an index is stored, chosen by ``QA_STORE`` (``Settings.store``):

- ``embedded`` (the default): SQLite + FAISS generations in ``QA_INDEX_DIR`` (``sqlite_faiss``);
- ``milvus:///path/to/file.db``: Milvus Lite, one local file (``milvus``);
- ``http://host:19530`` (or ``https://``): a Milvus Standalone or Distributed server, with the same code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .base import Backend, Upsert

EMBEDDED = "embedded"
SCHEMES = ("milvus://", "http://", "https://")


def check_store(url: str) -> str:
    """``url`` if it names a store this version knows; ValueError naming the accepted forms otherwise."""
    url = (url or "").strip()
    if url == EMBEDDED:
        return url
    if url.startswith("milvus://") and len(url) > len("milvus://"):
        return url
    if url.startswith(("http://", "https://")) and len(url.split("://", 1)[1].strip("/")) > 0:
        return url
    raise ValueError(f"QA_STORE must be {EMBEDDED!r}, milvus:///path/to/file.db or http://host:19530, not {url!r}")


def is_embedded(url: str) -> bool:
    """Is ``url`` the embedded SQLite + FAISS store (whose generations ``NewsIndex`` keeps in the index folder)?"""
    return check_store(url) == EMBEDDED


def open_backend(url: str, *, gen_dir: Path | None = None, check: Callable[[dict], None] | None = None,
                 bm25_memory: int = 0) -> Backend:
    """The backend ``url`` names. The embedded one is opened on the generation folder ``gen_dir`` (``NewsIndex``
    chooses it and checks its database first), ``check(meta)`` called on its stored settings before the FAISS cache
    is loaded, its BM25 held in memory up to ``bm25_memory`` chunks; a Milvus one connects to the file or server (its collections need not exist yet:
    ``MilvusBackend.exists``)."""
    url = check_store(url)
    if url == EMBEDDED:
        from ..store import DB_NAME, Store
        from ..vectors import VectorIndex
        from .sqlite_faiss import SqliteFaissBackend

        if gen_dir is None:
            raise ValueError("the embedded store is opened on a generation folder")
        store = Store(Path(gen_dir) / DB_NAME)
        try:
            meta = store.meta()
            if check is not None:
                check(meta)
            vectors = VectorIndex.load(store, Path(gen_dir), int(meta["dim"]))
        except BaseException:
            store.close()
            raise
        return SqliteFaissBackend(Path(gen_dir), store, vectors, int(meta.get("generation", 0)), meta, bm25_memory)
    from .milvus import MilvusBackend

    return MilvusBackend(url)


__all__ = ["Backend", "Upsert", "EMBEDDED", "check_store", "is_embedded", "open_backend"]
