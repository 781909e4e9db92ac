"""Hybrid retrieval: dense and BM25 candidates (from the storage backend, qa/backends) put on one scale and fused by weight, nudged towards
articles whose publisher or date the question names and towards the best match for each part of a many-part
question, then chosen so that one article or repeated text cannot fill the list.

Why not equal-weight reciprocal rank fusion: it throws the scores away, so a chunk that BM25 ranks first by a wide
margin counts no more than a dense near-miss. On entity-heavy news questions that hurts (BM25 alone beats RRF on
MultiHop-RAG). Here every candidate from either list gets both scores (its cosine computed from its stored vector,
its BM25 score read from one deeper FTS5 list), each divided by the best candidate's, and the two are mixed with a
weight chosen on held-out data (docs/quality.md).
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np

from .backends.base import Backend
from .lexical import date_cues, question_parts, source_aliases
from .records import Passage, pages_of
from .scope import Period, Scope, named_period
from .settings import with_changes

MODES = ("hybrid", "dense", "bm25")
FUSIONS = ("convex", "rrf")


@dataclass(frozen=True)
class RetrievalConfig:
    """How candidates are gathered, scored and chosen. The defaults are the settings chosen in docs/quality.md."""

    mode: str = "hybrid"  # "hybrid", or one retriever alone ("dense", "bm25") for comparison
    candidates: int = 100  # taken from each retriever
    fusion: str = "convex"  # "convex": weighted normalized scores; "rrf": reciprocal rank fusion (the old way)
    normalization: str = "best"  # how the cosine is put on BM25's scale: "best" (divide by the best) or "minmax"
    lexical_weight: float = 0.5  # share of the BM25 score in the convex mix
    rrf_k: int = 60
    bm25_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # FTS5 columns: title, meta, body
    lexical_depth: int = 1000  # BM25 scores read for the dense candidates' sake
    source_boost: float = 0.2  # added when the chunk's publisher is named in the question
    date_boost: float = 0.3  # added when the chunk's article is dated on a day the question names
    period_boost: float = 0.3  # added when the chunk's article is dated in the period the question names
    part_weight: float = 0.6  # weight of the best BM25 match to one part of a many-part question (0: off)
    per_article: int = 4  # at most this many chunks of one article before other articles have had a turn (0: no cap)
    duplicate_overlap: float = 0.7  # drop a chunk sharing this much of its word 5-grams with one ranked above (1: off)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, not {self.fusion!r}")

    def with_(self, **changes) -> "RetrievalConfig":
        """A copy with some fields changed (values given as strings are converted to the field's type)."""
        return with_changes(self, changes, "retrieval")


def reciprocal_rank_fusion(
    lists: list[list[tuple[int, float]]], weights: list[float], k: int = 60
) -> list[tuple[int, float]]:
    """Fuse ranked ``(id, score)`` lists: each id scores ``sum(w / (k + rank))``; best first, ties by id."""
    fused: dict[int, float] = {}
    for ranked, weight in zip(lists, weights):
        for rank, (item, _) in enumerate(ranked, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


def min_max(scores: dict[int, float]) -> dict[int, float]:
    """Scores mapped onto [0, 1] (all 1.0 when they are equal)."""
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi - lo < 1e-12:
        return {i: 1.0 for i in scores}
    return {i: (s - lo) / (hi - lo) for i, s in scores.items()}


def scale_by_best(scores: dict[int, float]) -> dict[int, float]:
    """Scores divided by the best one, with 0 as the floor: a cosine or BM25 score of 0 means nothing in common.
    Unlike min-max, a near-tie between two candidates stays a near-tie."""
    top = max(scores.values(), default=0.0)
    return {i: (max(s, 0.0) / top if top > 0 else 0.0) for i, s in scores.items()}


def convex_fusion(dense: dict[int, float], lexical: dict[int, float], lexical_weight: float,
                  normalization: str = "best") -> dict[int, float]:
    """``(1 - w) * normalized cosine + w * normalized BM25`` for every id. BM25 is scaled by its best score; the
    cosine by its best score too (``"best"``) or min-max over the candidates (``"minmax"``)."""
    lex = scale_by_best(lexical)
    den = min_max(dense) if normalization == "minmax" else scale_by_best(dense)
    return {i: (1 - lexical_weight) * den.get(i, 0.0) + lexical_weight * lex.get(i, 0.0) for i in set(den) | set(lex)}


@dataclass
class Retrieved:
    """Ranked passages plus what answering needs: the query vector, each passage's cosine with the question and
    the best cosine over all candidates."""

    passages: list[Passage]
    query_vector: np.ndarray
    similarity: float
    similarities: list[float] = field(default_factory=list)
    period: Period | None = None  # the date range the question named, preferred in the ranking


# --- what the question names: publishers known to the index -------------------------------------------------------
_SOURCES: "weakref.WeakKeyDictionary[Backend, tuple[object, list[tuple[str, re.Pattern, str]]]]" = \
    weakref.WeakKeyDictionary()
_WORDS = re.compile(r"\w+")


def _first_word(text: str) -> str:
    found = _WORDS.search(text.casefold())
    return found.group(0) if found else ""


def _source_patterns(store: Backend) -> list[tuple[str, re.Pattern, str]]:
    """``(first word, pattern, source)`` for every publisher in the index, cached until the index changes."""
    generation = store.stamp()
    cached = _SOURCES.get(store)
    if cached is not None and cached[0] == generation:
        return cached[1]
    names = store.sources()
    patterns = []
    for name in names:
        for alias in source_aliases(name):
            patterns.append((_first_word(alias),
                             re.compile(r"(?<!\w)" + re.escape(alias) + r"(?!\w)", re.IGNORECASE), name))
    _SOURCES[store] = (generation, patterns)
    return patterns


def named_sources(store: Backend, question: str) -> set[str]:
    """The publishers in the index that the question names ("according to TechCrunch"). The name's last word must
    be written with a capital, since many names are also ordinary words ("Fortune", "Wired", "the age of")."""
    found = set()
    # A name is looked for only when its first word is in the question (case folded: a superset of what the
    # case-blind pattern matches): a MultiHop-RAG question against its 100-odd names took 0.36 ms, most of it here.
    words = set(_WORDS.findall(question.casefold()))
    for first, pattern, name in _source_patterns(store):
        if first and first not in words or name in found:
            continue
        for m in pattern.finditer(question):
            last = m.group(0).split()[-1]
            if last[:1].isupper() or last[:1].isdigit():
                found.add(name)
                break
    return found


_NEWEST: "weakref.WeakKeyDictionary[Backend, tuple[object, str]]" = weakref.WeakKeyDictionary()


def newest_date(store: Backend) -> str:
    """The newest article's date in the index (what "this week" and "latest" count from), cached until the
    index changes."""
    generation = store.stamp()
    cached = _NEWEST.get(store)
    if cached is not None and cached[0] == generation:
        return cached[1]
    newest = store.newest_date()
    _NEWEST[store] = (generation, newest)
    return newest


def question_period(store: Backend, question: str, scope: Scope | None = None) -> Period | None:
    """The date range ``question`` names ("last week", "in March", "latest"), counted from the newest article's
    date and narrowed to the caller's date filter; None when it names none or the two do not meet."""
    period = named_period(question, newest_date(store))
    if period is None or not scope:
        return period
    within = scope.narrowed(period.since, period.until)
    return None if within is None else Period(within.since, within.until, period.phrase)


# --- scoring --------------------------------------------------------------------------------------------------------

@lru_cache(maxsize=8192)
def _shingles(text: str, n: int = 5) -> frozenset[int]:
    words = _WORDS.findall(text.lower())
    if len(words) < n:
        return frozenset({hash(" ".join(words))} if words else ())
    return frozenset(hash(" ".join(words[i:i + n])) for i in range(len(words) - n + 1))


def select(ranked: list[dict], k: int, per_article: int, duplicate_overlap: float,
           load_texts: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """The top ``k`` of ``ranked`` (best first) with two kinds of repetition kept out: a chunk whose word 5-grams
    are mostly in a chunk already chosen (another copy of the same text) is dropped, and an article that already
    has ``per_article`` chunks waits until every other candidate has had its turn.

    Rows may come without their text: ``load_texts`` fills in ``"text"`` for a window of rows when the first of
    them is reached, so texts are read only for the few rows looked at."""
    chosen: list[dict] = []
    waiting: list[dict] = []
    per_doc: dict[str, int] = {}
    kept: list[set[int]] = []
    window = max(2 * k, 10)

    def ensure_text(pos: int, rows: list[dict]) -> None:
        if load_texts is not None and "text" not in rows[pos]:
            load_texts([r for r in rows[pos:pos + window] if "text" not in r])

    def duplicate(row: dict) -> bool:
        if duplicate_overlap >= 1.0:
            return False
        grams = row.setdefault("_shingles", _shingles(row["text"]))
        if not grams:
            return False
        for other in kept:
            if other and len(grams & other) >= duplicate_overlap * min(len(grams), len(other)):
                return True
        return False

    for pos, row in enumerate(ranked):
        if len(chosen) >= k:
            break
        if per_article and per_doc.get(row["doc_id"], 0) >= per_article:
            waiting.append(row)
            continue
        ensure_text(pos, ranked)
        if duplicate(row):
            continue
        chosen.append(row)
        kept.append(row["_shingles"] if duplicate_overlap < 1.0 else set())
        per_doc[row["doc_id"]] = per_doc.get(row["doc_id"], 0) + 1
    for pos, row in enumerate(waiting):
        if len(chosen) >= k:
            break
        ensure_text(pos, waiting)
        if not duplicate(row):
            chosen.append(row)
            kept.append(row["_shingles"] if duplicate_overlap < 1.0 else set())
    return chosen


@dataclass
class Pool:
    """The candidates for one question: every chunk either retriever returned, with both of its scores (exact
    cosine and exact BM25), its citation fields, and what the question names (publishers, days)."""

    query: str
    query_vector: np.ndarray
    dense: dict[int, float]
    lexical: dict[int, float]
    rows: dict[int, dict]
    sources: set[str]
    dates: set[str]
    parts: list[tuple[dict[int, float], set[str], set[str]]] = field(default_factory=list)  # BM25, publishers, days
    store: Backend | None = None  # where the texts of the rows shown are read from
    period: Period | None = None  # the date range the question names: articles dated in it rank higher


def gather(store: Backend, query_vector: np.ndarray, query: str,
           config: RetrievalConfig, scope: Scope | None = None, period: Period | None = None) -> Pool:
    """Candidates from both retrievers, each scored by both, among the articles ``scope`` admits. A ``period``
    the question names adds the best candidates dated in it (inside the scope), so they can be preferred even
    when the whole collection's lists would not reach them."""
    scope = scope or None
    dense = store.dense(query_vector, config.candidates, scope)
    # One BM25 query ranks every match anyway; reading a deeper list gives most dense candidates their exact
    # BM25 score for free. One that is not in it has less than the last score read: 0 is close enough.
    deep = store.lexical(query, max(config.candidates, config.lexical_depth), config.bm25_weights, scope)
    lexical = dict(deep[: config.candidates])
    known = dict(deep)
    if period is not None:
        within = (scope or Scope()).narrowed(period.since, period.until)
        if within is not None:
            dense.update(store.dense(query_vector, config.candidates, within))
            dated = store.lexical(query, config.candidates, config.bm25_weights, within)
            known.update(dated)  # BM25 uses whole-collection statistics: the same score as unfiltered
            lexical.update(dated)
    dense.update(store.cosines(query_vector, [i for i in lexical if i not in dense]))
    lexical.update({i: known.get(i, 0.0) for i in dense if i not in lexical})
    parts = []
    if config.part_weight > 0:
        for part in question_parts(query):
            found = dict(store.lexical(part, config.candidates, config.bm25_weights, scope))
            parts.append((found, named_sources(store, part), date_cues(part)))
    rows = store.chunk_rows(list(dense), text=False)
    return Pool(query, query_vector, {i: s for i, s in dense.items() if i in rows},
                {i: s for i, s in lexical.items() if i in rows}, rows,
                named_sources(store, query), date_cues(query), parts, store, period)


def _cued(score: float, row: dict, sources: set[str], dates: set[str], config: RetrievalConfig,
          period: Period | None = None) -> float:
    if config.source_boost and row["source"] in sources:
        score += config.source_boost
    if config.date_boost and row["date"] and row["date"][:10] in dates:
        score += config.date_boost
    if period is not None and config.period_boost and row["date"] and period.since <= row["date"][:10] <= period.until:
        score += config.period_boost
    return score


def rank(pool: Pool, config: RetrievalConfig) -> list[dict]:
    """The pool's rows, best first, scored by ``config`` (fusion, then publisher and date cues)."""
    if config.mode == "dense":
        fused = scale_by_best(pool.dense)
    elif config.mode == "bm25":
        fused = scale_by_best(pool.lexical)
    elif config.fusion == "rrf":
        by_dense = sorted(pool.dense.items(), key=lambda kv: (-kv[1], kv[0]))[: config.candidates]
        by_lexical = [kv for kv in sorted(pool.lexical.items(), key=lambda kv: (-kv[1], kv[0])) if kv[1] > 0]
        fused = dict(reciprocal_rank_fusion([by_dense, by_lexical[: config.candidates]],
                                            [1 - config.lexical_weight, config.lexical_weight], config.rrf_k))
    else:
        fused = convex_fusion(pool.dense, pool.lexical, config.lexical_weight, config.normalization)
    best_part: dict[int, float] = {}
    for found, sources, dates in pool.parts if config.part_weight > 0 else ():
        for cid, value in scale_by_best(found).items():
            if cid in fused:
                value = _cued(value, pool.rows[cid], sources, dates, config)
                best_part[cid] = max(best_part.get(cid, 0.0), value)
    ranked = []
    for cid, score in fused.items():
        row = dict(pool.rows[cid])
        score = _cued(score, row, pool.sources, pool.dates, config, pool.period) + config.part_weight * best_part.get(cid, 0.0)
        row["score"] = score
        ranked.append(row)
    # Ties go by article and chunk number, not by chunk id: ids differ from store to store (Milvus derives them
    # from content hashes), and the same index must rank alike on every store.
    ranked.sort(key=lambda r: (-r["score"], r["doc_id"], r["chunk_no"]))
    return ranked


def finish(pool: Pool, ranked: list[dict], k: int, config: RetrievalConfig) -> Retrieved:
    """The top ``k`` of ``ranked`` as passages, repetition kept out."""
    def load_texts(rows: list[dict]) -> None:
        texts = pool.store.chunk_texts([r["id"] for r in rows])
        for r in rows:
            r["text"] = texts.get(r["id"], "")

    chosen = select(ranked, k, config.per_article, config.duplicate_overlap,
                    load_texts if pool.store is not None else None)
    starts = pool.store.page_starts(sorted({r["doc_id"] for r in chosen})) if pool.store is not None and chosen else {}
    passages = [
        Passage(rank=n, doc_id=r["doc_id"], title=r["title"], date=r["date"], chunk_no=r["chunk_no"], start=r["start"],
                end=r["end"], text=r["text"], score=round(r["score"], 6), source=r["source"],
                pages=pages_of(starts[r["doc_id"]], r["start"], r["end"]) if r["doc_id"] in starts else [])
        for n, r in enumerate(chosen, start=1)
    ]
    similarities = [pool.dense.get(r["id"], 0.0) for r in chosen]
    return Retrieved(passages, pool.query_vector, max(pool.dense.values(), default=0.0), similarities, pool.period)


def hybrid_search(store: Backend, query_vector: np.ndarray, query: str, k: int,
                  config: RetrievalConfig, scope: Scope | None = None, period: Period | None = None) -> Retrieved:
    """Top ``k`` passages for ``query`` (whose embedding is ``query_vector``) among the articles ``scope``
    admits, those dated in ``period`` first; texts are cut from the articles by their stored offsets. The caller
    holds the index's read lock, so the backend stays put meanwhile."""
    pool = gather(store, query_vector, query, config, scope, period)
    return finish(pool, rank(pool, config), k, config)
