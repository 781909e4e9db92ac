"""Answer cards: overlapping passages of one article are shown as one card, its citations still exact."""

from __future__ import annotations

import html
import re

from bs4 import BeautifulSoup
from fastapi.testclient import TestClient

from conftest import RETALIATION_DOC
from qa.records import merge_passages
from web.app import create_app

BASE = "http://localhost:8000"
ARTICLE = "Ferry workers struck on Monday. Talks broke down on Sunday. The union wants more pay. Crossings stopped."


def part(rank, start, end, doc_id="ferry", weak=False, pages=()):
    return {"rank": rank, "doc_id": doc_id, "title": "Ferry strike", "date": "", "source": "", "chunk_no": rank,
            "start": start, "end": end, "text": ARTICLE[start:end], "score": 1.0 / rank, "weak": weak,
            "pages": list(pages)}


def test_overlapping_and_touching_passages_of_one_article_merge_into_their_union():
    passages = [part(1, 32, 86), part(2, 0, 59, pages=[1]), part(3, 86, 104, pages=[2]), part(4, 0, 31, "other"),
                part(5, 0, 20, "ferry-2")]
    cards = merge_passages(passages)
    assert [c["ranks"] for c in cards] == [[1, 2, 3], [4], [5]]
    card = cards[0]
    assert (card["rank"], card["start"], card["end"]) == (1, 0, 104)
    assert card["text"] == ARTICLE[0:104]  # exactly the article's characters, by offsets
    assert card["pages"] == [1, 2] and card["score"] == 1.0 and not card["weak"]
    # A gap keeps passages apart; weak only when every part is.
    apart = merge_passages([part(1, 0, 20, weak=True), part(2, 32, 59, weak=True), part(3, 40, 70)])
    assert [(c["ranks"], c["start"], c["end"], c["weak"]) for c in apart] == \
        [([1], 0, 20, True), ([2, 3], 32, 70, False)]
    assert apart[1]["text"] == ARTICLE[32:70]
    # A passage inside another adds nothing to its text.
    inside = merge_passages([part(2, 0, 86), part(1, 32, 59)])
    assert [(c["ranks"], c["rank"], c["text"]) for c in inside] == [([1, 2], 1, ARTICLE[0:86])]


def overlapping(passages) -> list[tuple[dict, dict]]:
    return [(a, b) for a in passages for b in passages if a["rank"] < b["rank"] and a["doc_id"] == b["doc_id"]
            and a["start"] <= b["end"] and b["start"] <= a["end"]]


def test_one_card_for_overlapping_passages_and_its_citations_point_to_exact_characters(seed_index):
    with TestClient(create_app(seed_index.settings, index=seed_index), base_url=BASE) as client:
        question = {"question": "which countries retaliated?", "k": 8}
        data = client.post("/ask", json=question).json()
        pairs = overlapping(data["passages"])
        assert pairs, "the question must retrieve overlapping passages of one article for this test to mean anything"
        assert len(data["passages"]) == 8  # the JSON keeps every passage as retrieved

        raw = client.post("/ask", data=question, headers={"accept": "text/html"}).text
        page = BeautifulSoup(raw, "html.parser")
        cards = page.select("article.turn li.card")
        assert len(cards) == len(merge_passages(data["passages"])) < len(data["passages"])
        merged = [c for c in cards if len(c.select_one(".rank").get_text().split("][")) > 1]
        assert merged and any(c.select("blockquote mark") for c in merged)
        articles = {}
        for card in merged:
            doc_id = card["data-doc-id"]
            article = articles.setdefault(doc_id, client.get(f"/documents/{doc_id}").json()["text"])
            meta = card.select_one(".meta").get_text()
            start, end = (int(x) for x in meta.rsplit("characters ", 1)[1].split("–"))
            # Read from the HTML itself: BeautifulSoup folds white space standing alone between two tags.
            block = re.search(rf'<li class="card[^"]*" id="{card["id"]}".*?<blockquote class="passage">(.*?)'
                              r"</blockquote>", raw, flags=re.DOTALL).group(1)
            pieces = re.split(r"(<mark>.*?</mark>)", block, flags=re.DOTALL)
            assert html.unescape(re.sub(r"</?mark>", "", block)) == article[start:end]
            ranks = [int(r) for r in card.select_one(".rank").get_text().strip("[]").split("][")]
            parts = [p for p in data["passages"] if p["rank"] in ranks]
            assert start == min(p["start"] for p in parts) and end == max(p["end"] for p in parts)
            # The answer sentences are marked where their offsets say, and the answer's [n] jumps to this card.
            offset, marks = start, 0
            for piece in pieces:
                text = html.unescape(re.sub(r"</?mark>", "", piece))
                if piece.startswith("<mark>"):
                    assert any(s["start"] == offset and s["end"] == offset + len(text) and s["rank"] in ranks
                               for s in data["answer_spans"])
                    marks += 1
                offset += len(text)
            assert marks == len([s for s in data["answer_spans"] if s["rank"] in ranks])
            for rank in ranks:
                for a in page.select(f'.answer a.cite[aria-label="passage {rank}"]'):
                    assert a["href"] == f"#{card['id']}"
        if any(p["doc_id"] == RETALIATION_DOC for p in data["passages"]):
            assert RETALIATION_DOC in {c["data-doc-id"] for c in cards}


def test_only_short_ascii_markers_are_citations_in_the_answer_text():
    """An article's sentence may hold "[٢]" (another script's digit) or a bracketed run of 5,000 digits, which
    int() refuses: every page citing it failed with a 500. Neither is a marker; the answerer's "[n]" are."""
    from web.highlight import answer_parts

    long_run = "[" + "1" * 5000 + "]"
    answer = f"The strike lasts a week [\u0662] and {long_run} more. [1] Talks resume in May. [2]"
    assert answer_parts(answer, {1, 2}) == [(f"The strike lasts a week [\u0662] and {long_run} more.", None),
                                            ("", 1), (" Talks resume in May.", None), ("", 2)]


def test_a_footnote_mark_inside_an_answer_sentence_is_text_not_a_citation(index):
    """Text pasted from an encyclopedia keeps its footnote marks: "[1]" inside the sentence that answers is the
    article's text; only the marker after each answer sentence links to a passage."""
    from qa.records import Article

    text = ("Harbour pilots walked out in Rotterdam on Monday. The pilots' union demands a 9 percent pay rise [1] "
            "and a shorter week. Ships queued outside the port for two days.")
    index.add([Article("pilots", text, title="Pilots strike")])
    with TestClient(create_app(index.settings, index=index), base_url=BASE) as client:
        data = client.post("/ask", json={"question": "What pay rise does the pilots' union demand?"}).json()
        span = data["answer_spans"][0]
        assert "[1]" in text[span["start"]:span["end"]], "the answer sentence must hold the footnote mark"
        page = BeautifulSoup(client.post("/ask", data={"question": data["question"]},
                                         headers={"accept": "text/html"}).text, "html.parser")
    answer = page.select_one("article.turn p.answer")
    links = [a.get_text() for a in answer.select("a.cite")]
    assert links == [f"[{s['rank']}]" for s in data["answer_spans"]]
    assert "9 percent pay rise [1] and a shorter week." in answer.get_text()
