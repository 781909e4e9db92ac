"""``qa index PATHS --ray [ADDRESS]``: read, chunk and embed articles with Ray Data across a Ray cluster, and write
them through ``NewsIndex`` on the driver, batch by batch.

1. driver: the files to read (``find_files``: folders walked, ``.qaignore`` applied; names only, nothing read);
2. Ray tasks: each file read and parsed (``read_found``), one row per article: its id, content hash and itself;
3. driver: ids claimed twice are an error (as in ``collect``), and articles whose content hash is already stored
   are counted unchanged and dropped here, before any embedding: a re-run after a crash redoes only what is missing;
4. Ray actors (``workers`` of them, one CPU each): each article chunked by ``chunk_article`` (the function the local
   add uses) and its chunk texts embedded by the embedder the settings name, salted hashes alike: the same chunks,
   offsets and vectors as ``qa index`` without ``--ray``;
5. driver: ``NewsIndex.write_prepared`` per ``NewsIndex.batch_size`` articles, in the files' order: one transaction
   each, every article whole, re-checked against the stored hashes under the write lock. A progress bar on stderr.

On a cluster every node needs this package (and its model) installed, and the article files and the index folder's
``onnx/`` export at the same paths (a shared file system); the backend is written by the driver only.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import ray
import ray.data

from .errors import InvalidInput, QAError
from .ingest import Collected, SkippedFile, claim, find_files, read_found
from .records import AddReport
from .settings import Settings

# Files read per Ray task: small files (a news article is a few KB) would drown in per-task overhead one by one.
READ_FILES_PER_TASK = 64
# Articles per embedding call on a worker: enough chunks to fill the embedder's batches of 32, little to redo.
EMBED_ARTICLES_PER_CALL = 16
LOCAL = "local"


def check_address(address: str | None) -> str | None:
    """``address`` if it names a Ray cluster (``auto``, ``local``, ``ray://host:port``, ``host:port``), else
    InvalidInput: ``qa index --ray ~/news`` would otherwise read the folder as the address."""
    if address is None or address in ("auto", LOCAL) or address.startswith("ray://"):
        return address
    host, _, port = address.rpartition(":")
    if host and port.isdigit() and "/" not in host:
        return address
    raise InvalidInput(
        f"--ray takes a Ray address (auto, ray://host:10001 or host:6379), not {address!r}: put the paths before "
        f"--ray, or write --ray=ADDRESS"
    )


def worker_env() -> dict:
    """The ``runtime_env`` workers start in: they import this very package (not another install of it) and never
    reach for the model hub."""
    package_root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {"HF_HUB_OFFLINE": "1", "PYTHONPATH": path}}


def connect(address: str | None) -> bool:
    """Join the Ray cluster at ``address``, or start one on this machine when it is None or ``local``; nothing when
    this process is already connected. Returns whether it connected (and so should disconnect after)."""
    if ray.is_initialized():
        return False
    # Ray's own notices (cluster started, dataset finished) would bury the summary `qa index` prints.
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    kwargs = dict(runtime_env=worker_env(), logging_level=logging.ERROR, log_to_driver=False)
    if address in (None, LOCAL):
        ray.init(include_dashboard=False, **kwargs)
    else:
        ray.init(address=address, **kwargs)
    return True


def _read_batch(batch: dict, *, max_bytes: int, date: str) -> dict:
    """Ray task: read the files of ``batch``; one row per article, or one per file read without articles, skipped
    or failing (its exception pickled, raised again by the driver: a file named directly must be readable)."""
    rows: dict[str, list] = {k: [] for k in ("kind", "doc_id", "content_hash", "file", "suffix", "note", "error",
                                             "blob")}

    def row(kind, file, suffix, doc_id="", chash="", note="", error=b"", blob=b""):
        for k, v in zip(rows, (kind, doc_id, chash, file, suffix, note, error, blob)):
            rows[k].append(v)

    from .ingest import content_hash

    for path, given, doc_id, named in zip(batch["path"], batch["given"], batch["doc_id"], batch["named"]):
        suffix = Path(str(given)).suffix.lower() or "(none)"
        try:
            articles = read_found(Path(str(path)), str(doc_id), bool(named), max_bytes=max_bytes, date=date)
        except SkippedFile as e:
            row("skipped", given, suffix, note=str(e).replace(str(path), str(given)))
            continue
        except Exception as e:  # noqa: BLE001 - raised again on the driver, as collect would
            if isinstance(e, QAError) and str(path) in str(e):
                e = type(e)(str(e).replace(str(path), str(given)))  # named as given, as collect names it
            try:
                blob = pickle.dumps(e)
            except Exception:  # noqa: BLE001 - an exception that cannot travel goes as its message
                blob = pickle.dumps(RuntimeError(f"{given}: {e}"))
            row("error", given, suffix, error=blob)
            continue
        if not articles:
            row("empty", given, suffix)
        for article in articles:  # its path absolute, as collect stores it
            row("article", given, suffix, article.doc_id, content_hash(article), blob=pickle.dumps(article))
    return rows


class _Embed:
    """Ray actor: chunks articles and embeds their chunk texts, with this package's chunker and embedder."""

    def __init__(self, settings: Settings, todo: set[str]):
        from .index import NewsIndex, embed_salt

        index = NewsIndex(settings)
        self.chunker = index.chunker
        self.embedder = index.embedder
        self.salt = embed_salt(settings)
        self.todo = todo

    def __call__(self, batch: dict) -> dict:
        from .index import chunk_article

        upserts, texts, doc_ids = [], {}, []
        firsts = []  # per article: how many of the distinct texts it was the first to hold
        # The rows to embed are chosen here rather than by a filter stage before: a task stage beside actors that
        # hold every CPU of a small cluster would wait for a CPU forever.
        for kind, doc_id, blob in zip(batch["kind"], batch["doc_id"], batch["blob"]):
            if kind != "article" or doc_id not in self.todo:
                continue
            doc_ids.append(str(doc_id))
            upsert, embed_texts = chunk_article(pickle.loads(blob), self.chunker, self.salt)
            before = len(texts)
            for h, t in zip(upsert.hashes, embed_texts):
                texts.setdefault(h, t)
            upserts.append(upsert)
            firsts.append(len(texts) - before)
        # Each distinct text once, in hash order: as NewsIndex._prepare embeds them.
        todo = sorted(texts.items())
        vecs = self.embedder.encode([t for _, t in todo], batch_size=32)
        by_hash = {h: np.asarray(v, dtype=np.float32) for (h, _), v in zip(todo, vecs)}
        for u in upserts:
            u.vectors = (np.vstack([by_hash[h] for h in u.hashes]) if u.hashes
                         else np.zeros((0, int(self.embedder.dim)), dtype=np.float32))
        return {"doc_id": doc_ids, "upsert": [pickle.dumps(u) for u in upserts],
                "embedded": firsts}


def _embedder_class(settings: Settings, todo: set[str]) -> type:
    """``_Embed`` bound to these settings and ids, as a class without constructor arguments: it travels to the
    workers with its definition. Passed as constructor arguments, they would wait in the object store, and Ray
    warns at every actor start that restarting such an actor may fail."""

    class Embed(_Embed):
        def __init__(self):
            super().__init__(settings, todo)

    return Embed


def index_with_ray(index, paths: list[Path], *, address: str | None = None, workers: int | None = None,
                   date: str = "", ids: str = "stem", show_progress: bool = False) -> tuple[Collected, int, AddReport]:
    """Add the articles under ``paths`` to ``index`` (a NewsIndex), reading, chunking and embedding on Ray (at
    ``address``; a local cluster when None; the cluster this process is connected to, if any) with ``workers``
    embedding actors (default: one per CPU of the cluster). Returns what was read (give its ``summary`` the
    count), how many articles were read, and the report."""
    began = time.perf_counter()
    files, ignored = find_files(paths, ids=ids)
    found = Collected(ignored=ignored)
    report = AddReport()
    if workers is not None and workers < 1:
        raise InvalidInput("--workers must be at least 1")
    connected = connect(check_address(address))
    try:
        with warnings.catch_warnings():
            # Ray Data's advice on tuning (too few blocks for the actors, and the like) is for its own users.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"ray\.")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\.")
            read = _ingest(index, files, found, report, workers, date, show_progress)
        report.skipped = found.skipped
        return found, read, report
    finally:
        report.seconds = round(time.perf_counter() - began, 3)
        if connected:
            ray.shutdown()


def _ingest(index, files, found: Collected, report: AddReport, workers: int | None, date: str,
            show_progress: bool) -> int:
    """Stages 2 to 5 (the module's docstring) on the connected cluster; returns how many articles were read."""
    from tqdm import tqdm

    settings = index.settings
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours is the one bar
    ctx.print_on_execution_start = False
    ctx.execution_options.preserve_order = True  # written in the files' order, as `qa index` writes them
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    if not files:
        return 0
    items = [{"path": str(Path(f).resolve()), "given": str(f), "doc_id": d, "named": n} for f, d, n in files]
    # Blocks enough for every worker to have some, of at most READ_FILES_PER_TASK files each.
    blocks = min(len(items), max(-(-len(items) // READ_FILES_PER_TASK), 4 * workers))
    read = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
        _read_batch, batch_size=READ_FILES_PER_TASK,
        fn_kwargs={"max_bytes": settings.max_article_bytes, "date": date}).materialize()
    # Which articles to embed: decided here from ids and hashes only (the texts stay in the cluster).
    owner: dict[str, str] = {}
    seen_files: set[str] = set()
    heads = []
    for row in read.drop_columns(["blob"]).iter_rows():
        kind, file = row["kind"], row["file"]
        if kind == "error":
            raise pickle.loads(row["error"])
        if kind == "skipped":
            found.skipped.append(row["note"])
            continue
        if file not in seen_files:
            seen_files.add(file)
            found.files[row["suffix"]] = found.files.get(row["suffix"], 0) + 1
        if kind == "article":
            claim(owner, row["doc_id"], file)
            heads.append((row["doc_id"], row["content_hash"]))
    stored = index.stored_hashes(d for d, _ in heads)
    todo = set()
    for doc_id, chash in heads:
        if stored.get(doc_id) == chash:
            report.unchanged.append(doc_id)
        else:
            todo.add(doc_id)
    if not todo:
        return len(heads)
    # The driver's embedder first: it exports the ONNX model into the index folder, where the workers load it
    # from (exported once, not by each worker at the same time).
    index.embedder
    worker_settings = replace(settings, index_dir=Path(settings.index_dir).resolve(), threads=1)
    embedded = read.map_batches(_embedder_class(worker_settings, todo), batch_size=EMBED_ARTICLES_PER_CALL,
                                concurrency=workers, num_cpus=1)
    bar = tqdm(total=len(todo), unit="article", desc="indexing", disable=not show_progress, file=sys.stderr)
    try:
        for batch in embedded.iter_batches(batch_size=index.batch_size, batch_format="numpy"):
            upserts = [pickle.loads(b) for b in batch["upsert"]]
            index.write_prepared(upserts, report)
            report.embedded += int(np.sum(batch["embedded"]))
            bar.update(len(upserts))
            bar.set_postfix(chunks=report.chunks, refresh=False)
    finally:
        bar.close()
    return len(heads)
