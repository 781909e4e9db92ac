"""Reading articles: formats, front matter, stated dates, titles, and clear errors for bad files."""

import json
import re
from pathlib import Path

import pytest

from qa.errors import Conflict, InvalidInput, NotFound, TooLarge, UnsupportedFile
from qa.ingest import collect, derive_title, parse_date, read_file

from conftest import SEEDS

MB = 5 * 1024 * 1024


def test_seed_files_keep_their_text_verbatim_and_their_stem_as_id():
    for path in SEEDS.glob("*.txt"):
        (article,) = read_file(path, max_bytes=MB)
        assert article.doc_id == path.stem
        assert article.text == path.read_text(encoding="utf-8")


def test_a_date_stated_at_the_top_is_read_and_none_is_invented():
    (dated,) = read_file(SEEDS / "002_2a1d74c9607f2477.txt", max_bytes=MB)
    (undated,) = read_file(SEEDS / "000_0fdd7e176c3271ac.txt", max_bytes=MB)
    assert dated.date == "2025-09-03"
    assert undated.date == ""


def test_the_date_option_fills_in_only_where_the_article_states_none(tmp_path):
    (article,) = read_file(SEEDS / "000_0fdd7e176c3271ac.txt", max_bytes=MB, date="2025-08-22")
    assert article.date == "2025-08-22"
    with pytest.raises(InvalidInput, match="YYYY-MM-DD"):
        read_file(SEEDS / "000_0fdd7e176c3271ac.txt", max_bytes=MB, date="next tuesday")


def test_titles_are_the_headline_line_or_the_first_sentence_shortened():
    (headline,) = read_file(SEEDS / "004_ca2423bb0508c6d9.txt", max_bytes=MB)
    assert headline.title == "Is a Canada-US trade deal inching closer?"
    (long_first,) = read_file(SEEDS / "000_0fdd7e176c3271ac.txt", max_bytes=MB)
    assert long_first.title.startswith("Prime Minister Mark Carney announced Friday") and long_first.title.endswith("…")
    assert len(long_first.title) <= 101
    assert derive_title(" date 2025-09-03 Short headline\n\nBody text here.") == "Short headline"


def test_front_matter_sets_fields_and_is_not_part_of_the_text(tmp_path):
    path = tmp_path / "fm.md"
    path.write_text("---\ntitle: Steel tariffs doubled\ndate: 2025-06-04\nsource: CBC\nurl: https://example.org/a\n---\n\n"
                    "Trump doubled tariffs on steel.\n", encoding="utf-8")
    (article,) = read_file(path, max_bytes=MB)
    assert (article.title, article.date, article.source, article.url) == (
        "Steel tariffs doubled", "2025-06-04", "CBC", "https://example.org/a")
    assert article.text == "Trump doubled tariffs on steel."  # Markdown: the text it renders to
    plain = tmp_path / "plain.txt"
    plain.write_text("title: Plain keys\ndate: June 4, 2025\n\nBody.", encoding="utf-8")
    (article,) = read_file(plain, max_bytes=MB)
    assert (article.title, article.date, article.text) == ("Plain keys", "2025-06-04", "Body.")


def test_html_becomes_its_visible_text(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Page title</title><style>p{color:red}</style>"
        "<meta property='article:published_time' content='2025-03-28T10:00:00Z'></head>"
        "<body><script>alert(1)</script><h1>Headline</h1><p>First <b>bold</b> paragraph.</p>"
        "<p>Second paragraph.</p></body></html>", encoding="utf-8")
    (article,) = read_file(path, max_bytes=MB)
    assert article.title == "Headline"  # the page's one headline (trafilatura), over the <title>
    assert article.date == "2025-03-28"
    assert "alert" not in article.text and "color" not in article.text
    assert "First bold paragraph." in article.text and "Second paragraph." in article.text


def test_json_collections_use_their_fields_and_stable_ids(tmp_path):
    records = [
        {"title": "A", "body": "Body A.", "published_at": "2023-11-27T08:45:59+00:00", "source": "Mashable",
         "url": "https://a", "author": "X"},
        {"title": "B", "text": "Body B.", "date": "2023-10-01", "url": "https://b"},
    ]
    path = tmp_path / "corpus.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    first = read_file(path, max_bytes=MB)
    again = read_file(path, max_bytes=MB)
    assert [a.doc_id for a in first] == [a.doc_id for a in again]
    assert first[0].date == "2023-11-27" and first[0].source == "Mashable" and first[0].text == "Body A."
    lines = tmp_path / "more.jsonl"
    lines.write_text("\n".join(json.dumps({"id": f"n{i}", "title": "T", "body": "Text."}) for i in range(3)), encoding="utf-8")
    assert [a.doc_id for a in read_file(lines, max_bytes=MB)] == ["n0", "n1", "n2"]


def test_duplicate_ids_in_a_collection_are_a_clear_error(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text('{"id": "x", "text": "one"}\n{"id": "x", "text": "two"}\n', encoding="utf-8")
    with pytest.raises(Conflict, match="records 0 and 1"):
        read_file(path, max_bytes=MB)


def test_two_files_with_one_stem_clash_unless_ids_come_from_paths(tmp_path):
    for folder in ("business", "sport"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "001.txt").write_text(f"A {folder} story.", encoding="utf-8")
    with pytest.raises(Conflict, match="--ids path"):
        collect([tmp_path], max_bytes=MB)
    assert sorted(a.doc_id for a in collect([tmp_path], max_bytes=MB, ids="path").articles) == ["business-001", "sport-001"]


def test_a_file_reached_twice_is_one_article_not_a_clash(tmp_path, monkeypatch):
    """`qa add a.txt a.txt`, or a folder and a file inside it, was "document id 'a' is claimed by a.txt and a.txt"."""
    (tmp_path / "news").mkdir()
    (tmp_path / "news" / "a.txt").write_text("Ferry workers struck on Monday.", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    found = collect([Path("news/a.txt"), Path("news/a.txt"), tmp_path / "news", Path("news/../news/a.txt")],
                    max_bytes=MB)
    assert [a.doc_id for a in found.articles] == ["a"] and found.files == {".txt": 1}


def test_a_file_named_without_latin_letters_gets_a_stable_id(tmp_path):
    """`東京の地震.txt` was refused: "cannot make a document id". Its id is "doc-" and a hash of its name."""
    (tmp_path / "東京の地震.txt").write_text("An earthquake shook Tokyo on Monday.", encoding="utf-8")
    (tmp_path / "Ελλάδα.txt").write_text("Greece held elections on Sunday.", encoding="utf-8")
    ids = [a.doc_id for a in collect([tmp_path], max_bytes=MB).articles]
    assert ids == [a.doc_id for a in collect([tmp_path], max_bytes=MB).articles]  # the same on every run
    assert len(set(ids)) == 2 and all(re.fullmatch(r"doc-[0-9a-f]{12}", i) for i in ids)


def test_binary_and_non_utf8_files_are_refused_with_the_reason(tmp_path):
    binary = tmp_path / "x.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Price: £5".encode("latin-1"))
    with pytest.raises(UnsupportedFile, match="binary"):
        read_file(binary, max_bytes=MB)
    with pytest.raises(UnsupportedFile, match="not UTF-8.*0xa3"):
        read_file(latin, max_bytes=MB)


def test_bad_files_in_a_folder_are_skipped_and_reported_while_the_rest_is_read(tmp_path):
    (tmp_path / "good.txt").write_text("Fine article.", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "notes.docx").write_bytes(b"PK\x03\x04")  # not a supported type: not read at all
    (tmp_path / "broken.pdf").write_bytes(b"%PDF")
    found = collect([tmp_path], max_bytes=MB)
    assert [a.doc_id for a in found.articles] == ["good"]
    assert len(found.skipped) == 2 and "bad.txt" in found.skipped[0]
    assert "broken.pdf: not a readable PDF" in found.skipped[1]


def test_missing_empty_oversized_and_unknown_files(tmp_path):
    with pytest.raises(NotFound):
        read_file(tmp_path / "nope.txt", max_bytes=MB)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="no text"):
        read_file(empty, max_bytes=MB)
    big = tmp_path / "big.txt"
    big.write_text("word " * 300, encoding="utf-8")
    with pytest.raises(TooLarge):
        read_file(big, max_bytes=1000)
    with pytest.raises(UnsupportedFile, match="unsupported"):
        read_file(SEEDS.parent / "pyproject.toml", max_bytes=MB)


def test_dates_in_common_forms_parse_and_nonsense_does_not():
    assert parse_date("2023-11-27T08:45:59+00:00") == "2023-11-27"
    assert parse_date("March 28, 2025") == "2025-03-28"
    assert parse_date("28 March 2025") == "2025-03-28"
    assert parse_date("Sept. 3, 2025") == parse_date("3 Sept 2025") == "2025-09-03"  # AP style
    assert parse_date("20250903") == "2025-09-03"
    for nonsense in ("soon", "1" * 100):  # Python would read the first eight digits of the run as a date
        with pytest.raises(InvalidInput):
            parse_date(nonsense)


CONTROLS = "\x00\x01\x08\x0b\x0c\x1b\x1f"


def test_nul_and_other_c0_controls_are_removed_at_ingest_and_chunks_stay_exact_slices(fake_index, tmp_path):
    sentences = [f"Sentence {n}{CONTROLS[n % 7:]}\x00 tells of ferry workers who struck over pay on day {n}.\t"
                 for n in range(80)]
    body = "Ferry strike\x00\n\n" + "\n\n".join(" ".join(sentences[i:i + 4]) for i in range(0, 80, 4)) + "\r\n"
    folder = tmp_path / "articles"
    folder.mkdir()
    # NUL after the first 64 KB is not taken for a binary file; in a JSON record it is an escape.
    (folder / "late-nul.txt").write_text("Harbour news. " * 5_000 + "\n\n" + body, encoding="utf-8")
    (folder / "records.jsonl").write_text(json.dumps({"id": "from-json", "title": "T\x00itle", "body": body}) + "\n",
                                          encoding="utf-8")
    fake_index.add_text(body, doc_id="pasted", source="Coastal\x00 Post")
    fake_index.add_paths([folder])
    store = fake_index.live().store
    for doc_id in ("pasted", "late-nul", "from-json"):
        doc = fake_index.document(doc_id)
        for key in ("text", "title", "source"):
            assert not any(c in doc[key] for c in CONTROLS), (doc_id, key)
        assert "\t" in doc["text"] and "\r\n" in doc["text"] and "Sentence 7 tells" in doc["text"]
        spans = store.chunk_spans(doc_id)
        assert len(spans) > 1
        ids = [i for (i,) in store.db.execute("SELECT id FROM chunks WHERE doc_id = ? ORDER BY chunk_no", (doc_id,))]
        texts = store.chunk_texts(ids)
        for chunk_id, (_, start, end) in zip(ids, spans):
            assert texts[chunk_id] == doc["text"][start:end]
    assert fake_index.document("pasted")["source"] == "Coastal Post"
    assert fake_index.document("from-json")["title"] == "Title"
    with pytest.raises(InvalidInput):
        fake_index.add_text("\x00\x01 \x02\n", doc_id="only-controls")


def test_a_folders_qaignore_leaves_out_what_it_lists(tmp_path):
    (tmp_path / ".qaignore").write_text(
        "# notes about the data, not articles\nPROVENANCE.md\n*.csv.json\ndrafts/\n/LICENSE.txt\nnotes/*.md\n"
        "!notes/keep.md\n", encoding="utf-8")
    for rel in ["a.txt", "PROVENANCE.md", "sub/PROVENANCE.md", "rows.csv.json", "drafts/d.txt", "x/drafts/e.txt",
                "LICENSE.txt", "sub/LICENSE.txt", "notes/n.md", "notes/keep.md", ".hidden/h.txt"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"Ottawa announced new lumber quotas on Friday in {rel}.", encoding="utf-8")
    found = collect([tmp_path], max_bytes=MB, ids="path")
    assert sorted(a.doc_id for a in found.articles) == ["a", "notes-keep", "sub-LICENSE"]
    assert found.ignored == 7 and found.files == {".txt": 2, ".md": 1}
    assert found.summary() == "read 3 articles from 3 files (2 .txt, 1 .md); 7 files ignored by .qaignore"
    # A file named directly is read whatever the folder's .qaignore says.
    assert [a.doc_id for a in collect([tmp_path / "PROVENANCE.md"], max_bytes=MB).articles] == ["PROVENANCE"]


def test_json_that_crashed_the_parser_is_a_clear_error_and_the_folder_s_other_files_are_still_read(tmp_path):
    """Nesting past the parser's depth, a lone surrogate escape and an integer of 5,000 digits each aborted a whole
    `qa index` run; now each is one file skipped with its reason."""
    (tmp_path / "good.txt").write_text("Fine article.", encoding="utf-8")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    (tmp_path / "surrogate.json").write_text('[{"body": "Text \\ud800 here."}]', encoding="utf-8")
    (tmp_path / "number.jsonl").write_text('{"body": "Fine."}\n{"body": "x", "id": ' + "9" * 5000 + "}\n",
                                           encoding="utf-8")
    found = collect([tmp_path], max_bytes=MB)
    assert [a.doc_id for a in found.articles] == ["good"]
    reasons = sorted(found.skipped)
    assert "deep.json: not valid JSON (nested too deeply)" in reasons[0]
    assert "number.jsonl: not valid JSON (Exceeds the limit" in reasons[1]
    assert "surrogate.json: record 0 holds a lone surrogate escape" in reasons[2]


def test_json_lines_end_at_newlines_only_and_errors_name_the_line(tmp_path):
    """U+2028, U+2029 and U+0085 may stand unescaped inside a JSON string (``json.dumps(ensure_ascii=False)``)."""
    path = tmp_path / "feed.jsonl"
    records = [{"id": f"a{n}", "body": f"Paragraph one.\u2028Line two\u2029of article {n}.\u0085End."}
               for n in range(3)]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    assert [a.text for a in read_file(path, max_bytes=MB)] == [r["body"] for r in records]
    path.write_text("\n".join(json.dumps(r) for r in records) + '\n\n{"id": "bad", "body": "unterminated}\n',
                    encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"not valid JSON \(Unterminated string starting at: line 5, column 23\)"):
        read_file(path, max_bytes=MB)


def test_a_repeated_front_matter_key_keeps_the_last_value_and_a_long_value_is_read_whole(tmp_path):
    """A repeated key turned front matter off (its lines became the article); a run of 200,000 spaces inside a
    value took minutes to match (a lazy value before ``\\s*$``)."""
    path = tmp_path / "ferry.txt"
    path.write_text("title: Ferry strike\nauthor: Ann\nauthor: Bob\n\nFerry workers walked out.", encoding="utf-8")
    (article,) = read_file(path, max_bytes=MB)
    assert (article.title, article.author, article.text) == ("Ferry strike", "Bob", "Ferry workers walked out.")
    path.write_text("title: Ferry" + " " * 200_000 + "strike\n\nFerry workers walked out.", encoding="utf-8")
    (article,) = read_file(path, max_bytes=MB)
    assert (article.title, article.text) == ("Ferry" + " " * 200_000 + "strike", "Ferry workers walked out.")


def test_a_pdf_that_needs_a_missing_decoder_is_refused_with_the_reason(tmp_path, monkeypatch):
    """AES encryption and JBIG2 images make pypdf raise DependencyError, which is not one of its PdfErrors: a
    traceback from `qa add`, and a whole folder's run aborted."""
    import pypdf
    from pypdf.errors import DependencyError

    def needs_cryptography(*_args, **_kwargs):
        raise DependencyError("cryptography>=3.1 is required for AES algorithm")

    monkeypatch.setattr(pypdf, "PdfReader", needs_cryptography)
    (tmp_path / "aes.pdf").write_bytes(b"%PDF-1.7")
    with pytest.raises(UnsupportedFile, match="aes.pdf: this PDF needs a decoder that is not installed"):
        read_file(tmp_path / "aes.pdf", max_bytes=MB)


def test_a_qaignore_line_that_is_no_pattern_is_a_clear_error(tmp_path):
    (tmp_path / ".qaignore").write_text("drafts/\n[z-a].txt\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("Ottawa announced new lumber quotas.", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"\.qaignore: the line '\[z-a\]\.txt' is not a valid pattern"):
        collect([tmp_path], max_bytes=MB)


def test_a_qaignore_pattern_with_many_stars_matches_long_names_at_once(tmp_path):
    """``*a*a*a*a*a*a*b`` tried every split of a name: seconds for 80 characters, ages for 300."""
    (tmp_path / ".qaignore").write_text("*a*a*a*a*a*a*b\n", encoding="utf-8")
    (tmp_path / ("a" * 200 + ".txt")).write_text("Ottawa announced new lumber quotas.", encoding="utf-8")
    (tmp_path / ("a" * 200 + "b")).mkdir()
    (tmp_path / ("a" * 200 + "b") / "x.txt").write_text("Ignored with its folder.", encoding="utf-8")
    found = collect([tmp_path], max_bytes=MB)
    assert [Path(a.path).name for a in found.articles] == ["a" * 200 + ".txt"] and found.ignored == 1


def test_a_file_name_that_is_not_utf8_is_skipped_in_a_folder_and_refused_when_named(tmp_path):
    """Such a name failed only when stored with the article, losing every other file of the batch."""
    import os

    (tmp_path / "ferry.txt").write_text("Ferry workers struck on Monday.", encoding="utf-8")
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.txt"))
    odd.write_text("Cafe news.", encoding="utf-8")
    found = collect([tmp_path], max_bytes=MB)
    assert [a.doc_id for a in found.articles] == ["ferry"]
    assert len(found.skipped) == 1 and "caf\ufffd.txt: the file name is not UTF-8" in found.skipped[0]
    with pytest.raises(InvalidInput, match="the file name is not UTF-8"):
        read_file(odd, max_bytes=MB)
