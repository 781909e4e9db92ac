"""BM25 held in memory, with the very scores FTS5's ``bm25()`` gives on the same table.

Why: FTS5 scores every row holding any of a question's words before it can sort them (a median 4,706 of 7,433
chunks on MultiHop-RAG): about nine tenths of a hybrid search after the embedding (docs/performance.md, "Filtered
questions, and where hybrid search spends its time"). Here each word's postings are numpy arrays and a question is
scored with a few vector operations.

Exact by construction, not by imitation: the postings are read from FTS5's own index (its ``fts5vocab`` tables),
so every token is the one FTS5 made (porter stems, diacritics removed); a question's words are tokenized by an
FTS5 table with the same tokenizer; and the formula is FTS5's (``fts5_aux.c``: k1 = 1.2, b = 0.75, idf floored at
1e-6, a row's length summed over its columns, each phrase's frequency the sum of its column weights), computed in
the same order, so for the default weights the scores are the same doubles (tests/test_bm25.py compares them).

FTS5 stays the source of truth. A snapshot is labelled with the index's write stamp; when the stamp moves (a write
here or in another process) the snapshot catches up from the chunk ids alone: chunks gone are masked, chunks new
(ids only grow: AUTOINCREMENT) are tokenized by a scratch FTS5 table. Until a snapshot exists, and for an index
over ``QA_BM25_MEMORY`` chunks, the caller asks FTS5 as before: same scores, slower.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .lexical import MAX_QUERY_TERMS, query_terms

log = logging.getLogger("qa.bm25")

K1 = 1.2  # FTS5's constants (fts5_aux.c, fts5Bm25Function)
B = 0.75
COLUMNS = ("title", "meta", "body")  # the chunks_fts columns, in order
# An index of at most this many chunks gets its snapshot on the first search (about 0.1 ms a chunk, measured on
# MultiHop-RAG: 0.68 s for 7,433 chunks); a larger one is read in the background, FTS5 answering meanwhile.
SYNC_BUILD_CHUNKS = 2000
# Seconds before a background read starts: a one-shot `qa ask` is done by then and never pays for it.
BUILD_DELAY_S = 2.0
# Instances (word occurrences) read from FTS5 in one statement while building: bounds the text held at once.
READ_BATCH_INSTANCES = 2_000_000
# Rebuild in the background once this share of the snapshot's chunks has been deleted since it was read.
DEAD_SHARE_REBUILD = 0.25


def _vocab_tables(conn: sqlite3.Connection, schema: str, table: str) -> tuple[str, str]:
    """Names of temp ``fts5vocab`` tables (row and instance) over ``schema.table`` on this connection."""
    row, instance = f"temp.{table}_vocab_row", f"temp.{table}_vocab_instance"
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {row} USING fts5vocab({schema}, {table}, row)")
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {instance} USING fts5vocab({schema}, {table}, instance)")
    return row, instance


class ReadStopped(Exception):
    """A background read of the postings given up because its index is closing."""


def read_postings(conn: sqlite3.Connection, schema: str, table: str, ids: np.ndarray,
                  stop: Callable[[], bool] = lambda: False
                  ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Every word's postings in the FTS5 table ``schema.table`` (columns ``COLUMNS``), whose rows are ``ids``
    (ascending): word → (positions in ``ids`` as int32, occurrences per column as an (n, 3) uint16 array), and
    each row's length in tokens. The caller holds one read transaction, so the two reads agree. ``stop`` is asked
    before each statement: True gives up (ReadStopped), so a closing index waits for one batch at most."""
    row_table, instance_table = _vocab_tables(conn, schema, table)
    vocab = conn.execute(f"SELECT term, cnt FROM {row_table}").fetchall()
    terms = [t for t, _ in vocab]
    counts = np.fromiter((c for _, c in vocab), dtype=np.int64, count=len(vocab))
    code = " ".join(f"WHEN '{c}' THEN {i}" for i, c in enumerate(COLUMNS))
    parts = []
    first = 0
    while first < len(terms):
        if stop():
            raise ReadStopped(f"{schema}.{table}")
        # Term ranges holding about READ_BATCH_INSTANCES occurrences, each read as one string: a Python tuple per
        # occurrence would take most of the time (1.6 s against 0.5 s for MultiHop-RAG's 1.4 million).
        last, held = first, int(counts[first])
        while last + 1 < len(terms) and held + counts[last + 1] <= READ_BATCH_INSTANCES:
            last += 1
            held += int(counts[last])
        (text,) = conn.execute(
            f"SELECT group_concat(doc * 4 + CASE col {code} END, ' ') FROM {instance_table} "
            "WHERE term >= ? AND term <= ?", (terms[first], terms[last])).fetchone()
        part = np.fromstring(text, dtype=np.int64, sep=" ") if text else np.zeros(0, dtype=np.int64)
        if len(part) != held:
            raise RuntimeError(f"FTS5 listed {held} occurrences of {last - first + 1} words but gave {len(part)}")
        parts.append(part)
        first = last + 1
    codes = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    docs, cols = codes >> 2, codes & 3
    positions = np.searchsorted(ids, docs)
    if len(docs) and (positions.max() >= len(ids) or not np.array_equal(ids[positions], docs)):
        raise RuntimeError("FTS5 holds rows that are not chunks")
    lengths = np.bincount(positions, minlength=len(ids)).astype(np.float64)
    term_of = np.repeat(np.arange(len(terms)), counts)
    # Occurrences come sorted by word, row, column: a group is one word in one row.
    starts = np.ones(len(codes), dtype=bool)
    starts[1:] = (term_of[1:] != term_of[:-1]) | (positions[1:] != positions[:-1])
    group = np.cumsum(starts) - 1
    groups = int(group[-1]) + 1 if len(group) else 0
    per_column = np.bincount(group * 3 + cols, minlength=groups * 3).reshape(groups, 3)
    if per_column.size and per_column.max() > np.iinfo(np.uint16).max:
        raise RuntimeError("a word occurs more than 65,535 times in one chunk")
    per_column = per_column.astype(np.uint16)
    group_pos = positions[starts].astype(np.int32)
    bounds = np.concatenate([[0], np.cumsum(np.bincount(term_of[starts], minlength=len(terms)))])
    postings = {t: (group_pos[bounds[i]:bounds[i + 1]], per_column[bounds[i]:bounds[i + 1]])
                for i, t in enumerate(terms) if bounds[i + 1] > bounds[i]}
    return postings, lengths


def _scratch(tokenizer: str) -> sqlite3.Connection:
    """An in-memory database with an empty FTS5 table ``t`` tokenizing as the index does."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute(f"CREATE VIRTUAL TABLE t USING fts5({', '.join(COLUMNS)}, tokenize = '{tokenizer}')")
    return conn


def tokenize_rows(rows: list[tuple[int, str, str, str]], tokenizer: str
                  ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """``read_postings`` for rows not in the index yet (``(rowid, title, meta, body)``, rowids ascending): FTS5
    itself tokenizes them, in a scratch table."""
    conn = _scratch(tokenizer)
    try:
        conn.executemany(f"INSERT INTO t(rowid, {', '.join(COLUMNS)}) VALUES (?, ?, ?, ?)", rows)
        return read_postings(conn, "main", "t", np.asarray([r[0] for r in rows], dtype=np.int64))
    finally:
        conn.close()


_WORDS: dict[tuple[str, str], tuple[str, ...]] = {}
_WORDS_KEPT = 65536
_WORDS_LOCK = threading.Lock()


def word_tokens(words: list[str], tokenizer: str) -> list[tuple[str, ...]]:
    """The tokens FTS5 makes of each word (a quoted query word is a phrase of these), kept for the next question:
    the words not met before are tokenized together, by a scratch FTS5 table."""
    with _WORDS_LOCK:
        known = {w: _WORDS.get((w, tokenizer)) for w in words}
    new = [w for w, made in known.items() if made is None]
    if new:
        conn = _scratch(tokenizer)
        try:
            conn.executemany("INSERT INTO t(rowid, body) VALUES (?, ?)", enumerate(new, start=1))
            _, instance = _vocab_tables(conn, "main", "t")
            made: dict[int, list[str]] = {}
            for doc, term in conn.execute(f"SELECT doc, term FROM {instance} ORDER BY doc, offset"):
                made.setdefault(doc, []).append(term)
        finally:
            conn.close()
        with _WORDS_LOCK:
            if len(_WORDS) + len(new) > _WORDS_KEPT:
                _WORDS.clear()
            for i, w in enumerate(new, start=1):
                known[w] = _WORDS[(w, tokenizer)] = tuple(made.get(i, ()))
    return [known[w] for w in words]


def query_tokens(text: str, tokenizer: str) -> list[str] | None:
    """The phrases of ``qa.lexical.fts_query(text)`` as single tokens, in order; None when a word makes several
    tokens or none (a phrase FTS5 matches by position, which this index does not keep): FTS5 answers those."""
    words = query_terms(text)[:MAX_QUERY_TERMS]
    tokens = []
    for made in word_tokens(words, tokenizer):
        if len(made) != 1:
            return None
        tokens.append(made[0])
    return tokens


def _frequencies(per_column: np.ndarray, weights: np.ndarray, integral: bool) -> np.ndarray:
    """Each row's frequency of a phrase: FTS5 adds the column's weight once per occurrence, column by column."""
    if integral:
        return per_column @ weights  # sums of integers: exact, whatever the order
    freq = np.zeros(len(per_column))
    for c, w in enumerate(weights):
        column = per_column[:, c]
        for j in range(int(column.max(initial=0))):
            freq += np.where(column > j, w, 0.0)
    return freq


@dataclass
class Snapshot:
    """BM25 postings of every chunk at one write stamp. Read-only once made: a later stamp makes a new one that
    shares the arrays of the words that did not change."""

    stamp: object
    ids: np.ndarray  # int64, ascending: position → chunk id
    lengths: np.ndarray  # float64: tokens in the chunk's title, meta and body together
    alive: np.ndarray  # bool: False for chunks deleted since their postings were read
    postings: dict[str, tuple[np.ndarray, np.ndarray]]
    dead: int = 0
    _norms: np.ndarray | None = field(default=None, repr=False)
    _masks: dict = field(default_factory=dict, repr=False)
    _masks_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def rows(self) -> int:
        return len(self.ids) - self.dead

    def search(self, tokens: list[str], limit: int, weights: tuple[float, float, float],
               admitted: frozenset[int] | None = None) -> list[tuple[int, float]]:
        """``(chunk id, score)`` of the ``limit`` best chunks holding any of ``tokens``, best first (ties by
        id), among ``admitted`` when given; the scores are FTS5's for ``"t1" OR "t2" ...``."""
        rows = self.rows
        if not tokens or not rows or admitted is not None and not admitted:
            return []
        norm = self._norm()
        w = np.asarray(weights, dtype=np.float64)
        integral = all(float(x).is_integer() for x in weights)
        score = np.zeros(len(self.ids))
        for token in tokens:
            found = self.postings.get(token)
            if found is None:
                continue
            pos, per_column = found
            if self.dead:
                keep = self.alive[pos]
                pos, per_column = pos[keep], per_column[keep]
            if not len(pos):
                continue
            idf = math.log((rows - len(pos) + 0.5) / (len(pos) + 0.5))
            if idf <= 0.0:
                idf = 1e-6
            freq = _frequencies(per_column, w, integral)
            score[pos] += idf * ((freq * (K1 + 1.0)) / (freq + norm[pos]))
        hit = score > 0  # every term a chunk holds adds more than 0 (idf is at least 1e-6)
        if admitted is not None:
            hit &= self._admitted_mask(admitted)
        found = np.flatnonzero(hit)
        if len(found) > limit:
            # The best ``limit`` by score, every chunk tied with the last of them kept for the tie-break by id.
            cut = np.partition(score[found], len(found) - limit)[len(found) - limit]
            found = found[score[found] >= cut]
        order = np.lexsort((self.ids[found], -score[found]))[:limit]
        best = found[order]
        return list(zip(self.ids[best].tolist(), score[best].tolist()))

    def _norm(self) -> np.ndarray:
        """FTS5's ``k1 * (1 - b + b * D / avgdl)`` for every chunk (the same for every question at this stamp)."""
        if self._norms is None:
            avgdl = float(self.lengths[self.alive].sum()) / float(self.rows)
            self._norms = K1 * (1 - B + B * self.lengths / avgdl)
        return self._norms

    def _admitted_mask(self, admitted: frozenset[int]) -> np.ndarray:
        # One question reads the same filter's ids up to five times (the backend keeps the frozenset): its mask
        # is kept with it, the set itself held so that its id is not reused meanwhile.
        with self._masks_lock:
            kept = self._masks.get(id(admitted))
        if kept is not None and kept[0] is admitted:
            return kept[1]
        mask = np.isin(self.ids, np.fromiter(admitted, dtype=np.int64, count=len(admitted)))
        with self._masks_lock:
            if len(self._masks) >= 8:
                self._masks.pop(next(iter(self._masks)))
            self._masks[id(admitted)] = (admitted, mask)
        return mask

    def caught_up(self, stamp, ids: np.ndarray, read_new: Callable[[np.ndarray], tuple[dict, np.ndarray]]
                  ) -> "Snapshot":
        """This snapshot moved to ``stamp``, where the chunks are ``ids`` (ascending): chunks no longer there are
        masked, new ones (``read_new(their ids)`` gives their postings) appended."""
        present = np.isin(self.ids, ids)
        alive = self.alive & present
        new_ids = ids[~np.isin(ids, self.ids)]
        if len(new_ids) and len(self.ids) and new_ids[0] <= self.ids[-1]:
            raise ValueError("a chunk id was handed out again")  # cannot happen with AUTOINCREMENT: read afresh
        if not len(new_ids):
            return Snapshot(stamp, self.ids, self.lengths, alive, self.postings, int((~alive).sum()))
        postings, lengths = read_new(new_ids)
        merged = dict(self.postings)
        offset = len(self.ids)
        for term, (pos, per_column) in postings.items():
            pos = pos + np.int32(offset)
            old = merged.get(term)
            merged[term] = (pos, per_column) if old is None else (
                np.concatenate([old[0], pos]), np.concatenate([old[1], per_column]))
        return Snapshot(stamp, np.concatenate([self.ids, new_ids]), np.concatenate([self.lengths, lengths]),
                        np.concatenate([alive, np.ones(len(new_ids), dtype=bool)]), merged, int((~alive).sum()))


class MemoryBM25:
    """The in-memory BM25 of one embedded index generation (``SqliteFaissBackend``): a snapshot kept at the
    index's current write stamp, made on the first search (small index), in the background (large one), or by
    ``warm()``; None from ``search`` whenever FTS5 must answer instead."""

    def __init__(self, store, max_chunks: int, tokenizer: str):
        self.store = store
        self.max_chunks = max_chunks
        self.tokenizer = tokenizer
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()
        self._building = False
        self._declined = None  # the stamp at which the index was found too large (or a read failed)
        self._build: threading.Timer | None = None
        self._closed = False

    def search(self, query: str, limit: int, weights: tuple[float, float, float], stamp,
               admitted: frozenset[int] | None = None) -> list[tuple[int, float]] | None:
        """FTS5's BM25 ranking of ``query`` from memory, or None: no snapshot yet, or a word FTS5 would read as
        a phrase of several tokens."""
        if self.max_chunks <= 0:
            return None
        snapshot = self.current(stamp)
        if snapshot is None:
            return None
        tokens = query_tokens(query, self.tokenizer)
        if tokens is None:
            return None
        return snapshot.search(tokens, limit, weights, admitted)

    def warm(self, stamp) -> bool:
        """Read the snapshot now (a server before its first question); False when the index is too large."""
        return self.max_chunks > 0 and self.current(stamp, build_now=True) is not None

    def current(self, stamp, *, build_now: bool = False) -> Snapshot | None:
        """The snapshot at ``stamp`` (or a newer one, when a write landed meanwhile), caught up or made when
        needed; None while FTS5 must answer."""
        snapshot = self._snapshot
        if snapshot is not None and snapshot.stamp == stamp:
            return snapshot
        with self._lock:
            snapshot = self._snapshot
            if snapshot is not None and snapshot.stamp == stamp:
                return snapshot
            if self._declined == stamp:
                return None
            if snapshot is not None:
                try:
                    snapshot = self._snapshot = self._catch_up(snapshot)
                except ValueError:
                    snapshot = self._snapshot = None
                if snapshot is not None:
                    if snapshot.dead > DEAD_SHARE_REBUILD * len(snapshot.ids) and not self._building:
                        self._start_build(delay=0.0)
                    return snapshot
            if self._building and not build_now:
                return None
            chunks = self.store.counts()[1]
            if chunks > self.max_chunks:
                self._declined = stamp
                return None
            if build_now or chunks <= SYNC_BUILD_CHUNKS:
                snapshot = self._snapshot = self._read()
                return snapshot
            self._start_build(delay=BUILD_DELAY_S)
            return None

    def _read(self) -> Snapshot:
        """Every chunk's postings, read in one transaction with the stamp they belong to."""
        with self.store.read_transaction() as db:
            stamp = self.store.generation()
            ids = self.store.chunk_ids()
            ids.sort()
            postings, lengths = read_postings(db, "main", "chunks_fts", ids, stop=lambda: self._closed)
        return Snapshot(stamp, ids, lengths, np.ones(len(ids), dtype=bool), postings)

    def _catch_up(self, snapshot: Snapshot) -> Snapshot | None:
        with self.store.read_transaction():
            stamp = self.store.generation()
            ids = self.store.chunk_ids()
            ids.sort()
            if len(ids) > self.max_chunks:
                self._declined = stamp
                return None
            rows = self.store.fts_rows(ids[~np.isin(ids, snapshot.ids)].tolist())
        return snapshot.caught_up(stamp, ids, lambda _new: tokenize_rows(rows, self.tokenizer))

    def close(self) -> None:
        """Stop reading: a pending background read never starts, and a running one gives up at its next batch
        and is waited for, so the store can close its connections next (closing one in the middle of another
        thread's read crashes CPython's sqlite3)."""
        with self._lock:
            self._closed = True
            build, self._build = self._build, None
        if build is not None:
            build.cancel()
            if build.is_alive() and build is not threading.current_thread():
                build.join()

    def _start_build(self, delay: float) -> None:
        """Read a fresh snapshot in a background thread after ``delay`` seconds; called under ``self._lock``."""
        if self._closed:
            return
        self._building = True

        def build() -> None:
            try:
                if self._closed:
                    raise ReadStopped("the index closed before its BM25 was read")
                fresh = self._read()
            except Exception as e:  # a closed store (generation replaced), a failed read: FTS5 keeps answering
                log.debug("in-memory BM25 not read: %s", e)
                with self._lock:
                    self._building = False
                return
            with self._lock:
                self._building = False
                self._snapshot = fresh  # when a write landed meanwhile, the next search catches it up

        timer = self._build = threading.Timer(delay, build)
        timer.daemon = True  # never keeps a finished command alive
        timer.start()
