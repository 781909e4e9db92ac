"""Article formats beyond plain text: Markdown stored as readable text (offsets refer to it)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from qa.ingest import markdown_to_text, read_file
from qa.records import Article

from conftest import make_pdf
from web.app import create_app

MB = 5 * 1024 * 1024
BASE = "http://localhost:8000"

MARKDOWN = """---
title: Ferry strike
date: 2025-03-03
source: Coastal Post
---

# Ferry workers strike over pay

Ferry workers went on **strike** on _Monday_ over pay, the [union](https://example.org/union "Union site") said.
The *operator* cancelled __all__ crossings.

## What the union wants

- a 6% raise
- safer night crossings
1. talks in April

> "We had no choice," said ~~the~~ a spokesperson.

```python
print("not an article")
```

Read more: <https://example.org/more>. ![A ferry](ferry.jpg) Image above.

| Route | Sailings |
|-------|----------|
| Island A | 12 |
"""

LEAKS = re.compile(r"(^|\s)#{1,6}\s|\*\*|__|(?<!\w)_\w|\w_(?!\w)|\]\(|!\[|^\s*[-*+]\s|^\s*\d+\.\s|```|^\s*>|~~|\|",
                   re.MULTILINE)


def test_markdown_becomes_readable_text():
    text = markdown_to_text(MARKDOWN.split("---\n", 2)[2])
    assert not LEAKS.search(text), LEAKS.search(text)
    assert "Ferry workers went on strike on Monday over pay, the union said.\nThe operator" not in text  # one line
    assert "Ferry workers went on strike on Monday over pay, the union said. The operator cancelled all crossings." \
        in text
    paragraphs = text.split("\n\n")
    assert paragraphs[0] == "Ferry workers strike over pay"
    assert "What the union wants" in paragraphs and "a 6% raise" in paragraphs and "talks in April" in paragraphs
    assert '"We had no choice," said the a spokesperson.' in paragraphs
    assert 'print("not an article")' in paragraphs
    assert "Read more: https://example.org/more. Image above." in paragraphs
    assert "https://example.org/union" not in text and "ferry.jpg" not in text
    assert markdown_to_text("snake_case_name and 2 * 3 * 4 stay") == "snake_case_name and 2 * 3 * 4 stay"


def test_a_markdown_file_is_stored_as_text_with_its_front_matter_read(tmp_path):
    path = tmp_path / "ferry.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    (article,) = read_file(path, max_bytes=MB)
    assert (article.title, article.date, article.source) == ("Ferry strike", "2025-03-03", "Coastal Post")
    assert article.text.startswith("Ferry workers strike over pay\n\nFerry workers went on strike on Monday")
    assert not LEAKS.search(article.text)
    txt = tmp_path / "ferry.txt"  # a .txt file is kept verbatim, markup and all
    txt.write_text("Ferry workers went on **strike**.", encoding="utf-8")
    assert read_file(txt, max_bytes=MB)[0].text == "Ferry workers went on **strike**."


def test_markdown_passages_and_answers_carry_no_markup(tmp_path, index):
    path = tmp_path / "ferry.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    index.rebuild(read_file(path, max_bytes=MB) + [Article("other", "The council approved the budget.")])
    answer = index.ask("Why did ferry workers strike?", k=3)
    text = index.document("ferry")["text"]
    assert answer.passages and answer.passages[0].doc_id == "ferry"
    for p in answer.passages:
        assert not LEAKS.search(p.text)
        if p.doc_id == "ferry":
            assert text[p.start:p.end] == p.text
    assert "**" not in answer.answer and "](" not in answer.answer


def test_a_markdown_upload_is_stored_as_text(seed_copy):
    with TestClient(create_app(seed_copy.settings, index=seed_copy), base_url=BASE) as client:
        files = {"file": ("ferry-md.md", MARKDOWN.encode(), "text/markdown")}
        r = client.post("/documents", files=files)
        assert r.status_code == 201, r.text
        doc = client.get("/documents/ferry-md").json()
    assert doc["title"] == "Ferry strike" and not LEAKS.search(doc["text"])
    for chunk in doc["chunks"]:
        assert not LEAKS.search(doc["text"][chunk["start"]:chunk["end"]])


# --- PDF ----------------------------------------------------------------------------------------------------------
PAGE_1 = ["Quarry council report", "Quarry workers at the Brannock pit stopped work on Tuesday over",
          "unpaid overtime, the union said."]
PAGE_3 = ["The Brannock quarry owner offered a bonus of 400 euros to end the",
          "stoppage, but the workers rejected it on Thursday."]
PDF = make_pdf([PAGE_1, [], PAGE_3], title="Brannock quarry stoppage")


def test_pdf_text_is_read_page_by_page_with_page_offsets(tmp_path):
    path = tmp_path / "quarry.pdf"
    path.write_bytes(PDF)
    (article,) = read_file(path, max_bytes=MB)
    assert article.title == "Brannock quarry stoppage"
    assert article.text.startswith("Quarry council report\nQuarry workers at the Brannock pit")
    assert len(article.pages) == 3 and article.pages[0] == 0
    third = article.text[article.pages[2]:]
    assert third.startswith("The Brannock quarry owner offered a bonus")
    assert article.pages[1] == article.pages[2]  # the image-only page holds no text
    assert article.text[:article.pages[2]].endswith("unpaid overtime, the union said.\n\n")


def test_a_pdf_without_text_is_refused_clearly(tmp_path):
    from qa.errors import UnsupportedFile

    path = tmp_path / "scan.pdf"
    path.write_bytes(make_pdf([[], []]))
    with pytest.raises(UnsupportedFile, match="no text layer.*OCR"):
        read_file(path, max_bytes=MB)
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\nthis is not really a PDF")
    with pytest.raises(UnsupportedFile, match="not a readable PDF|no text layer"):
        read_file(broken, max_bytes=MB)


def test_pdf_passages_cite_their_pages(tmp_path, index):
    path = tmp_path / "quarry.pdf"
    path.write_bytes(PDF)
    index.rebuild(read_file(path, max_bytes=MB) + [Article("other", "The council approved the budget.")])
    text = index.document("quarry")["text"]
    assert index.document("quarry")["pages"] == read_file(path, max_bytes=MB)[0].pages
    answer = index.ask("How much was the bonus the Brannock quarry owner offered?", k=3)
    quarry = [p for p in answer.passages if p.doc_id == "quarry"]
    assert quarry and all(text[p.start:p.end] == p.text for p in quarry)
    assert all(p.pages and set(p.pages) <= {1, 3} for p in quarry)
    assert [p.pages for p in answer.passages if p.doc_id == "other"] == [[]] * len(
        [p for p in answer.passages if p.doc_id == "other"])
    # Pages survive a rebuild from the stored articles.
    index.rebuild()
    assert index.document("quarry")["pages"] == read_file(path, max_bytes=MB)[0].pages
    assert [p.pages for p in index.search("Brannock quarry bonus", k=1)] == [quarry[0].pages]


def test_pdf_upload_and_scan_refusal_over_http(seed_copy):
    with TestClient(create_app(seed_copy.settings, index=seed_copy), base_url=BASE) as client:
        r = client.post("/documents", files={"file": ("quarry.pdf", PDF, "application/pdf")})
        assert r.status_code == 201, r.text
        assert r.json()["title"] == "Brannock quarry stoppage"
        r = client.post("/ask", json={"question": "What bonus did the Brannock quarry owner offer?", "k": 3})
        quarry = [p for p in r.json()["passages"] if p["doc_id"] == "quarry"]
        assert quarry and quarry[0]["pages"] in ([1], [3], [1, 3])
        r = client.post("/documents", files={"file": ("scan.pdf", make_pdf([[]]), "application/pdf")})
        assert r.status_code == 415 and "no text layer" in r.json()["detail"]


def test_qa_add_reads_a_pdf_and_refuses_a_scan(tmp_path, seed_index_dir, model_cache):
    import os
    import shutil
    import subprocess
    import sys

    folder = tmp_path / "index"
    shutil.copytree(seed_index_dir, folder)
    if (model_cache / "onnx").exists():
        shutil.copytree(model_cache / "onnx", folder / "onnx")
    env = {**os.environ, "QA_INDEX_DIR": str(folder), "QA_READER": "off"}
    (tmp_path / "quarry.pdf").write_bytes(PDF)
    (tmp_path / "scan.pdf").write_bytes(make_pdf([[]]))

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "qa.cli", *args], capture_output=True, text=True, env=env,
                              timeout=300)
        return proc.returncode, proc.stdout, proc.stderr

    code, out, err = run("add", str(tmp_path / "quarry.pdf"))
    assert code == 0, err
    assert "added quarry — Brannock quarry stoppage" in out
    code, out, err = run("ask", "What bonus did the Brannock quarry owner offer?", "-k", "1")
    assert code == 0 and re.search(r"\[1\] Brannock quarry stoppage — pp\. 1, 3 \(quarry, chars", out), out
    code, out, err = run("add", str(tmp_path / "scan.pdf"))
    assert code == 2 and "no text layer" in err and len(err.strip().splitlines()) == 1


def test_page_labels_and_the_chat_card_show_pages(seed_copy):
    from qa.records import page_label

    assert [page_label(p) for p in ([], [3], [2, 3, 4], [1, 3])] == ["", "p. 3", "pp. 2–4", "pp. 1, 3"]
    with TestClient(create_app(seed_copy.settings, index=seed_copy), base_url=BASE) as client:
        assert client.post("/documents", files={"file": ("quarry.pdf", PDF, "application/pdf")}).status_code == 201
        page = client.get("/ask", params={"q": "What bonus did the Brannock quarry owner offer?", "k": 1},
                          headers={"accept": "text/html"})
        assert page.status_code == 200 and "pp. 1, 3 ·" in page.text


def test_an_index_from_before_page_offsets_gets_them_with_its_next_write(tmp_path, index):
    import sqlite3

    index.rebuild([Article("other", "The council approved the budget.")])
    db = index.live().store.path
    index.close()
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE doc_pages")  # as an index built before the table existed
    conn.commit()
    conn.close()
    assert [p.pages for p in index.search("council budget", k=1)] == [[]]
    assert index.document("other")["pages"] == []
    path = tmp_path / "quarry.pdf"
    path.write_bytes(PDF)
    index.add(read_file(path, max_bytes=MB))
    assert index.document("quarry")["pages"] == read_file(path, max_bytes=MB)[0].pages


# --- news pages (trafilatura) -------------------------------------------------------------------------------------
NEWS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Harbour ferry workers strike over pay | The Coastal Post</title>
<meta property="og:title" content="Harbour ferry workers strike over pay | The Coastal Post">
<meta property="og:site_name" content="The Coastal Post">
<meta property="article:published_time" content="2025-03-03T08:15:00+00:00">
<meta name="author" content="Mara Lindqvist">
<link rel="canonical" href="https://coastalpost.example/news/2025/03/03/ferry-strike">
<script>window.dataLayer = [];</script>
<style>body{font-family:serif}</style>
</head>
<body>
<div id="cookie-banner" class="cookie-consent"><p>We use cookies to improve your experience. Accept all cookies or
manage your preferences.</p><button>Accept all</button></div>
<header class="site-header">
  <nav class="main-menu"><ul><li><a href="/">Home</a></li><li><a href="/news">News</a></li><li><a href="/sport">Sport</a>
  </li><li><a href="/opinion">Opinion</a></li><li><a href="/subscribe">Subscribe now</a></li></ul></nav>
</header>
<main>
<article>
  <h1>Harbour ferry workers strike over pay</h1>
  <p class="byline">By <span class="author">Mara Lindqvist</span> ·
     <time datetime="2025-03-03T08:15:00+00:00">3 March 2025</time></p>
  <div class="share-bar"><a href="#">Share on Facebook</a> <a href="#">Share on X</a> <a href="#">Email this article</a></div>
  <div class="article-body">
    <p>Ferry workers at the Brannock harbour went on strike on Monday over pay, halting every crossing to the outer
    islands for the first time in eleven years.</p>
    <p>The union said talks with the operator, Islandlink, broke down on Sunday evening after the company refused to
    raise its offer above three per cent.</p>
    <p>"Our members have waited two years for a fair deal," said union spokesperson Ilse Harkin. "We had no choice but
    to walk out."</p>
    <p>Islandlink said it regretted the action and urged passengers to check its website before travelling. Emergency
    medical transfers will still run, the company said.</p>
    <p>The strike is expected to last at least until Wednesday, when both sides are due to meet a mediator in the town
    hall.</p>
  </div>
</article>
<aside class="related">
  <h2>Related stories</h2>
  <ul><li><a href="/a">Bus drivers vote on new contract</a></li><li><a href="/b">Harbour dredging delayed again</a></li>
  <li><a href="/c">Island school gets new roof</a></li></ul>
</aside>
<section id="comments" class="comments">
  <h2>Comments (3)</h2>
  <div class="comment"><p>Totally unacceptable, I missed my appointment!</p></div>
  <div class="comment"><p>Good on them, pay has been frozen for ages.</p></div>
</section>
</main>
<footer class="site-footer"><p>© 2025 The Coastal Post. All rights reserved.</p><ul><li><a href="/privacy">Privacy
policy</a></li><li><a href="/terms">Terms of use</a></li><li><a href="/contact">Contact us</a></li></ul></footer>
</body>
</html>
"""
BOILERPLATE = ["cookies", "Accept all", "Subscribe", "Opinion", "Share on", "Email this article", "Related stories",
               "Bus drivers", "Comments", "Totally unacceptable", "Good on them", "All rights reserved",
               "Privacy policy", "Contact us", "dataLayer", "font-family"]


def test_a_news_page_keeps_its_article_and_metadata_without_boilerplate(tmp_path):
    path = tmp_path / "ferry.html"
    path.write_text(NEWS_PAGE, encoding="utf-8")
    (article,) = read_file(path, max_bytes=MB)
    assert (article.title, article.date, article.author, article.source, article.url) == (
        "Harbour ferry workers strike over pay", "2025-03-03", "Mara Lindqvist", "The Coastal Post",
        "https://coastalpost.example/news/2025/03/03/ferry-strike")
    assert article.note == ""
    for junk in BOILERPLATE:
        assert junk not in article.text, junk
    paragraphs = article.text.split("\n\n")
    assert len(paragraphs) == 5
    assert paragraphs[0].startswith("Ferry workers at the Brannock harbour went on strike on Monday over pay")
    assert paragraphs[-1].endswith("meet a mediator in the town hall.")


def test_site_names_come_off_page_titles():
    from qa.ingest import _without_site_name

    assert _without_site_name("Ferry strike | The Coastal Post", "The Coastal Post") == "Ferry strike"
    assert _without_site_name("Ferry strike - The Coastal Post", "The Coastal Post") == "Ferry strike"
    assert _without_site_name("The Coastal Post: Ferry strike", "The Coastal Post") == "Ferry strike"
    assert _without_site_name("Ferry strike on the islands | News | Post", "") == "Ferry strike on the islands"
    assert _without_site_name("Post-war ferry - a history", "The Coastal Post") == "Post-war ferry - a history"


def test_a_page_without_main_text_falls_back_to_its_visible_text_and_qa_add_says_so(tmp_path, seed_index_dir,
                                                                                     model_cache):
    import os
    import shutil
    import subprocess
    import sys

    from qa import ingest

    (tmp_path / "ferry.html").write_text(NEWS_PAGE, encoding="utf-8")
    # Whatever trafilatura makes of this page, a page it finds no main text in is read the old way:
    original = ingest._main_content
    try:
        ingest._main_content = lambda html: None
        (fallback,) = read_file(tmp_path / "ferry.html", max_bytes=MB)
    finally:
        ingest._main_content = original
    assert fallback.note == ingest.FALLBACK_NOTE and "Accept all" in fallback.text

    folder = tmp_path / "index"
    shutil.copytree(seed_index_dir, folder)
    if (model_cache / "onnx").exists():
        shutil.copytree(model_cache / "onnx", folder / "onnx")
    env = {**os.environ, "QA_INDEX_DIR": str(folder), "QA_READER": "off"}
    empty = tmp_path / "menu.html"  # a list of links: no article text in it
    empty.write_text("<html><body><ul><li><a href='/a'>Ferry timetable</a></li><li><a href='/b'>Bus timetable</a>"
                     "</li></ul></body></html>", encoding="utf-8")
    (menu,) = read_file(empty, max_bytes=MB)
    assert menu.note == ingest.FALLBACK_NOTE and menu.text == "Ferry timetable\n\nBus timetable"
    proc = subprocess.run([sys.executable, "-m", "qa.cli", "add", str(tmp_path / "ferry.html"), str(empty)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "added ferry — Harbour ferry workers strike over pay" in proc.stdout
    assert "note: menu: no main article text found in the page: kept all its visible text" in proc.stdout
    assert "note: ferry" not in proc.stdout


def test_visible_text_puts_each_block_on_its_own_line_without_changing_the_page(monkeypatch):
    """The text of a page is assembled in one pass: inserting line breaks into the parsed tree took time in the
    siblings before each tag and in its depth (minutes for a 5 MB page), and the tree is left as parsed."""
    import bs4.element

    from qa.ingest import visible_text_article

    def refuse(*_args, **_kwargs):
        raise AssertionError("the parsed page was changed")

    monkeypatch.setattr(bs4.element.PageElement, "insert_after", refuse)
    monkeypatch.setattr(bs4.element.PageElement, "insert_before", refuse)
    page = ("<html><head><title>Ferry</title></head><body><!-- a comment -->"
            + "<div>" * 20_000 + "Ferry workers went <b>on strike</b>." + "</div>" * 20_000
            + "<ul><li>Pay</li><li>Hours<br>and rotas</li></ul>" + "<p>Day two.</p>" * 20_000 + "</body></html>")
    text = visible_text_article(page, doc_id="ferry").text
    lines = text.split("\n\n")
    assert lines[:5] == ["Ferry workers went on strike.", "Pay", "Hours", "and rotas", "Day two."]
    assert len(lines) == 4 + 20_000 and "comment" not in text


def test_markdown_joins_lines_without_changing_the_parsed_page(monkeypatch):
    """A line break inside a Markdown paragraph is a space (code keeps its lines), found in one pass: replacing each
    string in the parsed tree scanned its siblings (20 s for 20,000 paragraphs). A comment is not text."""
    import bs4.element

    from qa.ingest import markdown_to_text

    def refuse(*_args, **_kwargs):
        raise AssertionError("the parsed page was changed")

    monkeypatch.setattr(bs4.element.PageElement, "replace_with", refuse)
    md = ("# Ferry strike\n\nWorkers went\non strike.\n\n```\nline one\n  line two\n```\n\n<!-- a\nnote -->\n\n"
          + "Day two.\n\n" * 20_000)
    paragraphs = markdown_to_text(md).split("\n\n")
    assert paragraphs[:5] == ["Ferry strike", "Workers went on strike.", "line one", "line two", "Day two."]
    assert len(paragraphs) == 4 + 20_000 and "note" not in paragraphs


def test_a_tag_with_tens_of_thousands_of_attributes_is_cut_before_the_page_is_parsed(monkeypatch):
    """lxml.html, htmldate and trafilatura take time quadratic in one tag's attributes (80,000: 70 s of a server
    thread); the page they get keeps each tag's first MAX_TAG_ATTRIBUTES, and every word of its text."""
    import qa.ingest
    from qa.ingest import MAX_TAG_ATTRIBUTES, html_to_article

    seen = []
    monkeypatch.setattr(qa.ingest, "_main_content", lambda html: seen.append(html))  # the fallback: bs4 alone
    crowded = "<div " + " ".join(f'data-a{i}="v>{i}"' for i in range(80_000)) + ">Crossings stopped.</div>"
    page = f"<html><body><p>Ferry workers struck on Monday.</p>{crowded}<p>Talks resume in May.</p></body></html>"
    article = html_to_article(page, doc_id="ferry")
    assert article.text.split("\n\n") == ["Ferry workers struck on Monday.", "Crossings stopped.", "Talks resume in May."]
    (given,) = seen
    assert given.count('="v>') == MAX_TAG_ATTRIBUTES and 'data-a255="v>255"' in given
    # A real page, long attribute values included, is given as it is.
    long_values = NEWS_PAGE.replace("<main", '<main data-image="data:image/png;base64,' + "A" * 50_000 + '"', 1)
    html_to_article(long_values, doc_id="ferry")
    assert seen[-1] == long_values


STORY = ("<p>Ferry workers at the Brannock harbour went on strike on Monday over pay, halting every crossing to the "
         "islands.</p><p>The union said its members had not had a raise in three years and that talks with the "
         "operator had broken down.</p><p>Islanders said they could not reach the hospital on the mainland and "
         "called on the council to step in.</p><p>The operator said it would meet a mediator on Thursday.</p>")


def news_page(head: str = "", before: str = "", after: str = "", title: str = "Ferry strike halts crossings") -> str:
    return (f"<html lang='en'><head><meta charset='utf-8'><title>{title}</title>{head}</head><body>"
            f"<article>{before}<h1>Ferry strike halts crossings</h1>{STORY}</article>{after}</body></html>")


def read_page(tmp_path, html: str) -> Article:
    path = tmp_path / "page.html"
    path.write_text(html, encoding="utf-8")
    (article,) = read_file(path, max_bytes=MB)
    assert article.note == "", "trafilatura must find the main text for these pages to mean anything"
    return article


def test_a_pages_date_is_its_metadatas_never_a_date_from_its_text_or_other_articles(tmp_path):
    """The README promises the publication date "from the page's metadata, never guessed from the text"; htmldate
    took a date from a sentence, the footer's "last updated", a related article's <time> or microdata, a comment,
    and an "Updated" stamp before the published one."""
    ld = ('<script type="application/ld+json">{"@context": "https://schema.org", "@type": "NewsArticle", '
          '"headline": "Ferry strike halts crossings", "datePublished": "2025-03-03T23:30:00-05:00"}</script>')
    related = ('<aside class="related"><div itemscope itemtype="https://schema.org/NewsArticle">'
               '<meta itemprop="datePublished" content="2023-06-01"><a href="/old">Old story</a>'
               '<time datetime="2024-10-15">15 October 2024</time></div></aside>')
    comments = '<section class="comments"><p>Shame!</p><time datetime="2025-03-10">10 March</time></section>'
    footer = "<footer><p>Site last updated: 20 March 2025</p></footer>"
    in_text = "<p>The last pay offer, dated 2024-11-02, was turned down.</p>"
    assert read_page(tmp_path, news_page(before=in_text, after=related + comments + footer)).date == ""
    assert read_page(tmp_path, news_page(head=ld, after=related + comments + footer)).date == "2025-03-03"
    updated_first = ('<p>Updated <time datetime="2025-03-09T08:00:00Z">9 March</time> · Published '
                     '<time itemprop="datePublished" datetime="2025-03-03T10:00:00Z">3 March</time></p>')
    assert read_page(tmp_path, news_page(before=updated_first)).date == "2025-03-03"
    modified_only = '<meta property="article:modified_time" content="2025-03-09T08:00:00Z">'
    assert read_page(tmp_path, news_page(head=modified_only)).date == ""


def test_a_pages_title_is_its_headline_not_its_section_site_or_a_live_blog_update(tmp_path):
    assert read_page(tmp_path, news_page(title="Ferry strike halts crossings | The Coastal Post")).title == \
        "Ferry strike halts crossings"
    sectioned = news_page(title="Ferry strike halts crossings | Local Government & Politics | The Coastal Post",
                          head='<meta property="og:site_name" content="The Coastal Post">')
    assert read_page(tmp_path, sectioned).title == "Ferry strike halts crossings"
    live = ('<script type="application/ld+json">{"@context": "https://schema.org", "@type": "LiveBlogPosting", '
            '"headline": "Ferry strike live", "liveBlogUpdate": [{"@type": "BlogPosting", "headline": "Talks '
            'collapse", "datePublished": "2025-03-03T16:10:00+00:00"}]}</script>')
    assert read_page(tmp_path, news_page(head=live)).title == "Ferry strike live"
    # Yoast-style pages: the outlet's name is og:site_name, not the company that publishes it.
    yoast = ('<meta property="og:site_name" content="Coastal Post"><script type="application/ld+json">'
             '{"@context": "https://schema.org", "@graph": [{"@type": "Organization", "name": "Coastal Post Media '
             'Ltd"}, {"@type": "WebSite", "name": "Coastal Post", "publisher": {"@type": "Organization", "name": '
             '"Coastal Post Media Ltd"}}]}</script>')
    page = read_page(tmp_path, news_page(head=yoast, title="Ferry strike halts crossings - Coastal Post"))
    assert (page.title, page.source) == ("Ferry strike halts crossings", "Coastal Post")
    from qa.ingest import _without_site_name

    assert _without_site_name("Live | Ferry strike: islanders stranded as talks collapse") == \
        "Ferry strike: islanders stranded as talks collapse"
    assert _without_site_name("The Coastal Post | Politics | Ferry strike", heading="Ferry strike") == "Ferry strike"
