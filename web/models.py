"""The JSON API's request and response bodies, declared so the OpenAPI schema at /docs is exact."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from qa.errors import InvalidInput

DOC_ID_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
# The limits on a conversation's earlier turns, for the JSON body and the page's form alike (an earlier question is
# also held to QA_MAX_QUESTION_CHARS, since a follow-up is searched together with it).
MAX_HISTORY_TURNS = 20
MAX_HISTORY_ANSWER_CHARS = 10_000
MAX_HISTORY_CHARS = 100_000  # questions and answers of all the turns together


def check_history(turns: list[tuple[str, str]], max_question_chars: int, *, name: str = "history",
                  fields: tuple[str, str] = ("history[{i}].question", "history[{i}].answer"), first: int = 0) -> None:
    """Refuse (400) earlier turns ``(question, answer)`` over the limits, saying which field (``fields`` with
    ``{i}``, counted from ``first``) and by how much."""
    if len(turns) > MAX_HISTORY_TURNS:
        raise InvalidInput(f"{name} holds {len(turns)} turns; send at most the latest {MAX_HISTORY_TURNS}")
    total = 0
    for i, (question, answer) in enumerate(turns):
        if len(question.strip()) > max_question_chars:
            raise InvalidInput(f"{fields[0].format(i=first + i)} is {len(question.strip()):,} characters long; an "
                               f"earlier question, like a question, may have at most {max_question_chars:,}")
        if len(answer) > MAX_HISTORY_ANSWER_CHARS:
            raise InvalidInput(f"{fields[1].format(i=first + i)} is {len(answer):,} characters long; an earlier "
                               f"answer may have at most {MAX_HISTORY_ANSWER_CHARS:,}")
        total += len(question) + len(answer)
    if total > MAX_HISTORY_CHARS:
        raise InvalidInput(f"{name} holds {total:,} characters in all; the limit is {MAX_HISTORY_CHARS:,}")


class HistoryTurn(BaseModel):
    """An earlier turn of the conversation; follow-ups that lean on it are searched together with it."""

    question: str = Field(description="at most 2,000 characters (QA_MAX_QUESTION_CHARS), like a question; "
                                      "longer gets 400")
    answer: str | None = Field(default=None, description="at most 10,000 characters; longer gets 400")


class AskRequest(BaseModel):
    """A question, how many passages to return, and the earlier turns of the conversation (oldest first)."""

    question: str = Field(description="1 to 2,000 characters; blank or longer questions get 400")
    k: int = Field(default=5, ge=1, le=20, description="how many passages to return")
    history: list[HistoryTurn] = Field(default_factory=list, description=(
        "earlier turns, oldest first: at most 20, 100,000 characters in all; more gets 400"))
    since: str | None = Field(default=None, description="only articles dated on or after this day (YYYY-MM-DD; "
                                                         "undated articles are left out); malformed gets 400")
    until: str | None = Field(default=None, description="only articles dated on or before this day (YYYY-MM-DD)")
    sources: list[str] = Field(default_factory=list, max_length=100,
                               description="only articles from these outlets (names as `GET /documents` lists them, "
                                           "any case)")
    doc_ids: list[str] = Field(default_factory=list, max_length=1000, description="only these articles")

    model_config = {"json_schema_extra": {"examples": [
        {"question": "Which countries retaliated?", "k": 5, "history": []},
        {"question": "And what did the steel industry say about it?",
         "history": [{"question": "What tariffs did the U.S. put on steel?", "answer": "…"}]},
        {"question": "Who went on strike?", "since": "2025-03-01", "until": "2025-03-31",
         "sources": ["Coastal Post"]},
    ]}}


class AskForm(BaseModel):
    """The chat page's form (works without JavaScript): earlier turns travel as repeated hidden fields,
    ``history_question`` and ``history_answer`` paired by position. The latest 20 turns are read, with the limits
    of the JSON body's ``history``. ``since``, ``until`` (YYYY-MM-DD) and ``source`` are the filter row's."""

    question: str
    k: int = Field(default=5, ge=1, le=20)
    history_question: list[str] = Field(default_factory=list)
    history_answer: list[str] = Field(default_factory=list)
    # The filter row: empty means any date, any outlet.
    since: str = Field(default="", max_length=40)
    until: str = Field(default="", max_length=40)
    source: list[str] = Field(default_factory=list, max_length=100)


# Offsets index the article's text as Python does: in Unicode code points. JavaScript's strings count UTF-16 units,
# which differ once a character beyond U+FFFF (an emoji, say) comes earlier in the article.
OFFSET = ("a character offset into the article's `text`, counted in Unicode code points (Python's `text[start:end]`; "
          "in JavaScript `Array.from(text).slice(start, end).join('')`)")


class PassageOut(BaseModel):
    """A cited passage: ``text == article_text[start:end]`` of document ``doc_id``; ``[n]`` in the answer is
    ``rank`` n. ``weak`` marks the nearest passages listed when the articles don't answer the question."""

    rank: int
    doc_id: str
    title: str
    date: str = Field(description="YYYY-MM-DD, or empty when the article states none")
    chunk_no: int
    start: int = Field(description=OFFSET)
    end: int = Field(description=OFFSET)
    text: str
    score: float
    source: str = ""
    weak: bool = False
    pages: list[int] = Field(default_factory=list, description="the PDF pages (1-based) the passage is on; empty "
                                                               "for articles that are not PDFs")


class AnswerSpanOut(BaseModel):
    """One answer sentence: characters ``start:end`` of document ``doc_id``, inside passage ``rank``."""

    rank: int
    doc_id: str
    start: int = Field(description=OFFSET)
    end: int = Field(description=OFFSET)


class DateRangeOut(BaseModel):
    """The period the question named ("last week", "in March", "latest"), counted from the newest article's
    date: articles dated in it were preferred."""

    since: str
    until: str
    phrase: str = Field(description="the question's words that named it")


class FiltersOut(BaseModel):
    """The filters the articles were restricted to."""

    since: str | None = None
    until: str | None = None
    sources: list[str] = []
    doc_ids: list[str] = []


class AskResponse(BaseModel):
    """The answer sentences with ``[n]`` markers, whether the articles answer at all, and the passages."""

    question: str
    answer: str
    answerable: bool = Field(description="false when the articles don't say; the passages are then weak matches")
    passages: list[PassageOut]
    answer_spans: list[AnswerSpanOut]
    took_ms: float
    query: str = Field(description="the text that was searched (a follow-up is combined with the previous question)")
    sentences_read: int = Field(0, description="sentences the reader read with the question (0 when QA_READER=off)")
    date_range: DateRangeOut | None = Field(None, description="the period the question named, preferred; null when "
                                                              "it names none")
    filters: FiltersOut | None = Field(None, description="the filters asked for; null when none")
    mode: Literal["extractive", "llm"] = Field(
        "extractive", description="who wrote the answer: `extractive` (sentences of the passages) or `llm` (the local "
                                  "model at QA_LLM_URL, each sentence checked against the passage it cites; the "
                                  "answer spans are the passage sentences they rest on)")
    sentences_dropped: int = Field(0, description="sentences the model wrote that their passage did not support")
    fell_back: bool = Field(False, description="the model's answer failed (timeout, server error, nothing supported) "
                                               "and the extractive answer stands in")
    llm_note: str | None = Field(None, description="why it fell back, or why the model's answer was cut short")


class DocumentSummary(BaseModel):
    """A row of the article list."""

    doc_id: str
    title: str
    date: str
    source: str
    url: str
    chunks: int
    chars: int
    added_at: str


class ChunkSpan(BaseModel):
    """A chunk of an article: characters ``start:end`` (chunks overlap by a sentence)."""

    chunk_no: int
    start: int
    end: int


class DocumentOut(BaseModel):
    """One article with its verbatim text, against which every citation offset counts."""

    doc_id: str
    title: str
    date: str
    source: str
    url: str
    author: str
    text: str
    added_at: str
    chunks: list[ChunkSpan]
    pages: list[int] = Field(default_factory=list, description="a PDF's page start offsets in `text` (page n starts "
                                                               "at pages[n-1]); empty for other articles")


class AddArticle(BaseModel):
    """An article pasted as text. Without ``doc_id`` one is made from the title and a hash of the text."""

    text: str = Field(description="the article text, UTF-8, at most 5 MB")
    title: str = Field(default="", max_length=1000)
    date: str = Field(default="", max_length=64, description="YYYY-MM-DD (other stated forms are read too)")
    source: str = Field(default="", max_length=1000)
    url: str = Field(default="", max_length=4000)
    doc_id: str = Field(default="", pattern=r"^$|" + DOC_ID_PATTERN)


class ArticleUpload(BaseModel):
    """A multipart upload: a .txt, .md or .html ``file`` (or pasted ``text``); the other fields override what
    the file states."""

    file: bytes | None = Field(default=None, description=".txt, .md or .html (UTF-8) or .pdf, at most 5 MB")
    text: str = ""
    title: str = ""
    date: str = ""
    source: str = ""
    url: str = ""
    doc_id: str = Field(default="", pattern=r"^$|" + DOC_ID_PATTERN)


class AddResult(BaseModel):
    """What adding did: the article is searchable by the very next question."""

    doc_id: str
    title: str
    chunks: int
    status: Literal["added", "updated", "unchanged"]
    embedded: int = Field(description="chunks embedded now (unchanged chunk texts reuse their vectors)")
    seconds: float


class RebuildResult(BaseModel):
    """A rebuilt index: counts and time."""

    documents: int
    chunks: int
    embedded: int
    seconds: float


class JobOut(BaseModel):
    """A background write (``?background=1``): how far it is and, once it has ended, what it gave."""

    id: str
    kind: Literal["add", "rebuild"]
    state: Literal["queued", "running", "done", "failed"]
    done: int = Field(description="passages embedded so far")
    total: int = Field(description="passages to embed (known once the articles are chunked)")
    detail: str = Field(description="what it is doing, in words; the error's detail once failed")
    status: int | None = Field(None, description="once ended: the status code the synchronous request would have had")
    result: dict | None = Field(None, description="once ended: the synchronous reply's body (AddResult, "
                                                  "RebuildResult, or the error's {detail})")


class JobReply(BaseModel):
    job: JobOut


class Health(BaseModel):
    """The server is up and the index readable."""

    status: Literal["ok"]
    documents: int
    chunks: int
    model: str
    precision: str
    dim: int
    vector_index: str
    generation: int


class ErrorOut(BaseModel):
    """Every error: one sentence saying what is wrong and how to fix it."""

    detail: str


class ValidationErrorOut(ErrorOut):
    """A malformed body or parameter: ``detail`` in one line, ``errors`` field by field."""

    errors: list[dict] = []
