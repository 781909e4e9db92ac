"""The OpenAPI schema tells the truth: property-based requests generated from it (schemathesis, against the ASGI
app over a small index and the fake embedder) never get a server error, and every reply matches what the schema
declares for it: status code, content type, body and headers, 405's Allow header included."""

from __future__ import annotations

from itertools import product

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from qa.index import NewsIndex
from qa.ingest import article_from_text
from qa.settings import Settings
from web.app import create_app

from conftest import FakeEmbedder

CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.response_headers_conformance, checks.negative_data_rejection,
          checks.unsupported_method]


def checks_for(operation) -> list:
    """Every check, but that a GET with a schema-violating query is refused: a query string carries no types, so
    ``source=false`` is the string "false" whichever type the generator meant."""
    if operation.method.upper() == "GET":
        return [c for c in CHECKS if c is not checks.negative_data_rejection]
    return CHECKS


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schema") / "index"
    index = NewsIndex(Settings.from_env(index_dir=folder, reader=False), embedder=FakeEmbedder())
    index.rebuild([article_from_text("Ferry workers went on strike on Monday over pay.", doc_id="ferry",
                                     title="Ferry strike", date="2025-03-03", source="Coastal Post")])
    app = create_app(index.settings, index=index)
    yield schemathesis.openapi.from_asgi("/openapi.json", app, headers={"host": "localhost"})
    index.close()


def _operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


def test_the_server_answers_as_its_schema_says(api_schema):
    # Each operation in turn (schemathesis's pytest plugin does not run under this pytest), examples kept few.
    failures = []
    for operation, mode in product(_operations(api_schema), GenerationMode):
        @given(case=operation.as_strategy(generation_mode=mode))
        @hsettings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                   database=None)
        def run(case):
            case.call_and_validate(checks=checks_for(operation))

        try:
            run()
        except Unsatisfiable:
            continue  # nothing in this operation's inputs can be made invalid (no parameters, free strings)
        except (Exception, BaseExceptionGroup) as e:  # noqa: BLE001 -- collected: one run names every failure
            failures.append(f"{operation.label} ({mode.value} data): {e}")
    assert not failures, "\n\n".join(failures)


# --- the points the schema once got wrong, checked directly -------------------------------------------------------
@pytest.fixture(scope="module")
def client(api_schema):
    from fastapi.testclient import TestClient

    with TestClient(api_schema.app, base_url="http://localhost") as c:
        yield c


def test_the_question_limits_are_in_the_schema(client):
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for model in ("AskRequest", "AskForm"):
        question = schemas[model]["properties"]["question"]
        assert (question["minLength"], question["maxLength"]) == (1, 2000), model
        assert "pattern" in question  # not blank
    q = next(p for p in spec["paths"]["/ask"]["get"]["parameters"] if p["name"] == "q")
    assert q["required"] and (q["schema"]["minLength"], q["schema"]["maxLength"]) == (1, 2000)
    assert client.post("/ask", json={"question": "x" * 2001}).status_code == 400
    assert client.post("/ask", json={"question": " \u3000\x1c"}).status_code == 400
    assert client.get("/ask").status_code == 400


def test_a_multipart_doc_id_is_held_to_the_pattern_the_schema_declares(client):
    pattern = client.get("/openapi.json").json()["components"]["schemas"]["ArticleUpload"]["properties"]["doc_id"]
    assert pattern["pattern"].endswith("{1,128}$")
    for files in ({"file": ("a.txt", b"Ferry workers went on strike.")}, None):
        r = client.post("/documents", data={"doc_id": "no spaces allowed", "text": "Ferry workers struck."},
                        files=files)
        assert r.status_code == 422 and "doc_id" in r.json()["detail"]


def test_a_file_part_without_a_filename_is_refused_in_words(client):
    r = client.post("/documents", files={"file": (None, b"Ferry workers went on strike.")})
    assert r.status_code == 400 and "file name" in r.json()["detail"]


@pytest.mark.parametrize("method, path", [("PUT", "/ask"), ("DELETE", "/documents"), ("POST", "/health"),
                                          ("GET", "/v1/chat/completions")])
@pytest.mark.parametrize("accept", ["application/json", "text/html"])
def test_405_says_which_methods_are_allowed(client, method, path, accept):
    r = client.request(method, path, headers={"accept": accept})
    assert r.status_code == 405 and r.headers.get("allow")
    assert method not in r.headers["allow"]
