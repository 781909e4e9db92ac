"""A torch-free query path: the MiniLM transformer exported to ONNX, run by ONNX Runtime, fed by ``tokenizers``.

:func:`export_onnx` runs once at index time (it imports torch). :class:`OnnxEmbedder` is what queries use: importing
this module and encoding never imports torch, transformers or sentence-transformers, which keeps a query process at a
fraction of the memory and start-up time of the torch stack.

The exported graph maps ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64, ``[batch, seq]``) to the
transformer's last hidden state ``[batch, seq, dim]``. Pooling and normalisation happen in numpy, the way
sentence-transformers does them for all-MiniLM-L6-v2 (``1_Pooling``: mean over the attention mask; then
``Normalize``: L2).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import platform
import re
import secrets
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

__all__ = ["FP32_NAME", "INT8_NAME", "OnnxEmbedder", "available_cores", "export_onnx"]

FP32_NAME = "model.onnx"
INT8_NAME = "model_int8.onnx"

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "last_hidden_state"
OPSET = 17

# Bumped whenever the export or quantisation recipe changes, so cached models made by an older recipe are redone.
_RECIPE = "qa-onnx-export/1:torchscript-eager-opset17;int8:dynamic-qint8-per-channel"
_METADATA_KEY = "qa.source_fingerprint"

# Texts are tokenised and length-sorted in windows of this many, which bounds memory for very long lists while
# still giving tightly padded batches.
_TOKENIZE_WINDOW = 2048


# ---------------------------------------------------------------------------------------------------------------
# Export (index time; imports torch lazily)
# ---------------------------------------------------------------------------------------------------------------


def export_onnx(model_dir: Path, out_dir: Path, *, int8: bool = False) -> Path:
    """Export the sentence-transformer's transformer in ``model_dir`` to ONNX under ``out_dir``.

    Writes ``out_dir/model.onnx`` (fp32) and, when ``int8`` is true, also ``out_dir/model_int8.onnx`` made from it by
    ONNX Runtime's dynamic quantisation (int8 weights, per output channel). Each file carries a fingerprint of the
    source weights and of the export recipe; a file whose fingerprint matches is kept, so calling this again is
    cheap, while a changed model or recipe is exported afresh.

    Every file is written under a temporary name in ``out_dir`` and moved into place with :func:`os.replace` only
    after the exported graph has been checked against torch, so an interrupted export never leaves a partial model
    under the final name.

    Returns the path of the model to load: ``model_int8.onnx`` when ``int8`` is true, else ``model.onnx``.
    """
    model_dir = Path(model_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    transformer_dir = _transformer_dir(model_dir)
    fingerprint = _source_fingerprint(transformer_dir)

    fp32_path = out_dir / FP32_NAME
    if _stored_fingerprint(fp32_path) != fingerprint:
        _export_fp32(transformer_dir, fp32_path, fingerprint)
    if not int8:
        return fp32_path

    int8_path = out_dir / INT8_NAME
    int8_fingerprint = fingerprint + ":int8"
    if _stored_fingerprint(int8_path) != int8_fingerprint:
        _quantize_int8(fp32_path, int8_path, int8_fingerprint)
    return int8_path


def _transformer_dir(model_dir: Path) -> Path:
    """The folder of the Transformer module, after checking the pipeline is one that OnnxEmbedder reproduces."""
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        return model_dir
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    transformer = next((m for m in modules if m.get("type", "").endswith(".Transformer")), None)
    if transformer is None:
        raise ValueError(f"{modules_file} has no Transformer module")
    for module in modules:
        if module.get("type", "").endswith(".Pooling"):
            pooling = json.loads((model_dir / module["path"] / "config.json").read_text(encoding="utf-8"))
            modes = {k for k, v in pooling.items() if k.startswith("pooling_mode_") and v is True}
            if isinstance(pooling.get("pooling_mode"), str):  # newer sentence-transformers write one name
                modes = {f"pooling_mode_{pooling['pooling_mode']}_tokens"}
            if modes != {"pooling_mode_mean_tokens"}:
                raise ValueError(f"OnnxEmbedder implements mean pooling only; {model_dir} uses {sorted(modes)}")
        elif not module.get("type", "").endswith((".Transformer", ".Normalize")):
            raise ValueError(f"OnnxEmbedder cannot reproduce module {module.get('type')!r} of {model_dir}")
    return model_dir / transformer.get("path", "")


def _source_fingerprint(transformer_dir: Path) -> str:
    digest = hashlib.sha256(_RECIPE.encode())
    names = ["config.json", "model.safetensors", "pytorch_model.bin"]
    found = [n for n in names if (transformer_dir / n).is_file()]
    if len(found) < 2:
        raise FileNotFoundError(f"{transformer_dir} lacks config.json and model weights")
    for name in found:
        digest.update(name.encode())
        with open(transformer_dir / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _stored_fingerprint(path: Path) -> str | None:
    if not path.is_file():
        return None
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        # Unreadable means "not ours or damaged": treat it as absent so it is rewritten.
        return None
    return next((p.value for p in model.metadata_props if p.key == _METADATA_KEY), None)


def _set_fingerprint(model, fingerprint: str) -> None:
    for prop in list(model.metadata_props):
        if prop.key == _METADATA_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key = _METADATA_KEY
    entry.value = fingerprint


def _export_fp32(transformer_dir: Path, out_path: Path, fingerprint: str) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import onnx
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    if not sys.stderr.isatty():  # its "Loading weights" bar is for a terminal, not a log or a pipe
        transformers_logging.disable_progress_bar()
    # Eager attention traces to plain MatMul/Softmax with no data-dependent Python branches, and its graph ran
    # faster under ONNX Runtime than the SDPA one.
    model = AutoModel.from_pretrained(str(transformer_dir), attn_implementation="eager", local_files_only=True)
    model.eval()

    class HiddenStates(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    wrapper = HiddenStates(model).eval()
    # A padded row in the example batch, so that any mask handling is traced on its general path.
    trace_inputs = _example_inputs(torch, batch=2, seq=16, vocab=model.config.vocab_size)
    axes = {"batch": 0, "seq": 1}
    dynamic_axes = {name: {v: k for k, v in axes.items()} for name in (*INPUT_NAMES, OUTPUT_NAME)}

    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs onnxscript (not a
        # dependency). Its warnings about tracing shape checks are expected for this model and checked below.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*feature will be removed.*")
        warnings.filterwarnings("ignore", message=".*aten::index operator.*")
        torch.onnx.export(
            wrapper,
            trace_inputs,
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    _set_fingerprint(proto, fingerprint)
    data = proto.SerializeToString()

    # A traced graph can silently bake in the example's shapes; compare with torch at a different shape first.
    check_inputs = _example_inputs(torch, batch=3, seq=11, vocab=model.config.vocab_size)
    with torch.no_grad():
        expected = wrapper(*check_inputs).numpy()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {n: t.numpy() for n, t in zip(INPUT_NAMES, check_inputs)})[0]
    mask = check_inputs[1].numpy().astype(bool)
    error = float(np.abs(got - expected)[mask].max())
    if got.shape != expected.shape or error > 1e-3:
        raise RuntimeError(f"ONNX export of {transformer_dir} disagrees with torch (max abs error {error:.3g})")

    _atomic_write(out_path, data)


def _example_inputs(torch, *, batch: int, seq: int, vocab: int):
    ids = (torch.arange(batch * seq, dtype=torch.long).reshape(batch, seq) * 7919) % (vocab - 1000) + 999
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[-1, seq // 2 :] = 0
    return ids, mask, torch.zeros(batch, seq, dtype=torch.long)


def _quantize_int8(fp32_path: Path, out_path: Path, fingerprint: str) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = _temp_path(out_path)
    try:
        # Per-channel int8 weights, full uint8 activation range (no reduce_range): what optimum's "avx512_vnni"
        # preset does. Per-tensor weights were no faster here and cost ~0.05 of cosine similarity to fp32.
        with _without_preprocessing_advice():
            quantize_dynamic(
                fp32_path,
                tmp,
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=False,
            )
        proto = onnx.load(str(tmp))
        _set_fingerprint(proto, fingerprint)
        data = proto.SerializeToString()
        _atomic_write(out_path, data)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _without_preprocessing_advice():
    """Drop quantize_dynamic's root-logger advice to run quant_pre_process: on this graph that step fails
    ("Incomplete symbolic shape inference"), so the advice is noise in every index build."""

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider to run pre-processing")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _temp_path(path: Path) -> Path:
    # A leading dot and a .tmp suffix: never matched by "*.onnx", never mistaken for a finished model.
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = _temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# ---------------------------------------------------------------------------------------------------------------
# Query time: ONNX Runtime + tokenizers only
# ---------------------------------------------------------------------------------------------------------------


# Blocks of at least this many bytes are mapped on their own and unmapped when freed. glibc otherwise raises the
# threshold to the largest block freed so far (the 12 MB output of a 32 x 256 batch), after which such blocks come
# from the heap, which keeps them (and what lies between them) after they are freed: a build grew by several MB a
# batch. Pinned once per process, when the first embedder is made.
MMAP_THRESHOLD = 1 << 20
# A batch of at least this many padded word pieces (rows x longest row) gives ONNX Runtime's arena back its free
# memory when it ends (arena shrinkage), so one batch's activations do not stay reserved while the next, of another
# shape, allocates its own: 400 BBC chunk texts embedded as `qa index` does peaked at 393 MB instead of 408 with the
# same vectors and time (`python -m bench.embed_memory`-style runs, docs/reliability.md). Smaller batches (a
# question, a reader's sentences) skip it: there it cost 5-10 % of their time and saves nothing.
SHRINK_TOKENS = 2048
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def _libc():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _pin_mmap_threshold() -> None:
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):  # glibc only; elsewhere the allocator decides
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def _trim_heap() -> None:
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def saturating_int8_cpu() -> bool:
    """Does ONNX Runtime's uint8 × int8 product saturate on this CPU? On x86 without VNNI it does (AVX2's and
    AVX-512BW's ``vpmaddubsw`` adds pairs of products into 16 bits, with saturation); with AVX-512 VNNI or AVX-VNNI
    (``vpdpbusd``) it is exact. An x86 CPU whose flags cannot be read counts as saturating; other CPUs do not."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    try:
        flags = set(re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE).group(1).split())
    except (OSError, AttributeError):
        return True
    return not flags & {"avx512_vnni", "avx_vnni"}


def session(model: Path, options) -> "ort.InferenceSession":
    """An ONNX Runtime CPU session of ``model`` as ``exact_int8`` gives it. A model converted in memory leaves its
    parsed copy's freed pages in the heap (about 20 MB for the reader); they are handed back to the system."""
    loaded = exact_int8(model)
    made = ort.InferenceSession(loaded, sess_options=options, providers=["CPUExecutionProvider"])
    if isinstance(loaded, bytes):
        del loaded
        _trim_heap()
    return made


def exact_int8(path: Path) -> str | bytes:
    """The ONNX model to load for ``path``: itself, or, on a CPU whose uint8 × int8 products saturate
    (``saturating_int8_cpu``) and when its matrix products take int8 weights, the same model with those weights
    stored as uint8 with zero point 128 (``w + 128`` and ``zp + 128``: the very same numbers). That copy is kept
    beside the model (``NAME.exact-SIZE-MTIME.onnx``) so later loads read it as they would the model; where the
    folder is read-only it is made in memory each time (bytes).

    Why: on such a CPU (AVX2 without VNNI) the seed question "which countries retaliated?" lost China from its
    answer and three quality tests failed that pass with VNNI. uint8 × uint8 is exact there, so the embeddings and the
    reader's scores are those of a VNNI CPU, at about 1.2× the reader's time (206 against 168 ms for 24 sentences
    on one AVX2 core, docs/performance.md)."""
    path = Path(path)
    if not saturating_int8_cpu():
        return str(path)
    stat = path.stat()
    copy = path.with_name(f"{path.stem}.exact-{stat.st_size}-{stat.st_mtime_ns}.onnx")
    if copy.exists():
        return str(copy)
    # Made in a child process, so this one (a build, say, whose peak memory is measured) never holds the parsed
    # model: its freed pages would stay in the heap.
    made = subprocess.run([sys.executable, "-c", "import sys; from qa.onnx_backend import _write_exact; "
                           "sys.exit(_write_exact(sys.argv[1], sys.argv[2]))", str(path), str(copy)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": _package_root()})
    if made.returncode == 3:  # no int8 weights: loaded as it is
        return str(path)
    if made.returncode != 0 or not copy.exists():  # e.g. a folder it may not write: in memory
        return _uint8_weights(path) or str(path)
    for old in path.parent.glob(f"{path.stem}.exact-*.onnx"):
        if old != copy:
            old.unlink(missing_ok=True)  # a copy of an earlier version of the model
    return str(copy)


def _package_root() -> str:
    """The folder holding the ``qa`` package, first on the child's path (it must import this very code)."""
    root = str(Path(__file__).resolve().parent.parent)
    return os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])


def _write_exact(source: str, target: str) -> int:
    """``exact_int8``'s child: writes ``target`` (atomically); 3 when ``source`` has no int8 weights."""
    data = _uint8_weights(Path(source))
    if data is None:
        return 3
    _atomic_write(Path(target), data)
    return 0


def _uint8_weights(path: Path) -> bytes | None:
    """The model with its MatMulInteger int8 weights (and their zero points) as uint8 + 128; None when it has none."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    changed = False
    for node in model.graph.node:
        if node.op_type != "MatMulInteger" or len(node.input) < 4:
            continue
        weight, zero = inits.get(node.input[1]), inits.get(node.input[3])
        if weight is None or zero is None or weight.data_type != onnx.TensorProto.INT8:
            continue
        for tensor in (weight, zero):
            values = numpy_helper.to_array(tensor).astype(np.int16) + 128
            tensor.CopyFrom(numpy_helper.from_array(values.astype(np.uint8), tensor.name))
        changed = True
    return model.SerializeToString() if changed else None


def available_cores() -> int:
    """CPU cores this process may run on (respects affinity masks and cgroup-pinned CPU sets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class OnnxEmbedder:
    """Text → L2-normalised float32 vectors with an exported model, without torch.

    Reproduces sentence-transformers' ``encode(..., normalize_embeddings=True)`` for a mean-pooling model: texts
    are truncated to ``max_tokens`` word pieces (special tokens included), run through the transformer, averaged
    over the attention mask and L2-normalised.
    """

    def __init__(self, onnx_path: Path, tokenizer_path: Path, *, max_tokens: int = 256, threads: int | None = None,
                 arena: bool = True, batch_tokens: int | None = None):
        """Load ``onnx_path`` into an ONNX Runtime CPU session and the tokenizer from ``tokenizer_path``.

        ``threads`` sets ONNX Runtime's intra-op threads (default: the cores available to this process).
        ``arena=False`` turns off ONNX Runtime's CPU memory arena, which otherwise keeps the memory of the largest
        batch ever run for the life of the session. ``batch_tokens`` bounds a batch's padded size (rows × longest
        row, in word pieces) besides its row count; None bounds rows only.
        """
        if max_tokens < 2:
            raise ValueError("max_tokens must leave room for the [CLS] and [SEP] tokens")
        if batch_tokens is not None and batch_tokens < max_tokens:
            raise ValueError(f"batch_tokens must hold at least one text of max_tokens ({max_tokens}) word pieces")
        self.max_tokens = int(max_tokens)
        self.batch_tokens = None if batch_tokens is None else int(batch_tokens)
        self.onnx_path = Path(onnx_path)

        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # The shipped tokenizer.json pads every text to 128 tokens and truncates at 128; both are wrong here:
        # padding is done per batch below, and truncation must follow max_tokens like sentence-transformers does.
        self._pad_id = int((tokenizer.padding or {}).get("pad_id", 0))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.max_tokens)
        self._tokenizer = tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads) if threads else available_cores()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = bool(arena)
        # No memory pattern: ONNX Runtime would plan (and keep) one block for each batch shape it sees, and batches
        # of every padded width pass through while indexing. Off, 300 BBC chunk texts peak at 416 MB instead of
        # 680 with the same CPU time and the same vectors (docs/reliability.md).
        options.enable_mem_pattern = False
        self._options = options
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self._session_lock = threading.Lock()
        _pin_mmap_threshold()
        self._session = self._open_session()

        inputs = {i.name for i in self._session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - inputs
        if missing:
            raise ValueError(f"{self.onnx_path} lacks inputs {sorted(missing)}")
        self._feeds_token_types = "token_type_ids" in inputs
        output = self._session.get_outputs()[0]
        self._output_name = output.name
        dim = output.shape[-1] if output.shape else None
        if not isinstance(dim, int):
            dim = self._run([self._tokenizer.encode("")]).shape[1]
        self.dim = int(dim)

    def _open_session(self) -> ort.InferenceSession:
        return session(self.onnx_path, self._options)

    def release(self) -> None:
        """Give back the memory ONNX Runtime kept from the batches run so far: its arena keeps the blocks of the
        largest batches for the life of the session, and the C heap keeps what freed blocks it can. The session is
        closed here and opened again (same file, same options, so the same vectors) by the next ``encode``; what
        the C library holds free is returned to the system."""
        with self._session_lock:
            self._session = None
        _trim_heap()

    def _live_session(self) -> ort.InferenceSession:
        with self._session_lock:
            if self._session is None:
                self._session = self._open_session()
            return self._session

    def encode(self, texts: list[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        """Embed ``texts``; returns a float32 array of shape ``(len(texts), dim)`` with unit-length rows.

        Texts are grouped by token count so each batch of ``batch_size`` is padded only to its own longest text
        (and, with ``batch_tokens``, holds no more rows than fit that many padded word pieces); rows come back in
        the order of ``texts``. ``show_progress`` draws a tqdm bar.
        """
        texts = list(texts)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out

        bar = None
        if show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc="Embedding", unit="text")
        try:
            for start in range(0, len(texts), _TOKENIZE_WINDOW):
                window = texts[start : start + _TOKENIZE_WINDOW]
                if len(window) == 1:
                    encodings = [self._tokenizer.encode(window[0])]
                else:
                    encodings = self._tokenizer.encode_batch(window)
                lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
                order = np.argsort(-lengths, kind="stable")
                first = 0
                while first < len(order):
                    # Sorted longest first, so the batch's first row sets its padded width.
                    size = batch_size
                    if self.batch_tokens is not None:
                        size = max(1, min(size, self.batch_tokens // max(1, int(lengths[order[first]]))))
                    rows = order[first : first + size]
                    out[start + rows] = self._run([encodings[i] for i in rows])
                    first += len(rows)
                    if bar is not None:
                        bar.update(len(rows))
        finally:
            if bar is not None:
                bar.close()
        return out

    def _run(self, encodings) -> np.ndarray:
        """One padded batch through the model, then masked mean pooling and L2 normalisation."""
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
            types[row, :n] = enc.type_ids
        feed = {"input_ids": ids, "attention_mask": mask}
        if self._feeds_token_types:
            feed["token_type_ids"] = types
        options = self._shrink if ids.size >= SHRINK_TOKENS else None
        hidden = self._live_session().run([self._output_name], feed, options)[0]
        weights = mask.astype(np.float32)
        summed = np.matmul(weights[:, None, :], hidden)[:, 0, :]
        counts = np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
        pooled = summed / counts
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norms).astype(np.float32, copy=False)
