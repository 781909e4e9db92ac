"""OpenAPI pieces the routers share."""

from __future__ import annotations

from ..models import ErrorOut, ValidationErrorOut

ERRORS = {
    400: {"model": ErrorOut, "description": "Bad input (empty, blank or too long question, bad date, …)"},
    422: {"model": ValidationErrorOut, "description": "Malformed body or parameter"},
}
WRITE_ERRORS = {
    **ERRORS,
    401: {"model": ErrorOut, "description": "Missing or wrong API token (when QA_API_TOKEN is set)"},
    403: {"model": ErrorOut, "description": "A write sent from another site's page"},
    507: {"model": ErrorOut, "description": "The disk holding the index is full; nothing was written"},
}
HTML_200 = {200: {"description": "JSON, or the page when the client asks for text/html",
                  "content": {"text/html": {"schema": {"type": "string"}}}}}
INDEX_ERRORS = {
    409: {"model": ErrorOut, "description": "No index yet, or one built with other settings"},
    503: {"model": ErrorOut, "description": "The index is damaged: `qa doctor` repairs it"},
}
# A write meets the index as a read does (no index, other settings, damage); a browser's form post is sent on to
# the page that shows what was done.
WRITE_ERRORS.update(INDEX_ERRORS)
SEE_PAGE = {303: {"description": "A browser's form post (it asks for text/html): sent on to the page that shows "
                                 "what was done, so a reload repeats nothing"}}


def body(content: dict[str, str]) -> dict:
    """OpenAPI text for a body that the route parses itself (it accepts several media types)."""
    return {"requestBody": {"required": True, "content": {
        media: {"schema": {"$ref": f"#/components/schemas/{model}"}} for media, model in content.items()
    }}}
