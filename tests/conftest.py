"""Fixtures: settings pointed at temporary folders, the real model loaded once, a seed index built once."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# FastAPI's TestClient names the host "testserver", which the server refuses unless configured (DNS rebinding);
# tests that keep the TestClient's default host rely on this. tests/test_api.py uses localhost instead.
os.environ.setdefault("QA_ALLOWED_HOSTS", "testserver")

from qa.embedding import load_embedder  # noqa: E402
from qa.index import NewsIndex  # noqa: E402
from qa.ingest import collect  # noqa: E402
from qa.settings import Settings  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"
RETALIATION_DOC = "000_0fdd7e176c3271ac"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """One folder for the exported ONNX model, shared by every index a test session builds."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def embedder(model_cache):
    """The real all-MiniLM-L6-v2, loaded once per session with the default backend."""
    return load_embedder(Settings.from_env(index_dir=model_cache))


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings for a fresh index in a temporary folder."""
    return Settings.from_env(index_dir=tmp_path / "index", seeds_dir=SEEDS)


@pytest.fixture
def index(settings, embedder) -> NewsIndex:
    """An empty index (nothing built yet) with the real model."""
    idx = NewsIndex(settings, embedder=embedder)
    yield idx
    idx.close()


@pytest.fixture(scope="session")
def seed_index_dir(tmp_path_factory, embedder) -> Path:
    """The seed articles indexed once with the real model; tests copy it rather than change it."""
    folder = tmp_path_factory.mktemp("seed-index") / "index"
    idx = NewsIndex(Settings.from_env(index_dir=folder, seeds_dir=SEEDS), embedder=embedder)
    idx.rebuild(collect([SEEDS], max_bytes=idx.settings.max_article_bytes).articles)
    idx.close()
    return folder


@pytest.fixture(scope="session")
def seed_index(seed_index_dir, embedder) -> NewsIndex:
    """The read-only seed index."""
    idx = NewsIndex(Settings.from_env(index_dir=seed_index_dir, seeds_dir=SEEDS), embedder=embedder)
    yield idx
    idx.close()


@pytest.fixture
def seed_copy(seed_index_dir, tmp_path, embedder) -> NewsIndex:
    """A private copy of the seed index that a test may change."""
    folder = tmp_path / "index"
    shutil.copytree(seed_index_dir, folder)
    idx = NewsIndex(Settings.from_env(index_dir=folder, seeds_dir=SEEDS), embedder=embedder)
    yield idx
    idx.close()


class FakeEmbedder:
    """Deterministic bag-of-words vectors: enough to test plumbing without the model. Never used to test
    user-facing quality."""

    dim = 64

    def __init__(self):
        self.calls = 0
        self.texts = 0

    def encode(self, texts, *, batch_size=32, show_progress=False):
        self.calls += 1
        self.texts += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            out[row] /= max(np.linalg.norm(out[row]), 1e-9)
        return out


@pytest.fixture
def fake_index(settings) -> NewsIndex:
    """An index over the fake embedder, for plumbing tests (counts, crashes, concurrency)."""
    idx = NewsIndex(settings, embedder=FakeEmbedder())
    yield idx
    idx.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_after_first_write(proc, index: NewsIndex, timeout: float = 180.0) -> int:
    """Watch ``index`` until the writing process ``proc`` has stored an article, then SIGKILL it; returns how many
    articles were stored then (0 when it ended or the time ran out first). The writer should pause after each
    write, so the 20 ms poll sees the index between its writes."""
    held, deadline = 0, time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline and held == 0:
            held = index.stats()["documents"] if index.exists() else 0
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    return held


# --- the storage backends (QA_STORE): tests that matter run on each --------------------------------------------------
STORES = ("embedded", "milvus")


def store_settings(store: str, folder: Path) -> Settings:
    """Settings for an index in ``folder`` on ``store``: the embedded default, or Milvus Lite in a file there."""
    url = "embedded" if store == "embedded" else f"milvus://{folder}/milvus.db"
    return Settings.from_env(index_dir=folder / "index", seeds_dir=SEEDS, store=url)


@pytest.fixture(scope="session")
def milvus_seed_dir(tmp_path_factory, embedder) -> Path:
    """The seed articles indexed once into Milvus Lite; tests copy its folder rather than change it."""
    folder = tmp_path_factory.mktemp("milvus-seed")
    idx = NewsIndex(store_settings("milvus", folder), embedder=embedder)
    idx.rebuild(collect([SEEDS], max_bytes=idx.settings.max_article_bytes).articles)
    idx.close()
    return folder


@pytest.fixture(params=STORES)
def store_seed_copy(request, seed_index_dir, tmp_path, embedder) -> NewsIndex:
    """A private copy of the seed index on each store (the embedded default, Milvus Lite)."""
    folder = tmp_path / "copy"
    if request.param == "embedded":
        shutil.copytree(seed_index_dir, folder / "index")
    else:
        shutil.copytree(request.getfixturevalue("milvus_seed_dir"), folder)
    idx = NewsIndex(store_settings(request.param, folder), embedder=embedder)
    yield idx
    idx.close()


def make_pdf(pages: list[list[str]], *, title: str = "") -> bytes:
    """A minimal valid PDF written by hand: one text line per string (Helvetica), pages in order. A page given as
    [] holds only a grey rectangle (no text), as a scanned page holds only an image."""
    def escape(line: str) -> str:
        return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    n = len(pages)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{' '.join(f'{4 + 2 * i} 0 R' for i in range(n))}] /Count {n} >>".encode(),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    for i, lines in enumerate(pages):
        if lines:
            content = "BT /F1 11 Tf 72 720 Td 14 TL " + " ".join(f"({escape(line)}) Tj T*" for line in lines) + " ET"
        else:
            content = "0.5 g 72 72 468 648 re f"
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> "
                       f">> /Contents {5 + 2 * i} 0 R >>".encode())
        objects.append(f"<< /Length {len(content)} >>\nstream\n{content}\nendstream".encode())
    info = len(objects) + 1
    objects.append(f"<< /Title ({escape(title)}) >>".encode() if title else b"<< >>")
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info {info} 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out
