"""The reader: a small cross-encoder that reads the question together with one sentence and says how likely the
sentence answers it. It is what chooses answer sentences, re-ranks passages and decides "the articles don't say".

The model (``models/reader/reader_int8.onnx``, trained here from public data by ``make reader``; see its model card)
runs on ONNX Runtime with the ``tokenizers`` word pieces: answering never imports torch.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

import numpy as np

__all__ = ["INPUT_NAMES", "MODEL_NAME", "OUTPUT_NAME", "DEFAULT_DIR", "OnnxReader", "Reader", "load_reader", "pad"]

MODEL_NAME = "reader_int8.onnx"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "logits"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "models" / "reader"
# What the model was trained with (qa.reader_train.MAX_LENGTH): a longer sentence is cut from its end.
MAX_LENGTH = 96


def pad(encodings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask, token_type_ids)`` of pair encodings, padded to the longest (training and
    answering pad alike)."""
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for r, e in enumerate(encodings):
        n = len(e.ids)
        ids[r, :n], types[r, :n], mask[r, :n] = e.ids, e.type_ids, 1
    return ids, mask, types


class Reader(Protocol):
    """Scores how well each sentence answers the question, as probabilities in [0, 1]."""

    def score(self, question: str, sentences: list[str]) -> np.ndarray: ...


class OnnxReader:
    """The shipped int8 cross-encoder on ONNX Runtime."""

    def __init__(self, folder: Path = DEFAULT_DIR, *, threads: int | None = None, batch_size: int = 16):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from .onnx_backend import session

        folder = Path(folder)
        model = folder / MODEL_NAME
        if not model.exists():
            raise FileNotFoundError(f"no reader model at {model}: run `make reader`, or set QA_READER=off")
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        # The longer of question and sentence is cut: the same as training's only_second for every question of
        # ordinary length, and a question of 2,000 characters is cut too instead of failing.
        self.tokenizer.enable_truncation(max_length=MAX_LENGTH, strategy="longest_first")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = session(model, options)
        self.batch_size = batch_size
        self.path = model
        self._lock = threading.Lock()

    def logits(self, question: str, sentences: list[str]) -> np.ndarray:
        """Raw scores, one per sentence; batches are formed from sentences of similar length."""
        if not sentences:
            return np.zeros(0, dtype=np.float32)
        return self.encoded_logits(self.tokenizer.encode_batch([(question, s) for s in sentences]))

    def encoded_logits(self, encodings) -> np.ndarray:
        """Raw scores of tokenized pairs (any questions), in batches of similar length."""
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        out = np.zeros(len(encodings), dtype=np.float32)
        for b in range(0, len(order), self.batch_size):
            idx = order[b:b + self.batch_size]
            ids, mask, types = pad([encodings[i] for i in idx])
            got = self.session.run([OUTPUT_NAME], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
            out[idx] = got[0].reshape(-1)
        return out

    def score(self, question: str, sentences: list[str]) -> np.ndarray:
        """The probability that each sentence answers the question."""
        return 1.0 / (1.0 + np.exp(-self.logits(question, sentences)))


_LOADED: dict[tuple[str, int], OnnxReader] = {}
_LOAD_LOCK = threading.Lock()


def load_reader(settings) -> Reader | None:
    """The reader the settings ask for (one per model file and thread count in a process), or None when
    ``QA_READER=off``."""
    if not settings.reader:
        return None
    key = (str(settings.reader_dir), int(settings.threads))
    with _LOAD_LOCK:
        if key not in _LOADED:
            _LOADED[key] = OnnxReader(Path(settings.reader_dir), threads=settings.threads)
        return _LOADED[key]
