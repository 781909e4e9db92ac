"""Cutting passages and articles into highlighted segments by character offsets (never by searching text),
and the answer text into sentences and ``[n]`` markers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# ASCII digits only, and few: "[٢]" in an article's sentence is not a marker, nor "[" + 5,000 digits + "]" (which
# int() refuses: every page citing that sentence failed).
_MARKER = re.compile(r"\s*\[([0-9]{1,4})\]")


@dataclass(frozen=True)
class Segment:
    """A run of text with the same highlighting; ``anchors`` are element ids placed just before it."""

    text: str
    passage: bool = False
    answer: bool = False
    anchors: tuple[str, ...] = field(default_factory=tuple)


def _clip(spans, lo: int, hi: int) -> list[tuple[int, int]]:
    """Spans clipped to ``[lo, hi)``, sorted, overlapping ones merged, empty ones dropped."""
    merged: list[tuple[int, int]] = []
    for s, e in sorted((max(lo, s), min(hi, e)) for s, e in spans):
        if s >= e:
            continue
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def segments(text: str, base: int = 0, *, passage: tuple[int, int] | None = None,
             answers=(), anchors: dict[int, list[str]] | None = None) -> list[Segment]:
    """``text`` (which starts at article offset ``base``) cut where the passage, the answer sentences and the
    anchors begin and end. All offsets are article offsets; each segment is ``text[a - base:b - base]``."""
    end = base + len(text)
    if not text:
        return []
    answer_spans = _clip(answers, base, end)
    passage_span = _clip([passage], base, end) if passage else []
    anchors = {o: ids for o, ids in (anchors or {}).items() if base <= o < end}
    cuts = {base, end, *anchors}
    for s, e in answer_spans + passage_span:
        cuts.update((s, e))
    ordered = sorted(cuts)
    out: list[Segment] = []
    for a, b in zip(ordered, ordered[1:]):
        out.append(Segment(
            text=text[a - base:b - base],
            passage=any(s <= a and b <= e for s, e in passage_span),
            answer=any(s <= a and b <= e for s, e in answer_spans),
            anchors=tuple(anchors.get(a, ())),
        ))
    return out


def _ranks(passage: dict) -> set[int]:
    return set(passage.get("ranks") or [passage["rank"]])


def _spans_in(passage: dict, spans: list[dict]) -> list[tuple[int, int]]:
    """The answer sentences taken from ``passage`` (from any of the passages merged into it)."""
    ranks = _ranks(passage)
    return [(s["start"], s["end"]) for s in spans if s["rank"] in ranks and s["doc_id"] == passage["doc_id"]]


def passage_segments(passage: dict, spans: list[dict]) -> list[Segment]:
    """A cited passage with the answer sentences that were taken from it highlighted."""
    return segments(passage["text"], passage["start"], answers=_spans_in(passage, spans))


def _sentence_parts(answer: str, passages: list[dict], spans: list[dict]) -> list[tuple[str, int | None]] | None:
    """The parts of an answer made of its answer sentences, each followed by its marker (the extractive answer),
    cut by the sentences' offsets, so that "[3]" written inside an article's sentence stays text; None when the
    answer is not exactly those sentences (an LLM's own words)."""
    by_rank = {p["rank"]: p for p in passages}
    parts: list[tuple[str, int | None]] = []
    for s in spans:
        p = by_rank.get(s["rank"])
        if p is None or p["doc_id"] != s["doc_id"] or not p["start"] <= s["start"] <= s["end"] <= p["end"]:
            return None
        parts += [((" " if parts else "") + p["text"][s["start"] - p["start"]:s["end"] - p["start"]], None),
                  ("", s["rank"])]
    return parts if parts and "".join(t or f" [{n}]" for t, n in parts) == answer else None


def answer_parts(answer: str, ranks: set[int], passages: list[dict] = (),
                 spans: list[dict] = ()) -> list[tuple[str, int | None]]:
    """The answer text as ``(text, None)`` runs and ``("", n)`` citation markers for passages that exist. Given
    the passages and answer sentences, an answer made of those sentences is cut by their offsets."""
    exact = _sentence_parts(answer, list(passages), list(spans))
    if exact is not None:
        return exact
    parts: list[tuple[str, int | None]] = []
    pos = 0
    for m in _MARKER.finditer(answer):
        n = int(m.group(1))
        if n not in ranks:
            continue
        if m.start() > pos:
            parts.append((answer[pos:m.start()], None))
        parts.append(("", n))
        pos = m.end()
    if pos < len(answer):
        parts.append((answer[pos:], None))
    return parts


def excerpt(passage: dict, spans: list[dict], context: int = 90, plain: int = 220) -> dict:
    """A glance at a passage: its answer sentences with about ``context`` characters either side (cut at a space),
    or its first ``plain`` characters when it holds none. Sentences further apart than twice ``context`` (in a card
    that merged passages) are separate ``pieces``, shown with "…" between; ``before``/``after`` say whether text
    was left out at the start and the end."""
    text, base = passage["text"], passage["start"]
    mine = [(s - base, e - base) for s, e in _clip(_spans_in(passage, spans), base, base + len(text))]
    windows: list[list[int]] = []  # [lo, hi, first sentence's start, last sentence's end], passage offsets
    for s, e in mine:
        if windows and s - context <= windows[-1][1]:
            windows[-1][1], windows[-1][3] = e + context, e
        else:
            windows.append([s - context, e + context, s, e])
    if not windows:
        windows = [[0, plain, plain, 0]]
    pieces = []
    for lo, hi, first, last in windows:
        lo, hi = max(0, lo), min(len(text), hi)
        if lo > 0:
            space = text.find(" ", lo, min(first, hi))
            lo = space + 1 if space != -1 else lo
        if hi < len(text):
            space = text.rfind(" ", max(last, lo), hi)
            hi = space if space != -1 else hi
        pieces.append((lo, hi))
    return {"pieces": [segments(text[lo:hi], base + lo, answers=[(s + base, e + base) for s, e in mine])
                       for lo, hi in pieces],
            "before": pieces[0][0] > 0, "after": pieces[-1][1] < len(text)}
