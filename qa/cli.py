"""The `qa` command: a thin layer over NewsIndex. Errors are one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sys
import textwrap
from dataclasses import fields
from pathlib import Path

from .errors import InvalidInput, QAError
from .records import merge_passages, page_label
from .settings import Settings, host_name, whole_number


# What a terminal would act on rather than show: escape sequences (CSI, OSC, DCS and the like, 7- and 8-bit), then
# any other C0 control character but tab and newline, DEL and C1. Titles and texts come from articles anyone wrote.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"              # CSI: colours, cursor moves, screen clears
    r"|\x1b[\]PX^_][^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)"  # OSC (window title, hyperlink), DCS, SOS, PM, APC
    r"|\x1b[ -/]*[0-~]?"                      # the other ESC sequences
    r"|\x9b[0-?]*[@-~]"                       # 8-bit CSI; a lone U+009B is dropped as a control, and the text
                                              # after it kept ("flood.\x9b Readers" lost " R")
    # 8-bit OSC, DCS, SOS, PM, APC with their terminator; without one (mis-decoded text: "â\x80\x98" for a
    # curly quote) only the control itself goes, not the rest of the line with the answer's markers.
    r"|[\x9d\x90\x98\x9e\x9f][^\x07\x1b\x9c\n]*(?:\x07|\x9c)"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_RAW_IN_JSON = re.compile(r"[\x7f-\x9f\u2028\u2029]")  # what json.dumps(ensure_ascii=False) leaves raw


def terminal_safe(text: str) -> str:
    """``text`` as a terminal may print it: escape sequences and control characters removed (not \\n, \\t)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def _show(*values, file=None) -> None:
    """print(), for text that may hold what an article's author put there."""
    print(terminal_safe(" ".join(map(str, values))), file=file)


def _show_json(data) -> None:
    """JSON with the data unchanged: characters a terminal acts on are written as \\u escapes."""
    text = json.dumps(data, ensure_ascii=False, indent=2)
    print(_RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def _plural(n: int, word: str, plural: str = "") -> str:
    """'1 chunk', '2 chunks', '0 chunks'."""
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _quiet_stdout() -> None:
    """After a reader closed the pipe (``qa docs | head -1``): point stdout at devnull, so the flush at exit has
    nowhere to fail (what Python's documentation on SIGPIPE recommends)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


_OPEN: list = []  # the indexes this command opened, closed by main() however the command ends


def _index(settings: Settings):
    from .index import NewsIndex

    return _opened(NewsIndex(settings))


def _opened(index):
    """``index``, closed when the command ends (its database connections released, not left to the process exit:
    ``qa`` also runs in process, from tests and ``python -m``)."""
    _OPEN.append(index)
    return index


def _close_opened() -> None:
    while _OPEN:
        index = _OPEN.pop()
        try:
            index.close()
        except Exception:  # noqa: BLE001  closing must never hide the command's own outcome
            pass


def _report(report, verb: str) -> None:
    _show(
        f"{verb}: {len(report.added)} added, {len(report.updated)} updated, {len(report.unchanged)} unchanged; "
        f"{_plural(report.chunks, 'chunk')} written, {report.embedded} embedded in {report.seconds:.1f} s"
    )
    for reason in report.skipped:
        _show(f"skipped {reason}", file=sys.stderr)


def cmd_index(args, settings: Settings) -> None:
    """Index articles (default: the seed folder): adds new and changed ones, or builds the index if there is none.

    --rebuild without paths rebuilds the index from the articles it holds (what an index built with other
    settings needs); with paths it replaces the stored articles with those and says how many it dropped.

    --ray reads, chunks and embeds on a Ray cluster (a local one without ADDRESS) and writes here in batches,
    skipping before any embedding the articles stored unchanged: a re-run after a crash redoes only what is
    missing."""
    from .ingest import collect

    if args.ray is not None and (args.rebuild or args.sync):
        raise InvalidInput("--ray adds new and changed articles; it does not --rebuild or --sync")
    if args.ray is None and args.workers is not None:
        raise InvalidInput("--workers is for --ray")
    index = _index(settings)
    progress = sys.stderr.isatty()
    if args.rebuild and not args.paths and index.exists():
        # The articles stored, not the seed folder: this is what the settings-mismatch error tells users to run,
        # and rebuilding from seeds/ would delete everything added since.
        _report(index.rebuild(show_progress=progress), "rebuilt")
        return
    paths = [Path(p) for p in args.paths] or [settings.seeds_dir]
    if args.ray is not None:
        try:
            from .ingest_ray import index_with_ray
        except ImportError as e:
            raise InvalidInput(f"--ray needs Ray: pip install 'newsqa[ray]' ({e})") from None

        found, read, report = index_with_ray(index, paths, address=None if args.ray == "local" else args.ray,
                                             workers=args.workers, date=args.date or "", ids=args.ids,
                                             show_progress=progress)
        _show(found.summary(read))
        _report(report, "built" if report.created else "indexed")
        return
    if args.sync:
        if args.rebuild:
            raise InvalidInput("--sync is for adding: --rebuild with paths already drops the articles not in them")
        if index.exists():
            from .sync import sync

            found, report, removed = sync(index, paths, date=args.date or "", ids=args.ids, show_progress=progress)
            _show(found.summary())
            _report(report, "indexed")
            for doc_id in removed:
                _show(f"removed {shlex.quote(doc_id)} (its file is gone)")
            _show(f"{_plural(len(removed), 'article')} removed")
            return
        paths = [p.resolve() for p in paths]  # stored paths that name their files from anywhere, for later syncs
    found = collect(paths, max_bytes=settings.max_article_bytes, date=args.date or "", ids=args.ids)
    _show(found.summary())  # what was read, so a stray file (or one a .qaignore should list) shows in the counts
    if args.rebuild:
        replacing = index.exists()
        report = index.rebuild(found.articles, show_progress=progress)
        report.skipped = found.skipped
        _report(report, "built")
        if replacing:
            _show(f"{_plural(len(report.dropped), 'stored article')} dropped (not in {', '.join(map(str, paths))})")
    else:
        # An add builds the index when there is none, deciding so under the write locks: two `qa index` runs
        # into an empty folder at once both keep their articles.
        report = index.add(found.articles, show_progress=progress)
        report.skipped = found.skipped
        _report(report, "built" if report.created else "indexed")


def cmd_add(args, settings: Settings) -> None:
    """Add article files (.txt, .md, .html, .pdf, .json, .jsonl); they are answerable at once."""
    index = _index(settings)
    report = index.add_paths([Path(p) for p in args.files], date=args.date or "", ids="stem",
                             show_progress=sys.stderr.isatty())
    # Each new or changed article by the id `qa remove` takes; the unchanged ones are the summary's count.
    changed = set(report.added) | set(report.updated)
    titles = {d.doc_id: d.title for d in index.documents() if d.doc_id in changed} if changed else {}
    for verb, ids in (("added", report.added), ("updated", report.updated)):
        for doc_id in ids:
            title = titles.get(doc_id, "")
            _show(f"{verb} {shlex.quote(doc_id)}{' — ' + title if title else ''}")
    for note in report.notes:
        _show(f"note: {note}")
    _report(report, "added")


def cmd_remove(args, settings: Settings) -> None:
    """Remove an article by its document id."""
    _index(settings).remove(args.doc_id)
    _show(f"removed {args.doc_id}")


def cmd_doctor(args, settings: Settings) -> None:
    """Check the index and repair what can be repaired.

    Checks the current generation's database (SQLite's quick_check) and that SQLite, the BM25 table and the vector
    cache hold the same chunks. A stale or missing vector cache is rebuilt from SQLite; a damaged database is read
    article by article and the index rebuilt from the articles it could recover (it says how many). Exit code 0
    when the index was sound or is repaired."""
    report = _index(settings).doctor(show_progress=sys.stderr.isatty())
    if args.json:
        _show_json(report)
        return
    for problem in report["problems"]:
        _show(f"problem: {problem}")
    if report["recovered"] is not None:
        _show(f"recovered {_plural(report['recovered'], 'article')}"
              + (f"; {_plural(report['lost'], 'damaged row')} lost (add those articles again)" if report["lost"]
                 else ""))
    for done in report["repaired"]:
        _show(f"repaired: {done}")
    if not report["problems"]:
        _show(f"ok: {_plural(report['documents'], 'document')}, {_plural(report['chunks'], 'chunk')}; "
              f"{report['checked']} · {report['path']}")


def cmd_docs(args, settings: Settings) -> None:
    """List the indexed articles."""
    index = _index(settings)
    stats = index.stats()
    docs = index.documents()
    if args.json:
        _show_json({"stats": stats, "documents": [d.to_dict() for d in docs]})
        return
    _show(f"{_plural(stats['documents'], 'document')}, {_plural(stats['chunks'], 'chunk')} · model {stats['model']} ({stats['precision']}, "
          f"{stats['dim']} dims) · vectors: {stats['vector_index']} · {stats['path']}")
    for d in docs:
        _show(f"{d.doc_id}\t{d.date or '-'}\t{_plural(d.chunks, 'chunk')}\t{d.title}")


# How the answer sentences are marked inside the printed passages: bold yellow on a terminal, guillemets otherwise.
_TTY_MARKS = ("\x1b[1;33m", "\x1b[0m")
_PLAIN_MARKS = ("»", "«")


def _marks() -> tuple[str, str]:
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    return _TTY_MARKS if colour else _PLAIN_MARKS


def _passage_pieces(card: dict, spans) -> list[tuple[str, bool]]:
    """The card's text cut at the answer sentences taken from it (from any passage merged into it): (text,
    is_answer) pieces. The spans' article offsets are made relative to the card's ``start``; the text is never
    searched."""
    size, ranks = len(card["text"]), set(card["ranks"])
    ranges = sorted((max(s.start - card["start"], 0), min(s.end - card["start"], size))
                    for s in spans if s.rank in ranks and s.doc_id == card["doc_id"])
    pieces, at = [], 0
    for a, b in ranges:
        a = max(a, at)
        if b <= a:
            continue
        pieces += [(card["text"][at:a], False), (card["text"][a:b], True)]
        at = b
    pieces.append((card["text"][at:], False))
    return [(text, marked) for text, marked in pieces if text]


def _passage_line(card: dict, spans, marks: tuple[str, str]) -> str:
    """The card on one line, whitespace runs made one space, the answer sentences between ``marks``. Each piece
    is made terminal-safe on its own, and only then are the marks (our own escapes, on a terminal) put around it."""
    opening, closing = marks
    out = []
    for text, marked in _passage_pieces(card, spans):
        text = re.sub(r"\s+", " ", terminal_safe(text))
        core = text.strip()
        if marked and core:
            lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()):]
            text = f"{lead}{opening}{core}{closing}{trail}"
        out.append(text)
    return re.sub(" {2,}", " ", "".join(out)).strip()


def _citation(card: dict) -> str:
    """'[n] title — source, date, p. 3 (doc_id, chars a–b)', the parts an article lacks left out (pages are a
    PDF's); '[1, 3]' for passages of one article that overlap, shown as one."""
    about = ", ".join(part for part in (card["source"], card["date"], page_label(card["pages"])) if part)
    ranks = ", ".join(map(str, card["ranks"]))
    return (f"[{ranks}] {card['title'] or card['doc_id']}{' — ' + about if about else ''} "
            f"({card['doc_id']}, chars {card['start']}–{card['end']})")


def _print_answer(answer) -> None:
    """The answer, then each cited passage: its citation line and its text with the answer sentences marked.
    Passages of one article that overlap are printed once, as on the web page (``qa ask --json`` keeps each)."""
    from .llm import mode_note  # numpy's import, paid only when answering

    # An extractive answer's sentences are the article's characters, line breaks of hard-wrapped text included: on a
    # terminal they are one line, as on the web page. (A local model's paragraphs are its own: kept.)
    _show(answer.answer if answer.mode == "llm" else " ".join(answer.answer.split()))
    note = mode_note(answer.to_dict())
    if note:  # who wrote it, when the local model (QA_LLM_URL) was asked
        _show(note)
    if not answer.answerable and answer.passages:
        _show("Nearest passages (weak matches):")
    _show()
    marks = _marks()
    for card in merge_passages([p.to_dict() for p in answer.passages]):
        _show(_citation(card))
        print("    " + _passage_line(card, answer.answer_spans, marks))
        _show()


def cmd_ask(args, settings: Settings) -> None:
    """Ask a question; prints the answer and the passages it cites, the answer sentences marked in them."""
    scope = {"since": args.since, "until": args.until, "sources": args.source, "doc_ids": args.doc}
    answer = _index(settings).ask(args.question, k=args.k, **{k: v for k, v in scope.items() if v})
    if args.json:
        _show_json(answer.to_dict())
        return
    _print_answer(answer)


MAX_CHAT_TURNS = 20  # the earlier turns a question is asked with (what POST /ask accepts)


def cmd_chat(args, settings: Settings) -> None:
    """Ask questions with follow-ups: each question is asked with the conversation so far.

    One question a line; Ctrl-D (end of input) or /quit ends, /new starts a new conversation, an empty line is
    passed over (a pasted text's blank line ended the chat, and the shell ran the rest of the paste). An error
    about one question is one line on stderr and the chat goes on; Ctrl-C drops the question or the answer under
    way, not the conversation."""
    index = _index(settings)
    index.stats()  # no index, or one built with other settings: the one-line error now, not at every question
    interactive = sys.stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401  (line editing and the up arrow's history for input())
        except ImportError:
            pass
        _show("Ask about the articles; follow-ups are read with the conversation. /new starts a new one; /quit or "
              "Ctrl-D ends.", file=sys.stderr)
    # Bytes that are not UTF-8 (a terminal in another encoding) reach the question's own check, one line on
    # stderr, instead of a decoding error that ended the chat before its first answer.
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="surrogateescape")
    echo = not interactive or not sys.stdout.isatty()  # a transcript (a pipe, `| tee log`) says what it answers
    history: list[dict] = []
    while True:
        try:
            if interactive and not sys.stdout.isatty():
                print("? ", end="", file=sys.stderr, flush=True)
            line = input("? " if interactive and sys.stdout.isatty() else "")
        except EOFError:
            if interactive:
                print(file=sys.stderr)
            break
        except KeyboardInterrupt:  # Ctrl-C at the prompt drops the line, as a shell does
            print(file=sys.stderr)
            continue
        question = line.strip()
        if not question:
            continue
        if question.lower() in ("/quit", "/exit"):
            break
        if question.lower() == "/new":
            history.clear()
            _show("(new conversation)", file=sys.stderr)
            continue
        if echo:
            _show(f"? {question}")
        try:
            answer = index.ask(question, k=args.k, history=history)
            _print_answer(answer)
            sys.stdout.flush()
        except QAError as e:
            _show(f"qa: error: {e}", file=sys.stderr)
            continue
        except KeyboardInterrupt:  # while answering or while printing: that answer goes, the chat stays
            _show("(interrupted)", file=sys.stderr)
            continue
        history.append({"question": question, "answer": answer.answer})
        del history[:-MAX_CHAT_TURNS]


def _watched_folder(name: str) -> Path:
    folder = Path(name)
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder")
    return folder


def _action_printer(stream):
    """Prints each action of a watch as one timestamped line, flushed at once (also into a pipe or a log)."""
    import datetime

    def report(action) -> None:
        _show(f"{datetime.datetime.now().strftime('%H:%M:%S')} {action}", file=stream)
        stream.flush()

    return report


def cmd_watch(args, settings: Settings) -> None:
    """Keep the index in step with a folder: sync it once (as `qa index DIR --sync`), then apply each batch of file
    changes (new, changed, deleted files; a changed .qaignore syncs again) as it happens, one line per action, until
    Ctrl-C."""
    from .sync import Watcher

    folder = _watched_folder(args.folder)
    index = _index(settings)
    watcher = Watcher(index, folder, ids=args.ids, date=args.date or "", report=_action_printer(sys.stdout))

    def ready() -> None:
        _show(f"watching {watcher.folder} (Ctrl-C stops)")
        sys.stdout.flush()

    try:
        watcher.run(debounce_ms=args.debounce, on_ready=ready)
    except KeyboardInterrupt:
        pass


def _date_arg(text: str) -> str:
    """An argparse type: a date as YYYY-MM-DD, checked once here rather than per file (a bad --date skipped every
    file of a folder and still exited 0)."""
    from .ingest import parse_date

    try:
        return parse_date(text)
    except InvalidInput as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line on stderr and exit 2, as every other bad input (not the usage block)."""

    def error(self, message: str):
        self.exit(2, f"qa: error: {message} (see `{self.prog} --help`)\n")


def _whole_in(least: int, most: int):
    """An argparse type: a whole number from ``least`` to ``most`` (one line and exit 2 otherwise)."""
    def parse(text: str) -> int:
        try:
            return whole_number("it", text, least, most)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def cmd_serve(args, settings: Settings) -> None:
    """Serve the chat page and the JSON API (builds the index from the seed folder first if there is none). With
    ``--watch DIR`` a folder watch runs in a thread beside the server (as `qa watch DIR`, its actions logged on
    stderr) and is stopped, after the batch under way, when the server stops."""
    import socket

    try:  # a name that does not resolve failed inside uvicorn, after "serving http://…" was printed
        socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise InvalidInput(f"cannot serve on {args.host!r}: {getattr(e, 'strerror', None) or e}") from None
    index = _index(settings)
    watch = None
    if args.watch:
        from .sync import BackgroundWatch, Watcher

        watcher = Watcher(index, _watched_folder(args.watch), ids=args.ids, date=args.date or "",
                          report=_action_printer(sys.stderr))
        watch = BackgroundWatch(watcher, debounce_ms=args.debounce)  # started and stopped by the app's lifespan
    try:
        _serve(args, settings, index, watch)
    finally:
        if watch is not None:
            watch.stop()  # already stopped unless the server failed to start


def _serve(args, settings: Settings, index, watch) -> None:
    import uvicorn

    if watch is not None and not index.exists():
        _show(f"no index in {settings.index_dir}: building it from {watch.watcher.folder} …", file=sys.stderr)
    elif not index.exists():
        _show(f"no index in {settings.index_dir}: building it from {settings.seeds_dir} …", file=sys.stderr)
        from .ingest import collect

        # An add, which builds only if there is still no index once it holds the write locks (another server
        # starting at the same moment may have built it meanwhile).
        index.add(collect([settings.seeds_dir], max_bytes=settings.max_article_bytes).articles)
    from web.app import create_app

    # The address served on is one the server answers to (a LAN address, say); a wildcard names no host, so
    # clients reaching it by another name need QA_ALLOWED_HOSTS.
    served = host_name(args.host)
    if served and served not in ("0.0.0.0", "::") and served not in settings.allowed_hosts:
        settings = settings.with_(allowed_hosts=settings.allowed_hosts + (served,))
    app = create_app(settings, index=index, watch=watch)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_token:
        _show(f"warning: serving on {args.host} without QA_API_TOKEN: anyone who can reach it can add and delete "
              "articles", file=sys.stderr)
    if served in ("0.0.0.0", "::") and not settings.allowed_hosts:
        _show("note: requests naming a host other than localhost or 127.0.0.1 are refused; list the names clients "
              "use in QA_ALLOWED_HOSTS", file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    watching = f", watching {watch.watcher.folder}" if watch is not None else ""
    _show(f"serving http://{host}:{args.port}{watching} (Ctrl-C stops)", file=sys.stderr)
    from web.server import uvicorn_options

    # Keep-alive and header read timeouts, a header size cap and a connection cap (web/server.py says which).
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", **uvicorn_options())


def cmd_eval(args, settings: Settings) -> None:
    """Measure retrieval and answers on labelled data in a temporary index (never yours); prints markdown tables.

    beir FOLDER (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) · multihop FOLDER (corpus.json, MultiHopRAG.json)
    · questions FILE --articles FOLDER (our JSON Lines question format) · reader DATA_DIR (the reader alone: SQuAD
    2.0 held-out articles, WikiQA and TrecQA tests, from ../shared/data).

    Answers use the reader unless QA_READER=off; run both to compare."""
    from . import evaluation
    from .answer import AnswerConfig
    from .retrieval import RetrievalConfig

    changes = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"--set takes KEY=VALUE, not {item!r}")
        changes[key.strip()] = value.strip()
    answer_fields = {f.name for f in fields(AnswerConfig)}
    known = answer_fields | {f.name for f in fields(RetrievalConfig)}
    for key in changes.keys() - known:
        raise InvalidInput(f"--set {key}: no such setting; known: {', '.join(sorted(known))}")
    answering = AnswerConfig().with_(**{k: v for k, v in changes.items() if k in answer_fields})
    config = RetrievalConfig().with_(**{k: v for k, v in changes.items() if k not in answer_fields})
    if args.limit < 0:
        raise InvalidInput("--limit must be 0 (all) or more")
    cache = Path(args.cache) if args.cache else evaluation.default_cache(settings)
    progress = not args.quiet
    path = Path(args.path)
    if args.dataset == "reader":
        from .embedding import load_embedder
        from .reader import load_reader
        from .reader_eval import run_reader_eval

        if (args.split or "test") not in ("dev", "test"):
            raise InvalidInput("qa eval reader --split takes dev or test")
        reader = load_reader(settings.with_(reader=True))
        report = run_reader_eval(reader, path, threshold=answering.reader_threshold, split=args.split or "test",
                                 embedder=load_embedder(settings), config=answering)
    elif args.dataset == "beir":
        report = evaluation.run_beir(settings, path, split=args.split or "test", limit=args.limit, cache=cache,
                                     config=config, ablation=args.ablation, progress=progress, answering=answering)
    elif args.dataset == "multihop":
        report = evaluation.run_multihop(settings, path, split=args.split or "all", limit=args.limit, cache=cache,
                                         config=config, ablation=args.ablation, abstain=args.abstention,
                                         progress=progress, answering=answering)
    else:
        if not args.articles:
            raise InvalidInput("qa eval questions needs --articles FOLDER")
        report = evaluation.run_questions(settings, path, Path(args.articles), split=args.split or "all", cache=cache,
                                          config=config, progress=progress, answering=answering)
    _show(report.text())


EXAMPLES = {
    "qa": """\
  qa index                                   # index seeds/ (or $QA_SEEDS_DIR)
  qa index ~/news                            # add a folder's new and changed articles
  qa ask "which countries retaliated?"
  qa chat                                    # questions with follow-ups
  qa docs
  qa serve                                   # the chat page on http://127.0.0.1:8000
  qa COMMAND --help                          # a command's options and examples""",
    "index": """\
  qa index                                   # the seed folder; builds the index if there is none
  qa index ~/news                            # add new and changed articles from a folder
  qa index ~/news --date 2025-09-03          # a date for the articles that state none
  qa index ~/bbc --ids path                  # ids from paths in the folder (sport/001.txt: sport-001)
  qa index --rebuild                         # after a settings change: rebuild from the stored articles
  qa index ~/news --rebuild                  # replace the stored articles with these
  qa index ~/news --sync                     # also remove the articles whose files are gone
  qa index ~/news --ray --workers 2          # read, chunk and embed on a local Ray cluster with 2 workers
  qa index /shared/news --ray=auto           # on the Ray cluster this machine belongs to""",
    "watch": """\
  qa watch ~/news                            # sync, then apply file changes as they happen
  qa watch ~/news --debounce 3000            # wait for 3 s of quiet before applying a batch""",
    "add": """\
  qa add article.txt                         # prints "added article — Its title"
  qa add story.html notes.md --date 2025-02-11
  qa add collection.jsonl                    # one article a line
  qa remove article                          # the id `qa add` printed""",
    "remove": """\
  qa docs                                    # the ids are the first column
  qa remove 000_0fdd7e176c3271ac""",
    "doctor": """\
  qa doctor                                  # check the index; repair the vector cache or a damaged database
  qa doctor --json""",
    "docs": """\
  qa docs
  qa docs --json | jq -r '.documents[].doc_id'""",
    "ask": """\
  qa ask "which countries retaliated?"
  qa ask "who called the strike?" -k 3       # cite at most 3 passages
  qa ask "which countries retaliated?" --json | jq -r .answer
  qa ask "who went on strike?" --since 2025-03-01 --until 2025-03-31 --source "Coastal Post"
  qa ask "what happened last week?"          # prefers articles dated in the week before the newest one's
  NO_COLOR=1 qa ask "..."                    # answer sentences marked »like this« rather than in colour""",
    "chat": """\
  qa chat
  ? who went on strike?
  ? why did they?                            # a follow-up, read with the previous question
  ? /new                                     # forget the conversation
  ? /quit                                    # ends (as Ctrl-D does); an empty line is passed over
  printf 'who went on strike?\\nwhy?\\n' | qa chat -k 2""",
    "serve": """\
  qa serve                                   # http://127.0.0.1:8000 (Ctrl-C stops)
  qa serve --port 8080
  qa serve --watch ~/news                    # serve, and keep the index in step with ~/news as files change
  QA_API_TOKEN=secret QA_ALLOWED_HOSTS=news.lan qa serve --host 0.0.0.0""",
    "eval": """\
  qa eval beir data/scifact --split test --ablation
  qa eval multihop data/multihop --split dev --limit 200
  qa eval questions questions.jsonl --articles articles/
  qa eval reader ../shared/data
  QA_READER=off qa eval multihop data/multihop --set lexical_weight=0.5""",
}


def _help_text(doc: str) -> str:
    """A docstring's paragraphs filled to the terminal (descriptions are printed raw, so the examples keep their
    lines)."""
    width = max(min(shutil.get_terminal_size().columns, 100) - 2, 40)
    paragraphs = [" ".join(par.split()) for par in re.split(r"\n\s*\n", doc.strip())]
    return "\n\n".join(textwrap.fill(par, width) for par in paragraphs if par)


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="qa", description="Ask questions of a folder of news articles, with citations.",
                                     epilog="examples:\n" + EXAMPLES["qa"], formatter_class=raw)
    parser.add_argument("--index-dir", help="index folder (default: $QA_INDEX_DIR or ./index)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, **kw):
        p = sub.add_parser(name, help=func.__doc__.splitlines()[0], description=_help_text(func.__doc__),
                           epilog="examples:\n" + EXAMPLES[name], formatter_class=raw, **kw)
        p.set_defaults(func=func)
        return p

    p = add("index", cmd_index)
    p.add_argument("paths", nargs="*", help="files or folders (default: the seed folder, but --rebuild on an existing "
                                               "index uses its stored articles)")
    p.add_argument("--rebuild", action="store_true",
                   help="without paths: rebuild from the stored articles (after a settings change); with paths: "
                        "replace the stored articles with these")
    p.add_argument("--date", type=_date_arg, help="date (YYYY-MM-DD) for articles that state none")
    p.add_argument("--ids", choices=("stem", "path"), default="stem",
                   help="document ids from file stems (default) or from paths inside the folder")
    p.add_argument("--sync", action="store_true",
                   help="also remove the stored articles read from files under these folders that are gone")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="read, chunk and embed on a Ray cluster (auto, ray://host:10001, host:6379; a local one "
                        "when ADDRESS is left out), writing here in batches; needs the ray extra")
    p.add_argument("--workers", type=_whole_in(1, 4096), metavar="N",
                   help="with --ray: embedding workers, one CPU each (default: one per CPU of the cluster)")
    p = add("watch", cmd_watch)
    p.add_argument("folder")
    p.add_argument("--ids", choices=("stem", "path"), default="stem",
                   help="document ids from file stems (default) or from paths inside the folder")
    p.add_argument("--date", type=_date_arg, help="date (YYYY-MM-DD) for articles that state none")
    p.add_argument("--debounce", type=_whole_in(0, 3_600_000), default=1000, metavar="MS",
                   help="milliseconds of quiet before a batch of changes is applied (default 1000)")
    p = add("add", cmd_add)
    p.add_argument("files", nargs="+", help="article files")
    p.add_argument("--date", type=_date_arg, help="date (YYYY-MM-DD) for articles that state none")
    p = add("remove", cmd_remove)
    p.add_argument("doc_id")
    p = add("doctor", cmd_doctor)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p = add("docs", cmd_docs)
    p.add_argument("--json", action="store_true", help="print JSON")
    p = add("ask", cmd_ask)
    p.add_argument("question")
    p.add_argument("-k", type=_whole_in(1, 20), default=5, help="passages to show (1-20, default 5)")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.add_argument("--since", help="only articles dated on or after this day (YYYY-MM-DD)")
    p.add_argument("--until", help="only articles dated on or before this day (YYYY-MM-DD)")
    p.add_argument("--source", action="append", metavar="OUTLET", help="only articles from this outlet (repeatable)")
    p.add_argument("--doc", action="append", metavar="DOC_ID", help="only this article (repeatable)")
    p = add("chat", cmd_chat)
    p.add_argument("-k", type=_whole_in(1, 20), default=5, help="passages to show (1-20, default 5)")
    p = add("serve", cmd_serve)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_whole_in(1, 65535), default=8000)
    p.add_argument("--watch", metavar="DIR", help="also keep the index in step with this folder (as `qa watch DIR`)")
    p.add_argument("--ids", choices=("stem", "path"), default="stem",
                   help="with --watch: document ids from file stems (default) or from paths inside the folder")
    p.add_argument("--date", type=_date_arg, help="with --watch: date (YYYY-MM-DD) for articles that state none")
    p.add_argument("--debounce", type=_whole_in(0, 3_600_000), default=1000, metavar="MS",
                   help="with --watch: milliseconds of quiet before a batch of changes is applied (default 1000)")
    p = add("eval", cmd_eval)
    p.add_argument("dataset", choices=("beir", "multihop", "questions", "reader"))
    p.add_argument("path", help="the data set's folder (a question file for `questions`)")
    p.add_argument("--articles", help="folder of articles the questions are about (questions only)")
    p.add_argument("--split", help="beir: the qrels file (default test); multihop: dev (the seeded 30%% held out "
                                   "for tuning), test (the rest) or all (default); questions: dev, test or all; "
                                   "reader: dev (the sets settings are chosen on) or test (default)")
    p.add_argument("--limit", type=_whole_in(0, 10**9), default=0, help="evaluate only the first N queries")
    p.add_argument("--cache", help="embedding cache file (default: INDEX_DIR/eval-cache/embeddings.sqlite3)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="change a retrieval or answer setting, e.g. --set lexical_weight=0.5 or --set "
                        "reader_threshold=0.4 (repeatable)")
    p.add_argument("--ablation", action="store_true", help="add rows with one part of the hybrid taken away")
    p.add_argument("--abstention", action="store_true", help="multihop: count false abstentions and false answers")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for name in ("stdout", "stderr"):  # closed by the caller (`qa docs >&-`): what would go there goes nowhere
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a bad argument (its one line already printed): exit code 2, returned as below
        if not e.code:
            raise  # --help
        return 2
    overrides = {"index_dir": Path(args.index_dir)} if args.index_dir else {}
    try:
        settings = Settings.from_env(**overrides)
        args.func(args, settings)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's flush at exit
    except BrokenPipeError:  # `qa docs | head -1`: the reader has what it wanted
        _quiet_stdout()
        return 0
    except QAError as e:
        _show(f"qa: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # bad settings in the environment
        _show(f"qa: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        _show(f"qa: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _show("qa: interrupted", file=sys.stderr)
        return 130
    finally:
        _close_opened()
    return 0


if __name__ == "__main__":
    sys.exit(main())
