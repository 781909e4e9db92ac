"""What a question is asked of: filters given by the caller (a date range, outlets, article ids) and the period a
question names ("this week", "in March", "latest"), read against the newest article's date in the index.

Filters restrict retrieval (only matching articles can be cited); a period named in the question is a preference:
articles dated then are searched too and rank higher, others can still be cited when nothing dated then matches.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date as Date, timedelta
from typing import Iterable

from .errors import InvalidInput

_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def check_day(value: str, name: str) -> str:
    """``value`` as a YYYY-MM-DD day, or InvalidInput naming the parameter."""
    value = (value or "").strip()
    if not _ISO_DAY.match(value):
        raise InvalidInput(f"{name} must be a date written YYYY-MM-DD, not {value!r}")
    try:
        return Date.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidInput(f"{name} is not a calendar day: {value!r}") from None


def source_key(source: str) -> str:
    """How an outlet filter matches an article's source: trimmed, without regard to case in any alphabet (Python's
    lower(), as the Milvus backend's ``source_key``), so "ÖSTERREICH Post" and "österreich post" are one outlet."""
    return source.strip().lower()


@dataclass(frozen=True)
class Scope:
    """Filters on the articles retrieval may cite: ``since``/``until`` (inclusive YYYY-MM-DD; undated articles are
    left out when either is set), ``sources`` (outlet names, matched without regard to case or spacing) and
    ``doc_ids``. Empty fields filter nothing."""

    since: str = ""
    until: str = ""
    sources: tuple[str, ...] = ()
    doc_ids: tuple[str, ...] = ()

    @classmethod
    def of(cls, since: str | None = None, until: str | None = None, sources=None, doc_ids=None) -> "Scope":
        """A validated scope: InvalidInput for a malformed day or a range that ends before it starts."""
        since = check_day(since, "since") if since else ""
        until = check_day(until, "until") if until else ""
        if since and until and since > until:
            raise InvalidInput(f"since ({since}) is after until ({until})")
        names = tuple(dict.fromkeys(" ".join(str(s).split()) for s in (sources or ()) if str(s).strip()))
        ids = tuple(dict.fromkeys(str(d).strip() for d in (doc_ids or ()) if str(d).strip()))
        return cls(since, until, names, ids)

    def __bool__(self) -> bool:
        return bool(self.since or self.until or self.sources or self.doc_ids)

    def matching_sources(self, stored: Iterable[str]) -> list[str]:
        """The spellings among ``stored`` (the source fields as the store holds them) that this scope's outlets
        name, compared by ``source_key``."""
        wanted = {source_key(s) for s in self.sources}
        return sorted({s for s in stored if source_key(s) in wanted})

    def where(self, alias: str = "d", stored_sources: Iterable[str] | None = None) -> tuple[str, list]:
        """An SQL condition on the documents table (under ``alias``) and its parameters ('1' when empty).

        With outlets to match, ``stored_sources`` are the distinct source fields of the documents: the match is made
        here, in Python, and the condition names the stored spellings it found. SQLite's lower() folds only A-Z, so
        comparing ``lower(source)`` with Python's lower-cased name missed every outlet with another capital
        ("ÖSTERREICH Post")."""
        terms, params = [], []
        if self.since or self.until:
            terms.append(f"{alias}.date != ''")
        if self.since:
            terms.append(f"substr({alias}.date, 1, 10) >= ?")
            params.append(self.since)
        if self.until:
            terms.append(f"substr({alias}.date, 1, 10) <= ?")
            params.append(self.until)
        if self.sources:
            if stored_sources is None:
                raise ValueError("an outlet filter needs the stored sources to match them against")
            names = self.matching_sources(stored_sources)
            if names:
                terms.append(f"{alias}.source IN ({','.join('?' * len(names))})")
                params.extend(names)
            else:
                terms.append("0")  # no article names any of these outlets
        if self.doc_ids:
            terms.append(f"{alias}.doc_id IN ({','.join('?' * len(self.doc_ids))})")
            params.extend(self.doc_ids)
        return (" AND ".join(terms) or "1"), params

    def narrowed(self, since: str, until: str) -> "Scope | None":
        """This scope with its dates narrowed to ``since..until``; None when the two ranges do not meet."""
        lo = max(self.since, since) if self.since else since
        hi = min(self.until, until) if self.until else until
        if lo > hi:
            return None
        return Scope(lo, hi, self.sources, self.doc_ids)

    def to_dict(self) -> dict:
        return {"since": self.since or None, "until": self.until or None, "sources": list(self.sources),
                "doc_ids": list(self.doc_ids)}


@dataclass(frozen=True)
class Period:
    """A date range a question names, resolved against the newest article's date: ``since..until`` inclusive."""

    since: str
    until: str
    phrase: str  # the words of the question that named it ("last week")

    def to_dict(self) -> dict:
        return {"since": self.since, "until": self.until, "phrase": self.phrase}


_MONTH_NAMES = ("january february march april may june july august september october november december").split()
_MONTH_NUMBER = {m: i for i, m in enumerate(_MONTH_NAMES, start=1)}
_MONTH_NUMBER.update({m[:3]: i for m, i in list(_MONTH_NUMBER.items())})
_MONTH_NUMBER["sept"] = 9
_MONTH_RE = r"(january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|" \
            r"apr|jun|jul|aug|sept|sep|oct|nov|dec)"
# "in March", "during March 2025", "last March", "early May": a month after a word that makes it a time (so "may"
# the verb and "march" the noun are not read as months), not followed by a day (a full date is a day cue).
_MONTH_PHRASE = re.compile(
    r"\b(?:in|during|throughout|for|of|since|last|this|early|mid|late|mid-)[\s-]+" + _MONTH_RE +
    r"\.?(?:,?\s+([0-9]{4}))?\b(?!\s*\d{1,2}(?:st|nd|rd|th)?\b(?!\d))", re.IGNORECASE)
_RELATIVE = re.compile(
    r"\b(this week|last week|past week|previous week|this month|last month|past month|previous month|today|"
    r"yesterday|this year|last year|past year|latest|most recent|most recently|newest|recently|lately|"
    r"(?:last|past) (?:\d{1,3}|two|three|four|five|six|seven|ten|thirty) days)\b", re.IGNORECASE)
_NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "ten": 10, "thirty": 30}
RECENT_DAYS = 7  # "latest", "most recent": the week of articles up to the newest one


def _month_range(year: int, month: int) -> tuple[Date, Date]:
    return Date(year, month, 1), Date(year, month, calendar.monthrange(year, month)[1])


def _relative_range(phrase: str, today: Date) -> tuple[Date, Date]:
    """The days a relative phrase ("this week", "yesterday", "latest", …) names, with ``today`` the newest
    article's day. Raises ValueError or OverflowError at the ends of the calendar."""
    monday = today - timedelta(days=today.weekday())
    if phrase == "this week":
        lo, hi = monday, monday + timedelta(days=6)
    elif phrase in ("last week", "previous week"):
        lo, hi = monday - timedelta(days=7), monday - timedelta(days=1)
    elif phrase == "past week":
        lo, hi = today - timedelta(days=6), today
    elif phrase == "this month":
        lo, hi = _month_range(today.year, today.month)
    elif phrase in ("last month", "previous month"):
        first = today.replace(day=1) - timedelta(days=1)
        lo, hi = _month_range(first.year, first.month)
    elif phrase == "past month":
        lo, hi = today - timedelta(days=29), today
    elif phrase == "today":
        lo = hi = today
    elif phrase == "yesterday":
        lo = hi = today - timedelta(days=1)
    elif phrase == "this year":
        lo, hi = Date(today.year, 1, 1), Date(today.year, 12, 31)
    elif phrase == "last year":
        lo, hi = Date(today.year - 1, 1, 1), Date(today.year - 1, 12, 31)
    elif phrase == "past year":
        lo, hi = today - timedelta(days=364), today
    elif phrase.endswith("days"):
        n = phrase.split()[1]
        days = int(n) if n.isdigit() else _NUMBERS[n]
        lo, hi = today - timedelta(days=max(days, 1) - 1), today
    else:  # latest, most recent, newest, recently, lately
        lo, hi = today - timedelta(days=RECENT_DAYS - 1), today
    return lo, hi


# Where one sentence of the text searched ends and the next begins: a follow-up is searched as the question it leans
# on followed by the new one ("What opened in Dartmouth in February? And in March?"; qa.answer.resolve_followup).
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s|$)")


def named_period(question: str, newest: str) -> Period | None:
    """The date range ``question`` names, relative to ``newest`` (the newest article's YYYY-MM-DD); None when it
    names none or the index has no dated article.

    The last sentence that names a period decides, and in it the first phrase found: a follow-up that names a new
    period ("And in March?", searched after the question it follows) asks about that one, and the earlier
    question's period holds only when the new one names none. Within one sentence the first phrase is the one
    asked about ("what did the minister say last week about the plan announced in March?")."""
    if not newest:
        return None
    try:
        today = Date.fromisoformat(newest[:10])
    except ValueError:
        return None
    found: list[tuple[int, Period]] = []
    for m in _MONTH_PHRASE.finditer(question):
        word = m.group(1)
        if word.lower() == "may" and not word[0].isupper():
            continue
        month = _MONTH_NUMBER[word.lower().rstrip(".")]
        if m.group(2):
            year = int(m.group(2))
        else:
            year = today.year if month <= today.month else today.year - 1
            if m.group(0).lower().startswith("last") and month == today.month:
                year -= 1
        try:
            lo, hi = _month_range(year, month)
        except ValueError:  # "in March 0000", or a month before year 1: no such days, so no period
            continue
        found.append((m.start(), Period(lo.isoformat(), hi.isoformat(), m.group(0).strip())))
    for m in _RELATIVE.finditer(question):
        try:
            lo, hi = _relative_range(m.group(1).lower(), today)
        except (ValueError, OverflowError):  # a week or year past 9999-12-31 or before 0001-01-01
            continue
        found.append((m.start(), Period(lo.isoformat(), hi.isoformat(), m.group(1))))
    if not found:
        return None
    # A period inside a phrase ("Jan. 2025", "mid-Feb.") is no sentence end.
    taken = [(pos, pos + len(p.phrase)) for pos, p in found]
    ends = [m.end() for m in _SENTENCE_END.finditer(question)
            if not any(lo <= m.start() < hi for lo, hi in taken)]

    return min(found, key=lambda f: (-bisect_right(ends, f[0]), f[0]))[1]  # the last sentence, its first phrase
