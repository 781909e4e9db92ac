"""Reading a question: its content words as an FTS5 BM25 query (each quoted, so user input is never parsed as FTS5
syntax), and the publishers and dates it names, which retrieval matches against the articles' metadata."""

from __future__ import annotations

import re
from datetime import date as Date

_WORD = re.compile(r"\w+", re.UNICODE)

STOP_WORDS = frozenset(
    """a about above after again against all am an and any are aren't as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having he
    her here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
    now of off on once only or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves s t don didn doesn
    isn wasn weren won wouldn shouldn couldn ve ll re d m also say said says tell told according article articles
    report reported news""".split()
)


def query_terms(text: str) -> list[str]:
    """Distinct lower-cased content words of ``text``, in order."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if word not in STOP_WORDS and word not in seen:
            seen[word] = None
    return list(seen)


# A question's words searched, at most (a pasted paragraph is a question too; its first words are searched).
MAX_QUERY_TERMS = 64


def fts_query(text: str) -> str:
    """An FTS5 MATCH expression: the quoted content words joined by OR ('' when nothing is left)."""
    terms = query_terms(text)[:MAX_QUERY_TERMS]
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def source_aliases(source: str) -> list[str]:
    """How a question may name a publisher: its full name and the name before a " | " or " - " tagline
    ("The Independent - Life and Style" → "The Independent")."""
    name = " ".join(source.split())
    aliases = [name] if name else []
    short = re.split(r"\s+[|\u2013\u2014-]\s+|:\s+", name, maxsplit=1)[0].strip()
    if short and short != name:
        aliases.append(short)
    return aliases


_MONTHS = {m: i for i, m in enumerate(
    "january february march april may june july august september october november december".split(), start=1)}
_MONTHS.update({m[:3]: i for m, i in list(_MONTHS.items())})
_MONTHS["sept"] = 9
_MONTH = r"(january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|" \
         r"jun|jul|aug|sept|sep|oct|nov|dec)"
_DATE_PATTERNS = (
    (re.compile(_MONTH + r"\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})\b", re.IGNORECASE), (1, 2, 3)),
    (re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH + r"\.?,?\s+(\d{4})\b", re.IGNORECASE), (2, 1, 3)),
    (re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b"), None),
)


def date_cues(text: str) -> set[str]:
    """The calendar days a question names ("October 7, 2023", "7 Oct 2023", "2023-10-07") as ISO dates."""
    found: set[str] = set()
    for pattern, order in _DATE_PATTERNS:
        for m in pattern.finditer(text):
            try:
                if order is None:
                    day = Date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
                else:
                    month, dom, year = (m.group(i) for i in order)
                    day = Date(int(year), _MONTHS[month.lower()], int(dom))
            except ValueError:  # "February 30, 2023" names no day
                continue
            found.add(day.isoformat())
    return found


# Where a question that asks about several things breaks into its parts: conjunctions, semicolons and commas.
_PARTS = re.compile(
    r",?\s+(?:and|while|whereas|but|or)\s+(?:also\s+)?|;\s*|\s+(?:compared (?:to|with)|in contrast to|as well as|than)\s+"
    r"|,\s+",
    re.IGNORECASE,
)


def question_parts(question: str, min_terms: int = 3) -> list[str]:
    """The parts of a many-part question ("the TechCrunch article on X, while the Verge report on Y ..."), each
    with at least ``min_terms`` content words (shorter pieces join the part before them); [] for a question with
    a single part. Each part is searched on its own so that the evidence for every part can reach the top."""
    parts: list[str] = []
    for piece in _PARTS.split(question):
        piece = (piece or "").strip()
        if not piece:
            continue
        if len(query_terms(piece)) >= min_terms or not parts:
            parts.append(piece)
        else:
            parts[-1] = f"{parts[-1]} {piece}"
    if parts and len(query_terms(parts[0])) < min_terms and len(parts) > 1:
        parts[1] = f"{parts[0]} {parts[1]}"
        parts = parts[1:]
    return parts if len(parts) > 1 else []
