"""The plain records that flow between modules: articles in, passages and answers out."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields

# C0 control characters but tab, newline and carriage return. NUL ends a string in SQLite's text functions (so
# ``substr`` would cut a chunk short of its offsets) and none of them is text.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def strip_controls(text: str) -> str:
    """``text`` without NUL and the other C0 control characters except \\t, \\n and \\r."""
    return _CONTROLS.sub("", text) if _CONTROLS.search(text) else text


def has_lone_surrogate(value) -> bool:
    """Whether parsed JSON holds a string with a lone surrogate escape ("\\ud800"), which is not text and which
    SQLite cannot store. Iterative: JSON may nest deeper than a recursive walk can go."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return False


@dataclass
class Article:
    """One article as ingested. ``text`` is verbatim after decoding, less the C0 control characters other than
    tab, newline and carriage return (removed from every field): every offset refers to it."""

    doc_id: str
    text: str
    title: str = ""
    date: str = ""
    source: str = ""
    url: str = ""
    author: str = ""
    path: str = ""
    pages: list[int] = field(default_factory=list)  # a PDF's page start offsets in ``text`` (page n at [n-1])
    note: str = ""  # how the text was read, when worth telling (an HTML page without main text found); not stored

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str):
                setattr(self, f.name, strip_controls(value))


@dataclass(frozen=True)
class Chunk:
    """A run of whole sentences of one article: ``article.text[start:end] == text``."""

    chunk_no: int
    start: int
    end: int
    text: str


@dataclass
class Passage:
    """A retrieved chunk with its citation. ``rank`` is what ``[n]`` in an answer refers to."""

    rank: int
    doc_id: str
    title: str
    date: str
    chunk_no: int
    start: int
    end: int
    text: str
    score: float
    source: str = ""
    weak: bool = False
    pages: list[int] = field(default_factory=list)  # the PDF pages (1-based) the passage is on; [] if not paged

    def to_dict(self) -> dict:
        return asdict(self)


def pages_of(starts: list[int], start: int, end: int) -> list[int]:
    """The pages (1-based) that characters ``start:end`` lie on, given each page's start offset."""
    found = []
    for n, first in enumerate(starts, start=1):
        last = starts[n] if n < len(starts) else float("inf")
        if first < max(end, start + 1) and last > start and last > first:
            found.append(n)
    return found


def page_label(pages: list[int]) -> str:
    """'p. 3', 'pp. 2–4' or 'pp. 1, 3' (a page without text between) for a passage's pages; '' for none."""
    if not pages:
        return ""
    if len(pages) == 1:
        return f"p. {pages[0]}"
    if pages[-1] - pages[0] == len(pages) - 1:
        return f"pp. {pages[0]}–{pages[-1]}"
    return "pp. " + ", ".join(map(str, pages))


def merge_passages(passages: list[dict]) -> list[dict]:
    """Passages of one article whose character ranges overlap or touch, as one passage spanning their union (a
    card on the page), in the order of their best rank. The union's text is put together from the parts' texts by
    their offsets (each part is ``article[start:end]``, so the union is ``article[min start:max end]`` exactly);
    ``ranks`` lists the ranks merged (``rank`` is the best), ``weak`` holds only when every part is weak."""
    by_doc: dict[str, list[dict]] = {}
    for p in passages:
        by_doc.setdefault(p["doc_id"], []).append(p)
    merged = []
    for parts in by_doc.values():
        group: list[dict] = []
        for p in sorted(parts, key=lambda p: (p["start"], p["end"])):
            if group and p["start"] <= max(q["end"] for q in group):
                group.append(p)
            else:
                if group:
                    merged.append(_union(group))
                group = [p]
        merged.append(_union(group))
    return sorted(merged, key=lambda p: p["rank"])


def _union(group: list[dict]) -> dict:
    if len(group) == 1:
        return {**group[0], "ranks": [group[0]["rank"]]}
    text, start, end = group[0]["text"], group[0]["start"], group[0]["end"]
    for p in group[1:]:  # sorted by start, each starting at or before ``end``
        if p["end"] > end:
            text += p["text"][end - p["start"]:]
            end = p["end"]
    best = min(group, key=lambda p: p["rank"])
    return {**best, "start": start, "end": end, "text": text, "score": max(p["score"] for p in group),
            "ranks": sorted(p["rank"] for p in group), "weak": all(p.get("weak") for p in group),
            "pages": sorted({n for p in group for n in (p.get("pages") or [])})}


@dataclass
class AnswerSpan:
    """One answer sentence, located in its article by character offsets."""

    rank: int
    doc_id: str
    start: int
    end: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Answer:
    """The reply to a question: answer sentences with ``[n]`` markers and the passages they cite."""

    question: str
    answer: str
    answerable: bool
    passages: list[Passage]
    answer_spans: list[AnswerSpan] = field(default_factory=list)
    took_ms: float = 0.0
    query: str = ""
    sentences_read: int = 0  # sentences the reader read for this answer (0: reader off)
    date_range: dict | None = None  # {"since", "until", "phrase"}: the period the question named, preferred
    filters: dict | None = None  # {"since", "until", "sources", "doc_ids"}: the caller's filters, when any
    # Who wrote the answer (qa/llm.py): "extractive" (sentences of the passages) or "llm" (a local model, each
    # sentence checked against the passage it cites); the model's sentences its passage did not support; whether
    # the extractive answer stands in for the model's; and why, or why the model's answer was cut short.
    mode: str = "extractive"
    sentences_dropped: int = 0
    fell_back: bool = False
    llm_note: str | None = None

    def to_dict(self) -> dict:
        return {
            "question": self.question,
            "answer": self.answer,
            "answerable": self.answerable,
            "passages": [p.to_dict() for p in self.passages],
            "answer_spans": [s.to_dict() for s in self.answer_spans],
            "took_ms": self.took_ms,
            "query": self.query,
            "sentences_read": self.sentences_read,
            "date_range": self.date_range,
            "filters": self.filters,
            "mode": self.mode,
            "sentences_dropped": self.sentences_dropped,
            "fell_back": self.fell_back,
            "llm_note": self.llm_note,
        }


@dataclass
class DocumentInfo:
    """A row of the article list."""

    doc_id: str
    title: str
    date: str
    source: str
    url: str
    chunks: int
    chars: int
    added_at: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AddReport:
    """What an add or index run did, article by article."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # "doc_id: how it was read", for articles read unusually
    dropped: list[str] = field(default_factory=list)  # a rebuild's: stored articles not in its new set
    chunks: int = 0
    embedded: int = 0
    seconds: float = 0.0
    created: bool = False  # an add that found no index and built it from its articles

    def to_dict(self) -> dict:
        return asdict(self)
