"""Scoped questions: date, outlet and article filters applied inside retrieval, and the periods questions name."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

import qa.backends.sqlite_faiss as sqlite_faiss
from conftest import REPO, RETALIATION_DOC
from qa.errors import InvalidInput
from qa.records import Article
from qa.scope import Scope, named_period
from web.app import create_app

BASE = "http://localhost:8000"

# A long article of distinct sentences (repeated text would be kept out of the passages as duplicates).
REPORT = " ".join(
    f"In week {i} the port moved {i * 37} containers, {i * 11} cruise passengers came ashore at berth {i % 7}, "
    f"pilots logged {i * 3} boardings and dredger number {i * 5} cleared {i * 13} tonnes near buoy {i * 17}."
    for i in range(1, 90))


def dated_articles() -> list[Article]:
    """Ferry strikes in two months from two outlets, and unrelated articles; the newest is dated 2025-05-22."""
    return [
        Article("ferry-march", "Ferry workers went on strike on Monday over pay. The union says talks broke down "
                "on Sunday and crossings to the islands were cancelled.", title="Ferry strike",
                date="2025-03-03", source="Coastal Post"),
        Article("ferry-may", "Ferry workers walked out again on Wednesday, this time over safety rules on the night "
                "crossings. The operator said half the sailings were cancelled.", title="Second ferry strike",
                date="2025-05-14", source="Harbour Times"),
        Article("ferry-undated", "Ferry workers have struck before over pay, the union recalled in a statement "
                "about the history of the crossings.", title="Strike history", source="Coastal Post"),
        Article("budget", "The city council approved a budget that raises spending on schools and parks. "
                "Councillors argued for hours about the tram extension.", title="Budget passes",
                date="2025-05-22", source="Harbour Times"),
        Article("harbour-report", REPORT, title="Harbour report", date="2025-04-10", source="Coastal Post"),
    ]


@pytest.fixture(scope="module")
def dated(tmp_path_factory, embedder):
    from qa.index import NewsIndex
    from qa.settings import Settings

    idx = NewsIndex(Settings.from_env(index_dir=tmp_path_factory.mktemp("scoped") / "index", reader=False),
                    embedder=embedder)
    idx.rebuild(dated_articles())
    yield idx
    idx.close()


def test_named_periods_count_from_the_newest_article():
    newest = "2025-05-22"  # a Thursday
    assert named_period("what happened this week?", newest).to_dict() == {
        "since": "2025-05-19", "until": "2025-05-25", "phrase": "this week"}
    assert named_period("Who struck last week?", newest).to_dict() == {
        "since": "2025-05-12", "until": "2025-05-18", "phrase": "last week"}
    assert named_period("strikes in March", newest).to_dict() == {
        "since": "2025-03-01", "until": "2025-03-31", "phrase": "in March"}
    assert named_period("strikes in June", newest).since == "2024-06-01"  # the June before the newest article
    assert named_period("strikes in March 2023", newest).since == "2023-03-01"
    assert named_period("what is the latest on the ferries?", newest).to_dict() == {
        "since": "2025-05-16", "until": "2025-05-22", "phrase": "latest"}
    assert named_period("the most recent strike", newest).phrase == "most recent"
    assert named_period("what happened in the last 30 days", newest).since == "2025-04-23"
    # No period: a full date is a day cue, "may" the verb and "march" the noun are not months.
    for question in ("what happened on March 3, 2025?", "who may strike?", "where did the march go?",
                     "why did the workers strike?"):
        assert named_period(question, newest) is None, question
    assert named_period("what happened this week?", "") is None  # no dated article


def test_periods_past_the_ends_of_the_calendar_are_no_period_not_an_error():
    """An article may be dated 0001-01-01 or 9999-12-31, and a question may name year 0: no such days."""
    assert named_period("what happened this week?", "9999-12-31") is None  # the week ends in year 10000
    assert named_period("what happened today?", "9999-12-31").since == "9999-12-31"
    for phrase in ("latest", "recently", "yesterday", "last week", "last year", "in the past year", "last month"):
        assert named_period(f"what happened {phrase}?", "0001-01-01") is None, phrase
    assert named_period("strikes in December", "0001-01-01") is None  # the December before year 1
    assert named_period("what happened in March 0000?", "2025-05-22") is None
    # Only ASCII digits are a year: "２０２５" is not read as one (the month alone is).
    assert named_period("what happened in March ２０２５?", "2025-05-22").since == "2025-03-01"


@pytest.mark.parametrize("kwargs, message", [
    ({"since": "2025-3-1"}, "since must be a date written YYYY-MM-DD"),
    ({"until": "yesterday"}, "until must be a date written YYYY-MM-DD"),
    ({"since": "2025-02-30"}, "since is not a calendar day"),
    ({"since": "2025-05-01", "until": "2025-04-01"}, "is after until"),
])
def test_invalid_filters_are_refused(kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        Scope.of(**kwargs)


def _docs(passages) -> set[str]:
    return {p.doc_id for p in passages}


def test_filters_restrict_the_passages(dated):
    assert _docs(dated.search("ferry workers strike", k=10, since="2025-05-01")) <= {"ferry-may", "budget"}
    assert "ferry-may" in _docs(dated.search("ferry workers strike", k=10, since="2025-05-01"))
    assert _docs(dated.search("ferry workers strike", k=10, until="2025-03-31")) == {"ferry-march"}
    assert _docs(dated.search("ferry workers strike", k=10, sources=["coastal  POST"])) <= {
        "ferry-march", "ferry-undated", "harbour-report"}
    assert _docs(dated.search("ferry workers strike", k=10, doc_ids=["budget"])) == {"budget"}
    both = dated.search("ferry workers strike", k=10, since="2025-01-01", sources=["Coastal Post"])
    assert _docs(both) <= {"ferry-march", "harbour-report"}  # undated articles are out when a date filter is on
    assert dated.search("ferry workers strike", k=10, sources=["Nobody's Gazette"]) == []
    unfiltered = dated.search("ferry workers strike", k=3)
    assert _docs(unfiltered) & {"ferry-march", "ferry-may"}


@pytest.mark.parametrize("exact_limit", [10_000, 0])  # exact cosines over the filter; FAISS over-fetch first
def test_a_narrow_filter_still_returns_k_passages_with_exact_citations(dated, monkeypatch, exact_limit):
    monkeypatch.setattr(sqlite_faiss, "EXACT_SCOPE_CHUNKS", exact_limit)
    chunks = len(dated.document("harbour-report")["chunks"])
    assert chunks >= 3
    # A question about ferries: the harbour report is far from it, yet the filter to it yields k of its passages.
    passages = dated.search("ferry workers strike over pay", k=3, doc_ids=["harbour-report"])
    assert len(passages) == 3 and _docs(passages) == {"harbour-report"}
    text = dated.document("harbour-report")["text"]
    for p in passages:
        assert text[p.start:p.end] == p.text


# FTS5 asked chunk by chunk; every match ranked, then kept; BM25 from memory (qa/bm25.py)
@pytest.mark.parametrize("lookup_limit, in_memory", [(10_000, False), (0, False), (0, True)])
def test_filtered_bm25_ranks_exactly_the_admitted_chunks_of_the_unfiltered_list(dated, monkeypatch, lookup_limit,
                                                                                in_memory):
    import qa.store

    monkeypatch.setattr(qa.store, "SCOPED_LOOKUP_CHUNKS", lookup_limit)
    live = dated.live()
    if not in_memory:
        monkeypatch.setattr(live.bm25, "max_chunks", 0)
    everything = live.lexical("ferry workers strike over pay in the port", 1000)
    for scope in (Scope.of(since="2025-04-01"), Scope.of(sources=["Coastal Post"]), Scope.of(doc_ids=["budget"])):
        admitted = live.admitted(scope)
        expected = [(i, s) for i, s in everything if i in admitted]
        got = live.lexical("ferry workers strike over pay in the port", 1000, scope=scope)
        assert sorted(got) == sorted(expected)  # the same chunks with the same (whole-collection) scores
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
        top = live.lexical("ferry workers strike over pay in the port", 2, scope=scope)
        assert [s for _, s in top] == [s for _, s in got[:2]]  # a limit takes the best (ties in either order)
    assert live.admitted(Scope.of(sources=["Nobody's Gazette"])) == frozenset()
    assert live.lexical("ferry", 10, scope=Scope.of(sources=["Nobody's Gazette"])) == []


def test_a_named_period_is_preferred_and_reported(dated):
    answer = dated.ask("Why did ferry workers strike last week?", k=3)
    assert answer.passages[0].doc_id == "ferry-may"
    assert answer.date_range == {"since": "2025-05-12", "until": "2025-05-18", "phrase": "last week"}
    assert answer.filters is None
    answer = dated.ask("Why did ferry workers strike in March?", k=3)
    assert answer.passages[0].doc_id == "ferry-march"
    assert answer.date_range["since"] == "2025-03-01"
    # Preferred, not required: articles from other months are still there.
    assert len(answer.passages) == 3
    assert dated.ask("Why did ferry workers strike?", k=3).date_range is None


def test_a_period_outside_the_date_filter_is_not_used(dated):
    answer = dated.ask("Why did ferry workers strike last week?", k=3, until="2025-03-31")
    assert answer.date_range is None
    assert answer.filters == {"since": None, "until": "2025-03-31", "sources": [], "doc_ids": []}
    assert _docs(answer.passages) == {"ferry-march"}


def test_seed_articles_filtered_by_their_stated_date(seed_index):
    # Only one seed article states a date (2025-09-03); a filter to that day finds only it.
    passages = seed_index.search("Carney Trump trade talks", k=5, since="2025-09-03", until="2025-09-03")
    assert passages and all(p.date == "2025-09-03" for p in passages)
    assert _docs(seed_index.search("which countries retaliated?", k=5, doc_ids=[RETALIATION_DOC])) == {RETALIATION_DOC}


@pytest.fixture(scope="module")
def client(dated):
    with TestClient(create_app(dated.settings, index=dated), base_url=BASE) as c:
        yield c


def test_post_and_get_ask_take_filters(client):
    r = client.post("/ask", json={"question": "Why did ferry workers strike?", "k": 5, "sources": ["Harbour Times"],
                                  "since": "2025-05-01"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {p["doc_id"] for p in body["passages"]} <= {"ferry-may", "budget"}
    assert body["filters"] == {"since": "2025-05-01", "until": None, "sources": ["Harbour Times"], "doc_ids": []}
    r = client.get("/ask", params={"q": "Why did ferry workers strike?", "until": "2025-03-31",
                                   "source": ["Coastal Post", "Harbour Times"]})
    assert r.status_code == 200, r.text
    assert {p["doc_id"] for p in r.json()["passages"]} == {"ferry-march"}
    r = client.get("/ask", params={"q": "What happened to the ferries last week?"})
    assert r.json()["date_range"] == {"since": "2025-05-12", "until": "2025-05-18", "phrase": "last week"}


@pytest.mark.parametrize("body", [{"since": "03/01/2025"}, {"until": "2025-13-01"},
                                  {"since": "2025-05-01", "until": "2025-04-01"}])
def test_invalid_dates_are_400_with_a_clear_message(client, body):
    r = client.post("/ask", json={"question": "Why did ferry workers strike?", **body})
    assert r.status_code == 400 and ("YYYY-MM-DD" in r.json()["detail"] or "after" in r.json()["detail"]
                                     or "calendar" in r.json()["detail"])
    r = client.get("/ask", params={"q": "Why did ferry workers strike?", **body})
    assert r.status_code == 400


def test_the_openai_route_takes_filters(client):
    r = client.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "Why did ferry workers strike?"}], "until": "2025-03-31"})
    assert r.status_code == 200, r.text
    assert {p["doc_id"] for p in r.json()["newsqa"]["passages"]} == {"ferry-march"}
    r = client.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "Why did ferry workers strike?"}], "since": "May 1"})
    assert r.status_code == 400 and "YYYY-MM-DD" in r.json()["error"]["message"]


def test_the_cli_takes_filters(dated):
    env = {"QA_INDEX_DIR": str(dated.settings.index_dir), "QA_READER": "off", "HF_HUB_OFFLINE": "1"}
    import os

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "qa.cli", *args], capture_output=True, text=True,
                              env={**os.environ, **env}, timeout=300)
        return proc.returncode, proc.stdout, proc.stderr

    code, out, err = run("ask", "Why did ferry workers strike?", "--json", "--until", "2025-03-31",
                         "--source", "Coastal Post", "--source", "Harbour Times")
    assert code == 0, err
    assert {p["doc_id"] for p in json.loads(out)["passages"]} == {"ferry-march"}
    code, out, err = run("ask", "Why did ferry workers strike?", "--since", "2025/03/01")
    assert code == 2 and "since must be a date written YYYY-MM-DD" in err and len(err.strip().splitlines()) == 1


def test_a_filter_no_article_passes_gives_no_passages(dated):
    answer = dated.ask("Why did ferry workers strike?", sources=["Nobody's Gazette"])
    assert not answer.answerable and answer.passages == []


# --- the chat page's filter row ------------------------------------------------------------------------------------
HTML = {"accept": "text/html"}


def chat_page(response):
    from bs4 import BeautifulSoup

    assert response.headers["content-type"].startswith("text/html")
    return BeautifulSoup(response.text, "html.parser")


def test_the_chat_page_offers_the_stored_outlets_and_a_date_range(client, dated):
    page = chat_page(client.get("/", headers=HTML))
    assert dated.sources() == ["Coastal Post", "Harbour Times"]
    options = [(o.get("value", o.get_text()), o.get_text()) for o in page.select("#ask select[name=source] option")]
    assert options == [("", "Any outlet"), ("Coastal Post", "Coastal Post"), ("Harbour Times", "Harbour Times")]
    assert page.select_one("#ask input[name=since][type=date]") and page.select_one("#ask input[name=until][type=date]")
    assert page.select_one("label[for=since]") and page.select_one("label[for=source-filter]")
    assert not page.select_one("details#filters").has_attr("open")  # compact until used


def test_the_chat_form_narrows_answers_by_date_and_outlet_without_javascript(client):
    r = client.post("/ask", data={"question": "Why did ferry workers strike?", "since": "2025-05-01", "until": "",
                                  "source": "harbour times"}, headers=HTML)
    assert r.status_code == 200, r.text
    page = chat_page(r)
    cards = {li["data-doc-id"] for li in page.select("article.turn li.card")}
    assert cards and cards <= {"ferry-may", "budget"}
    assert page.select_one(".scope-note").get_text() == "Only articles from harbour times, dated 2025-05-01 or later."
    # The filter row shows what was asked, open, so the next question is asked the same way.
    assert page.select_one("details#filters").has_attr("open")
    assert page.select_one("#since")["value"] == "2025-05-01" and page.select_one("#until")["value"] == ""
    assert page.select_one("#source-filter option[selected]").get_text() == "Harbour Times"

    # Empty fields filter nothing.
    page = chat_page(client.post("/ask", data={"question": "Why did ferry workers strike?", "since": "", "until": "",
                                               "source": ""}, headers=HTML))
    assert not page.select(".scope-note") and "ferry-march" in {li["data-doc-id"] for li in page.select("li.card")}

    # What the page's script sends (?partial=1): the new turn alone, filtered the same way.
    r = client.post("/ask?partial=1", data={"question": "Why did ferry workers strike?", "until": "2025-03-31",
                                            "source": "Coastal Post"}, headers=HTML)
    turn = chat_page(r)
    assert {li["data-doc-id"] for li in turn.select("li.card")} == {"ferry-march"}
    assert "dated 2025-03-31 or earlier" in turn.select_one(".scope-note").get_text()


def test_a_bad_date_in_the_filter_row_is_shown_beside_the_input_with_the_filters_kept(client):
    r = client.post("/ask", data={"question": "Why did ferry workers strike?", "since": "2025-05-01",
                                  "until": "2025-04-01", "source": "Coastal Post"}, headers=HTML)
    assert r.status_code == 400
    page = chat_page(r)
    assert "after until" in page.select_one("#ask-error").get_text()
    assert page.select_one("#since")["value"] == "2025-05-01" and page.select_one("#until")["value"] == "2025-04-01"
    assert page.select_one("#question").get_text() == "Why did ferry workers strike?"
    r = client.post("/ask", data={"question": "Why did ferry workers strike?", "since": "yesterday"},
                    headers={"accept": "application/json"})
    assert r.status_code == 400 and "YYYY-MM-DD" in r.json()["detail"]


# --- a permalink to each answer ------------------------------------------------------------------------------------
def cards_of(page) -> list[tuple[str, str]]:
    return [(li["data-doc-id"], li.select_one(".meta").get_text().rsplit("characters", 1)[1].strip())
            for li in page.select("article.turn:last-of-type li.card")]


def test_link_to_this_answer_reproduces_it_filters_and_follow_up_included(client):
    first = {"question": "Why did ferry workers strike?", "until": "2025-03-31", "source": "Coastal Post", "k": "3"}
    page = chat_page(client.post("/ask", data=first, headers=HTML))
    link = page.select_one("article.turn a.permalink")
    assert link.get_text().startswith("Link to this answer")
    href = link["href"]
    assert href.startswith("/ask?") and "until=2025-03-31" in href and "source=Coastal+Post" in href and "k=3" in href
    again = chat_page(client.get(href, headers=HTML))
    assert again.select_one(".answer").get_text() == page.select_one(".answer").get_text()
    assert cards_of(again) == cards_of(page) and cards_of(page)
    assert again.select_one("#until")["value"] == "2025-03-31"  # the filter row as it was
    assert again.select_one("article.turn a.permalink")["href"] == href  # the link's page links to itself

    # A follow-up's link carries the question it followed, which its search leans on.
    answer = page.select_one("input[name=history_answer]")["value"]
    follow = {"question": "and why?", "history_question": first["question"], "history_answer": answer}
    page = chat_page(client.post("/ask", data=follow, headers=HTML))
    href = page.select("article.turn a.permalink")[-1]["href"]
    assert "after=Why+did+ferry+workers+strike%3F" in href
    again = chat_page(client.get(href, headers=HTML))
    # Its page shows the conversation: the question it followed, answered again, then the follow-up as answered
    # after that answer, numbered as they were.
    assert [t["id"] for t in again.select("article.turn")] == ["turn-1", "turn-2"]
    assert [h.get_text() for h in again.select("article.turn h2")] == \
        ["Question 1: " + first["question"], "Question 2: and why?"]
    assert again.select_one("input[name=history_answer]")["value"] == answer
    assert again.select("article.turn .answer")[-1].get_text() == page.select("article.turn .answer")[-1].get_text()
    assert cards_of(again) == cards_of(page) and cards_of(page)
    # Asking on from the link's page continues that conversation as its third turn.
    assert [i["value"] for i in again.select("input[name=history_question]")] == [first["question"], "and why?"]
    on = chat_page(client.post("/ask", headers=HTML, data={
        "question": "Who organised it?", "history_question": [first["question"], "and why?"],
        "history_answer": [i["value"] for i in again.select("input[name=history_answer]")]}))
    assert [t["id"] for t in on.select("article.turn")] == ["turn-1", "turn-2", "turn-3"]

    # Programs get the same answer as POST with the conversation.
    posted = client.post("/ask", json={"question": "and why?",
                                       "history": [{"question": first["question"], "answer": answer}]}).json()
    linked = client.get(href).json()
    assert linked["answer"] == posted["answer"] and linked["query"] == posted["query"] == "Why did ferry workers " \
        "strike? and why?"
    assert [(p["doc_id"], p["start"], p["end"]) for p in linked["passages"]] == \
        [(p["doc_id"], p["start"], p["end"]) for p in posted["passages"]]
    r = client.get("/ask", params={"q": "and why?", "after": "x" * 5000})
    assert r.status_code == 400 and "after is 5,000 characters long" in r.json()["detail"]


# --- MultiHop-RAG's dated articles (../shared/data, MIT licence; read at test time, never copied into the repo) -----
MULTIHOP = REPO.parent / "shared" / "data" / "multihop-rag"
MULTIHOP_SOURCES = ("TechCrunch", "The Verge", "Sporting News")


@pytest.fixture(scope="module")
def multihop(tmp_path_factory, embedder):
    from qa.evaluation import load_multihop
    from qa.index import NewsIndex
    from qa.settings import Settings

    if not (MULTIHOP / "corpus.json").exists():
        pytest.skip(f"MultiHop-RAG is not at {MULTIHOP} (../shared/data beside the checkout)")
    articles, queries = load_multihop(MULTIHOP)
    # Every fourth article of three outlets: news from late September to December 2023.
    chosen = [a for s in MULTIHOP_SOURCES for a in [a for a in articles if a.source == s][::4]]
    idx = NewsIndex(Settings.from_env(index_dir=tmp_path_factory.mktemp("multihop") / "index", reader=False),
                    embedder=embedder)
    idx.rebuild(chosen)
    yield idx, {a.doc_id: a for a in chosen}, [q.query for q in queries if q.facts][:6]
    idx.close()


@pytest.mark.slow
def test_multihop_articles_are_narrowed_by_date_and_outlet_inside_retrieval(multihop):
    idx, by_id, questions = multihop
    for question in questions:
        october = idx.search(question, k=5, since="2023-10-01", until="2023-10-31")
        assert len(october) == 5  # the filter is applied inside retrieval: still k passages
        assert all("2023-10-01" <= by_id[p.doc_id].date[:10] <= "2023-10-31" for p in october)
        verge = idx.search(question, k=5, sources=["the verge"])
        assert len(verge) == 5 and {by_id[p.doc_id].source for p in verge} == {"The Verge"}
        for p in october + verge:
            assert idx.document(p.doc_id)["text"][p.start:p.end] == p.text
        answer = idx.ask(question, since="2023-11-01", sources=["TechCrunch", "Sporting News"])
        assert answer.passages and all(by_id[p.doc_id].source in ("TechCrunch", "Sporting News")
                                       and by_id[p.doc_id].date[:10] >= "2023-11-01" for p in answer.passages)
        assert all(by_id[s.doc_id].date[:10] >= "2023-11-01" for s in answer.answer_spans)


# --- a follow-up that names its own period -------------------------------------------------------------------------
def test_the_period_of_the_newest_question_in_a_follow_up_search_wins():
    """A follow-up is searched after the question it leans on (qa.answer.resolve_followup): the period the newest
    question names is the one asked about; the earlier question's holds only when the new one names none."""
    from qa.answer import resolve_followup

    newest = "2025-05-22"
    earlier = [{"question": "What opened in Dartmouth in February?"}]
    for follow_up, phrase in (("And in March?", "in March"), ("What about in March?", "in March"),
                              ("And what happened last week?", "last week"), ("And who opened it?", "in February")):
        query = resolve_followup(follow_up, earlier)
        assert query.startswith("What opened in Dartmouth in February?"), query  # searched with the earlier one
        assert named_period(query, newest).phrase == phrase, query
    # One sentence naming two periods: the first is the one asked about, as before.
    assert named_period("what did the minister say last week about the plan announced in March?",
                        newest).phrase == "last week"
    assert named_period("What happened in March this year?", newest).phrase == "in March"
    # The period of an abbreviated month is no sentence end.
    assert named_period("Strikes in Jan. 2025, and in March?", newest).since == "2025-01-01"


def test_a_follow_up_naming_a_new_period_is_answered_from_that_period(dated, client):
    history = [{"question": "Why did ferry workers strike last week?",
                "answer": "Ferry workers walked out again on Wednesday, this time over safety rules. [1]"}]
    answer = dated.ask("And in March?", k=3, history=history)
    assert answer.query == "Why did ferry workers strike last week? And in March?"
    assert answer.date_range == {"since": "2025-03-01", "until": "2025-03-31", "phrase": "in March"}
    assert answer.passages[0].doc_id == "ferry-march"
    # The other way round, and a follow-up that names no period keeps the earlier question's.
    march = [{"question": "Why did ferry workers strike in March?"}]
    assert dated.ask("What about last week?", k=3, history=march).passages[0].doc_id == "ferry-may"
    assert dated.ask("And who said so?", k=3, history=march).date_range["phrase"] == "in March"
    # An earlier question typed without its question mark is one sentence with the new one: the new one's period
    # still wins, since it is looked for in the new question first.
    unpunctuated = [{"question": "Why did ferry workers strike last week"}]
    assert dated.ask("And in March?", k=3, history=unpunctuated).date_range["phrase"] == "in March"

    # The same on every route that takes a conversation.
    body = client.post("/ask", json={"question": "And in March?", "history": history}).json()
    assert body["date_range"]["phrase"] == "in March" and body["passages"][0]["doc_id"] == "ferry-march"
    linked = client.get("/ask", params={"q": "And in March?", "after": history[0]["question"]}).json()
    assert linked["date_range"]["phrase"] == "in March" and linked["passages"][0]["doc_id"] == "ferry-march"
    chat = client.post("/v1/chat/completions", json={"messages": [
        {"role": "user", "content": history[0]["question"]}, {"role": "assistant", "content": history[0]["answer"]},
        {"role": "user", "content": "And in March?"}]}).json()
    assert chat["newsqa"]["date_range"]["phrase"] == "in March"
    assert chat["newsqa"]["passages"][0]["doc_id"] == "ferry-march"


# --- outlets spelled with capitals outside A-Z ---------------------------------------------------------------------
def test_outlet_filters_match_any_case_in_every_alphabet():
    """SQLite's lower() folds only A-Z: the match is made in Python, on the spellings the store holds."""
    stored = ["ÖSTERREICH Post", "Österreich post ", "Coastal Post", "ΕΛΛΆΔΑ Times", ""]
    assert Scope.of(sources=["österreich POST"]).matching_sources(stored) == ["ÖSTERREICH Post", "Österreich post "]
    assert Scope.of(sources=["ελλάδα times"]).matching_sources(stored) == ["ΕΛΛΆΔΑ Times"]
    where, params = Scope.of(sources=["österreich post"]).where("d", stored)
    assert where == "d.source IN (?,?)" and params == ["ÖSTERREICH Post", "Österreich post "]
    assert Scope.of(sources=["Nobody's Gazette"]).where("d", stored) == ("0", [])
    with pytest.raises(ValueError):
        Scope.of(sources=["Coastal Post"]).where("d")  # an outlet filter is never applied blind


@pytest.mark.parametrize("store", ["embedded", "milvus"])
def test_an_outlet_with_a_capital_outside_a_to_z_is_found_in_any_case_on_each_store(tmp_path, embedder, store):
    from conftest import store_settings
    from qa.index import NewsIndex

    articles = dated_articles() + [
        Article("post-strike", "Postal workers in Vienna went on strike over pay on Tuesday, and letters piled up.",
                title="Post strike", date="2025-05-20", source="ÖSTERREICH Post"),
        Article("post-deal", "The postal union signed a new pay deal with the company on Friday.",
                title="Post deal", date="2025-05-21", source="österreich POST"),
    ]
    idx = NewsIndex(store_settings(store, tmp_path), embedder=embedder)
    try:
        idx.rebuild(articles)
        # One outlet, however its articles spell it (the smallest spelling shown).
        assert idx.sources() == ["Coastal Post", "Harbour Times", "ÖSTERREICH Post"]
        for name in ("ÖSTERREICH Post", "österreich post", "Österreich POST"):
            passages = idx.search("why did workers strike?", k=5, sources=[name])
            assert _docs(passages) == {"post-strike", "post-deal"}, name
            for p in passages:
                assert idx.document(p.doc_id)["text"][p.start:p.end] == p.text
        answer = idx.ask("Why did postal workers strike?", k=3, sources=["österreich post"])
        assert answer.passages[0].doc_id == "post-strike" and answer.answerable
    finally:
        idx.close()
