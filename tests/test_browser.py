"""The chat and articles pages in real headless Chromium against `qa serve` running as a separate process.

Skips with a reason when Chromium is absent, except in CI (the CI variable set), where it fails instead:
.ci/run installs Chromium, so a skip there would hide a broken browser test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, RETALIATION_DOC, SEEDS

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run"]
SCREENSHOT = REPO / "docs" / "chat.png"
WAIT_MS = 120_000


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser test: .ci/run installs Chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium from the system (never a downloaded build)."""
    if not CHROMIUM.exists():
        _unavailable(f"no Chromium at {CHROMIUM}: `apt-get install chromium` to run the browser test")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed: `pip install -e '.[test]'`")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, seed_index_dir, model_cache):
    """`qa serve` on a free loopback port over a private copy of the seed index; yields its base URL."""
    folder = tmp_path_factory.mktemp("served") / "index"
    shutil.copytree(seed_index_dir, folder)
    if (model_cache / "onnx").exists():
        shutil.copytree(model_cache / "onnx", folder / "onnx")
    port = _free_port()
    env = {**os.environ, "QA_INDEX_DIR": str(folder), "QA_SEEDS_DIR": str(SEEDS), "HF_HUB_OFFLINE": "1"}
    env.pop("QA_API_TOKEN", None)
    log_path = folder.parent / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "qa.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"qa serve exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"qa serve did not answer /health in 300 s:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.25)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.dialogs = []

    def answer(dialog):
        # The delete button's confirm() is answered yes; anything else (an alert() would mean script ran) no.
        page.dialogs.append((dialog.type, dialog.message))
        dialog.accept() if dialog.type == "confirm" else dialog.dismiss()

    page.on("dialog", answer)
    yield page
    context.close()


def ask(page, question: str) -> str:
    """Type a question the way a person does (the field has focus, Enter sends) and wait for the new turn."""
    turns = page.locator("article.turn").count()
    field = page.locator("#question")
    field.fill(question)
    field.press("Enter")
    page.locator("article.turn").nth(turns).wait_for()
    return f"#{page.locator('article.turn').nth(turns).get_attribute('id')}"


def add_article(page, server: str, *, title: str, text: str, date: str = "", source: str = "") -> str:
    """Add an article through the articles page's form; returns its document id from the list."""
    page.goto(f"{server}/documents")
    page.get_by_label("Title").fill(title)
    if date:
        page.get_by_label("Date").fill(date)
    if source:
        page.get_by_label("Source").fill(source)
    page.get_by_label("Text").fill(text)
    page.get_by_role("button", name="Add article").click()
    notice = page.locator(".notice.ok")
    notice.wait_for()
    assert "Added" in notice.inner_text()
    return page.locator(".notice.ok a").get_attribute("href").rsplit("/", 1)[1]


def test_a_question_is_answered_with_a_cited_passage_that_leads_to_the_article(page, server):
    page.goto(server)
    assert page.evaluate("document.activeElement.id") == "question"
    assert page.get_by_label("Your question").is_visible()
    turn = ask(page, "which countries retaliated?")
    markers = page.locator(f"{turn} .answer a.cite")
    assert markers.count() >= 1
    cited = [page.locator(markers.nth(i).get_attribute("href")) for i in range(markers.count())]
    assert any("China" in card.locator("blockquote").text_content() for card in cited)
    first = page.locator(f"{turn} li.card").first
    assert first.get_attribute("data-doc-id") == RETALIATION_DOC and "China" in first.text_content()

    page.evaluate("window.scrollTo(0, 0)")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))

    markers.first.click()
    target = markers.first.get_attribute("href")
    assert page.evaluate("location.hash") == target
    assert page.evaluate("document.querySelector(':target').id") == target[1:]

    passage = first.locator("blockquote").text_content()
    first.get_by_role("link", name="Show in the article").click()
    page.wait_for_url(f"**/documents/{RETALIATION_DOC}?*#passage")
    highlighted = page.locator("mark.passage")
    assert highlighted.first.is_visible()
    assert "".join(highlighted.all_text_contents()) == passage
    top = page.evaluate("document.getElementById('passage').getBoundingClientRect().top")
    assert 0 <= top < page.viewport_size["height"]


def test_an_article_added_through_the_form_is_cited_and_a_follow_up_keeps_the_conversation(page, server):
    doc_id = add_article(page, server, title="Zorblax bans scooters", date="2025-02-11", source="Harbour Times", text=(
        "Zorblax city council voted on Tuesday to ban electric scooters from the old harbour district.\n\n"
        "The mayor, Ingrid Falkvang, said the ban takes effect on 1 March and that riders will face fines of 80 "
        "euros.\n\nScooter rental companies called the decision short-sighted and said they would appeal."))
    page.get_by_role("link", name="Ask").first.click()
    first = ask(page, "Why did Zorblax ban electric scooters?")
    assert page.locator(f"{first} li.card").first.get_attribute("data-doc-id") == doc_id
    assert page.locator(f"{first} li.card").first.locator("time").text_content() == "2025-02-11"

    with page.expect_request(lambda r: r.url.endswith("/ask?partial=1") and r.method == "POST") as sent:
        second = ask(page, "When does it take effect?")
    assert "history_question=Why+did+Zorblax+ban+electric+scooters%3F" in sent.value.post_data
    assert page.locator("article.turn").count() == 2 and page.locator(first).is_visible()
    cited = [page.locator(f"{second} .answer a.cite").nth(i).get_attribute("href")
             for i in range(page.locator(f"{second} .answer a.cite").count())]
    ours = [href for href in cited if page.locator(href).get_attribute("data-doc-id") == doc_id]
    assert ours and "takes effect on 1 March" in page.locator(ours[0]).locator("blockquote").text_content()

    page.goto(f"{server}/documents")
    page.locator(f"tr#doc-{doc_id}").get_by_role("button", name="Delete").click()
    page.locator(".notice.ok").wait_for()
    assert f"Deleted {doc_id}" in page.locator(".notice.ok").inner_text()
    assert page.dialogs == [("confirm", "Delete “Zorblax bans scooters” from the index?")]
    assert page.locator(f"tr#doc-{doc_id}").count() == 0


def test_the_chat_works_without_javascript(browser, server):
    context = browser.new_context(java_script_enabled=False)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    try:
        page.goto(server)
        page.get_by_label("Your question").fill("What tariffs did the U.S. put on steel?")
        page.get_by_role("button", name="Ask").click()
        page.wait_for_url("**/ask#latest")
        page.locator("#turn-1 li.card").first.wait_for()
        page.get_by_label("Ask a follow-up or a new question").fill("And what did the steel industry say about it?")
        page.get_by_role("button", name="Ask").click()
        page.locator("#turn-2").wait_for()
        assert "put on steel?" in page.locator("#turn-1 .question").text_content()
        assert "Steel Producers" in page.locator("#turn-2").text_content()
    finally:
        context.close()


def test_article_markup_is_shown_as_text_and_never_runs(page, server):
    title = '<script>alert("title")</script> Quillfeather ferry strike'
    doc_id = add_article(page, server, title=title, text=(
        "Quillfeather ferry workers went on strike on Monday over pay. <script>alert('text')</script>\n\n"
        "The union posted <img src=x onerror=alert(1)> on its website and said the strike would last a week."))
    assert page.get_by_role("link", name=title).is_visible()
    page.goto(f"{server}/documents/{doc_id}")
    assert page.locator("h1").text_content() == title
    assert "<img src=x onerror=alert(1)>" in page.locator(".article-text").text_content()
    assert page.locator(".article-text img, .article-text script").count() == 0
    page.goto(server)
    turn = ask(page, "Why did the Quillfeather ferry workers strike?")
    assert title in page.locator(f"{turn} li.card").first.text_content()
    assert page.locator("article.turn script, article.turn img").count() == 0
    assert page.dialogs == []


def test_the_pages_fit_a_phone_screen(browser, server):
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    try:
        page.goto(server)
        ask(page, "which countries retaliated?")
        for url in (None, f"{server}/documents", f"{server}/documents/{RETALIATION_DOC}"):
            if url:
                page.goto(url)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), url
    finally:
        context.close()
