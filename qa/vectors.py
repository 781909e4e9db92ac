"""The FAISS side of the index: inner-product search over normalized chunk vectors, keyed by chunk id.

The file on disk is a cache of the vectors held in SQLite. Its name carries the database generation it matches,
so a crash between the database commit and the file write is noticed at the next open and the cache is rebuilt.
The number is not proof enough (a write whose COMMIT failed leaves a file for a generation that comes later with
other content), so a cache is also trusted only if it holds exactly the database's chunk ids (``ids_stamp``).

The kind of FAISS index follows the number of vectors (see ``IndexPolicy``):

- ``flat``: exact search over float32 vectors, for small collections where a scan costs well under a millisecond
  per thousand vectors;
- ``sq8``: the same exhaustive scan over 8-bit scalar-quantized codes, a quarter of the memory and about twice
  as fast, at a recall@10 of about 0.99;
- ``ivf``: an inverted file over SQ8 codes: k-means cells, and a query scans only the ``nprobe`` nearest cells.

Every kind supports adding and removing ids in place (FAISS's IVF removes ids natively, so no tombstones are
needed, unlike HNSW), and the kind travels inside the saved file, so a reopened index reports what it is.
"""

from __future__ import annotations

import hashlib
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from .store import Store, fsync_dir

# One thread per query: for a single query FAISS's default OpenMP threads make flat search slower, not faster.
faiss.omp_set_num_threads(1)

KINDS = ("flat", "sq8", "ivf")


@dataclass(frozen=True)
class IndexPolicy:
    """Which kind of FAISS index a collection of ``n`` vectors gets.

    The defaults follow ``python -m bench scale`` (2 cores, one thread per query): an exact scan costs about
    0.1 ms per thousand vectors, so below ``flat_max`` it stays under about 5 ms; the SQ8 scan is about twice as
    fast at recall@10 ≈ 0.97–0.99, so up to ``sq8_max`` it stays near 10 ms; above that only an IVF keeps a
    query at a few milliseconds (at 1M, exact takes 66 ms and SQ8 36 ms). ``hysteresis`` keeps an index that
    hovers around a threshold from being rebuilt back and forth."""

    flat_max: int = 50_000
    sq8_max: int = 250_000
    # Cells: about sqrt(n), a power of two, and at most ``ivf_max_nlist`` so training stays a matter of seconds.
    ivf_min_nlist: int = 4
    ivf_max_nlist: int = 4096
    # Scan 1/8 of the cells. At 1M vectors synthesized from real MiniLM chunk embeddings (docs/performance.md,
    # scale): nprobe 64 of 1,024 gave recall@10 0.957 at 3.4 ms, 128 gave 0.974 at 5.9 ms; the margin is worth
    # the 3 ms against the 0.95 target.
    ivf_probe_fraction: float = 1 / 8
    ivf_min_nprobe: int = 8
    # k-means needs a few dozen points per cell; more only slows training down.
    train_points_per_cell: int = 64
    hysteresis: float = 0.1

    def kind_for(self, n: int) -> str:
        """The kind of index for ``n`` vectors."""
        if n <= self.flat_max:
            return "flat"
        if n <= self.sq8_max:
            return "sq8"
        return "ivf"

    def nlist_for(self, n: int) -> int:
        """Number of IVF cells for ``n`` vectors."""
        nlist = 2 ** round(math.log2(max(1.0, math.sqrt(n))))
        return int(min(self.ivf_max_nlist, max(self.ivf_min_nlist, nlist)))

    def nprobe_for(self, nlist: int) -> int:
        """Number of cells a query scans."""
        return int(min(nlist, max(self.ivf_min_nprobe, round(nlist * self.ivf_probe_fraction))))

    def outgrown(self, kind: str, n: int, nlist: int = 0) -> bool:
        """Has an index of ``kind`` holding ``n`` vectors (with ``nlist`` cells if an IVF) left its range by more
        than the hysteresis, so that it should be rebuilt from the stored vectors?"""
        low = self.kind_for(int(n * (1 - self.hysteresis)))
        high = self.kind_for(int(n * (1 + self.hysteresis)))
        if KINDS.index(low) > KINDS.index(kind) or KINDS.index(high) < KINDS.index(kind):
            return True
        # An IVF that has grown about fourfold since training has cells too crowded for its nprobe: each query
        # would scan ever more codes. Retraining restores the cell size.
        return kind == "ivf" and self.nlist_for(n) >= 2 * nlist


DEFAULT_POLICY = IndexPolicy()


@contextmanager
def _all_threads():
    """Training and bulk adds use every core; single queries go back to one thread afterwards."""
    faiss.omp_set_num_threads(max(1, os.cpu_count() or 1))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(1)


def faiss_path(gen_dir: Path, generation: int) -> Path:
    return gen_dir / f"vectors-{generation:08d}.faiss"


def ids_stamp(ids) -> tuple[int, int, str]:
    """Count, largest id and SHA-1 of the sorted ids: what a FAISS cache and its database must share."""
    ids = np.sort(np.asarray(ids, dtype="<i8"))
    return len(ids), int(ids[-1]) if len(ids) else 0, hashlib.sha1(ids.tobytes()).hexdigest()


def _as_matrix(vectors) -> np.ndarray:
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _sample(vectors: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """At most ``count`` rows, drawn without replacement (k-means on the first rows would see only old articles)."""
    if len(vectors) <= count:
        return vectors
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), size=count, replace=False))
    return vectors[rows]


def new_faiss_index(kind: str, dim: int, training: np.ndarray | None = None,
                    policy: IndexPolicy = DEFAULT_POLICY, expected: int | None = None) -> faiss.Index:
    """An empty FAISS index of ``kind``, trained on ``training`` where the kind needs it (sq8, ivf).
    ``expected`` is the number of vectors it is built for (sets the IVF's cell count)."""
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if training is None or len(training) == 0:
        raise ValueError(f"a {kind} index needs training vectors")
    training = _as_matrix(training)
    if kind == "sq8":
        index = faiss.IndexIDMap2(faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT))
        with _all_threads():
            index.train(training)
        return index
    if kind == "ivf":
        n = max(expected or 0, len(training))
        nlist = min(policy.nlist_for(n), len(training))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        index.own_fields = True
        quantizer.this.disown()  # the IVF owns its quantizer from now on
        index.cp.min_points_per_centroid = 1  # small collections: no warnings, the cells just hold fewer points
        with _all_threads():
            index.train(_sample(training, nlist * policy.train_points_per_cell))
        index.nprobe = policy.nprobe_for(nlist)
        # An id → position table, so ``reconstruct(id)`` works as it does for the other kinds (and removals
        # need not scan every cell).
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        return index
    raise ValueError(f"unknown vector index kind {kind!r} (known: {', '.join(KINDS)})")


def kind_of(index: faiss.Index) -> str:
    """The kind (flat, sq8, ivf) of a FAISS index made by ``new_faiss_index``, read from the object itself."""
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if isinstance(inner, faiss.IndexScalarQuantizer):
        return "sq8"
    if isinstance(inner, faiss.IndexFlat):
        return "flat"
    raise ValueError(f"unexpected FAISS index type {type(index).__name__}")


class VectorIndex:
    """Inner-product search with ids over one of three FAISS index kinds, supporting incremental add and remove.

    The kind is chosen from the number of vectors by ``policy`` when the index is first filled (or rebuilt from
    the store); ``outgrown`` says when growth or shrinkage has taken it out of its kind's range."""

    def __init__(self, dim: int, index: faiss.Index | None = None, policy: IndexPolicy | None = None):
        self.dim = dim
        self.policy = policy or DEFAULT_POLICY
        self.index = index if index is not None else new_faiss_index("flat", dim)

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    @property
    def kind(self) -> str:
        """flat, sq8 or ivf."""
        return kind_of(self.index)

    def describe(self) -> str:
        """The kind with its parameters, as shown by ``qa docs`` and ``/health`` (e.g. ``ivf (nlist 1024, nprobe
        64, sq8)``)."""
        kind = self.kind
        if kind == "ivf":
            ivf = faiss.extract_index_ivf(self.index)
            return f"ivf (nlist {ivf.nlist}, nprobe {ivf.nprobe}, sq8)"
        return kind

    @property
    def outgrown(self) -> bool:
        """Should this index be rebuilt from the stored vectors as another kind (or a retrained IVF)?"""
        kind = self.kind
        nlist = faiss.extract_index_ivf(self.index).nlist if kind == "ivf" else 0
        return self.policy.outgrown(kind, self.size, nlist)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under chunk ids. The first vectors put into an empty index decide its kind, so a large
        rebuild goes straight to the kind that suits its size."""
        if not len(ids):
            return
        vectors = _as_matrix(vectors)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.size == 0:
            kind = self.policy.kind_for(len(ids))
            if kind != self.kind or kind != "flat":
                self.index = new_faiss_index(kind, self.dim, vectors, self.policy, expected=len(ids))
        with _all_threads():
            self.index.add_with_ids(vectors, ids)

    def remove(self, ids) -> None:
        ids = np.asarray(list(ids), dtype=np.int64)
        if len(ids):
            self.index.remove_ids(ids)

    def ids(self) -> np.ndarray:
        """Every id held (a duplicate as often as it is held), in no particular order."""
        if isinstance(self.index, faiss.IndexIDMap):
            return faiss.vector_to_array(self.index.id_map)
        ivf = faiss.extract_index_ivf(self.index)
        parts = [faiss.rev_swig_ptr(ivf.invlists.get_ids(cell), ivf.invlists.list_size(cell)).copy()
                 for cell in range(ivf.nlist) if ivf.invlists.list_size(cell)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Best ``k`` chunk ids for one normalized query vector, with cosine similarities."""
        if self.size == 0 or k <= 0:
            return []
        scores, ids = self.index.search(_as_matrix(query.reshape(1, -1)), min(k, self.size))
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
    def rebuild_from(cls, store: Store, dim: int, policy: IndexPolicy | None = None) -> "VectorIndex":
        """A fresh in-memory index from the vectors stored in SQLite, of the kind their number calls for.

        Quantized kinds are trained on a sample taken across the whole table first, then filled block by block,
        so a million vectors never sit in memory as float32 all at once."""
        policy = policy or DEFAULT_POLICY
        total = store.counts()[1]
        kind = policy.kind_for(total)
        if kind == "flat":
            vectors = cls(dim, policy=policy)
        else:
            wanted = policy.nlist_for(total) * policy.train_points_per_cell if kind == "ivf" else 100_000
            step = max(1, total // max(1, wanted))
            training = np.vstack([mat[::step] for _, mat in store.all_vectors(dim)] or [np.zeros((0, dim), np.float32)])
            vectors = cls(dim, new_faiss_index(kind, dim, training, policy, expected=total), policy=policy)
        for ids, mat in store.all_vectors(dim):
            with _all_threads():
                vectors.index.add_with_ids(_as_matrix(mat), np.ascontiguousarray(ids, dtype=np.int64))
        return vectors

    @classmethod
    def cache_problem(cls, store: Store, gen_dir: Path, dim: int) -> str | None:
        """What is wrong with the FAISS cache of the store's current generation (``qa doctor``), or None."""
        path = faiss_path(gen_dir, store.generation())
        if not path.exists():
            return f"the vector cache {path.name} is missing"
        try:
            index = faiss.read_index(str(path))
        except RuntimeError:
            return f"the vector cache {path.name} cannot be read"
        if index.d != dim:
            return f"the vector cache {path.name} holds {index.d}-dimensional vectors, not {dim}"
        held, stored = ids_stamp(cls(dim, index).ids()), ids_stamp(store.chunk_ids())
        if held != stored:
            return f"the vector cache {path.name} holds {held[0]} vectors for {stored[0]} chunks (or other ids)"
        return None

    @classmethod
    def load(cls, store: Store, gen_dir: Path, dim: int, policy: IndexPolicy | None = None) -> "VectorIndex":
        """The cache for the store's current generation, rebuilt from SQLite when missing, stale or not holding
        exactly the stored chunk ids (a vector under an id SQLite has since given to another chunk would cite the
        wrong article)."""
        generation = store.generation()
        path = faiss_path(gen_dir, generation)
        if path.exists():
            try:
                index = faiss.read_index(str(path))
                if index.d == dim:
                    cached = cls(dim, index, policy=policy)
                    if ids_stamp(cached.ids()) == ids_stamp(store.chunk_ids()):
                        return cached
            except RuntimeError:
                pass  # unreadable cache: rebuild it from the database below
        vectors = cls.rebuild_from(store, dim, policy)
        try:
            vectors.save(gen_dir, generation)
        except OSError:
            pass  # a read-only index still answers from memory
        return vectors

