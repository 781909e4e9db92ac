"""The web app: the chat page, the articles pages and the JSON API, all over one NewsIndex.

Each route computes one result and renders it twice: JSON for programs and Jinja2 HTML for browsers (content
negotiation on Accept; the page's own forms post urlencoded or multipart and work without JavaScript). Everything
that embeds, reads the index or writes runs in the thread pool, so the event loop keeps answering while an article
is embedded or the index rebuilt; NewsIndex serializes the writes and lets readers see the old index or the new
one, never half of one.

The routes live in ``web/routes`` by area (ask, documents, meta) and in ``web/openai_api.py``; they reach the index
through ``Depends(get_index)``, writes pass ``Depends(write_access)`` (web/deps.py), and every error becomes JSON or a
page in one place (web/errors.py).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from qa.errors import QAError
from qa.index import NewsIndex
from qa.settings import Settings

from . import errors
from .guards import BodyLimit, HeadAsGet, HostGuard, RateLimit, allowed_hosts
from .jobs import Jobs
from .openai_api import router as openai_router
from .pages import HERE, Pages
from .routes import ask, documents, meta

log = logging.getLogger("qa.web")


def create_app(settings: Settings | None = None, index: NewsIndex | None = None, *, watch=None) -> FastAPI:
    """The FastAPI app over ``index`` (default: a NewsIndex opened with ``settings``, default: the environment).
    ``watch`` (a qa.sync.BackgroundWatch over the same index, `qa serve --watch DIR`) runs while the app does: it
    starts with the app (which serves once the folder is indexed, when there was no index before) and stops, after
    the batch under way, when the app shuts down."""
    settings = settings or (index.settings if index is not None else Settings.from_env())
    index = index if index is not None else NewsIndex(settings)

    def warm() -> None:
        """Open the index and load the model before the first question, so that one is fast too."""
        try:
            if index.exists():
                index.warm()
        except QAError as e:
            log.warning("the index cannot be opened yet: %s", e)

    def start_watch() -> None:
        had_index = index.exists()
        watch.start()
        if not had_index:  # the folder is the collection: answer from it, not from an index still being built
            log.info("no index yet: indexing %s before serving", watch.watcher.folder)
            watch.ready.wait()

    def finish_jobs(jobs: Jobs) -> None:
        """The background writes already accepted (202) are done before the server stops, within
        QA_SHUTDOWN_WAIT seconds: their clients were told the article would be stored."""
        if jobs.unfinished:
            log.warning("finishing %d accepted background write(s) before stopping (at most %g s, QA_SHUTDOWN_WAIT)",
                        jobs.unfinished, settings.shutdown_wait)
            left = jobs.drain(settings.shutdown_wait)
            if left:
                log.warning("stopped with %d accepted background write(s) unfinished after %g s: add them again",
                            left, settings.shutdown_wait)

    @asynccontextmanager
    async def lifespan(_app):
        if watch is not None:
            await run_in_threadpool(start_watch)
        await run_in_threadpool(warm)
        try:
            yield
        finally:
            if watch is not None and not await run_in_threadpool(watch.stop):
                log.warning("the watch of %s did not stop in time", watch.watcher.folder)
            await run_in_threadpool(finish_jobs, _app.state.jobs)

    app = FastAPI(
        title="News QA",
        version="0.1.0",
        description=(
            "Ask questions of a folder of news articles. Answers are sentences taken from the articles, each "
            "followed by `[n]`, the rank of the passage it comes from; every passage cites its article by "
            "character offsets (`text == article[start:end]`). Errors are JSON `{\"detail\": \"...\"}`. When "
            "QA_API_TOKEN is set, writes need `Authorization: Bearer <token>`."
        ),
        docs_url=None, redoc_url=None, lifespan=lifespan,
    )
    app.state.index = index
    app.state.settings = settings
    app.state.pages = Pages(settings, index)
    app.state.jobs = Jobs()  # background writes (?background=1), web/jobs.py
    app.state.allowed_hosts = allowed_hosts(settings.allowed_hosts)
    # JSON escapes can triple an article's size; multipart adds little.
    app.state.body_limit = 4 * settings.max_article_bytes + (1 << 20)
    app.add_middleware(BodyLimit, limit=app.state.body_limit)
    if settings.rate is not None:  # QA_RATE_LIMIT: questions per client address, 429 with Retry-After beyond
        app.add_middleware(RateLimit, count=settings.rate[0], period=settings.rate[1])
    app.add_middleware(HeadAsGet)
    app.add_middleware(HostGuard, allowed=app.state.allowed_hosts)  # outermost: checked before anything else

    meta.mount_swagger(app)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    errors.install(app)
    app.include_router(ask.router)
    app.include_router(documents.router)
    app.include_router(meta.router)
    # POST /v1/chat/completions and GET /v1/models: the OpenAI chat API over app.state.index (web/openai_api.py).
    app.include_router(openai_router)
    meta.install_openapi(app)
    return app


__all__ = ["create_app"]
