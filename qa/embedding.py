"""Text → normalized vectors. Two interchangeable backends: ONNX Runtime (default, torch-free) and
sentence-transformers on torch. Both read at most ``max_tokens`` word pieces; chunks are sized to fit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from .settings import Settings


class Embedder(Protocol):
    """Anything that turns texts into L2-normalized float32 rows."""

    dim: int

    def encode(self, texts: list[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray: ...


class TorchEmbedder:
    """sentence-transformers on the CPU; imports torch, so only indexing or an explicit QA_BACKEND=torch uses it."""

    def __init__(self, model_dir: Path, *, max_tokens: int = 256, threads: int | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self.model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        self.model.max_seq_length = max_tokens
        self.max_tokens = max_tokens
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def encode(self, texts: list[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def onnx_cache_dir(settings: Settings) -> Path:
    """Exported ONNX models live beside the index generations, so rebuilds keep them."""
    return settings.index_dir / "onnx" / settings.model_name


def load_embedder(settings: Settings) -> Embedder:
    """The embedder the settings ask for. The ONNX model is exported on first use and cached in the index folder."""
    if settings.backend == "torch":
        return TorchEmbedder(settings.model_dir, max_tokens=settings.max_tokens, threads=settings.threads)
    from .onnx_backend import OnnxEmbedder, export_onnx

    int8 = settings.backend == "onnx-int8"
    cache = onnx_cache_dir(settings)
    onnx_path = cache / ("model_int8.onnx" if int8 else "model.onnx")
    if not onnx_path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        export_onnx(settings.model_dir, cache, int8=int8)

    def opened() -> Embedder:
        return OnnxEmbedder(
            onnx_path, settings.model_dir / "tokenizer.json", max_tokens=settings.max_tokens,
            threads=settings.threads, arena=settings.embed_arena, batch_tokens=settings.embed_batch_tokens or None,
        )

    try:
        return opened()
    except Exception:  # ONNX Runtime's InvalidProtobuf, Fail, …: a damaged copy in the index folder
        # export_onnx rewrites a file whose fingerprint it cannot read, so a damaged model heals itself; an
        # intact one is left as it is, and the same error is raised again below.
        export_onnx(settings.model_dir, cache, int8=int8)
        return opened()
