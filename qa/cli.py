"""The `qa` command: a thin layer over NewsIndex. Errors are one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import fields
from pathlib import Path

from .errors import InvalidInput, QAError
from .settings import Settings, host_name


# What a terminal would act on rather than show: escape sequences (CSI, OSC, DCS and the like, 7- and 8-bit), then
# any other C0 control character but tab and newline, DEL and C1. Titles and texts come from articles anyone wrote.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"              # CSI: colours, cursor moves, screen clears
    r"|\x1b[\]PX^_][^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"  # OSC (window title, hyperlink), DCS, SOS, PM, APC
    r"|\x1b[ -/]*[0-~]?"                      # the other ESC sequences
    r"|\x9b[0-?]*[ -/]*[@-~]?"                # 8-bit CSI
    r"|[\x9d\x90\x98\x9e\x9f][^\x07\x1b\x9c\n]*(?:\x07|\x9c)?"  # 8-bit OSC, DCS, SOS, PM, APC
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


def _index(settings: Settings):
    from .index import NewsIndex

    return NewsIndex(settings)


def _report(report, verb: str) -> None:
    _show(
        f"{verb}: {len(report.added)} added, {len(report.updated)} updated, {len(report.unchanged)} unchanged; "
        f"{report.chunks} chunks written, {report.embedded} embedded in {report.seconds:.1f} s"
    )
    for reason in report.skipped:
        _show(f"skipped {reason}", file=sys.stderr)


def cmd_index(args, settings: Settings) -> None:
    """Index articles (default: the seed folder): adds new and changed ones, or builds the index if there is none.

    --rebuild without paths rebuilds the index from the articles it holds (what an index built with other
    settings needs); with paths it replaces the stored articles with those and says how many it dropped."""
    from .ingest import collect

    index = _index(settings)
    progress = sys.stderr.isatty()
    if args.rebuild and not args.paths and index.exists():
        # The articles stored, not the seed folder: this is what the settings-mismatch error tells users to run,
        # and rebuilding from seeds/ would delete everything added since.
        _report(index.rebuild(show_progress=progress), "rebuilt")
        return
    paths = [Path(p) for p in args.paths] or [settings.seeds_dir]
    found = collect(paths, max_bytes=settings.max_article_bytes, date=args.date or "", ids=args.ids)
    _show(found.summary())  # what was read, so a stray file (or one a .qaignore should list) shows in the counts
    if args.rebuild or not index.exists():
        replacing = index.exists()
        report = index.rebuild(found.articles, show_progress=progress)
        report.skipped = found.skipped
        _report(report, "built")
        if replacing:
            n = len(report.dropped)
            _show(f"{n} stored article{'' if n == 1 else 's'} dropped (not in {', '.join(map(str, paths))})")
    else:
        report = index.add(found.articles, show_progress=progress)
        report.skipped = found.skipped
        _report(report, "indexed")


def cmd_add(args, settings: Settings) -> None:
    """Add article files (.txt, .md, .html, .json, .jsonl); they are answerable at once."""
    report = _index(settings).add_paths([Path(p) for p in args.files], date=args.date or "", ids="stem")
    _report(report, "added")


def cmd_remove(args, settings: Settings) -> None:
    """Remove an article by its document id."""
    _index(settings).remove(args.doc_id)
    _show(f"removed {args.doc_id}")


def cmd_docs(args, settings: Settings) -> None:
    """List the indexed articles."""
    index = _index(settings)
    stats = index.stats()
    docs = index.documents()
    if args.json:
        _show_json({"stats": stats, "documents": [d.to_dict() for d in docs]})
        return
    _show(f"{stats['documents']} documents, {stats['chunks']} chunks · model {stats['model']} ({stats['precision']}, "
          f"{stats['dim']} dims) · vectors: {stats['vector_index']} · {stats['path']}")
    for d in docs:
        _show(f"{d.doc_id}\t{d.date or '-'}\t{d.chunks} chunks\t{d.title}")


def cmd_ask(args, settings: Settings) -> None:
    """Ask a question; prints the answer and the passages it cites."""
    answer = _index(settings).ask(args.question, k=args.k)
    if args.json:
        _show_json(answer.to_dict())
        return
    _show(answer.answer)
    if not answer.answerable and answer.passages:
        _show("Nearest passages (weak matches):")
    _show()
    for p in answer.passages:
        _show(f"[{p.rank}] {p.title} ({p.doc_id}, chars {p.start}–{p.end}){' · ' + p.date if p.date else ''}")
        _show("    " + " ".join(p.text.split()))
        _show()


def cmd_serve(args, settings: Settings) -> None:
    """Serve the chat page and the JSON API (builds the index from the seed folder first if there is none)."""
    import uvicorn

    index = _index(settings)
    if not index.exists():
        _show(f"no index in {settings.index_dir}: building it from {settings.seeds_dir} …", file=sys.stderr)
        from .ingest import collect

        index.rebuild(collect([settings.seeds_dir], max_bytes=settings.max_article_bytes).articles)
    from web.app import create_app

    # The address served on is one the server answers to (a LAN address, say); a wildcard names no host, so
    # clients reaching it by another name need QA_ALLOWED_HOSTS.
    served = host_name(args.host)
    if served and served not in ("0.0.0.0", "::") and served not in settings.allowed_hosts:
        settings = settings.with_(allowed_hosts=settings.allowed_hosts + (served,))
    app = create_app(settings, index=index)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_token:
        _show(f"warning: serving on {args.host} without QA_API_TOKEN: anyone who can reach it can add and delete "
              "articles", file=sys.stderr)
    if served in ("0.0.0.0", "::") and not settings.allowed_hosts:
        _show("note: requests naming a host other than localhost or 127.0.0.1 are refused; list the names clients "
              "use in QA_ALLOWED_HOSTS", file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    _show(f"serving http://{host}:{args.port} (Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


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
    answering = AnswerConfig().with_(**{k: v for k, v in changes.items() if k in answer_fields})
    config = RetrievalConfig().with_(**{k: v for k, v in changes.items() if k not in answer_fields})
    if args.limit < 0:
        raise InvalidInput("--limit must be 0 (all) or more")
    cache = Path(args.cache) if args.cache else evaluation.default_cache(settings)
    progress = not args.quiet
    path = Path(args.path)
    if args.dataset == "reader":
        from .reader import load_reader
        from .reader_eval import run_reader_eval

        reader = load_reader(settings.with_(reader=True))
        report = run_reader_eval(reader, path, threshold=answering.reader_threshold)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qa", description="Ask questions of a folder of news articles, with citations.")
    parser.add_argument("--index-dir", help="index folder (default: $QA_INDEX_DIR or ./index)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, **kw):
        p = sub.add_parser(name, help=func.__doc__.splitlines()[0], description=func.__doc__, **kw)
        p.set_defaults(func=func)
        return p

    p = add("index", cmd_index)
    p.add_argument("paths", nargs="*", help="files or folders (default: the seed folder, but --rebuild on an existing "
                                               "index uses its stored articles)")
    p.add_argument("--rebuild", action="store_true",
                   help="without paths: rebuild from the stored articles (after a settings change); with paths: "
                        "replace the stored articles with these")
    p.add_argument("--date", help="date (YYYY-MM-DD) for articles that state none")
    p.add_argument("--ids", choices=("stem", "path"), default="stem",
                   help="document ids from file stems (default) or from paths inside the folder")
    p = add("add", cmd_add)
    p.add_argument("files", nargs="+", help="article files")
    p.add_argument("--date", help="date (YYYY-MM-DD) for articles that state none")
    p = add("remove", cmd_remove)
    p.add_argument("doc_id")
    p = add("docs", cmd_docs)
    p.add_argument("--json", action="store_true", help="print JSON")
    p = add("ask", cmd_ask)
    p.add_argument("question")
    p.add_argument("-k", type=int, default=5, help="passages to show (1-20, default 5)")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p = add("serve", cmd_serve)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p = add("eval", cmd_eval)
    p.add_argument("dataset", choices=("beir", "multihop", "questions", "reader"))
    p.add_argument("path", help="the data set's folder (a question file for `questions`)")
    p.add_argument("--articles", help="folder of articles the questions are about (questions only)")
    p.add_argument("--split", help="beir: the qrels file (default test); multihop: dev (the seeded 30%% held out "
                                   "for tuning), test (the rest) or all (default); questions: dev, test or all")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N queries")
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
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {"index_dir": Path(args.index_dir)} if args.index_dir else {}
    try:
        settings = Settings.from_env(**overrides)
        args.func(args, settings)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
