"""Article formats beyond plain text: Markdown stored as readable text (offsets refer to it)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from qa.ingest import markdown_to_text, read_file
from qa.records import Article
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
