"""The FAISS side: every index kind adds, removes, searches, saves and loads; the kind follows the size.

Thresholds are set small through ``IndexPolicy`` so each kind is reached with a few hundred vectors."""

from __future__ import annotations

import numpy as np
import pytest

import qa.vectors as vectors_module
from qa.records import Article
from qa.vectors import IndexPolicy, VectorIndex, faiss_path

DIM = 32
# flat up to 50 vectors, sq8 up to 200, IVF above; IVF queries scan every cell so results are exact to test.
SMALL = IndexPolicy(flat_max=50, sq8_max=200, ivf_probe_fraction=1.0, ivf_min_nprobe=1)
SIZES = {"flat": 40, "sq8": 150, "ivf": 400}


def clustered(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    """Unit vectors in a dozen clusters, so neighbours mean something (unlike uniform random vectors)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, dim))
    x = centres[rng.integers(0, 12, size=n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def filled(kind: str, seed: int = 0) -> tuple[VectorIndex, np.ndarray, np.ndarray]:
    n = SIZES[kind]
    ids = np.arange(1000, 1000 + n, dtype=np.int64)
    vecs = clustered(n, seed)
    index = VectorIndex(DIM, policy=SMALL)
    index.add(ids, vecs)
    return index, ids, vecs


def test_the_policy_picks_flat_then_sq8_then_ivf_as_the_collection_grows():
    assert [SMALL.kind_for(n) for n in (0, 50, 51, 200, 201, 10**6)] == ["flat", "flat", "sq8", "sq8", "ivf", "ivf"]


def test_the_default_policy_keeps_small_collections_exact_and_uses_an_ivf_at_a_million():
    policy = IndexPolicy()
    assert policy.kind_for(10_000) == "flat"
    assert policy.kind_for(1_000_000) == "ivf"
    nlist = policy.nlist_for(1_000_000)
    assert 256 <= nlist <= 4096 and 1 < policy.nprobe_for(nlist) < nlist


@pytest.mark.parametrize("kind", ["flat", "sq8", "ivf"])
def test_the_first_fill_decides_the_kind_and_each_stored_vector_finds_itself(kind):
    index, ids, vecs = filled(kind)
    assert index.kind == kind
    assert index.size == len(ids)
    for row in (0, len(ids) // 2, len(ids) - 1):
        best_id, score = index.search(vecs[row], 3)[0]
        assert best_id == ids[row]
        assert score == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("kind", ["flat", "sq8", "ivf"])
def test_removed_ids_never_come_back_and_the_rest_still_do(kind):
    index, ids, vecs = filled(kind)
    gone = ids[::3]
    index.remove(gone.tolist())
    assert index.size == len(ids) - len(gone)
    found = {i for row in range(len(ids)) for i, _ in index.search(vecs[row], 10)}
    assert not found & set(gone.tolist())
    kept = [row for row in range(len(ids)) if row % 3]
    assert all(index.search(vecs[row], 1)[0][0] == ids[row] for row in kept[:20])


@pytest.mark.parametrize("kind", ["flat", "sq8", "ivf"])
def test_incremental_adds_keep_the_kind_and_are_found_at_once(kind):
    index, ids, _ = filled(kind)
    more = clustered(5, seed=7)
    index.add(np.arange(5000, 5005, dtype=np.int64), more)
    assert index.kind == kind
    assert [index.search(v, 1)[0][0] for v in more] == list(range(5000, 5005))


@pytest.mark.parametrize("kind", ["flat", "sq8", "ivf"])
def test_a_saved_index_loads_as_the_same_kind_with_the_same_results(kind, tmp_path):
    index, ids, vecs = filled(kind)
    index.remove([int(ids[0])])
    index.save(tmp_path, 3)

    class Generation3:
        """A store at generation 3 holding the chunks the saved index holds."""

        def generation(self):
            return 3

        def chunk_ids(self):
            return ids[1:]

    loaded = VectorIndex.load(Generation3(), tmp_path, DIM, SMALL)
    assert loaded.kind == kind
    assert loaded.describe() == index.describe()
    assert loaded.size == index.size
    for row in (1, len(ids) - 1):
        assert loaded.search(vecs[row], 5) == index.search(vecs[row], 5)
    loaded.add(np.array([9000], dtype=np.int64), vecs[:1])
    assert loaded.search(vecs[0], 1)[0][0] == 9000
    assert sorted(loaded.ids().tolist()) == sorted([*ids[1:].tolist(), 9000])


@pytest.mark.parametrize("kind", ["flat", "sq8", "ivf"])
def test_every_kind_gives_back_a_stored_vector_by_id(kind):
    index, ids, vecs = filled(kind)
    assert np.allclose(index.index.reconstruct(int(ids[7])), vecs[7], atol=0.02)


def test_an_ivf_reports_its_cells_and_probes():
    index, _, _ = filled("ivf")
    assert index.describe().startswith("ivf (nlist ")
    assert "nprobe" in index.describe() and "sq8" in index.describe()


def test_an_index_is_outgrown_only_well_past_a_threshold():
    index, _, _ = filled("flat")  # 40 vectors, flat up to 50
    index.add(np.arange(2000, 2014, dtype=np.int64), clustered(14, seed=3))  # 54: within the 10% margin
    assert not index.outgrown
    index.add(np.arange(3000, 3010, dtype=np.int64), clustered(10, seed=4))  # 64
    assert index.outgrown
    shrunk, ids, _ = filled("sq8")
    shrunk.remove(ids[:120].tolist())  # 30 left in an SQ8 index
    assert shrunk.outgrown


class VectorTable:
    """The two store methods ``rebuild_from`` reads: a count and the vectors in blocks."""

    def __init__(self, ids, vecs):
        self.ids, self.vecs = ids, vecs

    def counts(self):
        return 0, len(self.ids)

    def all_vectors(self, dim, batch=64):
        for i in range(0, len(self.ids), batch):
            yield self.ids[i : i + batch], self.vecs[i : i + batch]


@pytest.mark.parametrize("kind", ["flat", "sq8", "ivf"])
def test_a_rebuild_from_the_stored_vectors_chooses_the_kind_by_their_number(kind):
    n = SIZES[kind]
    ids, vecs = np.arange(1, n + 1, dtype=np.int64), clustered(n, seed=5)
    index = VectorIndex.rebuild_from(VectorTable(ids, vecs), DIM, SMALL)
    assert index.kind == kind and index.size == n
    assert index.search(vecs[n // 3], 1)[0][0] == ids[n // 3]


def _article(i: int) -> Article:
    words = " ".join(f"w{i}x{j}" for j in range(12))
    return Article(doc_id=f"doc-{i:03d}", text=f"Story {i} says {words}.", title=f"Story {i}")


def test_a_news_index_switches_kind_as_articles_arrive_and_leave(fake_index, monkeypatch):
    monkeypatch.setattr(vectors_module, "DEFAULT_POLICY", IndexPolicy(flat_max=5, sq8_max=20, ivf_min_nlist=2))
    fake_index.add([_article(i) for i in range(3)])
    assert fake_index.stats()["vector_index"] == "flat"
    for i in range(3, 12):
        fake_index.add([_article(i)])
    assert fake_index.stats()["vector_index"] == "sq8"
    fake_index.add([_article(i) for i in range(12, 40)])
    assert fake_index.stats()["vector_index"].startswith("ivf")
    assert fake_index.search("Story 17 says w17x3", k=1)[0].doc_id == "doc-017"
    for i in range(0, 36):
        fake_index.remove(f"doc-{i:03d}")
    stats = fake_index.stats()
    assert (stats["chunks"], stats["vector_index"]) == (4, "flat")
    assert {p.doc_id for p in fake_index.search("Story 38 says w38x1", k=4)} == {f"doc-{i:03d}" for i in range(36, 40)}


def test_a_reopened_index_reports_the_kind_saved_with_it(fake_index, monkeypatch):
    monkeypatch.setattr(vectors_module, "DEFAULT_POLICY", IndexPolicy(flat_max=5, sq8_max=100))
    fake_index.add([_article(i) for i in range(10)])
    kind = fake_index.stats()["vector_index"]
    gen_dir = fake_index.live().gen_dir
    assert kind == "sq8"
    assert faiss_path(gen_dir, fake_index.live().generation).exists()
    fake_index.close()
    monkeypatch.setattr(vectors_module, "DEFAULT_POLICY", IndexPolicy())
    from qa.index import NewsIndex

    reopened = NewsIndex(fake_index.settings, embedder=fake_index.embedder)
    try:
        assert reopened.stats()["vector_index"] == "sq8"
    finally:
        reopened.close()
