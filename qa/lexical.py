"""Turning a question into an FTS5 BM25 query: words, minus stop words, each quoted so user input is never
parsed as FTS5 syntax."""

from __future__ import annotations

import re

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


def fts_query(text: str, max_terms: int = 64) -> str:
    """An FTS5 MATCH expression: the quoted content words joined by OR ('' when nothing is left)."""
    terms = query_terms(text)[:max_terms]
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
