"""The HTTP API and the server-rendered pages, through FastAPI's TestClient, with the real model and index."""

from __future__ import annotations

import concurrent.futures
import html
import json
import re
import threading
import time

import pytest
from bs4 import BeautifulSoup
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from conftest import RETALIATION_DOC, SEEDS
from qa.index import NewsIndex
from qa.records import merge_passages
from qa.settings import Settings
from web.app import create_app
from web.jobs import Jobs
from web.models import AddResult, AskResponse, DocumentOut, DocumentSummary, Health, PassageOut, RebuildResult

# The host the tests' requests name: an allowed one (loopback), as a browser on this machine would send.
BASE = "http://localhost:8000"
HTML = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
TOKEN = "s3cret-token"
ZORBLAX = (
    "Zorblax city council voted on Tuesday to ban electric scooters from the old harbour district.\n\n"
    "The mayor, Ingrid Falkvang, said the ban takes effect on 1 March and that riders will face fines of 80 euros.\n\n"
    "Scooter rental companies called the decision short-sighted and said they would appeal."
)
HOSTILE_TITLE = '<script>alert("title")</script> Quillfeather ferry strike'
HOSTILE_TEXT = (
    "Quillfeather ferry workers went on strike on Monday over pay. <script>alert('text')</script>\n\n"
    'The union posted <img src=x onerror=alert(1)> on its website and said the strike would last a week.'
)


def article_text(doc_id: str) -> str:
    return (SEEDS / f"{doc_id}.txt").read_text(encoding="utf-8")


def soup(response) -> BeautifulSoup:
    return BeautifulSoup(response.text, "html.parser")


def is_error(response, status: int) -> bool:
    """The documented error shape: the status, JSON, and one readable sentence in ``detail``."""
    body = response.json()
    return (response.status_code == status and response.headers["content-type"].startswith("application/json")
            and isinstance(body["detail"], str) and body["detail"].strip() != "")


@pytest.fixture(scope="module")
def reader(seed_index):
    """A client over the shared, read-only seed index."""
    with TestClient(create_app(seed_index.settings, index=seed_index), base_url=BASE) as client:
        yield client


@pytest.fixture
def writer(seed_copy):
    """A client over a private copy of the seed index, for tests that add, delete or rebuild."""
    with TestClient(create_app(seed_copy.settings, index=seed_copy), base_url=BASE) as client:
        client.index = seed_copy
        yield client


@pytest.fixture
def guarded(seed_copy):
    """A client for a server started with QA_API_TOKEN set."""
    with TestClient(create_app(seed_copy.settings.with_(api_token=TOKEN), index=seed_copy), base_url=BASE) as client:
        yield client


# --- /ask ------------------------------------------------------------------------------------------------------
def test_ask_cites_the_passage_naming_canada_and_china_with_exact_offsets(reader):
    r = reader.post("/ask", json={"question": "which countries retaliated?"})
    assert r.status_code == 200
    reply = r.json()
    assert set(reply) == set(AskResponse.model_fields)
    assert reply["answerable"] and reply["answer"].strip()
    first = reply["passages"][0]
    assert first["rank"] == 1 and first["doc_id"] == RETALIATION_DOC
    assert "Canada" in first["text"] and "China" in first["text"]
    for p in reply["passages"]:
        assert set(p) == set(PassageOut.model_fields)
        assert article_text(p["doc_id"])[p["start"]:p["end"]] == p["text"]
    assert [p["rank"] for p in reply["passages"]] == list(range(1, len(reply["passages"]) + 1))


def test_answer_markers_and_spans_point_into_the_cited_passages(reader):
    reply = reader.post("/ask", json={"question": "which countries retaliated?", "k": 3}).json()
    by_rank = {p["rank"]: p for p in reply["passages"]}
    assert len(by_rank) == 3 and reply["answer_spans"]
    for span in reply["answer_spans"]:
        passage = by_rank[span["rank"]]
        assert span["doc_id"] == passage["doc_id"] and passage["start"] <= span["start"] < span["end"] <= passage["end"]
        sentence = article_text(span["doc_id"])[span["start"]:span["end"]]
        assert f"{sentence} [{span['rank']}]" in reply["answer"]


def test_get_ask_gives_the_same_reply_as_post(reader):
    posted = reader.post("/ask", json={"question": "which countries retaliated?", "k": 4}).json()
    got = reader.get("/ask", params={"q": "which countries retaliated?", "k": 4}).json()
    for reply in (posted, got):
        reply.pop("took_ms")
    assert got == posted


def test_the_api_carries_every_field_the_core_answer_has(seed_index):
    answer = seed_index.ask("which countries retaliated?").to_dict()
    assert set(answer) == set(AskResponse.model_fields)
    assert set(answer["passages"][0]) == set(PassageOut.model_fields)


def test_a_question_the_articles_do_not_answer_lists_weak_matches(reader):
    reply = reader.post("/ask", json={"question": "who won the 2024 Super Bowl?"}).json()
    assert reply["answerable"] is False and reply["answer_spans"] == []
    assert reply["answer"].strip() and "[" not in reply["answer"]
    assert reply["passages"] and all(p["weak"] for p in reply["passages"])


def test_a_follow_up_is_searched_with_the_earlier_turn(reader):
    question = "And what did the steel industry say about it?"
    history = [{"question": "What tariffs did the U.S. put on steel?", "answer": None}]
    alone = reader.post("/ask", json={"question": question}).json()
    followed = reader.post("/ask", json={"question": question, "history": history}).json()
    assert alone["query"] == question and followed["query"] != question
    assert followed["answerable"]
    assert any("Steel Producers" in p["text"] for p in followed["passages"])


@pytest.mark.parametrize("question", ["", "   \n\t ", "x" * 2001])
def test_an_empty_blank_or_too_long_question_is_400(reader, question):
    assert is_error(reader.post("/ask", json={"question": question}), 400)
    assert is_error(reader.get("/ask", params={"q": question}), 400)


@pytest.mark.parametrize("body", [
    {}, {"question": None}, {"question": 42}, {"question": ["a"]}, {"question": "q", "k": 0},
    {"question": "q", "k": 21}, {"question": "q", "k": "many"}, {"question": "q", "history": "earlier"},
    {"question": "q", "history": [{"answer": "no question"}]}, {"question": "q", "history": [7]}, [], "question", 3,
])
def test_a_malformed_ask_body_is_422(reader, body):
    r = reader.post("/ask", json=body)
    assert is_error(r, 422) and isinstance(r.json()["errors"], list)


@pytest.mark.parametrize("raw", [b"", b"{not json", b'{"question": "\\ud800"}', b"\xff\xfe\x00garbage",
                                 b'{"question": "x", "history": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                                 b'{"question": "x", "history": ' + b"[" * 900 + b'"\\ud800"' + b"]" * 900 + b"}"])
def test_a_body_that_is_not_json_text_is_422(reader, raw):
    assert is_error(reader.post("/ask", content=raw, headers={"content-type": "application/json"}), 422)


@pytest.mark.parametrize("k", ["0", "21", "x"])
def test_get_ask_with_a_bad_k_is_422(reader, k):
    assert is_error(reader.get("/ask", params={"q": "tariffs", "k": k}), 422)


def test_a_question_sent_as_plain_text_is_415(reader):
    assert is_error(reader.post("/ask", content=b"which countries?", headers={"content-type": "text/plain"}), 415)


def test_curl_without_a_content_type_is_read_as_json(reader):
    # `curl -d '{"question": …}'` labels its body as a form; it is still the JSON the user meant.
    r = reader.post("/ask", content=b'{"question": "which countries retaliated?"}',
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["passages"][0]["doc_id"] == RETALIATION_DOC


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["question", "k", "history", "answer", "x"]), children, max_size=4),
    max_leaves=8,
))
def test_no_ask_body_makes_a_server_error(reader, body):
    r = reader.post("/ask", json=body)
    assert r.status_code == 200 or is_error(r, r.status_code) and r.status_code in (400, 422)



def _form(question: str, turns: list[tuple[str, str]]) -> dict:
    """The page's form with earlier turns in its hidden fields (repeated names, in order)."""
    return {"question": question, "history_question": [q for q, _ in turns], "history_answer": [a for _, a in turns]}


@pytest.mark.parametrize("turns,said", [
    ([("x" * 2001, "")], "at most 2,000"),                        # an earlier question is held to the question limit
    ([("Why?", "y" * 10_001)], "at most 10,000"),                 # an earlier answer is bounded
    ([("q" * 2000, "a" * 10_000)] * 9, "the limit is 100,000"),   # and so is the whole conversation
])
def test_history_over_the_limits_is_400_in_json_and_in_the_form(reader, turns, said):
    question = "which countries retaliated?"
    as_json = reader.post("/ask", json={"question": question, "history": [{"question": q, "answer": a}
                                                                          for q, a in turns]})
    assert is_error(as_json, 400) and said in as_json.json()["detail"]
    form = reader.post("/ask", data=_form(question, turns))
    assert is_error(form, 400) and said in form.json()["detail"]
    page = reader.post("/ask", data=_form(question, turns), headers=HTML)
    assert page.status_code == 400 and said in soup(page).select_one("#ask-error").get_text()


def test_a_json_history_of_more_than_20_turns_is_400_and_the_form_reads_the_latest_20(reader):
    turns = [(f"What happened on day {n}?", "Nothing much.") for n in range(25)]
    r = reader.post("/ask", json={"question": "which countries retaliated?",
                                  "history": [{"question": q, "answer": a} for q, a in turns]})
    assert is_error(r, 400) and "at most the latest 20" in r.json()["detail"]
    # The page sends its whole conversation; older turns than the latest 20 are not read, so they cannot be
    # used to smuggle anything past the limits either.
    old = [("x" * 100_000, "y" * 100_000)] * 5
    form = reader.post("/ask", data=_form("which countries retaliated?", old + turns[5:]))
    assert form.status_code == 200 and form.json()["passages"][0]["doc_id"] == RETALIATION_DOC
    page = soup(reader.post("/ask", headers=HTML, data=_form("which countries retaliated?", old + turns[5:])))
    assert len(page.select('input[name=history_question]')) == 21


def test_a_form_question_over_the_limit_is_400(reader):
    r = reader.post("/ask", data={"question": "x" * 2001})
    assert is_error(r, 400) and "limit is 2000" in r.json()["detail"]
    pasted = "word " * 600  # a 3,000-character paste: refused on the page, kept whole in the field to shorten
    page = reader.post("/ask", data={"question": pasted}, headers=HTML)
    assert page.status_code == 400 and "limit is 2000" in soup(page).select_one("#ask-error").get_text()
    assert soup(page).select_one("#question").get_text() == pasted

# --- pages -----------------------------------------------------------------------------------------------------
def test_the_chat_page_has_a_labelled_question_field(reader):
    page = soup(reader.get("/", headers=HTML))
    field = page.find(attrs={"name": "question"})
    assert page.find("label", attrs={"for": field["id"]}).get_text(strip=True)
    # A pasted question over the limit is not cut by the browser: the server (or the script) says it is too long.
    assert field.name == "textarea" and not field.has_attr("maxlength")
    assert field["data-max-chars"] == "2000"
    assert page.find("form", id="ask")["method"] == "post"
    assert page.find("meta", attrs={"name": "viewport"})


def test_the_chat_form_is_answered_with_a_page_without_javascript(reader):
    r = reader.post("/ask", data={"question": "which countries retaliated?", "k": "3"}, headers=HTML)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    reply = reader.post("/ask", json={"question": "which countries retaliated?", "k": 3}).json()
    page = soup(r)
    markers = page.select("#turn-1 .answer a.cite")
    assert [m.get_text() for m in markers] == [f"[{s['rank']}]" for s in reply["answer_spans"]]
    assert all(page.select_one(m["href"]) is not None for m in markers)
    cards = page.select("#turn-1 li.card")
    # One card per article stretch: overlapping passages of one article share a card.
    assert len(cards) == len(merge_passages(reply["passages"])) == 2
    assert "China" in cards[0].select_one("blockquote").get_text() and RETALIATION_DOC in cards[0].get_text()


def test_cards_highlight_exactly_the_answer_spans(reader):
    reply = reader.post("/ask", json={"question": "which countries retaliated?", "k": 3}).json()
    page = soup(reader.post("/ask", data={"question": "which countries retaliated?", "k": "3"}, headers=HTML))
    for p in merge_passages(reply["passages"]):
        card = page.select_one(f"#t1-p{p['rank']}")
        marked = [m.get_text() for m in card.select("blockquote mark")]
        wanted = [p["text"][s["start"] - p["start"]:s["end"] - p["start"]]
                  for s in sorted(reply["answer_spans"], key=lambda s: s["start"]) if s["rank"] in p["ranks"]]
        assert marked == wanted
        # BeautifulSoup (4.15) folds white space standing alone between two tags into one newline, so white space
        # is compared folded; the marks above are compared exactly.
        assert card.select_one("blockquote").get_text().split() == p["text"].split()
        # The card's glance: the same answer sentences with a little context, a slice of the passage.
        assert [m.get_text() for m in card.select(".excerpt mark")] == wanted
        glance = card.select_one(".excerpt").get_text().removeprefix("… ").removesuffix(" …")
        text = " ".join(p["text"].split())
        for piece in glance.split(" … "):  # answer sentences far apart are glanced at separately
            folded = " ".join(piece.split())
            assert folded in text and (len(folded) < len(text) or folded == text)


def test_a_card_links_to_the_article_with_the_passage_highlighted(reader):
    page = soup(reader.post("/ask", data={"question": "which countries retaliated?"}, headers=HTML))
    link = page.select_one("#t1-p1 a.open")["href"]
    assert link.startswith(f"/documents/{RETALIATION_DOC}?") and link.endswith("#passage")
    reply = reader.post("/ask", json={"question": "which countries retaliated?"}).json()
    page = reader.get(link.split("#")[0], headers=HTML)
    article = soup(page)
    assert article.find(id="passage") is not None
    card = merge_passages(reply["passages"])[0]  # the first card: passage 1 and those of its article it overlaps
    assert card["rank"] == 1 and card["start"] <= reply["passages"][0]["start"]
    # Read from the HTML itself: BeautifulSoup folds a mark holding only white space (a paragraph break inside the
    # passage) into one newline.
    marked = re.findall(r'<mark class="passage[^"]*">(.*?)</mark>', page.text, flags=re.DOTALL)
    assert html.unescape("".join(marked)) == card["text"]
    spans = sorted((s for s in reply["answer_spans"] if s["rank"] in card["ranks"]), key=lambda s: s["start"])
    assert [m.get_text() for m in article.select("mark.answer")] == [
        article_text(s["doc_id"])[s["start"]:s["end"]] for s in spans]


def test_a_kept_link_to_an_article_since_replaced_highlights_nothing_and_says_so(writer):
    """The link keeps the cited characters' offsets: after the article was replaced, other text sat there and was
    highlighted as "the one cited". The link carries the passage's checksum; changed, the page says so."""
    text = "Ferry workers at Pellow struck on Monday. The union demands a 9 per cent raise. Crossings stopped."
    writer.post("/documents", json={"text": text, "doc_id": "pellow", "title": "Pellow ferry strike"})
    page = soup(writer.post("/ask", data={"question": "What raise does the Pellow union demand?"}, headers=HTML))
    link = next(a["href"] for a in page.select("a.open") if a["href"].startswith("/documents/pellow?"))
    assert "check=" in link
    before = soup(writer.get(link.split("#")[0], headers=HTML))
    assert before.select("mark.passage") and not before.select(".notice.error")
    correction = "Correction: an earlier version misstated the union's demand. " + text.replace("9 per cent", "7 per cent")
    writer.post("/documents", json={"text": correction, "doc_id": "pellow", "title": "Pellow ferry strike"})
    after = soup(writer.get(link.split("#")[0], headers=HTML))
    assert not after.select("mark") and "has changed since" in after.select_one(".notice.error").get_text()


def test_a_follow_up_form_carries_the_conversation_in_hidden_fields(reader):
    first = soup(reader.post("/ask", data={"question": "What tariffs did the U.S. put on steel?"}, headers=HTML))
    hidden = {i["name"]: i["value"] for i in first.select('input[type=hidden][form="ask"]')}
    assert hidden["history_question"] == "What tariffs did the U.S. put on steel?" and hidden["history_answer"]
    second = soup(reader.post("/ask", headers=HTML, data={
        "question": "And what did the steel industry say about it?", **hidden}))
    assert second.select_one("#turn-1 .question").get_text(" ", strip=True).endswith("put on steel?")
    assert "Steel Producers" in second.select_one("#turn-2").get_text()
    assert [i["value"] for i in second.select('input[name=history_question]')] == [
        "What tariffs did the U.S. put on steel?", "And what did the steel industry say about it?"]


def test_the_page_shows_a_blank_question_as_an_error_on_the_page(reader):
    r = reader.post("/ask", data={"question": "  "}, headers=HTML)
    assert r.status_code == 400 and "question is empty" in soup(r).select_one("#ask-error").get_text()


def test_the_script_asks_for_just_the_new_turn(reader):
    r = reader.post("/ask?partial=1", data={"question": "which countries retaliated?"}, headers=HTML)
    page = soup(r)
    assert page.find("html") is None and page.select_one("article.turn#turn-1 li.card")


def test_uncited_passages_wait_under_more_passages(reader):
    reply = reader.post("/ask", json={"question": "which countries retaliated?"}).json()
    page = soup(reader.post("/ask", data={"question": "which countries retaliated?"}, headers=HTML))
    cited = {s["rank"] for s in reply["answer_spans"]}
    cards = merge_passages(reply["passages"])
    cited_cards = {c["rank"] for c in cards if cited & set(c["ranks"])}
    assert cited and len(cited_cards) < len(cards)
    assert {int(c["id"].rsplit("p", 1)[1]) for c in page.select("#turn-1 > ol.cards > li.card")} == cited_cards
    more = page.select("#turn-1 details.more li.card")
    assert {int(c["id"].rsplit("p", 1)[1]) for c in more} == {c["rank"] for c in cards} - cited_cards
    assert "More passages" in page.select_one("#turn-1 details.more > summary").get_text()


def test_an_unanswerable_question_marks_the_cards_as_weak_on_the_page(reader):
    page = soup(reader.post("/ask", data={"question": "who won the 2024 Super Bowl?"}, headers=HTML))
    cards = page.select("#turn-1 li.card")
    assert cards and all("weak" in c["class"] and c.select_one(".badge") for c in cards)
    assert page.select_one("#turn-1 .answer a.cite") is None


# --- articles --------------------------------------------------------------------------------------------------
def test_documents_lists_the_seed_articles(reader):
    docs = reader.get("/documents").json()
    assert len(docs) == 5 and all(set(d) == set(DocumentSummary.model_fields) for d in docs)
    assert {d["doc_id"] for d in docs} == {p.stem for p in SEEDS.glob("*.txt")}


def test_a_document_has_its_verbatim_text_and_chunk_offsets(reader):
    doc = reader.get(f"/documents/{RETALIATION_DOC}").json()
    assert set(doc) == set(DocumentOut.model_fields)
    assert doc["text"] == article_text(RETALIATION_DOC) and doc["chunks"]
    assert all(0 <= c["start"] < c["end"] <= len(doc["text"]) for c in doc["chunks"])


def test_an_article_pasted_with_a_title_in_another_script_is_added(writer):
    """A title without Latin letters or digits, and no id given, was a 400: "cannot make a document id"."""
    r = writer.post("/documents", json={"title": "東京の地震", "text": "An earthquake shook Tokyo on Monday."})
    assert r.status_code == 201, r.text
    doc_id = r.json()["doc_id"]
    assert doc_id.startswith("doc-") and writer.get(f"/documents/{doc_id}").json()["title"] == "東京の地震"


FORM = {"content-type": "application/x-www-form-urlencoded"}


def test_a_urlencoded_form_is_read_as_utf8_bytes_and_escapes_alike(writer):
    """`curl -d "text=Café…"` sends UTF-8 bytes unescaped; a browser escapes them. Both store the text sent."""
    raw = "text=Le caf\u00e9 de Pellow ferme en juin.&doc_id=raw".encode("utf-8")
    escaped = b"text=Le+caf%C3%A9+de+Pellow+ferme+en+juin.&doc_id=escaped"
    for body, doc_id in ((raw, "raw"), (escaped, "escaped")):
        assert writer.post("/documents", content=body, headers=FORM).status_code == 201
        assert writer.get(f"/documents/{doc_id}").json()["text"] == "Le caf\u00e9 de Pellow ferme en juin."


@pytest.mark.parametrize("body", [b"text=Le+caf%E9+ferme.", b"text=Le caf\xe9 ferme.", b"question=caf%E9%3F"])
def test_a_form_that_is_not_utf8_is_415_and_stores_nothing(writer, body):
    """A Latin-1 byte, escaped or not, was stored as U+FFFD or as another character: the text sent was lost."""
    before = len(writer.get("/documents").json())
    path = "/ask" if body.startswith(b"question") else "/documents"
    r = writer.post(path, content=body, headers=FORM)
    assert is_error(r, 415) and "UTF-8" in r.json()["detail"]
    assert len(writer.get("/documents").json()) == before


def test_a_multipart_charset_that_makes_lone_surrogates_is_422_and_stores_nothing(writer):
    """`charset=unicode_escape` makes Starlette decode "\\ud800" into a lone surrogate, which failed later in SQLite
    or in hashing (a 500), in a field, an upload's field or its file name."""
    story = b"Zorblax council voted on Tuesday to ban scooters from the harbour."

    def part(name: bytes, value: bytes, filename: bytes = b"") -> bytes:
        disposition = b'form-data; name="' + name + b'"' + (b'; filename="' + filename + b'"' if filename else b"")
        return b"--B\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + value + b"\r\n"

    headers = {"content-type": "multipart/form-data; boundary=B; charset=unicode_escape"}
    before = len(writer.get("/documents").json())
    for body in (part(b"text", story + b" \\ud800"), part(b"source", b"\\ud800") + part(b"file", story, b"s.txt"),
                 part(b"file", story, b"\\ud800.txt")):
        assert is_error(writer.post("/documents", content=body + b"--B--\r\n", headers=headers), 422)
    assert len(writer.get("/documents").json()) == before


def test_offsets_count_code_points_even_after_characters_beyond_the_basic_plane(writer):
    text = ("\U0001F6A2\U0001F6A2 Harbour desk \U0001D4D7. The ferry to Pellow Island stopped on Monday. "
            "Crews said the ferry to Pellow Island resumes when the new gangway arrives in June.")
    assert writer.post("/documents", json={"text": text, "doc_id": "pellow"}).status_code == 201
    stored = writer.get("/documents/pellow").json()["text"]
    reply = writer.post("/ask", json={"question": "When does the Pellow Island ferry resume?"}).json()
    cited = [p for p in reply["passages"] if p["doc_id"] == "pellow"]
    assert cited and all(stored[p["start"]:p["end"]] == p["text"] for p in cited)
    june = [s for s in reply["answer_spans"] if s["doc_id"] == "pellow" and "June" in stored[s["start"]:s["end"]]]
    assert june
    # The same span in UTF-16 units (JavaScript's) lies three units further on: one per astral character before it.
    units = stored.encode("utf-16-le")
    start, end = june[0]["start"], june[0]["end"]
    assert units[2 * (start + 3):2 * (end + 3)].decode("utf-16-le") == stored[start:end]


def test_the_articles_page_lists_titles_dates_and_forms(reader):
    page = soup(reader.get("/documents", headers=HTML))
    assert len(page.select("table.docs tbody tr")) == 5 and "2025-09-03" in page.get_text()
    assert page.select_one('form[action="/documents"][enctype="multipart/form-data"] input[type=file]')
    assert page.select_one('form[action="/index/rebuild"] button')
    assert not page.select('input[name=token]')  # no token configured, none asked for


@pytest.mark.parametrize("path", ["/documents/no-such-doc", "/documents/..%2F..%2Fetc%2Fpasswd"])
def test_an_unknown_document_is_404(reader, path):
    assert is_error(reader.get(path), 404)
    r = reader.get(path, headers=HTML)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("query", [{"start": 50, "end": 10}, {"start": 0, "end": 10**7}, {"start": 5},
                                   {"start": 0, "end": 20, "hl": "x-y"}, {"start": 0, "end": 20, "hl": "30-10"},
                                   {"start": 0, "end": 20, "hl": "\u00b2-\u00b3"},  # "²".isdigit(), but not int
                                   {"start": 0, "end": 20, "hl": "1" * 4301 + "-2"}])  # int() refuses 4,301 digits
def test_a_bad_highlight_range_is_400(reader, query):
    r = reader.get(f"/documents/{RETALIATION_DOC}", params=query, headers=HTML)
    assert r.status_code == 400 and ("start" in r.text or "hl" in r.text)


def test_an_added_article_is_cited_by_the_very_next_question(writer):
    r = writer.post("/documents", json={"title": "Zorblax bans scooters", "text": ZORBLAX, "date": "2025-02-11",
                                        "source": "Harbour Times"})
    assert r.status_code == 201
    added = r.json()
    assert set(added) == set(AddResult.model_fields) and added["status"] == "added" and added["chunks"] >= 1
    reply = writer.post("/ask", json={"question": "Why did Zorblax ban electric scooters?"}).json()
    top = reply["passages"][0]
    assert top["doc_id"] == added["doc_id"] and top["date"] == "2025-02-11" and top["source"] == "Harbour Times"
    doc = writer.get(f"/documents/{added['doc_id']}").json()
    assert doc["text"][top["start"]:top["end"]] == top["text"] and doc["text"] == ZORBLAX


def test_adding_the_same_article_again_changes_nothing(writer):
    body = {"text": ZORBLAX, "doc_id": "zorblax"}
    assert writer.post("/documents", json=body).json()["status"] == "added"
    again = writer.post("/documents", json=body).json()
    assert again["status"] == "unchanged" and again["embedded"] == 0


def test_an_uploaded_text_file_is_named_after_the_file(writer):
    files = {"file": ("zorblax-scooters.md", ("title: Zorblax bans scooters\n\n" + ZORBLAX).encode(), "text/markdown")}
    r = writer.post("/documents", files=files, data={"date": "2025-02-11"})
    assert r.status_code == 201 and r.json()["doc_id"] == "zorblax-scooters"
    doc = writer.get("/documents/zorblax-scooters").json()
    assert doc["title"] == "Zorblax bans scooters" and doc["date"] == "2025-02-11" and doc["text"] == ZORBLAX


def test_a_second_file_of_the_same_name_does_not_replace_the_first(writer):
    """Browsers send a file's name without its folder: a second "article.txt" with another story replaced the
    first. It is refused, saying how to replace or keep both; the same file again is unchanged, and an id given
    replaces on purpose. Pasted text beside a file was dropped without a word: refused too."""
    first = {"file": ("article.txt", b"Harbour strike\n\nDock workers walked out on Monday.", "text/plain")}
    second = {"file": ("article.txt", b"Library reopens\n\nThe town library reopened on Friday.", "text/plain")}
    assert writer.post("/documents", files=first).json()["status"] == "added"
    assert writer.post("/documents", files=first).json()["status"] == "unchanged"
    refused = writer.post("/documents", files=second)
    assert is_error(refused, 409) and "Harbour strike" in refused.json()["detail"]
    assert "rename this file" in refused.json()["detail"]
    assert "Dock workers walked out" in writer.get("/documents/article").json()["text"]
    assert writer.post("/documents", files=second, data={"doc_id": "article"}).json()["status"] == "updated"
    both = writer.post("/documents", files=first, data={"text": "A pasted story about the ferry."})
    assert is_error(both, 400) and "not both" in both.json()["detail"]


def test_an_uploaded_html_page_keeps_its_visible_text(writer):
    page = ("<html><head><title>Zorblax bans scooters</title><script>track()</script></head><body>"
            "<h1>Zorblax bans scooters</h1><p>Zorblax city council voted to ban electric scooters.</p></body></html>")
    r = writer.post("/documents", files={"file": ("zorblax.html", page.encode(), "text/html")})
    assert r.status_code == 201
    doc = writer.get(f"/documents/{r.json()['doc_id']}").json()
    assert doc["title"] == "Zorblax bans scooters" and "track()" not in doc["text"] and "voted" in doc["text"]


@pytest.mark.parametrize("name,data", [
    ("photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
    ("latin1.txt", "Zorblax café à la carte".encode("latin-1")),
    ("report.pdf", b"%PDF-1.7 plain enough"),
])
def test_a_binary_non_utf8_or_unsupported_upload_is_415(writer, name, data):
    assert is_error(writer.post("/documents", files={"file": (name, data, "application/octet-stream")}), 415)


def test_an_article_over_5_mb_is_413(writer):
    big = "word " * (5 * 1024 * 1024 // 5) + "x"
    assert is_error(writer.post("/documents", json={"text": big}), 413)
    assert is_error(writer.post("/documents", files={"file": ("big.txt", big.encode(), "text/plain")}), 413)
    assert len(writer.get("/documents").json()) == 5


def test_a_body_over_the_server_limit_is_refused_before_it_is_read(seed_copy):
    settings = seed_copy.settings.with_(max_article_bytes=1000)
    with TestClient(create_app(settings, index=seed_copy), base_url=BASE) as client:
        big = b'{"text": "' + b"a" * (2 << 20) + b'"}'
        assert is_error(client.post("/documents", content=big, headers={"content-type": "application/json"}), 413)
        chunked = client.post("/documents", content=iter([big[:1 << 20], big[1 << 20:]]),
                              headers={"content-type": "application/json"})
        assert is_error(chunked, 413)
        assert is_error(client.post("/documents", json={"text": "a" * 1001}), 413)
        # A browser's form sees the error page, not the JSON.
        page = client.post("/documents", content=big, headers={"content-type": "multipart/form-data; boundary=B",
                                                                "accept": "text/html"})
        assert page.status_code == 413 and page.headers["content-type"].startswith("text/html")
        assert "over the" in soup(page).get_text()


@pytest.mark.parametrize("body,status", [
    ({"text": ""}, 400), ({"text": "   \n"}, 400), ({"text": ZORBLAX, "date": "next Tuesday"}, 400),
    ({"title": "no text"}, 422), ({"text": 5}, 422), ({"text": ZORBLAX, "doc_id": "../etc/passwd"}, 422),
    ({"text": ZORBLAX, "doc_id": "has space"}, 422), ([ZORBLAX], 422),
])
def test_a_bad_article_is_refused_and_nothing_is_added(writer, body, status):
    assert is_error(writer.post("/documents", json=body), status)
    assert len(writer.get("/documents").json()) == 5


def test_an_article_in_another_media_type_is_415(writer):
    assert is_error(writer.post("/documents", content=ZORBLAX.encode(), headers={"content-type": "text/plain"}), 415)


def test_a_deleted_article_is_gone_from_answers(writer):
    assert writer.delete(f"/documents/{RETALIATION_DOC}").status_code == 204
    assert is_error(writer.get(f"/documents/{RETALIATION_DOC}"), 404)
    reply = writer.post("/ask", json={"question": "which countries retaliated?"}).json()
    assert all(p["doc_id"] != RETALIATION_DOC for p in reply["passages"])
    assert is_error(writer.delete(f"/documents/{RETALIATION_DOC}"), 404)


def test_rebuild_reports_counts_and_time(writer):
    r = writer.post("/index/rebuild")
    assert r.status_code == 200
    result = r.json()
    assert set(result) == set(RebuildResult.model_fields)
    health = writer.get("/health").json()
    assert result["documents"] == health["documents"] == 5 and result["chunks"] == health["chunks"]
    assert result["embedded"] == 0 and result["seconds"] >= 0  # unchanged chunks reuse their vectors


def test_a_rebuild_keeps_when_each_article_was_added(writer):
    before = {d["doc_id"]: d["added_at"] for d in writer.get("/documents").json()}
    time.sleep(1.1)  # added_at counts seconds
    assert writer.post("/index/rebuild").status_code == 200
    assert {d["doc_id"]: d["added_at"] for d in writer.get("/documents").json()} == before


def test_the_articles_page_adds_deletes_and_rebuilds_with_a_message(writer):
    # Each form's write answers 303 to the articles page (POST-redirect-GET): reloading that page repeats nothing.
    added = writer.post("/documents", headers=HTML, files={"file": ("", b"", "application/octet-stream")},
                        data={"title": "Zorblax bans scooters", "text": ZORBLAX, "date": "2025-02-11"},
                        follow_redirects=False)
    assert added.status_code == 303 and added.headers["location"].startswith("/documents?added=")
    shown = writer.get(added.headers["location"], headers=HTML)
    assert "Added “Zorblax bans scooters”" in soup(shown).select_one(".notice.ok").get_text()
    assert len(soup(shown).select("table.docs tbody tr")) == 6
    doc_id = next(d["doc_id"] for d in writer.get("/documents").json() if d["title"] == "Zorblax bans scooters")
    assert soup(shown).select_one(".notice.ok a")["href"] == f"/documents/{doc_id}"
    assert len(writer.get(added.headers["location"], headers=HTML).text) and len(writer.get("/documents").json()) == 6
    # Without JavaScript the delete button cannot ask first: the server shows a page that asks.
    form = {**HTML, "content-type": "application/x-www-form-urlencoded"}
    asked = writer.post(f"/documents/{doc_id}/delete", headers=form, content=b"", follow_redirects=False)
    assert asked.status_code == 200 and "Delete “Zorblax bans scooters”?" in soup(asked).select_one("h1").get_text()
    assert soup(asked).select_one('form input[name=confirmed]')["value"] == "1"
    assert len(writer.get("/documents").json()) == 6  # nothing deleted yet
    deleted = writer.post(f"/documents/{doc_id}/delete", headers=HTML, data={"confirmed": "1", "q": "zorblax",
                                                                             "sort": "title"},
                          follow_redirects=False)
    assert deleted.status_code == 303
    assert "q=zorblax" in deleted.headers["location"] and "sort=title" in deleted.headers["location"]  # as it was
    shown = writer.get(deleted.headers["location"], headers=HTML)
    assert shown.status_code == 200 and f"Deleted {doc_id}" in soup(shown).select_one(".notice.ok").get_text()
    rebuilt = writer.post("/index/rebuild", headers=HTML)  # the client follows the 303
    assert rebuilt.status_code == 200 and rebuilt.history[0].status_code == 303
    assert "Rebuilt the index: 5 articles" in soup(rebuilt).select_one(".notice.ok").get_text()
    failed = writer.post("/documents", headers=HTML, data={"text": " "})
    assert failed.status_code == 400 and soup(failed).select_one(".notice.error").get_text().strip()
    # A refused add keeps what was typed (without JavaScript the page is new: title, source and text were lost).
    typed = {"title": "Zorblax <b>bans</b>", "source": "Harbour Times", "date": "2025-02-30", "text": ZORBLAX}
    refused = soup(writer.post("/documents", headers=HTML, data=typed))
    assert refused.select_one(".notice.error") and refused.select_one("#title")["value"] == typed["title"]
    assert refused.select_one("#source")["value"] == "Harbour Times" and refused.select_one("#text").get_text() == ZORBLAX


def test_article_text_and_titles_are_shown_as_text_never_run(writer):
    added = writer.post("/documents", json={"title": HOSTILE_TITLE, "text": HOSTILE_TEXT}).json()
    pages = {
        "list": writer.get("/documents", headers=HTML),
        "article": writer.get(f"/documents/{added['doc_id']}", headers=HTML),
        "chat": writer.post("/ask", headers=HTML, data={"question": "Why did the Quillfeather ferry workers strike?"}),
    }
    for name, r in pages.items():
        assert r.status_code == 200, name
        assert "<script>alert" not in r.text and "<img src=x" not in r.text, name
        assert "&lt;script&gt;alert(" in r.text, name
        assert r.headers["content-security-policy"].startswith("default-src 'self'")
        assert HOSTILE_TITLE in soup(r).get_text(), name
    assert "<img src=x onerror=alert(1)>" in soup(pages["article"]).select_one(".article-text").get_text()


# --- the API token and other guards ----------------------------------------------------------------------------
def test_with_a_token_every_write_needs_it(guarded):
    writes = [
        lambda h: guarded.post("/documents", json={"text": ZORBLAX, "doc_id": "zorblax"}, headers=h),
        lambda h: guarded.delete(f"/documents/{RETALIATION_DOC}", headers=h),
        lambda h: guarded.post("/index/rebuild", headers=h),
    ]
    for write in writes:
        missing = write({})
        assert is_error(missing, 401) and missing.headers["www-authenticate"] == "Bearer"
        assert is_error(write({"authorization": "Bearer wrong"}), 401)
        assert is_error(write({"authorization": TOKEN}), 401)
    assert guarded.get("/documents/zorblax").status_code == 404
    assert [w({"authorization": f"Bearer {TOKEN}"}).status_code for w in writes] == [201, 204, 200]


def test_with_a_token_reads_need_none(guarded):
    assert guarded.post("/ask", json={"question": "which countries retaliated?"}).status_code == 200
    assert guarded.get("/documents").status_code == 200 and guarded.get("/health").status_code == 200


def test_with_a_token_the_forms_ask_for_it(guarded):
    page = soup(guarded.get("/documents", headers=HTML))
    assert page.select_one('form[action="/documents"] input[name=token][type=password]')
    assert page.select_one('form[action="/index/rebuild"] input[name=token]')
    refused = guarded.post("/documents", headers=HTML, data={"text": ZORBLAX, "token": "wrong"})
    assert refused.status_code == 401 and "token" in soup(refused).select_one(".notice.error").get_text()
    accepted = guarded.post("/documents", headers=HTML, data={"text": ZORBLAX, "title": "Zorblax", "token": TOKEN},
                            follow_redirects=False)
    assert accepted.status_code == 303


def test_a_write_posted_from_another_site_is_403(writer):
    forged = writer.post(f"/documents/{RETALIATION_DOC}/delete", headers={"origin": "http://evil.example"})
    assert is_error(forged, 403)
    assert writer.get(f"/documents/{RETALIATION_DOC}").status_code == 200
    own = writer.post("/documents", json={"text": ZORBLAX}, headers={"origin": BASE})
    assert own.status_code == 201



@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "testserver", "127.0.0.1.nip.io",
                                  "localhost.evil.example", "user@localhost", "localhost:notaport"])
def test_a_request_naming_another_host_is_400_dns_rebinding(seed_copy, host):
    # The default settings: only loopback names, not even the TestClient's own "testserver".
    app = create_app(seed_copy.settings.with_(allowed_hosts=()), index=seed_copy)
    with TestClient(app, base_url=BASE) as client:
        for request in (lambda h: client.get("/health", headers=h),
                        lambda h: client.post("/ask", json={"question": "which countries retaliated?"}, headers=h),
                        lambda h: client.delete(f"/documents/{RETALIATION_DOC}", headers=h)):
            assert is_error(request({"host": host}), 400)
        assert client.get(f"/documents/{RETALIATION_DOC}").status_code == 200
        for own in ("localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST."):
            assert client.get("/health", headers={"host": own}).status_code == 200, own


def test_qa_allowed_hosts_adds_hosts_and_is_validated(seed_copy, monkeypatch):
    monkeypatch.setenv("QA_ALLOWED_HOSTS", " news.example.org, 192.168.1.5 ,[fe80::1],")
    settings = Settings.from_env(index_dir=seed_copy.settings.index_dir)
    assert settings.allowed_hosts == ("news.example.org", "192.168.1.5", "fe80::1")
    with TestClient(create_app(settings, index=seed_copy), base_url="http://news.example.org") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health", headers={"host": "192.168.1.5:8000"}).status_code == 200
        assert is_error(client.get("/health", headers={"host": "other.example.org"}), 400)
        own = client.post("/documents", json={"text": ZORBLAX}, headers={"origin": "https://news.example.org"})
        assert own.status_code == 201
    monkeypatch.delenv("QA_ALLOWED_HOSTS")
    assert Settings.from_env().allowed_hosts == ()
    for bad in ("http://news.example.org", "news.example.org:8000", "news example", "a/b"):
        monkeypatch.setenv("QA_ALLOWED_HOSTS", bad)
        with pytest.raises(ValueError, match="QA_ALLOWED_HOSTS"):
            Settings.from_env()


# Pages of other apps on this machine (a dev server on localhost:3000) are not this server's own: form posts need no
# CORS preflight, so without the port compared they could add and delete articles.
@pytest.mark.parametrize("origin", ["http://evil.example", "http://testserver", "null", "http://localhost.evil.example",
                                    "file://", "http://localhost:3000", "http://127.0.0.1:1", "http://[::1]:9",
                                    "https://localhost", "http://localhost"])
def test_a_write_from_an_origin_outside_the_allowed_hosts_is_403(seed_copy, origin):
    with TestClient(create_app(seed_copy.settings.with_(allowed_hosts=()), index=seed_copy), base_url=BASE) as client:
        h = {"origin": origin}
        assert is_error(client.post("/documents", json={"text": ZORBLAX}, headers=h), 403)
        assert is_error(client.delete(f"/documents/{RETALIATION_DOC}", headers=h), 403)
        assert is_error(client.post("/index/rebuild", headers=h), 403)
        assert client.get(f"/documents/{RETALIATION_DOC}").status_code == 200
        for own in ("http://127.0.0.1:8000", "http://[::1]:8000", "http://localhost:8000"):
            assert client.post("/documents", json={"text": ZORBLAX}, headers={"origin": own}).status_code == 201

# --- health, docs, errors --------------------------------------------------------------------------------------
def test_health_reports_counts_model_and_vector_index(reader):
    health = reader.get("/health").json()
    assert set(health) == set(Health.model_fields)
    assert health["status"] == "ok" and health["documents"] == 5 and health["chunks"] > 5
    assert health["model"] == "all-MiniLM-L6-v2" and health["vector_index"]


def test_without_an_index_reads_get_clear_errors_not_crashes(index):
    with TestClient(create_app(index.settings, index=index), base_url=BASE) as client:
        assert is_error(client.get("/health"), 503)
        assert is_error(client.post("/ask", json={"question": "which countries retaliated?"}), 409)
        assert is_error(client.get("/documents"), 409)
        assert "qa index" in client.get("/", headers=HTML).text
        assert client.get("/documents", headers=HTML).status_code == 200


def test_the_first_article_added_creates_the_index(index):
    with TestClient(create_app(index.settings, index=index), base_url=BASE) as client:
        assert client.post("/documents", json={"text": ZORBLAX}).status_code == 201
        assert client.get("/health").json()["documents"] == 1


def test_the_openapi_schema_declares_the_bodies_and_replies(reader):
    schema = reader.get("/openapi.json").json()
    assert {"/ask", "/documents", "/documents/{doc_id}", "/index/rebuild", "/health"} <= set(schema["paths"])
    ask_body = schema["paths"]["/ask"]["post"]["requestBody"]["content"]
    assert ask_body["application/json"]["schema"]["$ref"] == "#/components/schemas/AskRequest"
    add_body = schema["paths"]["/documents"]["post"]["requestBody"]["content"]
    assert set(add_body) == {"application/json", "multipart/form-data"}
    components = schema["components"]["schemas"]
    for name in ("AskRequest", "HistoryTurn", "AskResponse", "PassageOut", "AnswerSpanOut", "AddArticle", "AddResult"):
        assert name in components
    assert components["AskRequest"]["properties"]["k"]["maximum"] == 20
    refs = json.dumps(schema)
    assert all(ref.split('"')[0] in components for ref in refs.split('"#/components/schemas/')[1:])
    assert "HTTPValidationError" not in components  # every 422 is declared with the shape we send


def test_the_api_docs_page_works_offline(reader):
    page = reader.get("/docs")
    assert page.status_code == 200
    assets = [a for a in ("/static/swagger/swagger-ui-bundle.js", "/static/swagger/swagger-ui.css") if a in page.text]
    assert len(assets) == 2 and all(reader.get(a).status_code == 200 for a in assets)
    assert "cdn" not in page.text.lower()


def test_an_unknown_route_is_a_json_404(reader):
    assert is_error(reader.get("/nope"), 404)
    assert is_error(reader.put("/ask", json={}), 405)


# --- concurrency: writes run off the event loop and readers see a whole index -----------------------------------
@pytest.mark.parametrize("write", ["add", "rebuild"])
def test_questions_are_answered_while_a_write_is_embedding(writer, monkeypatch, write):
    index: NewsIndex = writer.index
    entered, release = threading.Event(), threading.Event()
    prepare = index._prepare

    def held_prepare(*args, **kwargs):
        entered.set()
        assert release.wait(120), "the test never released the write"
        return prepare(*args, **kwargs)

    monkeypatch.setattr(index, "_prepare", held_prepare)
    pool = concurrent.futures.ThreadPoolExecutor(4)
    try:
        if write == "add":
            pending = pool.submit(writer.post, "/documents", json={"text": ZORBLAX, "title": "Zorblax"})
        else:
            pending = pool.submit(writer.post, "/index/rebuild")
        assert entered.wait(120), "the write never started"
        asks = [pool.submit(writer.post, "/ask", json={"question": "which countries retaliated?"}) for _ in range(3)]
        health = pool.submit(writer.get, "/health")
        replies = [a.result(timeout=120) for a in asks]
        assert not pending.done()  # every answer came while the write was still embedding
        assert all(r.status_code == 200 and r.json()["passages"][0]["doc_id"] == RETALIATION_DOC for r in replies)
        assert health.result(timeout=120).json()["documents"] == 5
    finally:
        release.set()
        result = pending.result(timeout=300)
        pool.shutdown()
    assert result.status_code in (200, 201)
    assert writer.get("/health").json()["documents"] == (6 if write == "add" else 5)


# --- background jobs: 202, a job to poll, the result the synchronous request would have given ------------------
def finished(client, reply, timeout: float = 120) -> dict:
    """Poll the job a 202 names until it has ended; returns the job."""
    assert reply.status_code == 202
    job = reply.json()["job"]
    assert reply.headers["location"] == f"/jobs/{job['id']}"
    assert job["state"] in ("queued", "running", "done", "failed")
    deadline = time.monotonic() + timeout
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"the job never ended: {job}"
        time.sleep(0.05)
        r = client.get(reply.headers["location"])
        assert r.status_code == 200
        job = r.json()["job"]
    return job


def test_an_article_added_in_the_background_is_polled_to_done_with_its_progress(writer):
    seen = []
    index: NewsIndex = writer.index
    add = index.add

    def watched_add(articles, **kwargs):  # the progress the job saw, as the index reported it
        progress = kwargs["progress"]
        return add(articles, **{**kwargs, "progress": lambda d, t: (seen.append((d, t)), progress(d, t))})

    index.add = watched_add
    r = writer.post("/documents?background=1", json={"text": ZORBLAX, "title": "Zorblax scooters"})
    job = finished(writer, r)
    assert job["kind"] == "add" and job["state"] == "done" and job["status"] == 201
    result = job["result"]
    assert set(result) == set(AddResult.model_fields) and result["status"] == "added"
    assert job["total"] == job["done"] == result["embedded"] > 0
    assert seen[0] == (0, job["total"]) and seen[-1] == (job["total"], job["total"])
    assert writer.get(f"/documents/{result['doc_id']}").json()["title"] == "Zorblax scooters"
    reply = writer.post("/ask", json={"question": "When does the Zorblax scooter ban take effect?"}).json()
    assert reply["passages"][0]["doc_id"] == result["doc_id"]


def test_prefer_respond_async_and_a_background_upload_and_rebuild(writer):
    upload = writer.post("/documents", headers={"Prefer": "respond-async"},
                         files={"file": ("zorblax.txt", ZORBLAX.encode(), "text/plain")})
    job = finished(writer, upload)
    assert job["state"] == "done" and job["result"]["doc_id"] == "zorblax"
    rebuilt = finished(writer, writer.post("/index/rebuild?background=1"))
    assert rebuilt["kind"] == "rebuild" and rebuilt["state"] == "done" and rebuilt["status"] == 200
    assert set(rebuilt["result"]) == set(RebuildResult.model_fields) and rebuilt["result"]["documents"] == 6


def test_a_failed_job_reports_the_error_the_request_would_have_given(writer, monkeypatch):
    from qa.errors import StorageFull

    def full(*_args, **_kwargs):
        raise StorageFull("the disk holding the index is full")

    monkeypatch.setattr(writer.index, "add", full)
    sync = writer.post("/documents", json={"text": ZORBLAX})
    assert is_error(sync, 507)
    job = finished(writer, writer.post("/documents?background=1", json={"text": ZORBLAX}))
    assert job["state"] == "failed" and job["status"] == 507
    assert job["result"] == {"detail": sync.json()["detail"]} and job["detail"] == sync.json()["detail"]


@pytest.mark.parametrize("body, status", [({"title": "no text"}, 422), ({"text": "   \n  "}, 400),
                                          ({"text": ZORBLAX, "date": "someday"}, 400),
                                          ({"text": ZORBLAX, "doc_id": ".."}, 400)])
def test_errors_in_a_background_request_are_answered_at_once(writer, body, status):
    """As the route promises: a blank text or a date that is no date was accepted (202) and failed in its job."""
    assert is_error(writer.post("/documents?background=1", json=body), status)
    assert is_error(writer.post("/documents", json=body), status)


def test_a_stopping_server_first_finishes_the_writes_it_accepted(seed_copy):
    add = seed_copy.add

    def slow_add(articles, **kwargs):  # still embedding when the server is told to stop
        time.sleep(0.5)
        return add(articles, **kwargs)

    seed_copy.add = slow_add
    with TestClient(create_app(seed_copy.settings, index=seed_copy), base_url=BASE) as client:
        for n in range(2):
            reply = client.post("/documents?background=1", json={"text": f"{ZORBLAX} Item {n}.", "doc_id": f"z{n}"})
            assert reply.status_code == 202
    # The app has stopped: both articles accepted before are stored.
    assert {"z0", "z1"} <= {d.doc_id for d in seed_copy.documents()}


def test_draining_the_jobs_waits_at_most_the_time_given():
    release = threading.Event()
    jobs = Jobs()
    job = jobs.submit("add", lambda progress: (release.wait(30), (201, {}))[1])
    assert jobs.drain(0.1) == 1 and jobs.unfinished == 1
    release.set()
    assert jobs.drain(30) == 0 and jobs.get(job.id).state == "done"


@pytest.mark.parametrize("value", ["0", "-5", "soon", "inf", "nan", "1e300"])  # inf crashed a stopping server
def test_a_bad_shutdown_wait_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv("QA_SHUTDOWN_WAIT", value)
    with pytest.raises(ValueError, match="QA_SHUTDOWN_WAIT must be a positive number"):
        Settings.from_env()


def test_an_unknown_job_is_a_json_404(reader):
    assert is_error(reader.get("/jobs/0123456789abcdef"), 404)


def test_a_background_write_needs_the_token_too(guarded):
    assert is_error(guarded.post("/documents?background=1", json={"text": ZORBLAX}), 401)


def test_head_is_answered_as_get_without_the_body(reader):
    """Link checkers and uptime monitors send HEAD; a 405 names it beside GET."""
    for path, kind in (("/health", "application/json"), ("/", "text/html"), (f"/documents/{RETALIATION_DOC}",
                                                                             "application/json")):
        got, head = reader.get(path), reader.head(path)
        assert head.status_code == got.status_code == 200 and head.content == b"", path
        assert head.headers["content-type"].startswith(kind)
        assert head.headers["content-length"] == got.headers["content-length"]
    assert reader.head("/ask").status_code == reader.get("/ask").status_code == 400  # without q
    refused = reader.post("/health")
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
