"""The chat and articles pages in real headless Chromium against `qa serve` running as a separate process.

Skips with a reason when Chromium is absent, except in CI (the CI variable set), where it fails instead:
.ci/run installs Chromium, so a skip there would hide a broken browser test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import REPO, RETALIATION_DOC, SEEDS, free_port

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


@contextmanager
def qa_serve(folder: Path, **env_extra: str) -> Iterator[str]:
    """`qa serve` on a free loopback port over the index in ``folder`` (environment ``env_extra`` added, no API
    token); yields its base URL once /health answers, and stops it after."""
    port = free_port()
    env = {**os.environ, "QA_INDEX_DIR": str(folder), "QA_SEEDS_DIR": str(SEEDS), "HF_HUB_OFFLINE": "1", **env_extra}
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


@pytest.fixture(scope="module")
def server(tmp_path_factory, seed_index_dir, model_cache):
    """`qa serve` on a free loopback port over a private copy of the seed index; yields its base URL."""
    folder = tmp_path_factory.mktemp("served") / "index"
    shutil.copytree(seed_index_dir, folder)
    if (model_cache / "onnx").exists():
        shutil.copytree(model_cache / "onnx", folder / "onnx")
    with qa_serve(folder) as base:
        yield base


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


# --- issue 10: feedback where the eye is, a conversation that lasts, focus clear of the input bar, axe ------------
AXE_DIR = REPO / "tests" / ".axe"
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
STORE_KEY = "newsqa-conversation:/"  # the chat page's; each page keeps its own


@pytest.fixture(scope="module")
def axe_source() -> str:
    """axe-core from the npm registry, installed into tests/.axe (git-ignored) when it is not there yet."""
    if not AXE_JS.exists():
        npm = shutil.which("npm")
        if npm is None:
            _unavailable("npm is missing: `apt-get install npm` (or `npm install --prefix tests/.axe axe-core@4`)")
        AXE_DIR.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([npm, "install", "--prefix", str(AXE_DIR), "--no-audit", "--no-fund", "axe-core@4"],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or not AXE_JS.exists():
            _unavailable(f"npm could not install axe-core: {done.stderr[-500:]}")
    return AXE_JS.read_text(encoding="utf-8")


def axe_violations(page, axe_source: str) -> list[str]:
    """axe-core's violations on the page as it is now (the script is evaluated by the test, so the page's CSP
    does not stop it)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source)
    found = page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ["violations"]});
        return result.violations.map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' +
            v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '));
    }""")
    return found


def in_viewport(page, selector: str) -> bool:
    box = page.evaluate(f"(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();"
                        "return [r.top, r.bottom, r.height]; })()")
    return box[2] > 0 and box[0] >= 0 and box[1] <= page.viewport_size["height"]


def focus_stays_clear_of_the_bar(page, presses: int = 80) -> int:
    """Tab through the page from the top: no focused element outside the input bar is hidden under it.
    Returns how many elements outside the bar took focus."""
    page.evaluate("window.scrollTo(0, 0); document.activeElement && document.activeElement.blur()")
    seen = 0
    for _ in range(presses):
        page.keyboard.press("Tab")
        where = page.evaluate("""() => {
            const el = document.activeElement, bar = document.getElementById('ask');
            if (!el || el === document.body) return null;
            const r = el.getBoundingClientRect(), b = bar.getBoundingClientRect();
            return {inBar: bar.contains(el), top: r.top, bottom: r.bottom, barTop: b.top,
                    what: el.tagName + '#' + el.id + '.' + el.className + ' ' + (el.textContent || '').slice(0, 40)};
        }""")
        if where is None or where["inBar"]:
            continue
        seen += 1
        assert where["bottom"] <= where["barTop"] + 1 and where["top"] >= 0, where
    return seen


def test_feedback_conversation_focus_and_accessibility(browser, server, axe_source):
    """Desktop and phone: three turns, then an over-long question: the refusal shows next to the field without
    scrolling, and the question is not cut; the button says it is working while a request runs; Back from an
    article and a reload bring the conversation back; Tab never puts focus under the input bar; axe finds no
    violations on the chat page with answers, the articles page and an article page."""
    kept = None
    for name, viewport in VIEWPORTS.items():
        # The phone reads the pages in dark mode (prefers-color-scheme), so axe checks its contrast too.
        context = browser.new_context(viewport=viewport, is_mobile=name == "phone", has_touch=name == "phone",
                                      color_scheme="dark" if name == "phone" else "light")
        context.set_default_timeout(WAIT_MS)
        if kept:  # the phone starts from the desktop's three turns, as a reload would restore them
            context.add_init_script(f"if (!sessionStorage.getItem({STORE_KEY!r})) "
                                    f"sessionStorage.setItem({STORE_KEY!r}, {json.dumps(kept)});")
        page = context.new_page()
        try:
            page.goto(server)
            if not kept:
                assert page.locator("#new-conversation").is_hidden()
                # The second is answered by no article: its weak matches are on the page axe checks.
                for question in ("which countries retaliated?", "who won the 2024 Super Bowl?",
                                 "What tariffs did the U.S. put on steel?"):
                    ask(page, question)
                kept = page.evaluate(f"sessionStorage.getItem({STORE_KEY!r})")
                # Working: the button is disabled and says so from the moment the question is sent.
                state = page.evaluate("""() => {
                    document.getElementById('question').value = 'Why did China retaliate?';
                    document.getElementById('ask').requestSubmit();
                    const b = document.getElementById('ask-button');
                    return [b.disabled, b.textContent, document.getElementById('ask-status').textContent];
                }""")
                assert state[0] and "Working" in state[1] and state[2], state
                page.locator("article.turn").nth(3).wait_for()
                assert page.locator("#ask-button").is_enabled()
            turns = page.locator("article.turn").count()
            assert turns >= 3, name
            assert page.locator("#new-conversation").is_visible()

            pasted = ("The ministry said in a statement that " * 80)[:3000]
            page.locator("#question").fill(pasted)
            page.locator("#question").press("Enter")
            error = page.locator("#ask-error")
            error.wait_for()
            assert "3,000 characters" in error.inner_text() or "2,999 characters" in error.inner_text()
            assert in_viewport(page, "#ask-error"), name
            assert len(page.locator("#question").input_value()) == 3000, "the paste was cut"
            assert page.locator("article.turn").count() == turns
            page.locator("#question").fill("")

            # Cards: cited ones open, the whole passage one <details> away, the rest under "More passages".
            card = page.locator("article.turn").first.locator("li.card").first
            assert card.locator(".excerpt mark").count() >= 1 and card.locator("button.copy").is_visible()
            assert not card.locator("blockquote").is_visible()
            assert page.locator("article.turn").nth(1).locator("li.card.weak").first.is_visible()
            if name == "desktop":  # Copy citation: title, outlet, date, the quoted answer sentence, the link
                context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
                card.locator("button.copy").click()
                page.get_by_role("status").filter(has_text="Citation copied").wait_for()
                copied = page.evaluate("navigator.clipboard.readText()")
                title = card.locator("a.title").inner_text()
                assert copied.startswith("“") and title in copied and card.locator(".excerpt mark").first.inner_text() \
                    in copied and f"{server}/documents/" in copied, copied

            seen = focus_stays_clear_of_the_bar(page)
            assert seen > 10, name

            assert axe_violations(page, axe_source) == [], f"chat page ({name})"
            link = page.locator("article.turn").last.locator("a.open").first
            link.scroll_into_view_if_needed()
            link.click()
            page.wait_for_url("**/documents/**")
            assert axe_violations(page, axe_source) == [], f"article page ({name})"
            page.go_back()
            page.locator("article.turn").nth(turns - 1).wait_for()
            assert page.locator("article.turn").count() == turns, "Back lost the conversation"
            page.reload()
            page.locator("article.turn").nth(turns - 1).wait_for()
            assert page.locator("article.turn").count() == turns, "a reload lost the conversation"
            assert page.locator("#question").get_attribute("aria-describedby")
            if name == "desktop":
                page.goto(f"{server}/documents")
                assert axe_violations(page, axe_source) == [], "articles page"
                page.goto(server)
                page.locator("#new-conversation").click()
                assert page.locator("article.turn").count() == 0
                page.reload()
                assert page.locator("article.turn").count() == 0
        finally:
            context.close()


def test_without_javascript_new_conversation_is_a_visible_button(browser, server):
    context = browser.new_context(java_script_enabled=False, viewport=VIEWPORTS["phone"])
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    try:
        page.goto(f"{server}/ask?q=which+countries+retaliated%3F")
        assert page.get_by_role("link", name="New conversation").is_visible()
        page.get_by_role("link", name="New conversation").click()
        page.wait_for_url(f"{server}/")
        assert page.locator("article.turn").count() == 0
    finally:
        context.close()


def test_an_article_pasted_on_the_articles_page_is_added_as_a_background_job_with_progress(page, server):
    page.goto(f"{server}/documents")
    # What the page showed while the job ran, recorded as it changed (the job may end in a moment).
    page.evaluate("""() => {
        window.seen = [];
        new MutationObserver(() => {
            const detail = document.querySelector("#add-detail");
            const button = document.querySelector("form.add button[type=submit]");
            if (detail) window.seen.push([detail.textContent, button.disabled, !detail.parentNode.hidden,
                                         !!document.querySelector("#add-progress")]);
        }).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
    }""")
    page.get_by_label("Title").fill("Quillmoor library reopens")
    page.get_by_label("Text").fill(
        "The Quillmoor public library reopened on Saturday after a two-year renovation that cost 4 million euros.\n\n"
        "The head librarian, Oskar Venn, said the new reading room seats two hundred people.")
    with page.expect_request(lambda r: r.url.endswith("/documents?background=1") and r.method == "POST"):
        with page.expect_response(lambda r: "/jobs/" in r.url and r.status == 200):
            page.get_by_role("button", name="Add article").click()
    notice = page.locator(".notice.ok")
    notice.wait_for()
    assert "Added “Quillmoor library reopens”" in notice.inner_text()
    # Focus is on the message (it fell to the page): the keyboard goes on from there, screen readers read it.
    assert page.evaluate("document.activeElement.classList.contains('notice')")
    assert page.locator("#add-progress").is_visible() and page.locator("#add-detail").inner_text() == "Done."
    seen = page.evaluate("window.seen")
    assert any(text.endswith("…") and disabled and shown and bar for text, disabled, shown, bar in seen), seen
    assert page.get_by_role("button", name="Add article").is_enabled()
    assert page.get_by_label("Text").input_value() == ""  # the form is cleared for the next article
    doc_id = page.locator(".notice.ok a").get_attribute("href").rsplit("/", 1)[1]
    assert page.locator(f"tr#doc-{doc_id}").count() == 1  # the list shows it without a reload
    assert "added=" in page.url  # a reload shows the message again and adds nothing
    page.reload()
    assert "Added “Quillmoor library reopens”" in page.locator(".notice.ok").inner_text()

    page.get_by_role("button", name="Rebuild index").click()
    page.locator(".notice.ok", has_text="Rebuilt the index").wait_for()
    assert page.locator("#rebuild-progress").is_visible() and page.locator("#rebuild-detail").inner_text() == "Done."
    assert page.locator(f"tr#doc-{doc_id}").count() == 1


def test_the_filter_row_narrows_answers_and_an_answer_link_reproduces_it(page, server):
    doc_id = add_article(page, server, title="Quokka ferry strike", date="2025-03-03", source="Quokka Courier", text=(
        "Ferry workers on Quokka Island went on strike on Monday over pay and night shifts.\n\n"
        "The union said crossings to the mainland would stop until the operator raised wages."))
    try:
        page.goto(server)
        page.locator("details#filters summary").click()
        page.get_by_label("Outlet").select_option("Quokka Courier")
        page.get_by_label("From").fill("2025-03-01")
        turn = ask(page, "Why did the ferry workers strike?")
        cards = page.locator(f"{turn} li.card")
        assert cards.count() >= 1
        assert {cards.nth(i).get_attribute("data-doc-id") for i in range(cards.count())} == {doc_id}
        assert page.locator(f"{turn} .scope-note").inner_text() == \
            "Only articles from Quokka Courier, dated 2025-03-01 or later."
        answer = page.locator(f"{turn} .answer").inner_text()
        page.locator(f"{turn} a.permalink").click()
        page.wait_for_url("**/ask?*")
        assert page.locator("article.turn").count() == 1
        assert page.locator("article.turn .answer").inner_text() == answer
        assert page.get_by_label("Outlet").input_value() == "Quokka Courier"
    finally:
        page.goto(f"{server}/documents")
        page.locator(f"tr#doc-{doc_id}").get_by_role("button", name="Delete").click()
        page.locator(".notice.ok").wait_for()


def test_an_earlier_turns_link_and_a_reload_keep_every_conversation(page, server):
    """Following the link of an earlier turn in the same tab replaced the conversation it came from (Back showed
    one turn), and a reload on a link's page dropped the follow-ups asked there: each page keeps its own."""
    page.goto(server)
    for question in ("which countries retaliated?", "What tariffs did the U.S. put on steel?",
                     "What did the Steel Producers Association say?"):
        ask(page, question)
    page.locator("article.turn").first.locator("a.permalink").click()
    page.wait_for_url("**/ask?**")
    assert page.locator("article.turn").count() == 1
    ask(page, "Why did China retaliate?")
    page.reload()
    assert page.locator("article.turn").count() == 2  # the link's answer and the follow-up asked on its page
    page.go_back()
    page.locator("article.turn").nth(2).wait_for()
    assert page.locator("article.turn").count() == 3  # the chat page's conversation, whole


def test_a_server_that_stops_answering_is_said_and_the_form_works_again(page, server):
    """A server that sends nothing (paused, overloaded) left "Searching the articles…" and a disabled button for
    ever. After 90 quiet seconds (the page's clock run forward) the page says so and the question can be sent
    again."""
    page.clock.install()
    page.goto(server)
    page.route("**/ask?partial=1", lambda route: None)  # the request is never answered
    page.locator("#question").fill("which countries retaliated?")
    page.locator("#question").press("Enter")
    assert page.locator("#ask-button").is_disabled()
    page.clock.run_for(91_000)
    error = page.locator("#ask-error")
    error.wait_for(state="visible")
    assert "sent nothing for 90 seconds" in error.text_content()
    assert page.locator("#ask-button").is_enabled() and page.locator("#question").input_value()
