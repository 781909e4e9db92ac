"""The scale benchmark's synthetic store (bench/scale.py): articles whose chunks are the synthetic vectors in order,
with exact offsets, and a small end-to-end run on the embedded store (exact search there, so recall@10 is 1)."""

import json

import numpy as np
import pytest

from bench import scale


def _real(n=7, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, scale.DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rows = [(f"Title {i}", "Example News" if i % 2 else "", "2024-03-0%d" % (i % 9 + 1),
             f"Chunk {i} says caf\u00e9 prices rose by {i} percent.") for i in range(n)]
    return x, rows


def test_synthetic_articles_follow_the_synthetic_vectors_with_exact_offsets():
    real, rows = _real()
    n = 11  # not a multiple of CHUNKS_PER_ARTICLE: the last article is shorter
    blocks = list(scale.synthetic_blocks(real, n, sources=True))
    vectors = np.vstack([b for _, b, _ in blocks])
    sources = np.concatenate([s for _, _, s in blocks])
    assert np.array_equal(vectors, np.vstack([b for _, b in scale.synthetic_blocks(real, n)]))
    seen = []
    batches = list(scale.synthetic_articles(real, rows, n, batch=2, progress=seen.append))
    assert [len(b) for b in batches] == [2, 2]
    assert seen == [6, 11]
    upserts = [u for b in batches for u in b]
    position = 0
    for no, u in enumerate(upserts):
        assert u.article.doc_id == f"syn-{no:07d}"
        assert len({u.content_hash for u in upserts}) == len(upserts)
        for (chunk_no, start, end), (title, _, body), vec in zip(u.spans, u.fts_rows, u.vectors):
            assert position == int(u.article.doc_id[4:]) * scale.CHUNKS_PER_ARTICLE + chunk_no
            assert u.article.text[start:end] == body == rows[sources[position]][3]
            assert np.array_equal(vec, vectors[position])
            assert title == u.article.title
            position += 1
    assert position == n
    assert len({h for u in upserts for h in u.hashes}) == n


def test_parse_size():
    assert scale.parse_size("100k") == 100_000
    assert scale.parse_size("1M") == 1_000_000
    assert scale.parse_size("3000") == 3000
    for bad in ("", "k", "1.5M", "-3", "0"):
        with pytest.raises(ValueError):
            scale.parse_size(bad)


def test_embedded_store_end_to_end(tmp_path):
    real, rows = _real()
    np.save(tmp_path / "real.npy", real)
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    n = 60
    rng = np.random.default_rng(1)
    queries = real[rng.integers(0, len(real), size=4)]
    np.save(tmp_path / "queries.npy", queries)
    np.save(tmp_path / "truth.npy", scale.exact_top(real, queries, n))
    (tmp_path / "questions.json").write_text(json.dumps(["cafe prices", "Example News on prices", "rose",
                                                         "what rose in March 2024?"]))
    folder = tmp_path / "store"
    folder.mkdir()
    built = scale.child({"step": "build_store", "real": str(tmp_path / "real.npy"), "rows": str(tmp_path / "rows.json"),
                         "n": n, "store": "embedded", "dir": str(folder), "progress": str(tmp_path / "progress")})
    assert built["disk_mb"] > 0
    assert "60 chunks written" in (tmp_path / "progress").read_text()
    served = scale.child({"step": "serve_store", "dir": str(folder), "store": "embedded",
                          "queries": str(tmp_path / "queries.npy"), "truth": str(tmp_path / "truth.npy"),
                          "questions": str(tmp_path / "questions.json")})
    assert served["counts"] == [20, 60]
    assert served["describe"] == "flat"
    assert served["recall10"] == 1.0  # flat: exact, the same top 10 as numpy's
    assert served["dense"]["n"] == served["hybrid"]["n"] == 4
    assert "lexical" in served["hybrid_calls_ms"]
