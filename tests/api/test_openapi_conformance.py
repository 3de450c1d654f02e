"""The service against its own ``/openapi.json``, with schemathesis.

Schemathesis generates requests from the schema the app publishes, valid and invalid ones, sends
them to the real app in-process (ASGI; real embedded Chroma, the hashing embedder and a scripted
upstream), and checks every answer against the same schema: no 5xx, only documented status codes,
content types and headers, bodies that match their schema, schema-invalid requests refused (4xx),
schema-valid ones not refused with 400, and refusal without (or with a wrong) key where the schema
declares security. Bounded and reproducible: a fixed seed, a fixed number of examples per
operation, derandomized Hypothesis, no example database.

How it is wired: the pytest integration generates its test cases when the module is imported, so
the schema is taken from an app built then (``create_app`` only builds routes; nothing starts).
The cases are sent to ``APP_UNDER_TEST``, an ASGI app that hands every request, lifespan included,
to the real app the ``served_app`` fixture builds per operation (schemathesis starts its lifespan
at the first request and ends it when the test ends). The fixture checks that this app publishes
the very schema the cases came from.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from starlette.types import Receive, Scope, Send

from ingest.pipeline import IngestPipeline
from rag_service.adapters.chroma_store import ChromaStore
from rag_service.app import Components, create_app
from rag_service.settings import IngestSettings, KeyLimitSettings, Settings
from tests.app.conftest import ADMIN_KEY, ANSWER, CLIENT_KEY, app_settings
from tests.fakes.retrieval import HashingEmbedder
from tests.fakes.upstream import ScriptedUpstream, answer_script

EXAMPLES_PER_OPERATION = 15
# Generous: one example is one request, or an SSE answer of a few events; the first one of an
# operation also starts the app. Only a hung request comes near it, on a busy machine too.
EXAMPLE_DEADLINE_MS = 10_000
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "ignored_auth",
    "unsupported_method",
    "allow_header_conformance",
)
# Enough for every generated answer: the per-key limits (429, documented) are tested elsewhere,
# and here they would only turn most cases into refusals.
UNLIMITED_KEY = KeyLimitSettings(streams=1_000, requests_per_s=10_000, burst=10_000)


def served_settings(tmp_path: Path | None = None) -> Settings:
    """The settings of the app under test. Without ``tmp_path``: only for its schema (the
    schema does not depend on paths)."""
    if tmp_path is None:
        base = Settings(api_keys=[SecretStr(CLIENT_KEY)], admin_api_key=SecretStr(ADMIN_KEY))
    else:
        base = app_settings(tmp_path)
    return base.model_copy(update={"limits": UNLIMITED_KEY})


class AppUnderTest:
    """The ASGI app schemathesis calls: whatever real app ``served_app`` has set."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "a case was sent outside the served_app fixture"
        await self.app(scope, receive, send)


APP_UNDER_TEST = AppUnderTest()
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 11,
        "generation": {"max-examples": EXAMPLES_PER_OPERATION, "mode": "all"},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "auth": {
            "openapi": {"ClientKey": {"bearer": CLIENT_KEY}, "AdminKey": {"bearer": ADMIN_KEY}}
        },
        # POST /admin/ingest takes a JSON body or an upload with query parameters, which a JSON
        # body must not have (400). OpenAPI cannot tie parameters to one body media type, so
        # schema-valid mixes are refused there: only this one check is off for it (negative data
        # is still refused, every answer still checked against the schema).
        "operations": [
            {
                "include-name": "POST /admin/ingest",
                "checks": {"positive_data_acceptance": {"enabled": False}},
            }
        ],
    }
)
SCHEMA = schemathesis.openapi.from_dict(create_app(served_settings()).openapi(), config=CONFIG)
SCHEMA.app = APP_UNDER_TEST


@SCHEMA.hook
def map_case(
    context: schemathesis.HookContext, case: schemathesis.Case[Any]
) -> schemathesis.Case[Any]:
    """A question needs a context id, from ``?context=`` or from the body's ``context_id``:
    OpenAPI cannot say "one of a query parameter and a body field", so both are optional in the
    schema, and a generated question that has neither gets the query parameter (a question
    without either is a 400 with its own test, tests/streaming/test_validation.py)."""
    if context.operation is None or context.operation.label != "POST /rag/stream":
        return case
    in_body = isinstance(case.body, dict) and case.body.get("context_id") is not None
    if not in_body and "context" not in (case.query or {}):
        case.query = {**(case.query or {}), "context": "schemathesis"}
    return case


@pytest.fixture(scope="module")
def catalog_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ChromaStore]:
    root = tmp_path_factory.mktemp("served")
    settings = served_settings(root)
    store = ChromaStore.open(settings.chroma)
    IngestPipeline(store, HashingEmbedder(64), IngestSettings()).run([settings.ingest.catalog_dir])
    return root, store


@pytest.fixture
def served_app(catalog_store: tuple[Path, ChromaStore]) -> Iterator[FastAPI]:
    root, store = catalog_store
    upstream = ScriptedUpstream(script=answer_script(ANSWER))
    app = create_app(
        served_settings(root),
        Components(embedder=HashingEmbedder(64), store=store, upstream=upstream),
    )
    assert app.openapi() == SCHEMA.raw_schema, "the cases must come from the schema it serves"
    APP_UNDER_TEST.app = app
    yield app
    APP_UNDER_TEST.app = None


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=EXAMPLE_DEADLINE_MS,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_the_service_answers_as_its_schema_says(
    case: schemathesis.Case[Any], served_app: Any
) -> None:
    case.call_and_validate()


def test_errors_are_documented_as_they_are_sent() -> None:
    """400 (never FastAPI's 422) and one error shape everywhere; the bearer schemes declared."""
    schema = SCHEMA.raw_schema
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")) and path != "/readyz":
                    content = response["content"]["application/json"]
                    assert content["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert set(schema["components"]["securitySchemes"]) == {"ClientKey", "AdminKey"}


def test_without_client_keys_the_client_routes_are_documented_as_open() -> None:
    settings = served_settings().model_copy(update={"api_keys": []})
    paths = create_app(settings).openapi()["paths"]
    create = paths["/rag/stream"]["post"]
    assert "security" not in create
    assert "401" not in create["responses"]
