"""The articles list: search, sort and pages (GET /documents as JSON and as the articles page)."""

from __future__ import annotations

import pytest
from bs4 import BeautifulSoup
from fastapi.testclient import TestClient

from qa.errors import InvalidInput
from qa.records import Article
from web.app import create_app

BASE = "http://localhost:8000"
HTML = {"accept": "text/html"}
OUTLETS = ("Coastal Post", "Harbour Times", "Valley Herald")


def many_articles() -> list[Article]:
    """120 dated articles from three outlets (one undated, one with a % in its title)."""
    body = "Story number {} tells of the harbour, the ferry and the council. "
    articles = [Article(f"story-{i:03d}", body.format(i) * (1 + i % 3),
                        title=f"Story {i:03d}", date=f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}",
                        source=OUTLETS[i % 3]) for i in range(118)]
    articles.append(Article("undated", "An undated note about the harbour.", title="Undated note", source="Notes"))
    articles.append(Article("percent", "Prices rose by ten percent at the harbour.", title="Prices up 10% in March",
                            date="2025-03-15", source="Valley Herald"))
    return articles


@pytest.fixture(scope="module")
def listed(tmp_path_factory):
    from conftest import FakeEmbedder
    from qa.index import NewsIndex
    from qa.settings import Settings

    idx = NewsIndex(Settings.from_env(index_dir=tmp_path_factory.mktemp("listed") / "index", reader=False),
                    embedder=FakeEmbedder())
    idx.rebuild(many_articles())
    yield idx
    idx.close()


@pytest.fixture(scope="module")
def client(listed):
    with TestClient(create_app(listed.settings, index=listed), base_url=BASE) as c:
        yield c


def page(client, **params) -> BeautifulSoup:
    r = client.get("/documents", params=params, headers=HTML)
    assert r.status_code == 200, r.text
    return BeautifulSoup(r.text, "html.parser")


def rows(soup) -> list[str]:
    return [tr["id"].removeprefix("doc-") for tr in soup.select("table.docs tbody tr")]


def test_newsindex_searches_sorts_and_pages_the_articles(listed):
    assert listed.count_documents() == 120
    dates = [d.date for d in listed.documents()]
    assert dates[:-1] == sorted(dates[:-1], reverse=True) and dates[-1] == ""  # newest first, undated last
    oldest = listed.documents(descending=False)
    assert oldest[0].date == min(dates[:-1]) and oldest[-1].doc_id == "undated"
    titles = [d.title for d in listed.documents(sort="title", descending=False, limit=5)]
    assert titles == ["Prices up 10% in March", "Story 000", "Story 001", "Story 002", "Story 003"]
    assert [d.doc_id for d in listed.documents(sort="title", descending=False, limit=2, offset=3)] == \
        ["story-002", "story-003"]
    assert listed.count_documents(search="valley herald") == 40  # any case; sources too
    assert {d.doc_id for d in listed.documents(search="10%")} == {"percent"}  # % matched as itself
    assert listed.documents(search="10_") == [] and listed.count_documents(search="zzz") == 0
    hostile = "x' OR 1=1; DROP TABLE documents; --"
    assert listed.documents(search=hostile) == [] and listed.count_documents() == 120
    with pytest.raises(InvalidInput, match="sort must be one of"):
        listed.documents(sort="title; DROP TABLE documents")
    assert listed.sources() == ["Coastal Post", "Harbour Times", "Notes", "Valley Herald"]
    chunks = [d.chunks for d in listed.documents(sort="chunks")]
    assert chunks == sorted(chunks, reverse=True)


def test_the_json_list_is_unchanged_by_default_and_takes_the_same_options(client, listed):
    r = client.get("/documents")
    assert r.status_code == 200 and r.headers["x-total-count"] == "120"
    assert [d["doc_id"] for d in r.json()] == [d.doc_id for d in listed.documents()]  # all, newest first
    r = client.get("/documents", params={"q": "harbour times", "sort": "title", "limit": 3, "offset": 1})
    assert r.headers["x-total-count"] == "39"
    assert [d["title"] for d in r.json()] == ["Story 004", "Story 007", "Story 010"]
    for bad in ({"sort": "d.text"}, {"order": "sideways"}, {"limit": 0}, {"offset": -1}):
        r = client.get("/documents", params=bad)
        assert r.status_code == 422 and r.json()["detail"], bad


def test_the_articles_page_shows_source_date_and_chunks_fifty_at_a_time(client, listed):
    soup = page(client)
    assert soup.select_one("#list-heading").get_text() == "120 articles"
    headers = [th.get_text(" ", strip=True) for th in soup.select("table.docs thead th")]
    assert [h.split(" ")[0] for h in headers[:5]] == ["Title", "Source", "Date", "Chunks", "Added"]
    newest = listed.documents(limit=50)
    assert rows(soup) == [d.doc_id for d in newest]
    first = soup.select_one("table.docs tbody tr")
    cells = {td["data-label"]: td.get_text(" ", strip=True) for td in first.select("td[data-label]")}
    assert cells["Source"] == newest[0].source and cells["Date"] == newest[0].date
    assert cells["Chunks"] == str(newest[0].chunks)
    assert soup.select_one("th[aria-sort=descending]").get_text(strip=True).startswith("Date")

    pager = soup.select_one("nav.pager")
    assert "Page 1 of 3" in pager.get_text() and not pager.select("a[rel=prev]")
    second = page(client, **dict(_query(pager.select_one("a[rel=next]")["href"])))
    assert rows(second) == [d.doc_id for d in listed.documents(limit=50, offset=50)]
    last = page(client, page=3)
    assert len(rows(last)) == 20 and rows(last)[-1] == "undated" and not last.select("nav.pager a[rel=next]")
    assert "articles 101–120" in last.select_one("nav.pager").get_text()
    assert rows(page(client, page=99)) == rows(last)  # past the end: the last page


def _query(href: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl, urlsplit

    return parse_qsl(urlsplit(href).query)


def test_the_columns_sort_and_the_search_box_filters(client, listed):
    soup = page(client)
    title_link = next(a for a in soup.select("table.docs thead th a") if a.get_text().startswith("Title"))
    by_title = page(client, **dict(_query(title_link["href"])))
    assert rows(by_title)[:3] == ["percent", "story-000", "story-001"]
    th = by_title.select_one("th[aria-sort]")
    assert th["aria-sort"] == "ascending" and th.get_text().startswith("Title")
    reverse = page(client, **dict(_query(th.select_one("a")["href"])))
    assert rows(reverse)[0] == "undated"  # "Undated note" sorts after "Story …"

    found = page(client, q="Valley", sort="title")
    assert found.select_one("#list-heading").get_text() == "40 of 120 articles match “Valley”"
    assert found.select_one("form[role=search] input[name=q]")["value"] == "Valley"
    assert found.select_one("form[role=search] input[name=sort]")["value"] == "title"  # the search keeps the sort
    assert rows(found) == [d.doc_id for d in listed.documents(search="Valley", sort="title", descending=False)]
    assert not found.select("nav.pager")  # 40 fit on one page
    assert dict(_query(found.select_one("a.clear")["href"])) == {"sort": "title"}
    none = page(client, q="<script>nothing</script>")
    assert not rows(none) and "No article" in none.get_text() and "<script>nothing" not in str(none)


def test_the_listing_on_each_store(store_seed_copy):
    idx = store_seed_copy
    seeds = sorted(d.doc_id for d in idx.documents())
    assert len(seeds) == idx.count_documents() == 5
    dated = [d.doc_id for d in idx.documents() if d.date]
    assert dated and [d.doc_id for d in idx.documents()][:len(dated)] == dated  # dated first, undated last
    assert [d.doc_id for d in idx.documents(sort="title", descending=False)] == \
        [d.doc_id for d in sorted(idx.documents(), key=lambda d: ((d.title or d.doc_id).lower(), d.doc_id))]
    assert idx.count_documents(search=seeds[2][:6].upper()) == 1
    assert [d.doc_id for d in idx.documents(search="_", sort="title", limit=2, offset=1)] == \
        [d.doc_id for d in idx.documents(sort="title")][1:3]
    assert idx.documents(search="nothing like it") == [] and idx.count_documents(search="nothing like it") == 0
    # An offset without a limit was ignored on the embedded store (every article listed), and a NUL ended the
    # search pattern there ("\x00" matched every article).
    assert [d.doc_id for d in idx.documents(offset=2)] == [d.doc_id for d in idx.documents()][2:]
    assert idx.documents(search=seeds[0] + "\x00no such text") == [] and idx.count_documents(search="\x00") == 0


def test_the_articles_page_is_asked_for_again_not_kept(client):
    """Back after a delete showed the deleted article from the browser's cache, and its Delete button then failed."""
    r = client.get("/documents", headers=HTML)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"


def test_a_delete_from_a_searched_list_returns_to_that_list(client):
    """Deleting from "harbour times", sorted by title, went back to the whole list, newest first."""
    soup = page(client, q="harbour times", sort="title")
    form = soup.select_one("table.docs form.delete")
    assert {i["name"]: i["value"] for i in form.select("input[type=hidden]")} == {"q": "harbour times",
                                                                                  "sort": "title"}
