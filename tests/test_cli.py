"""The `qa` command as a user runs it: real processes, the real model, one-line errors with exit code 2."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import RETALIATION_DOC, SEEDS


QA = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "qa"


@pytest.fixture
def seed_env(tmp_path, seed_index_dir, model_cache):
    """The environment of a `qa` run against a private copy of the seed index (answers without the reader)."""
    folder = tmp_path / "index"
    shutil.copytree(seed_index_dir, folder)
    if (model_cache / "onnx").exists():
        shutil.copytree(model_cache / "onnx", folder / "onnx")
    return {**os.environ, "QA_INDEX_DIR": str(folder), "QA_SEEDS_DIR": str(SEEDS), "QA_READER": "off"}


@pytest.fixture
def cli(seed_env):
    """Run `qa` against a private copy of the seed index; returns (exit code, stdout, stderr)."""
    env = dict(seed_env)

    def run(*args, index_dir=None, **extra_env):
        if index_dir is not None:
            env["QA_INDEX_DIR"] = str(index_dir)
        proc = subprocess.run([sys.executable, "-m", "qa.cli", *args], capture_output=True, text=True,
                              env={**env, **extra_env}, timeout=300)
        return proc.returncode, proc.stdout, proc.stderr

    return run


def _one_line_error(code, err):
    lines = [line for line in err.splitlines() if line.strip() and "Loading weights" not in line]
    return code == 2 and len(lines) == 1 and lines[0].startswith("qa: error:") and "Traceback" not in err


def test_ask_prints_the_answer_and_cited_passages(cli):
    code, out, err = cli("ask", "which countries retaliated?", "-k", "3")
    assert code == 0, err
    assert f"[1] " in out and f"({RETALIATION_DOC}, chars " in out and "China" in out
    # Passage 1's citation line: "[1] …", or "[1, 2] …" when another passage of the article overlaps it.
    header = next(line for line in out.splitlines() if re.match(r"\[1[\],]", line))
    assert RETALIATION_DOC in header and "–" in header


def test_ask_json_gives_exact_citations(cli):
    code, out, _ = cli("ask", "which countries retaliated?", "--json")
    reply = json.loads(out)
    first = reply["passages"][0]
    text = (SEEDS / f"{first['doc_id']}.txt").read_text(encoding="utf-8")
    assert text[first["start"]:first["end"]] == first["text"] and first["rank"] == 1


def test_docs_lists_the_articles(cli):
    code, out, _ = cli("docs")
    assert code == 0 and len(_doc_ids(out)) == 5 and "2025-09-03" in out
    assert out.startswith("5 documents, ") and all("\t1 chunk\t" in line or " chunks\t" in line
                                                   for line in out.splitlines()[1:])


def test_add_then_remove_an_article(cli, tmp_path):
    path = tmp_path / "hockey.txt"
    path.write_text("title: Rink closes\n\nThe Saskatoon rink closed on Monday after the roof leaked.", encoding="utf-8")
    code, out, err = cli("add", str(path))
    assert code == 0 and "1 added" in out, err
    code, out, _ = cli("ask", "why did the rink close?", "-k", "1")
    assert "(hockey, chars" in out
    assert cli("remove", "hockey")[0] == 0
    code, out, _ = cli("ask", "why did the rink close?", "-k", "5")
    assert "(hockey," not in out


@pytest.mark.parametrize("args", [("ask", ""), ("ask", "   "), ("ask", "x" * 2001), ("remove", "no-such-id"),
                                  ("add", "/no/such/file.txt"), ("ask", "q", "-k", "0"), ("ask", "q", "-k", "50"),
                                  ("ask", "\x01\x02\x03"), ("ask", "who went on strike \udcff?"),  # bytes not UTF-8
                                  ("remove", "\udcff"),
                                  ("serve", "--port", "99999"), ("serve", "--host", "nosuch.invalid"),
                                  ("watch", ".", "--debounce", "-5"), ("index", "seeds", "--date", "2025-02-30"),
                                  ("add", "/dev/zero"), ("ask",)])
def test_bad_input_is_one_line_on_stderr_and_exit_code_2(cli, args):
    code, _, err = cli(*args)
    assert _one_line_error(code, err), err


def test_binary_and_non_utf8_files_are_refused(cli, tmp_path):
    binary = tmp_path / "img.txt"
    binary.write_bytes(b"\x00\x01\x02PNG")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    for path, reason in [(binary, "binary"), (latin, "UTF-8")]:
        code, _, err = cli("add", str(path))
        assert _one_line_error(code, err) and reason in err


def test_no_index_yet_says_run_qa_index_first(cli, tmp_path):
    code, _, err = cli("ask", "anything?", index_dir=tmp_path / "empty")
    assert _one_line_error(code, err) and "run `qa index` first" in err


def test_a_mismatched_index_says_to_rebuild(cli):
    code, _, err = cli("ask", "tariffs?", QA_MAX_TOKENS="128")
    assert _one_line_error(code, err) and "--rebuild" in err


def test_index_builds_from_a_folder_and_skips_what_it_cannot_read(cli, tmp_path):
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "a.txt").write_text("Ottawa announced new lumber quotas on Friday.", encoding="utf-8")
    (folder / "b.txt").write_bytes(b"\xff\xfe\x00binary")
    code, out, err = cli("index", str(folder), index_dir=tmp_path / "fresh")
    assert code == 0 and "1 added" in out and "b.txt" in err
    code, out, _ = cli("ask", "lumber quotas", "-k", "1")
    assert "(a, chars" in out


def _doc_ids(out):
    return {line.split("\t")[0] for line in out.splitlines() if "\t" in line}


def test_following_the_rebuild_advice_keeps_every_stored_article(cli, tmp_path):
    path = tmp_path / "hockey.txt"
    path.write_text("title: Rink closes\n\nThe Saskatoon rink closed on Monday after the roof leaked.", encoding="utf-8")
    assert cli("add", str(path))[0] == 0
    code, _, err = cli("ask", "why did the rink close?", QA_MAX_TOKENS="128")
    assert _one_line_error(code, err) and "qa index --rebuild" in err
    code, out, err = cli("index", "--rebuild", QA_MAX_TOKENS="128")
    assert code == 0 and "6 added" in out and "dropped" not in out, err
    code, out, err = cli("docs", QA_MAX_TOKENS="128")  # opens with the new settings: no mismatch left
    assert code == 0 and "hockey" in _doc_ids(out) and len(_doc_ids(out)) == 6, err


def test_index_without_paths_or_an_index_yet_indexes_the_seed_folder(cli, tmp_path):
    for args, folder in [(("index",), tmp_path / "a"), (("index", "--rebuild"), tmp_path / "b")]:
        code, out, err = cli(*args, index_dir=folder)
        assert code == 0 and "5 added" in out, err
        assert _doc_ids(cli("docs")[1]) == {p.stem for p in SEEDS.glob("*.txt")}


def test_replacing_the_articles_with_paths_says_how_many_stored_ones_were_dropped(cli, tmp_path):
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "a.txt").write_text("Ottawa announced new lumber quotas on Friday.", encoding="utf-8")
    shutil.copy(SEEDS / f"{RETALIATION_DOC}.txt", folder)
    code, out, err = cli("index", str(folder), "--rebuild")
    assert code == 0 and "2 added" in out and "4 stored articles dropped" in out, err
    assert _doc_ids(cli("docs")[1]) == {"a", RETALIATION_DOC}


# --- terminal escapes: the CLI's functions in process, over an index whose titles and texts hold escapes ------------
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[31mRed\x1b[0m \x9b2Jtitle\x08\x7f\r\x85\x1bc"
PRINTED = ("\x1b", "\x07", "\x08", "\x7f", "\r", "\x85", "\x9b", "pwned", "[2J", "[31m")


class _HostileIndex:
    """What an index built before control characters were removed at ingest may hold (C1 ones still pass it)."""

    def ask(self, question, k=5):
        from qa.records import Answer, Passage

        passage = Passage(1, "doc-1", f"Ferry {HOSTILE}", "2025-03-03", 0, 0, 40, f"Workers {HOSTILE} struck.", 0.9)
        return Answer(question, f"They struck {HOSTILE} [1]", True, [passage])

    def stats(self):
        return {"documents": 1, "chunks": 1, "model": "m", "precision": "int8", "dim": 4, "vector_index": "flat",
                "path": "index"}

    def documents(self):
        from qa.records import DocumentInfo

        return [DocumentInfo("doc-1", f"Ferry {HOSTILE}", "2025-03-03", f"Post {HOSTILE}", "", 1, 40, "now")]


@pytest.mark.parametrize("argv", [["ask", "why did they strike?"], ["docs"]])
def test_titles_and_texts_are_printed_without_terminal_escapes(monkeypatch, capsys, argv):
    from qa import cli as qa_cli

    monkeypatch.setattr(qa_cli, "_index", lambda settings: _HostileIndex())
    assert qa_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "Ferry Red title" in out and not any(bad in out for bad in PRINTED), repr(out)
    assert "\n" in out and ("\t" in out) == (argv == ["docs"])


def test_a_stray_c1_character_takes_only_itself_off_the_line():
    """Mis-decoded text ("â\\x80\\x98" for a curly quote) holds C1 characters that start an 8-bit OSC or SOS; without
    their terminator they swallowed the rest of the line: the answer's end, its "[1]" and the citation."""
    from qa.cli import terminal_safe

    assert terminal_safe("The budget was \u00e2\x80\x98impossible\x80\x99 and he resigned. [1]") == \
        "The budget was \u00e2impossible and he resigned. [1]"
    assert terminal_safe("[1] Unterminated \x9d title (mayor, chars 0\u201390)") == "[1] Unterminated  title (mayor, chars 0\u201390)"
    assert terminal_safe("flood.\x9b Readers") == "flood. Readers"
    assert terminal_safe("\x9d8;;https://evil\x9cclick\x1b]0;title\x07 ok") == "click ok"  # terminated: whole


@pytest.mark.parametrize("argv", [["ask", "why did they strike?", "--json"], ["docs", "--json"]])
def test_json_output_keeps_the_data_but_no_raw_control_characters(monkeypatch, capsys, argv):
    from qa import cli as qa_cli

    monkeypatch.setattr(qa_cli, "_index", lambda settings: _HostileIndex())
    assert qa_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in "\x1b\x07\x08\x7f\r\x85\x9b")
    data = json.loads(out)
    title = data["passages"][0]["title"] if argv[0] == "ask" else data["documents"][0]["title"]
    assert title == f"Ferry {HOSTILE}"  # the exact data, escaped as JSON


def test_an_error_naming_a_hostile_file_is_printed_without_escapes(tmp_path, capsys):
    from qa import cli as qa_cli

    assert qa_cli.main(["--index-dir", str(tmp_path / "index"), "add", str(tmp_path / "\x1b[2Jgone.txt")]) == 2
    err = capsys.readouterr().err
    assert "gone.txt" in err and "\x1b" not in err


# --- qa index over a folder: .qaignore and the counts it prints (in process, over the fake embedder) ---------------
def test_qa_index_honours_qaignore_and_says_what_it_read(monkeypatch, capsys, tmp_path):
    from conftest import FakeEmbedder
    from qa import cli as qa_cli
    from qa.index import NewsIndex

    monkeypatch.setattr(qa_cli, "_index", lambda settings: NewsIndex(settings, embedder=FakeEmbedder()))
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("Ottawa announced new lumber quotas on Friday.", encoding="utf-8")
    (folder / "b.md").write_text("Ferry workers went on strike on Monday over pay.", encoding="utf-8")
    (folder / "PROVENANCE.md").write_text("Downloaded from example.org on 2025-01-02.", encoding="utf-8")
    (folder / ".qaignore").write_text("# not an article\nPROVENANCE.md\n", encoding="utf-8")
    index_dir = str(tmp_path / "index")
    assert qa_cli.main(["--index-dir", index_dir, "index", str(folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "read 2 articles from 2 files (1 .md, 1 .txt); 1 file ignored by .qaignore"
    assert out[1].startswith("built: 2 added") and len(out) == 2
    (folder / "c.txt").write_text("The harbour reopened on Tuesday.", encoding="utf-8")
    assert qa_cli.main(["--index-dir", index_dir, "index", str(folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("read 3 articles from 3 files") and out[1].startswith("indexed: 1 added, 0 updated, 2 ")
    assert qa_cli.main(["--index-dir", index_dir, "docs"]) == 0
    assert _doc_ids(capsys.readouterr().out) == {"a", "b", "c"}


@pytest.mark.parametrize("has_index", [True, False])
def test_make_index_looks_for_the_index_in_qa_index_dir(tmp_path, has_index):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    work = tmp_path / "checkout"  # no index/ here: only QA_INDEX_DIR can hold it
    work.mkdir()
    shutil.copy(Path(__file__).resolve().parent.parent / "Makefile", work / "Makefile")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "qa").write_text(f"#!/bin/sh\ntouch {tmp_path / 'qa-ran'}\n", encoding="utf-8")
    (fake_bin / "qa").chmod(0o755)
    index_dir = tmp_path / "elsewhere"
    index_dir.mkdir()
    if has_index:
        (index_dir / "CURRENT").write_text("gen-000001\n", encoding="utf-8")
    proc = subprocess.run(["make", "-o", ".venv/.installed", "index", f"BIN={fake_bin}"], cwd=work, text=True,
                          capture_output=True, env={**os.environ, "QA_INDEX_DIR": str(index_dir)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "qa-ran").exists() is not has_index


# --- issue 10: what qa add lists, plural forms, closed pipes, marked answers, qa chat, examples, progress ----------
def _fake_index(monkeypatch):
    """Run the CLI's functions in process over the fake embedder."""
    from conftest import FakeEmbedder
    from qa import cli as qa_cli
    from qa.index import NewsIndex

    monkeypatch.setattr(qa_cli, "_index", lambda settings: NewsIndex(settings, embedder=FakeEmbedder()))
    return qa_cli


def test_qa_add_prints_each_added_or_updated_id_with_its_title(monkeypatch, capsys, tmp_path):
    qa_cli = _fake_index(monkeypatch)
    index_dir = str(tmp_path / "index")
    rink, ferry = tmp_path / "rink.txt", tmp_path / "ferry.md"
    rink.write_text("title: Rink closes\n\nThe Saskatoon rink closed on Monday after the roof leaked.", encoding="utf-8")
    ferry.write_text("title: Ferry strike\n\nFerry workers went on strike on Monday over pay.", encoding="utf-8")
    assert qa_cli.main(["--index-dir", index_dir, "add", str(rink)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "added rink — Rink closes"
    assert out[1].startswith("added: 1 added, 0 updated, 0 unchanged; 1 chunk written, ") and len(out) == 2
    rink.write_text("title: Rink reopens\n\nThe Saskatoon rink reopened on Friday with a new roof.", encoding="utf-8")
    assert qa_cli.main(["--index-dir", index_dir, "add", str(rink), str(ferry)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["added ferry — Ferry strike", "updated rink — Rink reopens"]
    assert out[2].startswith("added: 1 added, 1 updated, 0 unchanged; 2 chunks written") and len(out) == 3
    assert qa_cli.main(["--index-dir", index_dir, "add", str(rink), str(ferry)]) == 0  # nothing new: one line
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("added: 0 added, 0 updated, 2 unchanged; 0 chunks written, 0 embedded")
    assert qa_cli.main(["--index-dir", index_dir, "docs"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 documents, 2 chunks · ") and "rink\t-\t1 chunk\tRink reopens" in out
    assert qa_cli.main(["--index-dir", index_dir, "remove", "rink"]) == 0  # the id printed is the one remove takes
    assert qa_cli.main(["--index-dir", index_dir, "docs"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("1 document, 1 chunk · ")


def test_every_command_closes_the_index_it_opened_whether_it_succeeds_or_fails(monkeypatch, capsys, tmp_path):
    from conftest import FakeEmbedder
    from qa import cli as qa_cli
    from qa.index import NewsIndex

    opened = []

    def index(settings):
        opened.append(NewsIndex(settings, embedder=FakeEmbedder()))
        return qa_cli._opened(opened[-1])

    monkeypatch.setattr(qa_cli, "_index", index)
    article = tmp_path / "rink.txt"
    article.write_text("The Saskatoon rink closed on Monday after the roof leaked.", encoding="utf-8")
    index_dir = str(tmp_path / "index")
    assert qa_cli.main(["--index-dir", index_dir, "add", str(article)]) == 0
    assert qa_cli.main(["--index-dir", index_dir, "ask", "why did the rink close?"]) == 0
    assert qa_cli.main(["--index-dir", index_dir, "remove", "no-such-article"]) == 2  # an error: closed all the same
    capsys.readouterr()
    assert len(opened) == 3 and all(i._live is None and i._remote is None for i in opened)
    assert qa_cli._OPEN == []


@pytest.mark.parametrize("argv", [["docs", "--json"], ["ask", "which countries retaliated?"]])
def test_a_closed_pipe_ends_quietly(seed_env, argv):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before qa writes a byte: every write is a broken pipe
    try:
        proc = subprocess.run([str(QA), *argv], stdout=write, stderr=subprocess.PIPE, text=True, env=seed_env,
                              timeout=300)
    finally:
        os.close(write)
    assert proc.returncode == 0 and "Broken pipe" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "Exception ignored" not in proc.stderr


def test_qa_docs_piped_to_head(seed_env):
    proc = subprocess.run(["bash", "-c", f"'{QA}' docs --json | head -1; exit ${{PIPESTATUS[0]}}"],
                          capture_output=True, text=True, env=seed_env, timeout=300)
    assert proc.returncode == 0 and proc.stdout == "{\n" and proc.stderr == "", proc.stderr


_MARKED_TEXT = f"One a b c. Ferry {HOSTILE}.  Ferry {HOSTILE}. Tail words here to the end."  # escapes in the answer


class _MarkedIndex:
    """One answer whose sentence sits at article offsets 111–127, inside passage 1 (chars 100–150), which also holds
    the same words elsewhere (the marks come from the offsets, not from searching the text)."""

    def ask(self, question, k=5, history=()):
        from qa.records import Answer, AnswerSpan, Passage

        text = _MARKED_TEXT
        start = text.index("Ferry")
        end = start + len(f"Ferry {HOSTILE}.")
        first = Passage(1, "doc-1", "Ferry strike", "2025-03-03", 0, 100, 100 + len(text), text, 0.9,
                        source="Coastal Post")
        second = Passage(2, "doc-2", "Harbour", "", 0, 0, len(text), text, 0.5)
        spans = [AnswerSpan(1, "doc-1", 100 + start, 100 + end)]
        return Answer(question, "Ferry workers struck [1].", True, [first, second], spans)


def test_qa_ask_marks_the_answer_sentences_by_their_offsets(monkeypatch, capsys):
    from qa import cli as qa_cli

    monkeypatch.setattr(qa_cli, "_index", lambda settings: _MarkedIndex())
    assert qa_cli.main(["ask", "why did they strike?"]) == 0
    out = capsys.readouterr().out.splitlines()
    n = len(_MARKED_TEXT)
    assert out[2] == f"[1] Ferry strike — Coastal Post, 2025-03-03 (doc-1, chars 100–{100 + n})"
    assert out[3] == "    One a b c. »Ferry Red title.« Ferry Red title. Tail words here to the end."
    assert out[5] == f"[2] Harbour (doc-2, chars 0–{n})"
    assert out[6] == "    One a b c. Ferry Red title. Ferry Red title. Tail words here to the end."  # no span of its own


_FERRY = "Ferry workers struck on Monday. Talks broke down on Sunday. The union wants more pay. Crossings stopped."


class _OverlappingIndex:
    """Passages 1 and 3 of one article overlap (chars 32–86 and 0–59); passage 2 is another article. The answer
    sentence is in passage 3."""

    def ask(self, question, k=5, history=()):
        from qa.records import Answer, AnswerSpan, Passage

        def part(rank, doc_id, start, end):
            return Passage(rank, doc_id, "Ferry strike", "", rank, start, end, _FERRY[start:end], 1.0 / rank)

        spans = [AnswerSpan(3, "ferry", 0, 31)]
        return Answer(question, "Ferry workers struck on Monday. [3]", True,
                      [part(1, "ferry", 32, 86), part(2, "other", 0, 31), part(3, "ferry", 0, 59)], spans)


def test_qa_ask_prints_overlapping_passages_of_one_article_once_as_the_page_does(monkeypatch, capsys):
    from qa import cli as qa_cli

    monkeypatch.setattr(qa_cli, "_index", lambda settings: _OverlappingIndex())
    assert qa_cli.main(["ask", "when did they strike?"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "[1, 3] Ferry strike (ferry, chars 0–86)"
    assert out[3] == "    »Ferry workers struck on Monday.« Talks broke down on Sunday. The union wants more pay."
    assert out[5] == "[2] Ferry strike (other, chars 0–31)"
    assert len([line for line in out if line.startswith("[")]) == 2


class _WrappedIndex:
    """An answer sentence of hard-wrapped text: its characters hold the article's line break."""

    def ask(self, question, k=5, history=()):
        from qa.records import Answer, AnswerSpan, Passage

        text = "Carney spoke with U.S. President Mr.\nTrump about steel."
        spans = [AnswerSpan(1, "call", 0, len(text))]
        return Answer(question, f"{text} [1]", True, [Passage(1, "call", "Call", "", 0, 0, len(text), text, 1.0)],
                      spans)


def test_qa_ask_prints_an_answer_sentence_of_wrapped_text_on_one_line(monkeypatch, capsys):
    from qa import cli as qa_cli

    monkeypatch.setattr(qa_cli, "_index", lambda settings: _WrappedIndex())
    assert qa_cli.main(["ask", "who did Carney speak with?"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "Carney spoke with U.S. President Mr. Trump about steel. [1]"


def test_qa_ask_on_a_terminal_marks_in_colour_and_prints_no_other_escapes(monkeypatch, capsys):
    from qa import cli as qa_cli

    monkeypatch.setattr(qa_cli, "_index", lambda settings: _MarkedIndex())
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert qa_cli.main(["ask", "why did they strike?"]) == 0
    out = capsys.readouterr().out
    on, off = qa_cli._TTY_MARKS
    assert f"One a b c. {on}Ferry Red title.{off} Ferry" in out and out.count(on) == 1 and "»" not in out
    plain = out.replace(on, "").replace(off, "")
    assert not any(bad in plain for bad in PRINTED), repr(plain)


class _ChatIndex:
    def __init__(self):
        self.calls = []

    def stats(self):
        return {}

    def ask(self, question, k=5, history=()):
        from qa.errors import InvalidInput
        from qa.records import Answer

        self.calls.append((question, [dict(h) for h in history]))
        if question == "bad":
            raise InvalidInput("the question is bad")
        return Answer(question, f"answer to {question}", True, [])


def test_qa_chat_passes_the_earlier_turns_and_goes_on_after_an_error(monkeypatch, capsys):
    import io

    from qa import cli as qa_cli

    index = _ChatIndex()
    monkeypatch.setattr(qa_cli, "_index", lambda settings: index)
    # An empty line is passed over (a pasted text's blank line ended the chat, and the shell ran the rest).
    monkeypatch.setattr(sys, "stdin", io.StringIO("first?\nbad\nsecond?\n/new\n\nthird?\n/quit\nnever asked\n"))
    assert qa_cli.main(["chat", "-k", "2"]) == 0
    captured = capsys.readouterr()
    assert [q for q, _ in index.calls] == ["first?", "bad", "second?", "third?"]  # /quit ended it
    assert index.calls[2][1] == [{"question": "first?", "answer": "answer to first?"}]  # the error is no turn
    assert index.calls[3][1] == []  # /new forgot them
    assert "answer to first?" in captured.out and "answer to third?" in captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("qa: error:")]
    assert errors == ["qa: error: the question is bad"]


def test_qa_chat_through_stdin_answers_each_question(seed_env):
    proc = subprocess.run([str(QA), "chat", "-k", "2"], input="which countries retaliated?\nwhat about China?\n",
                          capture_output=True, text=True, env=seed_env, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    blocks = proc.stdout.split("? ")[1:]
    assert [b.splitlines()[0] for b in blocks] == ["which countries retaliated?", "what about China?"]
    for block in blocks:
        assert "[1] " in block and "(000_0fdd7e176c3271ac, chars " in block and "»" in block


@pytest.mark.parametrize("command", [[], ["index"], ["add"], ["remove"], ["docs"], ["ask"], ["chat"], ["serve"],
                                     ["eval"]])
def test_every_help_has_examples(capsys, command):
    from qa import cli as qa_cli

    with pytest.raises(SystemExit) as stop:
        qa_cli.main([*command, "--help"])
    out = capsys.readouterr().out
    assert stop.value.code == 0 and "\nexamples:\n" in out
    examples = out.split("\nexamples:\n", 1)[1]
    assert (f"qa {command[0]}" if command else "qa ask") in examples


@pytest.mark.parametrize("tty", [True, False])
def test_progress_only_when_stderr_is_a_terminal(monkeypatch, capsys, tmp_path, tty):
    from conftest import FakeEmbedder
    from qa import cli as qa_cli
    from qa.index import NewsIndex

    seen = []

    class Recording(NewsIndex):
        def add(self, articles, *, show_progress=False):
            seen.append(show_progress)
            return super().add(articles, show_progress=show_progress)

        def rebuild(self, articles=None, *, show_progress=False):
            seen.append(show_progress)
            return super().rebuild(articles, show_progress=show_progress)

    monkeypatch.setattr(qa_cli, "_index", lambda settings: Recording(settings, embedder=FakeEmbedder()))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("Ottawa announced new lumber quotas on Friday.", encoding="utf-8")
    extra = tmp_path / "b.txt"
    extra.write_text("Ferry workers went on strike on Monday over pay.", encoding="utf-8")
    index_dir = str(tmp_path / "index")
    for argv in (["index", str(folder)], ["add", str(extra)], ["index", "--rebuild"]):
        assert qa_cli.main(["--index-dir", index_dir, *argv]) == 0
    assert seen and set(seen) == {tty}
    assert capsys.readouterr().err == ""  # the fake embedder draws no bar; nothing else is written


def test_qa_serve_stopped_by_sigterm_first_stores_the_articles_it_accepted(seed_env, cli):
    """SIGTERM (systemd, docker stop, kill) right after two background adds were answered 202: the server finishes
    them before it exits, and says so."""
    import urllib.request

    from test_browser import qa_serve

    folder = Path(seed_env["QA_INDEX_DIR"])
    harbour = " ".join(f"The harbour board voted on item {n} of the budget on Tuesday." for n in range(150))
    with qa_serve(folder, QA_READER="off") as base:
        for n in range(2):
            request = urllib.request.Request(f"{base}/documents?background=1", method="POST",
                                             data=json.dumps({"text": harbour, "doc_id": f"harbour{n}"}).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as reply:
                assert reply.status == 202
    code, out, err = cli("docs", "--json")
    assert code == 0, err
    assert {"harbour0", "harbour1"} <= {d["doc_id"] for d in json.loads(out)["documents"]}
    assert "finishing 2 accepted background write(s)" in (folder.parent / "serve.log").read_text()
