"""The dependencies the routes share: the index the app serves, its settings, the page renderer, and the check
every write passes (same-site origin, then the API token from the header or the form's ``token`` field)."""

from __future__ import annotations

from fastapi import Request

from qa.index import NewsIndex
from qa.settings import Settings

from .bodies import read_form
from .guards import check_origin, check_token
from .negotiation import is_form


def get_index(request: Request) -> NewsIndex:
    """The NewsIndex the app serves (``app.state.index``)."""
    return request.app.state.index


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_pages(request: Request):
    """The page renderer (web.pages.Pages) of this app."""
    return request.app.state.pages


async def write_access(request: Request) -> None:
    """A write is allowed: a browser page sending it is one of this server's own (403 otherwise), and with
    QA_API_TOKEN set it carries the token as ``Authorization: Bearer`` or, from the page's forms, as a ``token``
    field (401 otherwise)."""
    check_origin(request)
    settings: Settings = request.app.state.settings
    form_token = None
    if settings.api_token and is_form(request):
        form = await read_form(request, request.app.state.body_limit)
        value = form.get("token")
        form_token = value if isinstance(value, str) else None
    check_token(request, settings.api_token, form_token)
