"""Real-world exports and front matter: JSON records as NewsAPI, WordPress, JSON Feed, schema.org and news-please
write them, the dates they use, YAML front matter, and the top lines and PDF metadata an article states."""

from __future__ import annotations

import json
import time

from qa.ingest import parse_date, read_file

from conftest import make_pdf

MB = 5 * 1024 * 1024


def read_records(tmp_path, data, name="export.json"):
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text("\n".join(json.dumps(record) for record in data), encoding="utf-8")
    else:
        path.write_text(json.dumps(data), encoding="utf-8")
    return read_file(path, max_bytes=MB)


def read_text(tmp_path, text, name="article.md"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    (article,) = read_file(path, max_bytes=MB)
    return article


def test_nested_record_values_are_read_as_text_never_as_python_repr(tmp_path):
    """A source object became "{'id': 'bbc-news', 'name': 'BBC News'}", a list of authors "['Jane Doe', ...]"."""
    newsapi = {"status": "ok", "articles": [
        {"source": {"id": "bbc-news", "name": "BBC News"}, "author": "Jane Doe", "title": "Ferry strike",
         "url": "https://bbc.example/1", "content": "Ferry workers walked out on Monday."}]}
    (article,) = read_records(tmp_path, newsapi, "newsapi.json")
    assert (article.source, article.author) == ("BBC News", "Jane Doe")
    records = [
        {"id": "a1", "authors": ["Jane Doe", "John Roe"], "text": "Two reporters wrote this."},
        {"id": "a2", "author": {"name": "Jane Doe", "url": "https://x/jane"}, "text": "An object author."},
        {"id": "a3", "publisher": {"@type": "Organization", "name": "The Coastal Post"}, "text": "A publisher."},
        {"id": "a4", "author": [], "text": "No author at all."},
        {"id": "a5", "authors": [{"name": "Jane Doe"}, {"name": "John Roe"}], "text": "JSON Feed authors."},
    ]
    by_id = {a.doc_id: a for a in read_records(tmp_path, records, "authors.jsonl")}
    assert by_id["a1"].author == "Jane Doe; John Roe"  # as trafilatura joins a page's authors
    assert by_id["a2"].author == "Jane Doe"
    assert by_id["a3"].source == "The Coastal Post"
    assert by_id["a4"].author == ""
    assert by_id["a5"].author == "Jane Doe; John Roe"


def test_a_wordpress_rest_post_gives_its_rendered_title_and_text(tmp_path):
    post = {"id": 4821, "date": "2025-03-03T10:00:00", "link": "https://coastalpost.example/ferry-strike/",
            "title": {"rendered": "Ferry strike halts crossings"},
            "content": {"rendered": "<p>Ferry workers walked out on Monday.</p>\n<p>The union said the strike "
                                    "would last 48 hours.</p>\n", "protected": False},
            "author": 7}
    (article,) = read_records(tmp_path, [post], "wordpress.json")
    assert article.title == "Ferry strike halts crossings"
    assert article.text == "Ferry workers walked out on Monday.\n\nThe union said the strike would last 48 hours."
    assert article.author == ""  # a user id is no name
    assert (article.doc_id, article.date, article.url) == ("4821", "2025-03-03", post["link"])


def test_a_body_given_as_paragraphs_is_joined_by_a_blank_line(tmp_path):
    record = {"id": "p1", "title": "Paragraphs", "body": ["Ferry workers walked out.", "The union said so."]}
    (article,) = read_records(tmp_path, [record])
    assert article.text == "Ferry workers walked out.\n\nThe union said so."


def test_an_html_body_is_stored_as_the_text_it_shows_and_a_plain_body_verbatim(tmp_path):
    records = [
        {"id": "h1", "content": "<p>Ferry workers walked out on <b>Monday</b>.</p><p>The union said so.</p>"},
        {"id": "h2", "content": "Use the <b> tag for bold text,\nsaid the  manual."},
        {"id": "h3", "content_html": "<div>Feed <em>item</em></div>"},
    ]
    by_id = {a.doc_id: a for a in read_records(tmp_path, records)}
    assert by_id["h1"].text == "Ferry workers walked out on Monday.\n\nThe union said so."
    assert by_id["h2"].text == records[1]["content"]  # no closing block tag: text that mentions a tag
    assert by_id["h3"].text == "Feed item"


def test_the_field_names_of_common_exports_give_body_date_and_title(tmp_path):
    schema = {"id": "s", "headline": "Headline key", "datePublished": "2025-03-03T10:00:00Z",
              "dateModified": "2025-03-06T10:00:00Z", "articleBody": "Schema.org field names."}
    newsplease = {"authors": ["Jane Doe"], "date_download": "2025-03-20 08:00:00",
                  "date_publish": "2025-03-03 10:00:00", "description": "A teaser.",
                  "maintext": "The full text from news-please.", "text": None, "title": "news-please",
                  "url": "https://coastalpost.example/np"}
    newsapi = {"title": "NewsAPI", "publishedAt": "2025-03-05T08:00:00Z", "description": "A teaser.",
               "content": "The content NewsAPI gives.", "url": "https://x/n"}
    teaser = {"id": "d", "title": "Only a teaser", "description": "Only a description is given.", "link": "https://x/d"}
    by_title = {a.title: a for a in read_records(tmp_path, [schema, newsplease, newsapi, teaser], "mixed.jsonl")}
    assert (by_title["Headline key"].text, by_title["Headline key"].date) == ("Schema.org field names.", "2025-03-03")
    assert (by_title["news-please"].text, by_title["news-please"].date) == ("The full text from news-please.",
                                                                            "2025-03-03")
    assert (by_title["NewsAPI"].text, by_title["NewsAPI"].date) == ("The content NewsAPI gives.", "2025-03-05")
    assert by_title["Only a teaser"].text == "Only a description is given."  # a teaser only when nothing else
    feed = {"version": "https://jsonfeed.org/version/1.1", "title": "The Coastal Post", "items": [
        {"id": "f1", "title": "Feed item", "content_text": "Ferry workers walked out.",
         "date_published": "2025-03-03T23:30:00-05:00", "authors": [{"name": "Jane Doe"}]}]}
    (item,) = read_records(tmp_path, feed, "feed.json")
    assert (item.text, item.date, item.author) == ("Ferry workers walked out.", "2025-03-03", "Jane Doe")


def test_records_are_found_under_results_and_inside_an_envelope(tmp_path):
    results = read_records(tmp_path, {"results": [{"title": "A", "body": "First."}, {"title": "B", "body": "Two."}]},
                           "results.json")
    assert [a.text for a in results] == ["First.", "Two."]
    nested = read_records(tmp_path, {"data": {"items": [{"title": "Nested", "body": "Under data.items."}]}},
                          "nested.json")
    assert [a.text for a in nested] == ["Under data.items."]
    guardian = read_records(tmp_path, {"response": {"status": "ok", "results": [{"webTitle": "x", "body": "G."}]}},
                            "guardian.json")
    assert [a.text for a in guardian] == ["G."]


def test_rfc_2822_and_utc_named_times_are_read_as_the_day_stated():
    assert parse_date("Mon, 03 Mar 2025 10:00:00 +0000") == "2025-03-03"  # an RSS pubDate
    assert parse_date("Mon, 03 Mar 2025 23:30:00 -0500") == "2025-03-03"  # the day in its own offset, as for ISO
    assert parse_date("Tue, 4 Mar 2025 01:00:00 +0900") == "2025-03-04"
    assert parse_date("3 Mar 2025 10:00 GMT") == "2025-03-03"
    assert parse_date("2025-03-03 10:00:00 UTC") == "2025-03-03"
    assert parse_date("2025-03-03T23:30:00-05:00") == "2025-03-03"


def test_unix_times_in_a_record_date_are_read_and_other_numbers_are_not(tmp_path):
    records = [
        {"id": "e1", "date": 1740996000, "body": "Seconds."},
        {"id": "e2", "date": 1740996000000, "body": "Milliseconds."},
        {"id": "e3", "pubDate": "Mon, 03 Mar 2025 10:00:00 +0000", "body": "RFC 2822."},
        {"id": "e4", "date": "1740996000", "body": "Seconds as a string."},
        {"id": "e5", "date": {"$date": "2025-03-03T10:00:00Z"}, "body": "MongoDB extended JSON."},
        {"id": "e6", "date": "20250303", "body": "A basic ISO date."},
        {"id": "e7", "date": "17409960", "body": "Eight digits that are no date."},
        {"id": "e8", "date": 17409960000, "body": "Eleven digits: seconds or milliseconds cannot be told."},
    ]
    dates = {a.doc_id: a.date for a in read_records(tmp_path, records)}
    assert dates == {"e1": "2025-03-03", "e2": "2025-03-03", "e3": "2025-03-03", "e4": "2025-03-03",
                     "e5": "2025-03-03", "e6": "2025-03-03", "e7": "", "e8": ""}


def test_the_publication_date_wins_over_a_crawl_date(tmp_path):
    record = {"url": "https://x/ferry", "title": "Ferry", "date": "2025-03-20", "published": "2025-03-03T10:00:00Z",
              "text": "Ferry workers walked out on Monday."}
    (article,) = read_records(tmp_path, [record], "crawl.jsonl")
    assert article.date == "2025-03-03"


def test_yaml_front_matter_is_read_as_yaml(tmp_path):
    jekyll = read_text(tmp_path, "---\nlayout: post\ntitle: Minister says 'no'\ndate: 2025-03-03 10:00:00 +0100\n"
                                 "author: [Jane Doe, John Roe]\n---\n\nThe minister refused to comment.\n")
    assert (jekyll.title, jekyll.date, jekyll.author) == ("Minister says 'no'", "2025-03-03", "Jane Doe; John Roe")
    assert jekyll.text == "The minister refused to comment."
    escaped = read_text(tmp_path, '---\ntitle: "Union boss: \\"We will not back down\\""\n---\n\nUnions vowed.\n')
    assert escaped.title == 'Union boss: "We will not back down"'
    doubled = read_text(tmp_path, "---\ntitle: 'It''s over: the strike ends'\ndate: \"2025-03-05\"\n---\n\nOver.\n")
    assert (doubled.title, doubled.date) == ("It's over: the strike ends", "2025-03-05")
    folded = read_text(tmp_path, "---\ntitle: >\n  A long headline the author\n  folded over two lines\n---\n\nBody.\n")
    assert folded.title == "A long headline the author folded over two lines"
    listed = read_text(tmp_path, "---\ntitle: Ferry strike\nauthor:\n  - Jane Doe\n  - John Roe\n"
                                 "date: 2025-03-03T23:30:00-05:00\n---\n\nFerry workers walked out.\n")
    assert (listed.author, listed.date) == ("Jane Doe; John Roe", "2025-03-03")
    commented = read_text(tmp_path, "---\ntitle: Port reopens # draft headline\ndate: 2025-03-05 # publication\n"
                                    "---\n\nThe port reopened.\n")
    assert (commented.title, commented.date) == ("Port reopens", "2025-03-05")
    words = read_text(tmp_path, "---\ntitle: Yes\nsource: 1.0\n---\n\nBody.\n")
    assert (words.title, words.source) == ("Yes", "1.0")  # YAML's booleans and numbers stay as written


def test_front_matter_that_is_not_yaml_is_read_line_by_line_keeping_its_quotes(tmp_path):
    invalid = read_text(tmp_path, '---\ntitle: "Ferry" strike enters third day\ndate: 2025-03-05 # day\n---\n\nB.\n')
    assert (invalid.title, invalid.date) == ('"Ferry" strike enters third day', "2025-03-05")
    plain = read_text(tmp_path, "title: Minister says 'no'\nauthor: 'O''Brien'\n\nBody.", name="plain.txt")
    assert (plain.title, plain.author) == ("Minister says 'no'", "O'Brien")


def test_a_long_yaml_value_is_read_whole_and_fast(tmp_path):
    start = time.perf_counter()
    article = read_text(tmp_path, "---\ntitle: Ferry" + " " * 40_000 + "strike\ndate: 2025-03-03\n---\n\nBody.\n")
    assert time.perf_counter() - start < 2
    assert (article.title, article.date, article.text) == ("Ferry" + " " * 40_000 + "strike", "2025-03-03", "Body.")
    crlf = read_text(tmp_path, "\ufeff---\r\ntitle: CRLF title\r\nauthor: [Jane Doe]\r\n---\r\n\r\nBody.\r\n")
    assert (crlf.title, crlf.author) == ("CRLF title", "Jane Doe")


def test_a_published_line_wins_over_an_updated_line_above_it(tmp_path):
    article = read_text(tmp_path, "Updated 2025-03-07T09:00:00Z\nFerry strike halts island crossings\n"
                                  "Published 2025-03-03\n\nFerry workers walked out.\n", name="updated.txt")
    assert article.date == "2025-03-03"
    alone = read_text(tmp_path, "Updated 2025-03-07\nFerry strike\n\nFerry workers walked out.\n", name="alone.txt")
    assert alone.date == "2025-03-07"  # the only date stated


def test_a_placeholder_pdf_title_is_no_headline(tmp_path):
    path = tmp_path / "report.pdf"
    for placeholder in ("PowerPoint Presentation", "Untitled", "Slide 1", "Document1", "Presentation1"):
        path.write_bytes(make_pdf([["Ferry Strike Report", "Ferry workers walked out on Monday."]], title=placeholder))
        (article,) = read_file(path, max_bytes=MB)
        assert article.title == "Ferry Strike Report", placeholder
    path.write_bytes(make_pdf([["Ferry Strike Report", "Ferry workers walked out."]], title="Ferry strike: findings"))
    (article,) = read_file(path, max_bytes=MB)
    assert article.title == "Ferry strike: findings"


def test_a_records_source_and_author_are_one_line_each(tmp_path):
    """A line break in a JSON record's source split the printed citation "[1] title — source, date" in two."""
    path = tmp_path / "nl.jsonl"
    path.write_text(json.dumps({"id": "nl", "title": "Bridge\nclosed", "source": "Wire\nService",
                                "author": "Jane\n Doe", "text": "The Harbour bridge closed on Friday."}) + "\n",
                    encoding="utf-8")
    (article,) = read_file(path, max_bytes=MB)
    assert (article.title, article.source, article.author) == ("Bridge closed", "Wire Service", "Jane Doe")
