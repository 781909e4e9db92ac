"""The rest: health, the API documentation (Swagger UI served offline) and the OpenAPI schema."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic.json_schema import models_json_schema

from qa.errors import QAError
from qa.index import NewsIndex

from ..deps import get_index
from ..models import AddArticle, ArticleUpload, AskForm, AskRequest, ErrorOut, Health, HistoryTurn

router = APIRouter()
SWAGGER = importlib.util.find_spec("swagger_ui")


@router.get("/health", summary="Health and counts", response_model=Health,
            responses={503: {"model": ErrorOut, "description": "No usable index"}})
def health(index: NewsIndex = Depends(get_index)):
    """Liveness and what is served: article and chunk counts, the model, the vector index type."""
    try:
        s = index.stats()
    except QAError as e:
        return JSONResponse({"detail": str(e)}, status_code=503)
    return {"status": "ok", **{k: s[k] for k in Health.model_fields if k != "status"}}


@router.get("/docs", include_in_schema=False)
def docs():
    """Swagger UI, served from the bundled files (no CDN)."""
    if SWAGGER is None or not SWAGGER.origin:
        return HTMLResponse('<p>Swagger UI is not installed; the schema is at <a href="/openapi.json">'
                            '/openapi.json</a>.</p>')
    return get_swagger_ui_html(openapi_url="/openapi.json", title="News QA API",
                               swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                               swagger_css_url="/static/swagger/swagger-ui.css",
                               swagger_favicon_url="/static/swagger/favicon-32x32.png")


def mount_swagger(app: FastAPI) -> None:
    """Swagger UI's files under /static/swagger (before /static, which would shadow them)."""
    if SWAGGER is not None and SWAGGER.origin:
        app.mount("/static/swagger", StaticFiles(directory=str(Path(SWAGGER.origin).parent / "static")),
                  name="swagger")


def install_openapi(app: FastAPI) -> None:
    """The schema, with the bodies that routes parse themselves (several media types) declared too."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _, defs = models_json_schema(
                [(m, "validation") for m in (AskRequest, AskForm, HistoryTurn, AddArticle, ArticleUpload)],
                ref_template="#/components/schemas/{model}",
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
            _question_limits(schema, app.state.settings.max_question_chars)
            _rate_limit_replies(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


# A character Python's str.strip() keeps (str.isspace() is false for it): a question holding one is not blank. Spelt
# out rather than \S, whose meaning differs between Python and the ECMA regexes JSON Schema uses.
NOT_BLANK = "[^\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _question_limits(schema: dict, max_chars: int) -> None:
    """The question's limits as the server applies them (NewsIndex.validate_question: 1 to QA_MAX_QUESTION_CHARS
    characters as sent, not blank), declared where a question is sent: the JSON and form bodies of POST /ask and
    GET /ask's ``q``, which is required (a JSON client without it gets 400)."""
    limits = {"minLength": 1, "maxLength": max_chars, "pattern": NOT_BLANK}
    schemas = schema.get("components", {}).get("schemas", {})
    for model in ("AskRequest", "AskForm"):
        if "question" in schemas.get(model, {}).get("properties", {}):
            schemas[model]["properties"]["question"].update(limits)
    for param in schema.get("paths", {}).get("/ask", {}).get("get", {}).get("parameters", []):
        if param.get("name") == "q" and param.get("in") == "query":
            param["required"] = True
            param["schema"].pop("default", None)
            param["schema"].update(limits)


def _rate_limit_replies(schema: dict) -> None:
    """429 on the routes QA_RATE_LIMIT counts (web/guards.py, RateLimit), in each route's error shape."""
    for path, error in (("/ask", "ErrorOut"), ("/v1/chat/completions", "OpenAIErrorOut")):
        for operation in schema.get("paths", {}).get(path, {}).values():
            operation.setdefault("responses", {})["429"] = {
                "description": "Too many questions from this address (only when QA_RATE_LIMIT is set)",
                "headers": {"Retry-After": {"description": "seconds until the next question is answered",
                                            "schema": {"type": "integer"}}},
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{error}"}}},
            }
