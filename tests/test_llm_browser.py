"""The chat page with a local model (QA_LLM_URL) in real headless Chromium against `qa serve` as a separate
process: the model's draft shows as it streams, then the checked answer replaces it and says who wrote it. The model
here is the scripted server of tests/llm_servers.py, which writes slowly on purpose; the real model's contract is
tested in tests/test_llm_server.py."""

from __future__ import annotations

import shutil

import pytest

from llm_servers import FakeLLM, rank_holding
from test_browser import WAIT_MS, browser, qa_serve  # noqa: F401 -- the Chromium fixture

pytestmark = pytest.mark.browser

CHINA = "The only other country to hit back with countertariffs is China."


def reply(messages: list[dict]) -> str:
    n = rank_holding(messages, CHINA)
    return (f"China is the only other country that hit back with countertariffs [{n}]. "
            f"Mexico put 99 per cent tariffs on American cars [{n}].")


@pytest.fixture(scope="module")
def fake():
    server = FakeLLM()
    server.reply, server.words, server.stall = reply, 1, (12, 3.0)  # a pause after the first sentence
    yield server
    server.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, seed_index_dir, model_cache, fake):
    """`qa serve` with QA_LLM_URL pointed at the scripted model, over a copy of the seed index."""
    folder = tmp_path_factory.mktemp("served-llm") / "index"
    shutil.copytree(seed_index_dir, folder)
    with qa_serve(folder, QA_LLM_URL=fake.url, QA_LLM_TIMEOUT="60") as base:
        yield base


def test_the_draft_streams_then_the_checked_answer_replaces_it(browser, server):  # noqa: F811
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.goto(server)
    page.locator("#question").fill("Which countries retaliated against the U.S. tariffs?")
    page.locator("#question").press("Enter")
    draft = page.locator(".draft-turn .answer.draft", has_text="countertariffs")  # (the page's CSP forbids eval)
    draft.wait_for()
    assert "Mexico" not in draft.text_content()  # the pause comes before the second sentence
    turn = page.locator("article.turn").first
    turn.wait_for()
    assert page.locator(".draft-turn").count() == 0
    answer = turn.locator(".answer").text_content()
    assert "China is the only other country" in answer and "99 per cent" not in answer
    assert "Written by the local model" in turn.locator(".mode").text_content()
    assert "1 sentence its passage did not support was removed" in turn.locator(".mode").text_content()
    cite = turn.locator(".answer a.cite").first
    card = page.locator(cite.get_attribute("href"))
    assert "China" in card.locator("mark").first.text_content()  # the evidence: the passage's own sentence
    context.close()
