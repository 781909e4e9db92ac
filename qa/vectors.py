"""The FAISS side of the index: inner-product search over normalized chunk vectors, keyed by chunk id.

The file on disk is a cache of the vectors held in SQLite. Its name carries the database generation it matches,
so a crash between the database commit and the file write is noticed at the next open and the cache is rebuilt.
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

from .store import Store, fsync_dir

# One thread per query: for a single query FAISS's default OpenMP threads make flat search slower, not faster.
faiss.omp_set_num_threads(1)


def faiss_path(gen_dir: Path, generation: int) -> Path:
    return gen_dir / f"vectors-{generation:08d}.faiss"


class VectorIndex:
    """Exact inner-product search with ids, supporting incremental add and remove."""

    def __init__(self, dim: int, index: faiss.Index | None = None):
        self.dim = dim
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids) -> None:
        ids = np.asarray(list(ids), dtype=np.int64)
        if len(ids):
            self.index.remove_ids(ids)

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Best ``k`` chunk ids for one normalized query vector, with cosine similarities."""
        if self.size == 0 or k <= 0:
            return []
        scores, ids = self.index.search(np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), min(k, self.size))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def save(self, gen_dir: Path, generation: int, *, keep_older: bool = False) -> Path:
        """Write the cache for this generation atomically (and, unless told to keep them, drop older ones)."""
        path = faiss_path(gen_dir, generation)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        faiss.write_index(self.index, str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(gen_dir)
        if not keep_older:
            self.drop_older(gen_dir, generation)
        return path

    @staticmethod
    def drop_older(gen_dir: Path, generation: int) -> None:
        """Delete cache files of generations before ``generation``."""
        for old in gen_dir.glob("vectors-*.faiss"):
            stamp = old.stem.split("-")[-1]
            if stamp.isdigit() and int(stamp) < generation:
                old.unlink(missing_ok=True)

    @classmethod
    def rebuild_from(cls, store: Store, dim: int) -> "VectorIndex":
        """A fresh in-memory index from the vectors stored in SQLite."""
        vectors = cls(dim)
        for ids, mat in store.all_vectors(dim):
            vectors.add(ids, mat)
        return vectors

    @classmethod
    def load(cls, store: Store, gen_dir: Path, dim: int) -> "VectorIndex":
        """The cache for the store's current generation, rebuilt from SQLite when missing or stale."""
        generation = store.generation()
        path = faiss_path(gen_dir, generation)
        if path.exists():
            try:
                index = faiss.read_index(str(path))
                if index.d == dim:
                    return cls(dim, index)
            except RuntimeError:
                pass  # unreadable cache: rebuild it from the database below
        vectors = cls.rebuild_from(store, dim)
        try:
            vectors.save(gen_dir, generation)
        except OSError:
            pass  # a read-only index still answers from memory
        return vectors
