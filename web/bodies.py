"""Reading request bodies the routes parse themselves (they accept several media types)."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from qa.errors import QAError
from qa.records import has_lone_surrogate

from .guards import UnsupportedBody
from .negotiation import content_type

MAX_FORM_FIELDS = 1000  # Starlette's own bound for a form's fields


class MalformedBody(QAError):
    """A body that is not JSON, or not the JSON the route reads."""

    status = 422


def parse(model: type[BaseModel], data) -> BaseModel:
    """``model`` from parsed data, or the same 422 that FastAPI gives for a declared body."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = e.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in errors]) from None


async def json_body(request: Request):
    raw = await request.body()
    if not raw.strip():
        raise MalformedBody("the body is empty: send a JSON object")
    try:
        data = json.loads(raw)
    except RecursionError:  # arrays nested thousands deep: the parser's own limit, not a server fault
        raise MalformedBody("the body is not valid JSON: it is nested too deeply") from None
    except ValueError as e:
        raise MalformedBody(f"the body is not valid UTF-8 JSON ({e})") from None
    check_unicode(data)
    return data


def check_unicode(value) -> None:
    """JSON may escape lone surrogates ("\\ud800"), which are not text: refuse them before they reach SQLite."""
    if has_lone_surrogate(value):
        raise MalformedBody("the body holds a lone surrogate escape, which is not valid Unicode text")


def looks_like_json(raw: bytes) -> bool:
    # `curl -d '{"question": …}'` without a content type sends urlencoded: read it as the JSON it is.
    return raw.lstrip()[:1] == b"{"


def is_json(request: Request) -> bool:
    """A JSON body, or one sent without a content type (read as JSON)."""
    media = content_type(request)
    return media in ("", "application/json") or media.endswith("+json")


def text(value) -> str:
    """A form field as text ('' for a missing field or a file where text was expected)."""
    return value if isinstance(value, str) else ""


async def read_form(request: Request, max_part_size: int | None = None) -> FormData:
    """The form's fields. An urlencoded form is read as UTF-8, its own bytes and its %-escapes alike, and refused
    (415) when it is not: Starlette reads the bytes as Latin-1 ("café" sent by `curl -d` became "cafÃ©") and
    puts U+FFFD for an escape that is not UTF-8, which would store a text other than the one sent. A multipart
    form is Starlette's (its fields fall back to Latin-1, which keeps every byte)."""
    if content_type(request) != "application/x-www-form-urlencoded":
        form = await (request.form() if max_part_size is None else request.form(max_part_size=max_part_size))
        # A charset parameter Starlette decodes fields with ("unicode_escape") can make lone surrogates of
        # them, which failed later, in SQLite or in hashing: a 500.
        check_unicode([value.filename or "" if isinstance(value, UploadFile) else value
                       for _, value in form.multi_items()])
        return form
    raw = await request.body()
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict",
                          max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError as e:
        raise UnsupportedBody(f"the form is not UTF-8 text ({e.reason} at byte {e.start}): send its fields "
                              "as UTF-8") from None
    except ValueError:
        raise MalformedBody(f"the form has more than {MAX_FORM_FIELDS:,} fields") from None
    return FormData(pairs)
