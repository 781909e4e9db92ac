"""Reading articles: .txt/.md (with optional front matter), .html (visible text), .pdf (its text layer, page by
page), JSON and JSON Lines collections.

The article text is kept verbatim after decoding (for HTML: after extracting the visible text; for Markdown: the
plain text it renders to; for PDF: the text of its pages), because every citation offset refers to it. Titles and
dates are read from what the article states, never invented.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from datetime import date as Date, datetime, timezone
from pathlib import Path

from .errors import Conflict, InvalidInput, NotFound, TooLarge, UnsupportedFile
from .records import Article, has_lone_surrogate, strip_controls
from .settings import size_text

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text"}
HTML_SUFFIXES = {".html", ".htm"}
MARKDOWN_SUFFIXES = {".md", ".markdown"}
COLLECTION_SUFFIXES = {".json", ".jsonl", ".ndjson"}
PDF_SUFFIXES = {".pdf"}
SUPPORTED = TEXT_SUFFIXES | HTML_SUFFIXES | COLLECTION_SUFFIXES | PDF_SUFFIXES

_FRONT_KEYS = ("title", "date", "source", "url", "author")
# Lines are stripped before matching; a lazy value followed by \s*$ was quadratic in a run of spaces inside it.
_FRONT_LINE = re.compile(r"^(title|date|source|url|author)\s*:\s*(.*)$", re.IGNORECASE)
_STATED_DATE = re.compile(
    r"^\s*(?:date|published|updated|posted)\s*[:\-]?\s*(\d{4}-\d{2}-\d{2}(?:[T ][0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?)?)",
    re.IGNORECASE,
)
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%d %B %Y", "%B %d, %Y", "%b %d, %Y", "%d %b %Y", "%B %d %Y")
# "2025-03-03 10:00:00 UTC" (database and crawler exports): a zone named after an ISO time, which Python does not read.
_ISO_UTC_NAME = re.compile(r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:UTC|GMT)", re.IGNORECASE)
# RFC 2822, the date of RSS <pubDate> and e-mail: "Mon, 03 Mar 2025 10:00:00 +0000" (weekday and seconds optional).
_RFC_2822 = re.compile(
    r"(?:[A-Za-z]{3},\s*)?\d{1,2}\s+[A-Za-z]{3}\s+\d{4}\s+\d{1,2}:\d{2}(?::\d{2})?(?:\s*(?:[+-]\d{4}|[A-Za-z]{1,5}))?")


def parse_date(value: str) -> str:
    """An ISO ``YYYY-MM-DD`` for a stated date ('2025-09-03', '2023-11-27T08:45:59+00:00', 'March 28, 2025',
    '2025-03-03 10:00:00 UTC', RFC 2822's 'Mon, 03 Mar 2025 10:00:00 +0000'; a time with an offset gives the day in
    that offset); raises InvalidInput for anything else, so a date is never guessed."""
    value = (value or "").strip()
    if not value:
        return ""
    named_utc = _ISO_UTC_NAME.fullmatch(value)
    iso = named_utc.group(1) + "+00:00" if named_utc else value
    try:
        # Python reads a run of digits as a basic-format date from its first eight ("1" * 100 is 1111-11-11).
        if not (value.isdigit() and len(value) != 8):
            return datetime.fromisoformat(iso.replace("Z", "+00:00")).date().isoformat()
    except ValueError:
        pass
    if _RFC_2822.fullmatch(value):
        from email.utils import parsedate_to_datetime

        try:  # the day as stated, in the stated offset (as for an ISO time with an offset)
            return parsedate_to_datetime(value).date().isoformat()
        except (ValueError, TypeError, OverflowError):
            pass
    # "Sept." is AP style's September; strptime's %b knows only "Sep".
    cleaned = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", re.sub(r"\bSept\b", "Sep", value.replace(".", ""), flags=re.I))
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(cleaned, fmt).date().isoformat()
        except ValueError:
            continue
    raise InvalidInput(f"cannot read the date {value!r}: use YYYY-MM-DD")


def readable_date(iso: str) -> str:
    """'2025-09-03' → 'September 3, 2025 2025-09' so BM25 matches the words people use for dates."""
    try:
        d = Date.fromisoformat(iso)
    except ValueError:
        return iso
    return f"{d.strftime('%B')} {d.day}, {d.year} {d.strftime('%b')} {d.year}-{d.month:02d}"


def safe_doc_id(raw: str) -> str:
    """A document id usable in URLs and file names: letters, digits, '.', '_' and '-'. A name written without
    any of them ("東京の地震", "Ελλάδα") gets "doc-" and a hash of the name, the same each time: such a file or
    pasted title was refused."""
    doc_id = re.sub(r"[^A-Za-z0-9._-]+", "-", raw.strip()).strip("-.")[:128]
    if not doc_id:
        if not raw.strip(" \t\r\n.-"):
            raise InvalidInput(f"cannot make a document id from {raw!r}")
        doc_id = "doc-" + hashlib.sha1(raw.strip().encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return doc_id


def content_hash(article: Article) -> str:
    """Changes whenever anything that is stored or indexed for the article changes."""
    payload = json.dumps(
        [article.text, article.title, article.date, article.source, article.url, article.author], ensure_ascii=False
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def decode(data: bytes, name: str) -> str:
    """UTF-8 text from bytes, or a clear error for binary and other encodings (nothing is guessed)."""
    if b"\x00" in data[:65536]:
        raise UnsupportedFile(f"{name} is a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UnsupportedFile(
            f"{name} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); save it as UTF-8"
        ) from None


def _shorten(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip(",;:") + "…"


# A first line ending in a period is a headline only when it is this short; a longer one is the lead sentence.
TITLE_LINE_WORDS = 12


def derive_title(text: str) -> str:
    """The headline line when the article starts with one, else its first sentence shortened."""
    from .chunking import split_sentences

    stated = _STATED_DATE.match(text)
    body = text[stated.end():] if stated else text
    lines = [ln.strip() for ln in body.splitlines()]
    first = next((ln for ln in lines if ln), "")
    if not first:
        return ""
    has_more = len([ln for ln in lines if ln]) > 1
    if has_more and len(first) <= 160 and (not first.endswith(".") or len(first.split()) <= TITLE_LINE_WORDS):
        return first
    spans = split_sentences(body)
    return _shorten(body[spans[0][0]:spans[0][1]]) if spans else _shorten(first)


_STATED_LOOKAHEAD = 5  # lines after an "Updated …" top line searched for the publication date


def stated_date(text: str) -> str:
    """The date an article states at its very top (' date 2025-09-03 …'), else ''. When the top line is an
    "Updated …" one, a "Published …" (or "Posted", "Date") line within the next few lines is the date: an update
    is not when the article was published."""
    m = _STATED_DATE.match(text)
    if not m:
        return ""
    if m.group(0).lstrip().lower().startswith("updated"):
        for line in text[m.end():].split("\n", _STATED_LOOKAHEAD + 1)[1:_STATED_LOOKAHEAD + 1]:
            published = _STATED_DATE.match(line)
            if published and not published.group(0).lstrip().lower().startswith("updated"):
                try:
                    return parse_date(published.group(1))
                except InvalidInput:
                    break
    try:
        return parse_date(m.group(1))
    except InvalidInput:
        return ""


_FRONT_LOADER = None


def _front_loader():
    """PyYAML's safe loader (its C version when there is one) that reads every scalar as text but null: a date
    stays as written for parse_date, and "yes", "No" or "1.0" stay words, not a truth value or a number."""
    global _FRONT_LOADER
    if _FRONT_LOADER is None:
        import yaml

        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        null = "tag:yaml.org,2002:null"
        resolvers = {first: [(tag, rx) for tag, rx in pairs if tag == null]
                     for first, pairs in base.yaml_implicit_resolvers.items()}
        _FRONT_LOADER = type("_FrontLoader", (base,),
                             {"yaml_implicit_resolvers": {k: v for k, v in resolvers.items() if v}})
    return _FRONT_LOADER


def _yaml_front_matter(block: str) -> dict | None:
    """The fields of a '---' block read as the YAML it is (quotes and their escapes, comments, folded values,
    lists of authors joined by "; "), or None when it is not a YAML mapping (it is then read line by line)."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is a dependency
        return None
    try:
        data = yaml.load(block, Loader=_front_loader())  # noqa: S506 - a safe loader
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    fields: dict[str, str] = {}
    for key, value in data.items():  # a repeated key: the last one (as YAML reads it)
        if isinstance(key, str) and key.lower() in _FRONT_KEYS:
            text = _value_text(value, sep="; " if key.lower() == "author" else " ").strip()
            fields[key.lower()] = " ".join(text.split()) if "\n" in text else text  # a folded value: one line
    return fields


def _front_value(key: str, value: str) -> str:
    """A 'key: value' line's value: without the quotes around it ('It''s over' → It's over, "a \\"b\\"" → a "b"),
    but a quote that only ends or starts it is kept (Minister says 'no'); a date without its ' # comment'."""
    value = value.strip()
    if key == "date" and value[:1] not in ("'", '"'):
        comment = re.search(r"\s#", value)
        value = value[:comment.start()].rstrip() if comment else value
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        inner = value[1:-1]
        return inner.replace("''", "'") if value[0] == "'" else inner.replace('\\"', '"').replace("\\\\", "\\")
    return value


def split_front_matter(raw: str) -> tuple[dict, int]:
    """Front matter at the top of a text file: a '---' fenced block (read as YAML when it is YAML, else line by
    line) or plain 'key: value' lines ended by a blank line. Returns the fields and the offset where the article
    text starts."""
    fields: dict[str, str] = {}
    lines = raw.splitlines(keepends=True)
    if lines and lines[0].strip() == "---":
        pos = len(lines[0])
        for end, line in enumerate(lines[1:], start=1):
            pos += len(line)
            if line.strip() == "---":
                break
        else:
            return {}, 0  # no closing fence: not front matter
        parsed = _yaml_front_matter("".join(lines[1:end]))
        if parsed is not None:
            fields = parsed
        else:
            for line in lines[1:end]:
                m = _FRONT_LINE.match(line.strip())
                if m:
                    fields[m.group(1).lower()] = _front_value(m.group(1).lower(), m.group(2))
    else:
        pos = keys = 0
        for line in lines:
            m = _FRONT_LINE.match(line.strip())
            if not m:
                break
            fields[m.group(1).lower()] = _front_value(m.group(1).lower(), m.group(2))  # a repeated key: the last
            pos += len(line)
            keys += 1
        if not fields or (pos < len(raw) and lines[keys].strip()):
            return {}, 0  # key lines must be followed by a blank line, or they are the article itself
    while pos < len(raw) and raw[pos] in "\r\n":
        pos += 1
    return fields, pos


def article_from_text(
    raw: str,
    *,
    doc_id: str,
    title: str = "",
    date: str = "",
    source: str = "",
    url: str = "",
    author: str = "",
    path: str = "",
    markdown: bool = False,
) -> Article:
    """An article from decoded text; explicit fields win over front matter, which wins over what is derived.
    Control characters (C0 but tab, newline and carriage return) are removed first. With ``markdown`` the text
    after the front matter is Markdown, stored as the plain text it renders to (every offset refers to that)."""
    raw = strip_controls(raw)
    fields, start = split_front_matter(raw)
    text = raw[start:]
    if markdown:
        text = markdown_to_text(text)
    if not text.strip():
        raise InvalidInput(f"{path or doc_id}: the article has no text")
    given_date = date or fields.get("date", "")
    return Article(
        doc_id=safe_doc_id(doc_id),
        text=text,
        title=(title or fields.get("title") or derive_title(text)).strip(),
        date=parse_date(given_date) if given_date else stated_date(text),
        source=(source or fields.get("source", "")).strip(),
        url=(url or fields.get("url", "")).strip(),
        author=(author or fields.get("author", "")).strip(),
        path=path,
    )


_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section", "article",
    "header", "footer", "blockquote", "pre", "figure", "figcaption", "main", "aside", "nav", "dd", "dt", "hr",
}


def _visible_text(soup, *, join_lines: bool = False) -> str:
    """The text of a parsed page's body: one paragraph per block (heading, paragraph, list item, table row, code
    line), whitespace inside a line collapsed, paragraphs separated by a blank line. With ``join_lines`` a line
    break inside a block is a space, except in ``<pre>``."""
    for tag in soup(["script", "style", "noscript", "template", "head", "svg", "iframe", "object"]):
        tag.decompose()
    lines = [" ".join(line.split()) for line in strip_controls(_block_text(soup, join_lines)).splitlines()]
    return "\n\n".join(line for line in lines if line)


_PRE_END = object()


def _block_text(soup, join_lines: bool = False) -> str:
    """``soup.get_text("")`` with a line break before and after every block tag, in one pass over the tree (and,
    with ``join_lines``, line breaks in strings outside ``<pre>`` as spaces). Changing the tree instead (inserting
    breaks, replacing strings) costs time in the number of siblings before each node and in its depth: minutes for
    a 5 MB page of 130,000 paragraphs, 20 s for a Markdown file of 20,000 paragraphs."""
    from bs4.element import NavigableString, Tag

    # The strings get_text reads (not comments, doctypes or processing instructions): bs4's own rule.
    kinds = soup.interesting_string_types or Tag.MAIN_CONTENT_STRING_TYPES
    wanted = (lambda t: t is kinds) if isinstance(kinds, type) else (lambda t: t in kinds)
    out: list[str] = []
    stack: list = [soup]
    in_pre = 0
    while stack:
        node = stack.pop()
        if node is None:  # the end of a block tag
            out.append("\n")
        elif node is _PRE_END:
            in_pre -= 1
        elif isinstance(node, Tag):
            if node.name in _BLOCK_TAGS and node is not soup:
                out.append("\n")
                stack.append(None)
            if node.name == "pre":
                in_pre += 1
                stack.append(_PRE_END)
            stack.extend(reversed(node.contents))
        elif isinstance(node, NavigableString) and wanted(type(node)):
            out.append(str(node) if in_pre or not join_lines else str(node).replace("\n", " "))
    return "".join(out)


def markdown_to_text(markdown: str) -> str:
    """Markdown as the plain text a reader sees: headings, paragraphs, list items and code lines on their own
    lines (paragraphs separated by a blank line), without the markup (``#``, ``**``, ``_``, ``[text](url)`` →
    text, list markers, code fences, ``>``); images give nothing, raw HTML its visible text."""
    from bs4 import BeautifulSoup
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)
    # A line break inside a paragraph (or between a table's cells) is a space; only code keeps its lines.
    return _visible_text(BeautifulSoup(html, "lxml"), join_lines=True)


_BLANK_RUNS = re.compile(r"\n{3,}")


def _page_text(raw: str) -> str:
    """One page's extracted text: control characters out, trailing spaces off each line, at most one blank line."""
    lines = [line.rstrip() for line in strip_controls(raw.replace("\r\n", "\n").replace("\r", "\n")).split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


# Titles authoring programs fill in by themselves: "PowerPoint Presentation", "Untitled", "Slide 1", "Document1".
_GENERIC_PDF_TITLE = re.compile(
    r"(?:untitled(?:[ -]?\d+| document| presentation)?|(?:microsoft )?(?:powerpoint|word|excel) "
    r"(?:presentation|document|worksheet)|presentation ?\d*|document ?\d*|slide ?\d+|book ?\d+|title|no title)",
    re.IGNORECASE)


def pdf_to_article(data: bytes, *, doc_id: str, path: str = "", date: str = "") -> Article:
    """A PDF's text layer, page after page (pages separated by a blank line), with each page's start offset in
    ``pages`` so passages can cite their pages. UnsupportedFile for a file that is not a readable PDF or has no
    text (a scan: it needs OCR first)."""
    import logging

    from pypdf import PdfReader
    from pypdf.errors import DependencyError, PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings about damaged files would reach stderr
    name = path or doc_id
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnsupportedFile(f"{name}: the PDF is encrypted; save an unprotected copy and add that")
        texts = [_page_text(page.extract_text() or "") for page in reader.pages]
        meta = reader.metadata or {}
        meta_title, meta_author = (meta.get("/Title") or ""), (meta.get("/Author") or "")
    except UnsupportedFile:
        raise
    except DependencyError as e:  # AES encryption or a JBIG2 image stream: pypdf needs a package not installed
        raise UnsupportedFile(f"{name}: this PDF needs a decoder that is not installed ({e}); save an unprotected "
                              "copy, or print it to a new PDF, and add that") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError,
            NotImplementedError, RecursionError) as e:
        raise UnsupportedFile(f"{name}: not a readable PDF ({type(e).__name__}: {e})") from None
    text, starts, empty = "", [], []
    for i, page in enumerate(texts):
        if page and text:
            text += "\n\n"
        starts.append(len(text))
        if not page:
            empty.append(i)
        text += page
    for i in reversed(empty):  # an empty page starts where the next page does: no passage lies on it
        starts[i] = starts[i + 1] if i + 1 < len(starts) else len(text)
    if not text.strip():
        raise UnsupportedFile(
            f"{name}: the PDF has no text layer ({len(texts)} page{'s' if len(texts) != 1 else ''} of images, as a "
            f"scan has); run OCR on it first (e.g. `ocrmypdf in.pdf out.pdf`) and add the result")
    parsed = parse_date(date) if date else ""
    meta_title = " ".join(strip_controls(str(meta_title)).split())
    if re.search(r"^(microsoft \w+ - )|\.(docx?|pdf|odt|rtf|txt|pptx?|xlsx?)$", meta_title, re.IGNORECASE) or \
            _GENERIC_PDF_TITLE.fullmatch(meta_title):
        meta_title = ""  # a file name or placeholder the authoring program put there, not a headline
    return Article(
        doc_id=safe_doc_id(doc_id),
        text=text,
        title=meta_title or derive_title(text),
        date=parsed or stated_date(text),
        author=" ".join(str(meta_author).split()),
        path=path,
        pages=starts,
    )


# " | The Coastal Post", " - Example News": a site's name after a headline in a page title.
_TITLE_TAIL = r"\s+[|\u2013\u2014:-]\s+"
FALLBACK_NOTE = "no main article text found in the page: kept all its visible text"


# Sections and site names run to four words ("Local Government & Politics"); headlines are longer.
HEADLINE_WORDS = 5


def _without_site_name(title: str, *sites: str, heading: str = "") -> str:
    """The headline of a page title: " | Site name" (or " - Site name") taken off the end (or the front), for each
    of the names the site goes by. Of "A | B | C" what remains is the part the page's ``heading`` (its h1) is,
    else the first part of ``HEADLINE_WORDS`` words or more ("Live | Ferry strike: islanders stranded as talks
    collapse"), else the first part: "Headline | Section | Site" is the common order, and the longest part was as
    often a section ("Local Government & Politics") or the site itself as the headline."""
    title = " ".join(title.split())
    for site in sorted({s for s in sites if s}, key=len, reverse=True):
        tail = re.compile(_TITLE_TAIL + re.escape(site) + r"$|^" + re.escape(site) + r"\s*[|\u2013\u2014:-]\s+",
                          re.IGNORECASE)
        title = tail.sub("", title)
    parts = [p for p in re.split(r"\s+\|\s+", title) if p]
    if len(parts) > 1:
        wanted = " ".join(heading.split()).casefold()
        title = next((p for p in parts if wanted and p.casefold() == wanted), None) \
            or next((p for p in parts if len(p.split()) >= HEADLINE_WORDS), parts[0])
    return title.strip()


def _main_content(html: str) -> dict | None:
    """A news page's main text and metadata, read by trafilatura (menus, cookie banners, share bars, related
    links, comments and footers left out); None when it finds no main text."""
    import logging
    import warnings

    from trafilatura import bare_extraction

    logging.getLogger("trafilatura").setLevel(logging.ERROR)
    logging.getLogger("htmldate").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            doc = bare_extraction(html, with_metadata=True, include_comments=False, include_tables=True,
                                  include_images=False, include_links=False, favor_precision=True,
                                  date_extraction_params={"extensive_search": False, "original_date": True})
    except Exception:  # noqa: BLE001 - a page trafilatura cannot parse is read the old way
        return None
    if doc is None:
        return None
    lines = [" ".join(line.split()) for line in strip_controls(getattr(doc, "text", "") or "").splitlines()]
    text = "\n\n".join(line for line in lines if line)
    if not text:
        return None
    fields = {k: " ".join(strip_controls(str(getattr(doc, k, "") or "")).split())
              for k in ("title", "author", "url", "sitename", "date")}
    fields["text"] = text
    return fields


# A tag holding tens of thousands of attributes costs time quadratic in their number inside lxml.html, htmldate
# and trafilatura (80,000 in a 0.87 MB page: 70 s of a server thread); no page needs more than a few dozen.
MAX_TAG_ATTRIBUTES = 256
# A tag up to its ">" outside quoted values; possessive and stopping at an unquoted "<", so that nothing is
# scanned again on a failed match.
_TAG = re.compile(r"""<([A-Za-z][^\s/<>"']*+)((?:[^<>"']++|"[^"]*+"|'[^']*+')*+)>""")
_ATTRIBUTE = re.compile(r"""\s*[^\s=>]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]*))?""")


def _bounded_attributes(html: str) -> str:
    """``html`` with each tag cut to its first ``MAX_TAG_ATTRIBUTES`` attributes (the text is unchanged)."""
    def cut(match: re.Match) -> str:
        if len(match.group(2)) < 4 * MAX_TAG_ATTRIBUTES:  # too short to hold that many: the common case
            return match.group(0)
        attributes = _ATTRIBUTE.findall(match.group(2))
        if len(attributes) <= MAX_TAG_ATTRIBUTES:
            return match.group(0)
        return f"<{match.group(1)}{''.join(attributes[:MAX_TAG_ATTRIBUTES])}>"
    return _TAG.sub(cut, html)


# The page's own statement of when it was published, strongest first (metadata only: a date in the text, a
# footer, a related article or a comment is not the article's; "modified" and "updated" dates are not either).
_PUBLISHED_META = ("article:published_time", "og:published_time", "datepublished", "date", "pubdate", "publishdate",
                   "publish-date", "publish_date", "publication_date", "sailthru.date", "parsely-pub-date",
                   "dc.date.issued", "dcterms.issued", "dc.date", "dcterms.date", "dcterms.created", "dc.date.created",
                   "original-publish-date", "article.published", "cxenseparse:recs:publishtime")
# The JSON-LD types that are the article itself (an ItemList, a WebSite or an Organization is not).
_ARTICLE_TYPES = re.compile(r"(Article|BlogPosting|LiveBlogPosting|Report|NewsArticle|Posting)$")
# Parts of a page that hold other articles' dates and titles, or readers': never the article's.
_ASIDE_TAGS = ("aside", "nav", "footer")
_ASIDE_CLASS = re.compile(r"related|comment|recommend|sidebar|more-stories|promo|teaser", re.IGNORECASE)
_URL_DAY = re.compile(r"/((?:19|20)\d{2})/([01]\d)/([0-3]\d)/")


def _json_ld_articles(soup) -> list[dict]:
    """The page's JSON-LD objects that describe an article (top level or in an ``@graph``), in page order; the
    updates of a live blog and the items of a list are parts, not the article."""
    found = []
    for script in soup.find_all("script", attrs={"type": re.compile(r"application/ld\+json", re.IGNORECASE)}):
        try:
            data = json.loads(script.string or "")
        except (ValueError, RecursionError):
            continue
        for item in data if isinstance(data, list) else [data]:
            if not isinstance(item, dict):
                continue
            graph = item.get("@graph") if isinstance(item.get("@graph"), list) else []
            for obj in [item] + [g for g in graph if isinstance(g, dict)]:
                kinds = obj.get("@type")
                kinds = kinds if isinstance(kinds, list) else [kinds]
                if any(isinstance(k, str) and _ARTICLE_TYPES.search(k) for k in kinds):
                    found.append(obj)
    return found


def _in_aside(tag) -> bool:
    return any(parent.name in _ASIDE_TAGS or _ASIDE_CLASS.search(" ".join(parent.get("class") or []))
               for parent in tag.parents if getattr(parent, "name", None))


def _published_date(soup, articles: list[dict], url: str) -> str:
    """When the page says its article was published, from its metadata alone: JSON-LD ``datePublished``, then the
    publication meta tags, then a ``<time>`` marked as the publication (``itemprop``/``pubdate``) outside asides,
    then a day in the canonical URL's path; '' when none reads as a date. htmldate's guesses (a date in the text,
    the footer's "last updated", a related article's or a comment's ``<time>``, an "Updated" stamp) are not used:
    the README promises no date guessed from the text."""
    candidates = [a.get("datePublished") or a.get("dateCreated") for a in articles]
    wanted = {name: i for i, name in enumerate(_PUBLISHED_META)}
    metas = []
    for tag in soup.find_all("meta"):
        key = (tag.get("property") or tag.get("name") or tag.get("itemprop") or "").strip().lower()
        if key in wanted and tag.get("content") and not _in_aside(tag):
            metas.append((wanted[key], tag["content"]))
    candidates += [value for _, value in sorted(metas, key=lambda m: m[0])]
    for tag in soup.find_all("time"):
        if (tag.get("itemprop", "").lower() == "datepublished" or tag.has_attr("pubdate")) and not _in_aside(tag):
            candidates.append(tag.get("datetime") or tag.get_text())
    day = _URL_DAY.search(url or "")
    if day:
        candidates.append("-".join(day.groups()))
    for value in candidates:
        if not isinstance(value, str) or not value.strip():
            continue
        try:
            parsed = parse_date(value.strip())
        except InvalidInput:
            continue
        if parsed:
            return parsed
    return ""


def _named(value) -> str:
    """A JSON-LD name: a string, or an object's ``name``, or the first of a list of them."""
    if isinstance(value, list):
        value = value[0] if value else ""
    if isinstance(value, dict):
        value = value.get("name", "")
    return " ".join(value.split()) if isinstance(value, str) else ""


def html_to_article(html: str, *, doc_id: str, path: str = "", date: str = "") -> Article:
    """A news page's main text with its title (without the site's name), date, author, site name (as the source)
    and canonical URL, read by trafilatura; a page where it finds no main text keeps all its visible text (see
    ``visible_text_article``), and the article's ``note`` says so. The date and the title are the page's own
    statements about its article (``_published_date``; the JSON-LD headline, else the title without the site's
    name), never a related article's, a live blog update's or a guess from the text."""
    html = _bounded_attributes(html)
    main = _main_content(strip_controls(html))
    if main is None:
        article = visible_text_article(html, doc_id=doc_id, path=path, date=date)
        article.note = FALLBACK_NOTE
        return article
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    articles = _json_ld_articles(soup)
    url = main["url"] if main["url"].lower().startswith(("http://", "https://")) else ""
    parsed = parse_date(date) if date else _published_date(soup, articles, url)
    # The outlet as the page names itself (og:site_name) before the company behind it (JSON-LD's publisher).
    site_tag = soup.find("meta", attrs={"property": "og:site_name"})
    site = " ".join(strip_controls(site_tag.get("content", "")).split()) if site_tag else ""
    site = site or main["sitename"]
    h1 = soup.find("h1")
    heading = " ".join(h1.get_text(" ").split()) if h1 else ""
    headline = next((h for h in (_named(a.get("headline")) for a in articles) if h), "")
    text = main["text"]
    return Article(
        doc_id=safe_doc_id(doc_id),
        text=text,
        title=headline or _without_site_name(main["title"], site, main["sitename"], heading=heading)
        or derive_title(text),
        date=parsed or stated_date(text),
        source=site,
        url=url,
        author=main["author"],
        path=path,
    )


def visible_text_article(html: str, *, doc_id: str, path: str = "", date: str = "") -> Article:
    """The visible text of an HTML page (scripts, styles and the head dropped, blocks on their own lines): the
    fallback for pages without main article text."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    title = ""
    meta_date = ""
    for attrs in ({"property": "og:title"}, {"name": "title"}):
        tag = soup.find("meta", attrs=attrs)
        if tag and tag.get("content"):
            title = tag["content"]
            break
    if not title and soup.title and soup.title.string:
        title = soup.title.string
    for attrs in ({"property": "article:published_time"}, {"name": "date"}, {"itemprop": "datePublished"}):
        tag = soup.find("meta", attrs=attrs)
        if tag and tag.get("content"):
            meta_date = tag["content"]
            break
    if not meta_date:
        time_tag = soup.find("time", attrs={"datetime": True})
        meta_date = time_tag["datetime"] if time_tag else ""
    h1 = soup.find("h1")
    if not title and h1:
        title = h1.get_text(" ", strip=True)
    text = _visible_text(soup)
    if not text:
        raise InvalidInput(f"{path or doc_id}: the page has no visible text")
    try:
        parsed = parse_date(date) if date else parse_date(meta_date)
    except InvalidInput:
        parsed = ""
    return Article(
        doc_id=safe_doc_id(doc_id),
        text=text,
        title=" ".join(title.split()) or derive_title(text),
        date=parsed or stated_date(text),
        path=path,
    )


# An object standing for one value: WordPress {"rendered": html}, schema.org and NewsAPI {"name": …}, MongoDB
# extended JSON {"$date": …}, {"$oid": …}, {"$numberLong": …}.
_VALUE_KEYS = ("name", "$date", "$oid", "$numberLong", "#text")
# Closing block tags (or <br>) mark a body that is HTML markup; a plain text that mentions a tag has none of them.
_MARKUP = re.compile(r"</(?:p|div|h[1-6]|li|ul|ol|blockquote|section|article|figure|table|tr|pre)\s*>|<br\s*/?>",
                     re.IGNORECASE)


def _markup_text(html: str) -> str:
    """The text HTML markup shows (as a Markdown file's raw HTML gives): blocks on their own lines."""
    from bs4 import BeautifulSoup

    return _visible_text(BeautifulSoup(html, "lxml"), join_lines=True)


def _value_text(value, *, sep: str = " ", numbers: bool = True, depth: int = 0) -> str:
    """A record (or front matter) value as text, never as Python's repr of it: a string as it is; a number as
    written, or nothing where ``numbers`` is off (an author given as a user id is no name); a list as its items
    joined by ``sep`` ("; " for names, a blank line for paragraphs); an object by its rendered HTML's text or
    its name; anything else (true, null, nesting deeper than three levels) as nothing."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool) or depth > 3:
        return ""
    if isinstance(value, (int, float)):
        return str(value) if numbers else ""
    if isinstance(value, list):
        parts = (_value_text(item, sep=sep, numbers=numbers, depth=depth + 1) for item in value)
        return sep.join(part for part in parts if part.strip())
    if isinstance(value, dict):
        if isinstance(value.get("rendered"), str):
            return _markup_text(value["rendered"])
        for key in _VALUE_KEYS:
            if key in value:
                return _value_text(value[key], sep=sep, numbers=numbers, depth=depth + 1)
    return ""


def _first(record: dict, *keys: str, sep: str = " ", numbers: bool = True) -> str:
    """The text of the first of ``keys`` the record gives a value with text (see _value_text)."""
    for key in keys:
        text = _value_text(record.get(key), sep=sep, numbers=numbers)
        if text.strip():
            return text
    return ""


# The article's text: the full-text fields of common exports first (schema.org articleBody, news-please maintext,
# JSON Feed content_text/content_html); a description or summary (a teaser) only when there is nothing else.
_BODY_KEYS = ("body", "text", "content", "article", "articleBody", "maintext", "content_text", "content_html",
              "description", "summary", "excerpt")
# The publication date's fields before any other date (a crawler's "date" is when the page was fetched).
_DATE_KEYS = ("published_at", "publishedAt", "published", "datePublished", "date_published", "date_publish",
              "publish_date", "publication_date", "pubDate", "date", "created_at")


def _record_body(record: dict) -> str:
    """A record's text: a list of paragraphs joined by a blank line, HTML markup as the text it shows."""
    for key in _BODY_KEYS:
        value = record.get(key)
        text = _value_text(value, sep="\n\n")
        if text.strip() and not isinstance(value, dict) and (key == "content_html" or _MARKUP.search(text)):
            text = _markup_text(text)  # (an object's rendered HTML is text already)
        if text.strip():
            return text
    return ""


def _epoch_date(seconds: float) -> str:
    """The UTC day of a Unix time in seconds (9-10 digits) or milliseconds (12-13 digits); '' for other numbers,
    whose unit cannot be told."""
    if not 1e8 <= seconds < 1e13 or 1e10 <= seconds < 1e11:  # (NaN fails too)
        return ""
    if seconds >= 1e11:
        seconds = seconds / 1000
    return datetime.fromtimestamp(seconds, tz=timezone.utc).date().isoformat()


def _record_date(record: dict) -> str:
    """The date of the first date field a record gives (publication fields first); '' when it cannot be read."""
    for key in _DATE_KEYS:
        value = record.get(key)
        if isinstance(value, dict):
            value = value.get("$date", value.get("$numberLong"))
            if isinstance(value, dict):
                value = value.get("$numberLong")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _epoch_date(value)
        text = _value_text(value).strip()
        if not text:
            continue
        if text.isascii() and text.isdigit() and len(text) != 8:  # eight digits are a basic ISO date (20250303)
            return _epoch_date(int(text)) if len(text) <= 13 else ""
        try:
            return parse_date(text)
        except InvalidInput:
            return ""
    return ""


def articles_from_records(records: list, *, name: str, max_bytes: int) -> list[Article]:
    """Articles from a JSON collection (title, body/text/content, published_at/date, source, url, author, id),
    under the field names of common exports (NewsAPI, schema.org, JSON Feed, news-please, WordPress REST)."""
    stem = safe_doc_id(Path(name).stem)
    articles: list[Article] = []
    seen: dict[str, int] = {}
    for n, record in enumerate(records):
        if not isinstance(record, dict):
            raise InvalidInput(f"{name}: record {n} is not an object")
        if has_lone_surrogate(record):
            raise InvalidInput(f"{name}: record {n} holds a lone surrogate escape (\\ud800–\\udfff), which is not "
                               "text")
        text = strip_controls(_record_body(record))
        if not text.strip():
            raise InvalidInput(f"{name}: record {n} has no body or text")
        if len(text.encode("utf-8")) > max_bytes:
            raise TooLarge(f"{name}: record {n} is over the {size_text(max_bytes)} limit")
        given_id = _first(record, "doc_id", "id", "_id", "uuid")
        if given_id:
            doc_id = safe_doc_id(given_id)
        else:
            key = _first(record, "url") or _first(record, "title") + "\n" + text[:500]
            doc_id = f"{stem}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:12]}"
        if doc_id in seen:
            raise Conflict(f"{name}: records {seen[doc_id]} and {n} both have document id {doc_id!r}")
        seen[doc_id] = n
        date = _record_date(record)
        articles.append(
            Article(
                doc_id=doc_id,
                text=text,
                title=" ".join(_first(record, "title", "headline").split()) or derive_title(text),
                date=date,
                # One line each, as the title: a source with a line break split a printed citation in two.
                source=" ".join(_first(record, "source", "publisher", "source_name", "sitename", "site_name",
                                       "source_domain", numbers=False).split()),
                url=_first(record, "url", "link").strip(),
                author=" ".join(_first(record, "author", "authors", "byline", "creator", sep="; ",
                                       numbers=False).split()),
                path=name,
            )
        )
    return articles


def read_file(path: Path, *, max_bytes: int, date: str = "", doc_id: str = "") -> list[Article]:
    """The article(s) in one file. Errors say which file and what is wrong with it."""
    path = Path(path)
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # stored with the article, the name failed only at the end, losing the whole batch
        shown = os.fsencode(path).decode("utf-8", "replace")
        raise InvalidInput(f"{shown}: the file name is not UTF-8; rename the file") from None
    if not path.exists():
        raise NotFound(f"{path}: no such file")
    if path.is_dir():
        raise InvalidInput(f"{path} is a folder; use `qa index {path}`")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise UnsupportedFile(
            f"{path}: unsupported file type {suffix or '(none)'}; use .txt, .md, .html, .pdf, .json or .jsonl")
    data = path.read_bytes()
    if suffix not in COLLECTION_SUFFIXES and len(data) > max_bytes:
        raise TooLarge(f"{path} is {len(data) / 1e6:.1f} MB, over the {size_text(max_bytes)} limit")
    if suffix in PDF_SUFFIXES:
        articles = [pdf_to_article(data, doc_id=doc_id or path.stem, path=str(path), date=date)]
    else:
        text = decode(data, str(path))
        if suffix in COLLECTION_SUFFIXES:
            articles = articles_from_records(_parse_collection(text, path), name=str(path), max_bytes=max_bytes)
        elif suffix in HTML_SUFFIXES:
            articles = [html_to_article(text, doc_id=doc_id or path.stem, path=str(path), date=date)]
        else:
            articles = [article_from_text(text, doc_id=doc_id or path.stem, date=date, path=str(path),
                                          markdown=suffix in MARKDOWN_SUFFIXES)]
    # Messages name the file as it was given; the article keeps it absolute, so that a sync run from another
    # folder finds it (`qa add news/x.txt` in one folder, then `qa index news --sync` in another, removed x).
    stored = str(absolute_path(path))
    for article in articles:
        article.path = stored
    return articles


def absolute_path(path: str | Path) -> Path:
    """``path`` made absolute with its folders resolved but not its own name: a link to a file stays the link, so
    that it is the folder holding the link that the article belongs to (a sync removes it when the link goes)."""
    path = Path(path)
    return Path(os.path.abspath(path.parent)).resolve() / path.name


# Where a JSON object keeps its list of records (NewsAPI "articles", JSON Feed "items", search APIs "results").
_RECORD_LIST_KEYS = ("articles", "documents", "data", "items", "results", "records", "entries", "posts")
_ENVELOPE_KEYS = ("data", "response", "result", "feed")


def _record_list(data: dict) -> list | None:
    return next((data[key] for key in _RECORD_LIST_KEYS if isinstance(data.get(key), list)), None)


def _parse_collection(text: str, path: Path) -> list:
    lineno = 0
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            if isinstance(data, dict):
                records = _record_list(data)
                if records is None:  # an API's envelope: {"data": {"items": [...]}}, {"response": {"results": …}}
                    inner = next((data[key] for key in _ENVELOPE_KEYS if isinstance(data.get(key), dict)), None)
                    records = _record_list(inner) if inner is not None else None
                return [data] if records is None else records
            if isinstance(data, list):
                return data
            raise InvalidInput(f"{path}: expected a list of articles")
        # Records end at "\n" only: U+2028, U+2029 and U+0085 may stand unescaped inside a JSON string.
        records = []
        for lineno, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                records.append(json.loads(line))
        return records
    except json.JSONDecodeError as e:
        where = f"line {lineno or e.lineno}, column {e.colno}"
        raise InvalidInput(f"{path}: not valid JSON ({e.msg}: {where})") from None
    except RecursionError:
        raise InvalidInput(f"{path}: not valid JSON (nested too deeply{f' at line {lineno}' if lineno else ''})") \
            from None
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        raise InvalidInput(f"{path}: not valid JSON ({e})") from None


IGNORE_FILE = ".qaignore"


_STAR, _DEEP = object(), object()  # "*" and "**" while translating a glob


def _glob_regex(pattern: str) -> str:
    """A gitignore glob as a regular expression over a /-separated relative path."""
    out: list = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += [_DEEP, "(?:.*/)?"]
            i += 3
            continue
        if pattern.startswith("**", i):
            out += [_DEEP, ".*"]
            i += 2
            continue
        if c == "*":
            out.append(_STAR)
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and pattern.find("]", i + 2) != -1:
            end = pattern.find("]", i + 2)
            body = pattern[i + 1:end]
            negated = body[:1] in ("!", "^")
            out.append("[" + ("^" if negated else "") + re.sub(r"([\\\[\]^])", r"\\\1", body[negated:]) + "]")
            i = end + 1
            continue
        elif c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return _stars(out)


def _stars(tokens: list) -> str:
    """The translated tokens as one expression. Between two ``*`` the text is matched at its first occurrence
    and kept (an atomic group, as ``fnmatch`` does): plain ``[^/]*`` before each made ``*a*a*a*a*a*a*b`` try every
    split of a name, seconds for 80 characters. A later occurrence never matches where the first does not, since
    the next ``*`` takes up what lies between them, where no "/" can be."""
    segments: list[list] = [[]]
    for t in tokens:
        if t is _STAR:
            segments.append([])
        else:
            segments[-1].append(t)
    def text(seg: list) -> str:
        return "".join(t for t in seg if t is not _DEEP)

    def slashless(seg: list) -> bool:
        # Only where the text between the stars cannot hold a "/" ("**", a "/" or a negated class like [!a] can).
        return all(t == "[^/]" or (t is not _DEEP and "/" not in t and not t.startswith("[^")) for t in seg)

    out = text(segments[0])
    for n, seg in enumerate(segments[1:], start=1):
        last = n == len(segments) - 1
        out += "(?>[^/]*?" + text(seg) + ")" if not last and slashless(seg) else "[^/]*" + text(seg)
    return out


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern
    negated: bool
    dirs_only: bool


class IgnoreRules:
    """The ``.qaignore`` of a folder: gitignore-style glob lines, ``#`` comments. A pattern without a slash matches
    a file or folder name at any depth (``PROVENANCE.md``, ``*.csv``, ``drafts/``); one with a slash matches the
    path from the folder (``notes/*.md``, ``/README.md``, ``**/tmp``); a trailing ``/`` matches folders only;
    ``!`` re-includes a file; the last matching line wins, and what is in an ignored folder stays ignored."""

    def __init__(self, lines: list[str]):
        self.rules: list[_Rule] = []
        for line in lines:
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            line = line.rstrip() if not line.endswith("\\ ") else line
            negated = line.startswith("!")
            if negated or line.startswith("\\!") or line.startswith("\\#"):
                line = line[1:]
            dirs_only = line.endswith("/")
            anchored = "/" in line.rstrip("/")
            body = _glob_regex(line.rstrip("/").lstrip("/"))
            try:
                regex = re.compile(("^" if anchored else "^(?:.*/)?") + body + "$", re.DOTALL)
            except re.error as e:  # "[z-a]": a range out of order
                raise InvalidInput(f"{IGNORE_FILE}: the line {line!r} is not a valid pattern ({e.msg})") from None
            self.rules.append(_Rule(regex, negated, dirs_only))

    @classmethod
    def of(cls, folder: Path) -> "IgnoreRules":
        path = Path(folder) / IGNORE_FILE
        if not path.is_file():
            return cls([])
        return cls(decode(path.read_bytes(), str(path)).splitlines())

    def _matches(self, rel: str, is_dir: bool) -> bool:
        ignored = False
        for rule in self.rules:
            if (not rule.dirs_only or is_dir) and rule.regex.match(rel):
                ignored = not rule.negated
        return ignored

    def ignores(self, rel: str) -> bool:
        """Is the file at ``rel`` (a /-separated path inside the folder) or a folder above it ignored?"""
        if not self.rules:
            return False
        parts = rel.split("/")
        return any(self._matches("/".join(parts[:n]), True) for n in range(1, len(parts))) or self._matches(rel, False)


@dataclass
class Collected:
    """Articles gathered from paths, the files that were passed over with the reason, and counts for a summary:
    files read by type, and files left out by a folder's ``.qaignore``."""

    articles: list[Article] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    files: dict[str, int] = field(default_factory=dict)  # suffix → files read
    ignored: int = 0

    def summary(self, articles: int | None = None) -> str:
        """'read 12 articles from 10 files (8 .txt, 2 .jsonl); 3 files ignored by .qaignore; 1 skipped'. An
        ingest that does not hold the articles here (the Ray one) says how many it read as ``articles``."""
        count = len(self.articles) if articles is None else articles
        n = sum(self.files.values())
        by_count = sorted(self.files.items(), key=lambda kv: (-kv[1], kv[0]))
        kinds = ", ".join(f"{count} {suffix}" for suffix, count in by_count)
        line = (f"read {count} article{'' if count == 1 else 's'} from {n} "
                f"file{'' if n == 1 else 's'}{f' ({kinds})' if kinds else ''}")
        if self.ignored:
            line += f"; {self.ignored} file{'' if self.ignored == 1 else 's'} ignored by {IGNORE_FILE}"
        if self.skipped:
            line += f"; {len(self.skipped)} skipped"
        return line


class SkippedFile(Exception):
    """A file in a folder passed over; its message says which and why."""


def find_files(paths: list[Path], *, ids: str = "stem") -> tuple[list[tuple[Path, str, bool]], int]:
    """The files ``collect`` reads under ``paths``, in its order: ``(file, doc_id, named)`` with the id ``--ids
    path`` gives ('' for the default) and whether the file was named directly (its errors are raised, not skipped);
    and how many supported files a folder's ``.qaignore`` left out. NotFound for a path that does not exist. A file
    reached twice (`qa add a.txt a.txt`, or a folder and a file in it) is read once."""
    out: list[tuple[Path, str, bool]] = []
    ignored = 0
    seen: dict[Path, int] = {}

    def found(file: Path, doc_id: str, named: bool) -> None:
        key = file.resolve()
        if key in seen:  # the same file again: one article, named if it was named either time
            at = seen[key]
            out[at] = (out[at][0], out[at][1], out[at][2] or named)
            return
        seen[key] = len(out)
        out.append((file, doc_id, named))

    for root in paths:
        root = Path(root)
        if not root.exists():
            raise NotFound(f"{root}: no such file or folder")
        if root.is_file():
            found(root, "", True)
            continue
        if not root.is_dir():  # a FIFO or a device was searched as a folder, finding nothing, and "0 added"
            raise InvalidInput(f"{root}: not a file or folder (a pipe or a device); save the articles to a file")
        rules = IgnoreRules.of(root)
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if not p.is_file() or any(part.startswith(".") for part in rel.split("/")):
                continue
            if p.suffix.lower() not in SUPPORTED:
                continue
            if rules.ignores(rel):
                ignored += 1
                continue
            if alias_in(p, root, rules):
                continue
            doc_id = safe_doc_id(str(p.relative_to(root).with_suffix("")).replace("/", "-")) if ids == "path" else ""
            found(p, doc_id, False)
    return out, ignored


def alias_in(file: Path, root: Path, rules: "IgnoreRules") -> bool:
    """Is ``file`` a link to another file that the folder ``root`` offers itself (not hidden, not ignored)? That
    file is read as itself; the link would be the same article again under another id, whichever comes first."""
    if not file.is_symlink():
        return False
    target = file.resolve()
    root = root.resolve()
    if target == file or not target.is_relative_to(root):
        return False
    rel = target.relative_to(root).as_posix()
    return (target.suffix.lower() in SUPPORTED and not any(part.startswith(".") for part in rel.split("/"))
            and not rules.ignores(rel))


def read_found(file: Path, doc_id: str, named: bool, *, max_bytes: int, date: str = "") -> list[Article]:
    """The articles of one file ``find_files`` found. A file found in a folder that cannot be read is SkippedFile
    (the reason in its message); one named directly raises its error."""
    try:
        return read_file(file, max_bytes=max_bytes, date=date, doc_id=doc_id)
    except (UnsupportedFile, TooLarge, InvalidInput) as e:
        if named:
            raise
        raise SkippedFile(str(e)) from e


def claim(owner: dict[str, str], doc_id: str, file) -> None:
    """Record that ``file`` holds the article ``doc_id``; Conflict when another file already claimed that id."""
    if doc_id in owner:
        raise Conflict(
            f"document id {doc_id!r} is claimed by {owner[doc_id]} and {file}; rename one file or use --ids path"
        )
    owner[doc_id] = str(file)


def collect(paths: list[Path], *, max_bytes: int, date: str = "", ids: str = "stem") -> Collected:
    """Articles from files and folders (recursively). A file named directly must be readable (its error is
    raised); a file found inside a folder that cannot be read is skipped and reported. In a folder, hidden files
    and folders are passed over, and so is what its ``.qaignore`` lists (see IgnoreRules). Two articles with one
    id are an error. ``ids="path"`` names articles by their path inside the folder ('sport-001')."""
    found = Collected()
    owner: dict[str, str] = {}
    files, found.ignored = find_files(paths, ids=ids)
    for file, doc_id, named in files:
        try:
            articles = read_found(file, doc_id, named, max_bytes=max_bytes, date=date)
        except SkippedFile as e:
            found.skipped.append(str(e))
            continue
        suffix = file.suffix.lower() or "(none)"
        found.files[suffix] = found.files.get(suffix, 0) + 1
        for article in articles:
            claim(owner, article.doc_id, file)
            found.articles.append(article)
    return found
