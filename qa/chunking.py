"""Sentence-aware chunks sized in the embedding model's own word pieces, with exact character offsets.

Offsets are computed while splitting, never searched for afterwards: every span is a slice of the article text.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .records import Chunk

# Words after which a period does not end a sentence when a name follows ("Mr. Carney", "Dr. Tam").
_TITLES = frozenset(
    "mr mrs ms dr prof sen rep gov gen lt col sgt capt rev hon pres mt ft st messrs mme mlle".split()
)
# Of those, the ones that also end a phrase ("on Main St.", "at 10 ft."): a sentence ends there when an article or
# a pronoun follows ("… on Main St. The family escaped."), which no name does.
_PLACE_TITLES = frozenset("mt ft st".split())
_AFTER_PLACE = frozenset("a an the this that these those it its he she they we i you there his her their our".split())
# Abbreviations that end a sentence only when an ordinary sentence opener follows ("the U.S. This includes").
_ABBREVIATIONS = frozenset(
    "jan feb mar apr jun jul aug sep sept oct nov dec no nos vs etc inc corp co ltd jr sr approx est fig al "
    "e.g i.e a.m p.m u.s u.k u.n e.u".split()
)
_MONTHS = frozenset("jan feb mar apr jun jul aug sep sept oct nov dec".split())
_ENDS_A_CLAUSE = frozenset("a.m p.m etc".split())
_TIME_FOLLOWERS = _MONTHS | frozenset(
    """et est edt pt pst pdt ct cst cdt mt mst mdt gmt bst utc cet cest aest local eastern pacific central mountain
    atlantic monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thurs fri sat sun
    january february march april may june july august september october november december""".split())
_OPENERS = frozenset(
    """a an the this that these those it its he she they we i you there here in on at by for from with as
    but and or so yet if when while after before since although though because however meanwhile still
    also then now his her their our my your what who why how where which some many most all no not one
    two three last earlier later instead asked according""".split()
)
# A footnote mark as encyclopedias print them after a sentence: "[14]", "[a]", "[note 3]", "[citation needed]",
# "[who?]". Text pasted from one keeps them: "… in January.[14] The bridge …" is two sentences.
FOOTNOTE = r"\[(?:\d{1,4}|[a-z]|(?:note|nb|n) ?\d{1,3}|[a-z][a-z ]{0,30}(?: needed|\?))\]"
# Footnote marks that end a text ("… in January.[14][15]"): what qa.answer.is_heading looks past.
TRAILING_FOOTNOTES = re.compile(f"(?:{FOOTNOTE})+$")
# A terminator run, any closing quotes or brackets and footnote marks, then the whitespace that follows.
# Possessive runs, and no match starting inside a run: a long run of dots with no space after it ("a.....x") was
# tried from each of its characters, giving back one character at a time (quadratic: 20,000 dots took 5.7 s).
_END = re.compile(r"(?<![.!?\u2026])([.!?\u2026]++)([\"'\u201d\u2019)\]\u00bb]*+(?:" + FOOTNOTE + r")*+)(\s+)")
# A quotation ending in "?" or "!" that its speaker follows is one sentence: "“Is this the end?” Carney asked."
_SPEECH = frozenset(
    """said says say asked asks told tells added adds wrote writes shouted replied replies insisted insists
    declared warned warns explained recalled continued tweeted posted argued noted""".split()
)
_NEXT_WORDS = re.compile(r"\s*+([\w.'\u2019-]++)(?:\s++([\w.'\u2019-]++))?(?:\s++([\w.'\u2019-]++))?")
# A dateline's place and its agency are one sentence with the story: "ST. PAUL, Minn. (AP) — Gov. Tim Walz …".
_WIRE = re.compile(r"\((?:AP|AFP|Reuters|CP|UPI|CNN|dpa|Xinhua|Bloomberg)\)")
_QUOTES_CLOSING = "\"'\u201d\u2019\u00bb"
_LINE = re.compile(r"[^\n]+")
_WORD_BEFORE = re.compile(r"(\S+)$")
_WORD_AFTER = re.compile(r"[\"'\u201c\u2018(\[]*([\w.'\u2019-]+)")
SPLITTER_VERSION = 1
# No word piece of the model's vocabulary spans more characters than this (the longest, "telecommunications", has
# 18). A token that does is an [UNK] standing for a whole word the vocabulary cannot spell, up to megabytes long
# without a space: it is counted as one token per this many characters, and may be cut between them, so that a
# chunk stays within its budget of tokens and of characters (budget x this, a few thousand) whatever the text.
MAX_TOKEN_CHARS = 20


def _is_initialism(word: str) -> bool:
    bare = word.rstrip(".")
    return len(bare) == 1 and bare.isalpha() or bool(re.fullmatch(r"(?:\w\.)+\w?", word))


def _boundary(block: str, match: re.Match, stop: int) -> bool:
    """Does the terminator matched here end a sentence? ``block[:stop]`` is the line it is in and what precedes."""
    nxt = block[match.end():min(match.end() + 1, stop)]
    if not nxt or nxt.islower():
        return False
    if _WIRE.match(block, match.end(), stop):
        return False
    if match.group(1) != "." or match.group(2):
        if match.group(1)[-1:] in "?!" and any(q in match.group(2) for q in _QUOTES_CLOSING):
            words = _NEXT_WORDS.match(block, match.end(), stop)
            if words and any((w or "").lower().rstrip(".") in _SPEECH for w in words.groups()):
                return False
        return True
    # Only the word just before the period matters; looking back a bounded stretch keeps splitting linear.
    before = _WORD_BEFORE.search(block, max(0, match.start() - 64), match.start())
    word = (before.group(1) if before else "") + "."
    key = word.lower().strip("\"'(\u201c\u2018").rstrip(".")
    if key in _TITLES:
        if key in _PLACE_TITLES:
            after = _WORD_AFTER.match(block, match.end(), stop)
            return bool(after) and after.group(1).lower() in _AFTER_PLACE
        return False
    if key in _ABBREVIATIONS or _is_initialism(word.strip("\"'(\u201c\u2018")):
        after = _WORD_AFTER.match(block, match.end(), stop)
        follower = after.group(1) if after else ""
        if key in _MONTHS and follower[:1].isdigit():
            return False
        if key in _ENDS_A_CLAUSE:
            # A time or "etc." ends its sentence before a capital that is not a zone, day or month ("at 9 p.m.
            # Police closed the road", but "9 p.m. ET", "4:30 a.m. IST", "9 a.m. Monday").
            bare = follower.strip(".,")
            zone = bare.isupper() and len(bare) <= 4  # "IST", "HKT", "UK time"
            # A time opening its line is a live blog's stamp, not a sentence: "10:46 p.m. TOUCHDOWN — …".
            head = block[max(0, match.start() - 24):match.start()]
            stamp = "\n" in head and len(head.rsplit("\n", 1)[1].split()) <= 3 or \
                match.start() < 24 and len(head.split()) <= 3
            return bare[:1].isupper() and not zone and not stamp and bare.lower() not in _TIME_FOLLOWERS
        return follower.lower().strip(".,") in _OPENERS
    return True


# A line ending in one of these goes on in the next line, whatever that starts with ("… was suspended and" /
# "Premier Tim Houston urged …"): no headline, caption or sentence ends so.
_GOES_ON = re.compile(
    r"(?:[,\u2013\u2014(-]|\b(?:and|or|but|nor|the|a|an|of|to|in|on|at|by|for|with|from|as|that|which|whose|than|"
    r"into|onto|about|between|its|his|her|their|our|is|are|was|were|be|been|has|have|had|will|would|could|should)"
    r")$", re.IGNORECASE)
# A list item's line starts a block of its own: "- fines of up to £2,500", "• steel", "2. Aluminium".
_LIST_ITEM = re.compile(r"(?:[-\u2013\u2014\u2022*\u00b7\u25aa\u25cf]|(\d{1,2}[.)]))\s+")
# Hard-wrapped text (plain-text wire copy, text read from a PDF) breaks its lines near one width: where most lines
# are at least WRAP_FULL_SHARE of the widest line of at most WRAP_WIDTH_MAX characters, such a "full" line without
# end punctuation was wrapped, not ended. Checked on 1,214 BBC News, MultiHop-RAG and seed articles wrapped at
# 60–100 columns (tests/test_chunking.py): they give the sentences of the unwrapped text.
WRAP_FULL_SHARE = 0.7
WRAP_WIDTH_MAX = 160
WRAP_WIDTH_MIN = 40
WRAP_FULL_LINES = 0.25  # the least share of a text's lines that are full for it to count as hard-wrapped


def _lines(text: str) -> list[tuple[int, int, bool]]:
    """Non-empty lines, stripped, each with whether a single line break (no blank line) comes before it."""
    lines: list[tuple[int, int, bool]] = []
    prev_end = None
    for m in _LINE.finditer(text):
        start, end = m.start(), m.end()
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start == end:
            continue
        lines.append((start, end, prev_end is not None and text.count("\n", prev_end, start) == 1))
        prev_end = end
    return lines


def _full_lines(lines: list[tuple[int, int, bool]]) -> set[int]:
    """Which lines (their indexes) are as wide as a hard-wrapped text's lines; none when the text is not one."""
    widths = [end - start for start, end, _ in lines]
    width = max((w for w in widths if w <= WRAP_WIDTH_MAX), default=0)
    if width < WRAP_WIDTH_MIN:
        return set()
    full = {i for i, w in enumerate(widths) if WRAP_FULL_SHARE * width <= w <= width}
    return full if len(full) >= 3 and len(full) >= WRAP_FULL_LINES * len(lines) else set()


def _goes_on(text: str, start: int, end: int) -> bool:
    """Does the line ``text[start:end]`` end as no sentence does (a comma, "and"; not a rule of dashes)?"""
    tail = text[max(start, end - 16):end]
    return bool(_GOES_ON.search(tail)) and any(ch.isalnum() for ch in tail)


def _wrapped(text: str, prev: tuple[int, int, bool], line: tuple[int, int, bool], full: bool, first: bool) -> bool:
    """Does ``line`` go on the sentence of ``prev`` (a hard-wrapped line) rather than start a new block?"""
    prev_start, prev_end, _ = prev
    start, end, single = line
    if not single:
        return False
    # A list item starts its own block. In hard-wrapped text a line may begin with a dash or a number that is no
    # item ("… from 2300 GMT" / "- 0100 GMT.", "… from 60 to" / "65. The …"): there an item follows an item or a
    # colon, or a line that does not fill its width, or is a bullet followed by a capital.
    item = _LIST_ITEM.match(text, start, end)
    goes_on = _goes_on(text, prev_start, prev_end)
    if item and (_LIST_ITEM.match(text, prev_start, prev_end) or text[prev_end - 1] == ":" or not full or (
            not item.group(1) and not text[item.end():item.end() + 1].islower() and not goes_on)):
        return False
    last = text[prev_end - 1]
    if text[start].islower() and last not in ".!?:;\u2026\"\u201d" or goes_on:
        return True
    # The article's first line is its headline when it has one: not joined by its width alone.
    wide = full and not first
    core = text[prev_start:prev_end].rstrip(_QUOTES_CLOSING + ")]")
    if core[-1:] in ".!?\u2026":
        # A line ending where a sentence may end: joined when the terminator would not end a sentence inside a
        # line ("… President Mr." / "Trump …", "… Shall We Dance?" / "at number three."); before a capital, only
        # after a title or in a wrapped line (a headline may end "… on the U.S.").
        run = prev_start + len(core) - 1
        while run > prev_start and text[run - 1] in ".!?\u2026":
            run -= 1
        m = _END.match(text, run, end)
        if not m or _boundary(text, m, end):
            return False
        before = _WORD_BEFORE.search(text, max(prev_start, run - 64), run)
        key = (before.group(1) if before else "").lower().strip("\"'(\u201c\u2018")
        return wide or text[start].islower() or (key in _TITLES and key not in _PLACE_TITLES)
    return wide


def _blocks(text: str) -> list[tuple[int, int]]:
    """Lines, stripped, with hard-wrapped lines joined back: a line that goes on in the next (no end punctuation,
    the next starts lowercase; or it ends in a comma or a word like "and") and, in hard-wrapped text, a line as
    wide as its neighbours that no sentence end closes."""
    lines = _lines(text)
    full = _full_lines(lines)
    blocks: list[tuple[int, int]] = []
    for i, line in enumerate(lines):
        if blocks and _wrapped(text, lines[i - 1], line, i - 1 in full, i == 1):
            blocks[-1] = (blocks[-1][0], line[1])
            continue
        blocks.append((line[0], line[1]))
    return blocks


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans ``(start, end)`` of ``text``, in order, each stripped of surrounding white space.

    Every non-space character belongs to exactly one span. Paragraph and line breaks end sentences; inside a line
    a sentence ends at ``. ! ? …`` (plus closing quotes and footnote marks such as "[14]") followed by a space and a
    non-lowercase character, unless the period belongs to a title ("Mr."), an initial or an abbreviation ("U.S.",
    "Aug. 1").
    """
    spans: list[tuple[int, int]] = []
    for bstart, bend in _blocks(text):
        pos = bstart
        # Bounded by bend, not a copy of text[:bend]: a copy per line was quadratic in the number of lines.
        for m in _END.finditer(text, bstart, bend):
            if _boundary(text, m, bend):
                spans.append((pos, m.end(2)))
                pos = m.end()
        if pos < bend:
            spans.append((pos, bend))
    return spans


@lru_cache(maxsize=4)
def load_tokenizer(model_dir: str):
    """The model's own fast tokenizer (no padding, no truncation), so token counts match what the model reads."""
    from tokenizers import Tokenizer

    path = Path(model_dir) / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


@dataclass(frozen=True)
class ChunkerConfig:
    """What decides chunk boundaries; recorded in the index so a mismatch can be caught."""

    max_tokens: int = 256
    title_tokens: int = 32
    overlap_sentences: int = 1
    special_tokens: int = 2  # [CLS] and [SEP]

    def as_dict(self) -> dict:
        return {
            "max_tokens": self.max_tokens,
            "title_tokens": self.title_tokens,
            "overlap_sentences": self.overlap_sentences,
            "splitter": SPLITTER_VERSION,
        }


class Chunker:
    """Packs whole sentences into chunks that, with the title in front, fit the model's input window."""

    def __init__(self, tokenizer, config: ChunkerConfig = ChunkerConfig()):
        self.tokenizer = tokenizer
        self.config = config

    def _token_offsets(self, text: str) -> tuple[list[int], list[int]]:
        """Start and end offsets of the tokens of ``text``; a token over ``MAX_TOKEN_CHARS`` characters long is
        given as pieces of that many characters."""
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        starts, ends = [], []
        last = 0
        for s, e in [*enc.offsets, (len(text), len(text))]:
            if s - last > MAX_TOKEN_CHARS:
                # A stretch the tokenizer gives no word piece for (white space, zero-width spaces, U+FFFD, …)
                # counts as one token per MAX_TOKEN_CHARS, like an over-long token: counted as nothing, a million
                # of them inside a sentence made one chunk of a million characters. Between sentences these
                # tokens belong to no sentence; none of 5,390 BBC News and MultiHop-RAG articles has such a
                # stretch inside a sentence, so real articles' chunks are unchanged.
                for a in range(last, s, MAX_TOKEN_CHARS):
                    starts.append(a)
                    ends.append(min(a + MAX_TOKEN_CHARS, s))
            last = max(last, e)
            if e - s > MAX_TOKEN_CHARS:
                for a in range(s, e, MAX_TOKEN_CHARS):
                    starts.append(a)
                    ends.append(min(a + MAX_TOKEN_CHARS, e))
            elif e > s:
                starts.append(s)
                ends.append(e)
        return starts, ends

    def count_tokens(self, text: str) -> int:
        """Word pieces the model reads for ``text``, special tokens excluded."""
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def title_prefix(self, title: str) -> str:
        """The title as embedded in front of each chunk, cut to ``title_tokens`` word pieces."""
        title = " ".join(title.split())
        if not title:
            return ""
        starts, ends = self._token_offsets(title)
        if len(starts) > self.config.title_tokens:
            title = title[: ends[self.config.title_tokens - 1]]
        return title

    def embedding_text(self, title_prefix: str, chunk_text: str) -> str:
        """What the model reads for a chunk: the (cut) title, a line break, the chunk."""
        return f"{title_prefix}\n{chunk_text}" if title_prefix else chunk_text

    def budget(self, title_prefix: str) -> int:
        """Word pieces left for the chunk once the special tokens and the title are counted."""
        used = self.config.special_tokens + (self.count_tokens(title_prefix) if title_prefix else 0)
        return max(16, self.config.max_tokens - used)

    def chunk(self, text: str, title: str = "") -> list[Chunk]:
        """Split ``text`` into chunks of whole sentences with a whole-sentence overlap.

        A sentence longer than the budget is cut between words (or, for a run with no spaces, between word
        pieces, or every ``MAX_TOKEN_CHARS`` characters of a word the model reads as one [UNK]) so that nothing is
        silently truncated by the model and no chunk is longer than a few thousand characters.
        """
        budget = self.budget(self.title_prefix(title))
        starts, ends = self._token_offsets(text)
        units: list[tuple[int, int, int]] = []  # (start, end, tokens)
        for s, e in split_sentences(text):
            lo, hi = bisect_left(starts, s), bisect_left(starts, e)
            if hi - lo <= budget:
                units.append((s, e, hi - lo))
            else:
                units.extend(_cut_long(text, s, e, starts[lo:hi], ends[lo:hi], budget))
        return self._pack(text, units, budget)

    def _pack(self, text: str, units: list[tuple[int, int, int]], budget: int) -> list[Chunk]:
        def extent(i: int) -> int:
            j, used = i, 0
            while j < len(units) and (j == i or used + units[j][2] <= budget):
                used += units[j][2]
                j += 1
            return j

        chunks: list[Chunk] = []
        i = 0
        while i < len(units):
            j = extent(i)
            start, end = units[i][0], units[j - 1][1]
            chunks.append(Chunk(len(chunks), start, end, text[start:end]))
            if j >= len(units):
                break
            nxt = max(j - self.config.overlap_sentences, i + 1)
            # An overlap that leaves no room for a new sentence would only repeat the previous chunk's tail.
            i = nxt if extent(nxt) > j else j
        return chunks


def _cut_long(text: str, s: int, e: int, starts: list[int], ends: list[int], budget: int):
    """Cut one over-long sentence into pieces of at most ``budget`` tokens, preferring breaks at spaces."""
    pieces = []
    lo = 0
    piece_start = s
    n = len(starts)
    while n - lo > budget:
        cut = lo + budget  # first token of the next piece
        for k in range(cut, lo, -1):
            if starts[k] > ends[k - 1]:  # white space (or a dropped character) before token k
                cut = k
                break
        piece_end = ends[cut - 1]
        pieces.append((piece_start, piece_end, cut - lo))
        piece_start = starts[cut]
        lo = cut
    pieces.append((piece_start, e, n - lo))
    return pieces
