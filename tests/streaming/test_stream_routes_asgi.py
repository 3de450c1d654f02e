"""The stream routes as FastAPI routes: documented from the real route and its model, with CORS,
404/405, root_path and a JSON 500 on a bug; the response is a real Starlette response."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import StreamingResponse

from rag_service.streaming import SessionResponse, StreamDeps, StreamRegistry, StreamStats
from rag_service.streaming.sse_format import NativeSseEncoder
from tests.fakes.resolver import FakeResolver
from tests.live_server import live_server
from tests.streaming.conftest import build_app
from tests.streaming.helpers import assert_error_shape, cors_preflight, deltas, post_stream
from tests.streaming.sse_spec import parse_sse

ORIGIN = "https://shop.example"


def app_with_cors(deps: StreamDeps) -> FastAPI:
    app = build_app(deps)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[ORIGIN],
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        expose_headers=["Retry-After"],
    )
    return app


@pytest.fixture
async def cors_client(deps: StreamDeps) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_with_cors(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=10) as c:
        yield c


async def test_both_routes_are_documented_in_openapi(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    create = paths["/rag/stream"]["post"]
    resume = paths["/rag/stream/{stream_id}"]["get"]
    assert "text/event-stream" in create["responses"]["200"]["content"]
    assert "text/event-stream" in resume["responses"]["200"]["content"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/StreamRequestBody"
    )
    assert {p["name"] for p in create["parameters"]} == {"context"}
    assert {p["name"] for p in resume["parameters"]} == {"stream_id", "Last-Event-ID"}
    # What each can answer (a new stream has no 404; only a resumed one can be another's, 403).
    assert set(create["responses"]) >= {"200", "400", "401", "413", "429", "503"}
    assert set(resume["responses"]) >= {"200", "400", "401", "403", "404", "503"}


async def test_other_methods_and_paths_get_the_json_error_shape(
    client: httpx.AsyncClient,
) -> None:
    assert assert_error_shape(await client.get("/rag/stream"), 405)["code"] == (
        "method_not_allowed"
    )
    assert_error_shape(await client.put("/rag/stream/abc"), 405)
    assert assert_error_shape(await client.get("/rag/stream/a/b"), 404)["code"] == "not_found"


async def test_cors_preflight_and_headers_apply_to_streams_and_their_errors(
    cors_client: httpx.AsyncClient,
) -> None:
    preflight = await cors_preflight(
        cors_client, "/rag/stream", origin=ORIGIN, method="POST", headers="content-type"
    )
    stream = await post_stream(cors_client, headers={"Origin": ORIGIN})
    error = await post_stream(cors_client, context="bad id!", headers={"Origin": ORIGIN})
    foreign = await post_stream(cors_client, headers={"Origin": "https://evil.example"})

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert stream.status_code == 200
    assert stream.headers["access-control-allow-origin"] == ORIGIN
    assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert parse_sse(stream.content).events[-1].type == "done"
    assert_error_shape(error, 400)
    assert error.headers["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-origin" not in foreign.headers


async def test_routes_are_found_below_the_servers_root_path(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app, root_path="/api")  # uvicorn --root-path /api
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post(
            "/api/rag/stream", params={"context": "c"}, json={"query": "Any boots?"}
        )

    assert response.status_code == 200
    assert deltas(parse_sse(response.content).events)


async def test_a_bug_while_starting_a_stream_is_a_500_json_error_not_a_hang(
    app: FastAPI, resolver: FakeResolver, registry: StreamRegistry
) -> None:
    """Over a real server: the error middleware answers, the connection does not hang."""
    resolver.context = replace(resolver.context, catalog_version=object())  # type: ignore[arg-type]

    async with live_server(app) as url, httpx.AsyncClient(base_url=url, timeout=5) as client:
        response = await post_stream(client)

    assert assert_error_shape(response, 500)["code"] == "internal_error"
    assert registry.stats() == StreamStats(sessions=0, generating=0, readers=0)


async def test_without_an_exception_handler_a_bug_is_a_plain_500(deps: StreamDeps) -> None:
    app = build_app(deps, error_handlers=False)  # Starlette's default answer
    app.state.stream_deps = None  # the lookup below fails like a bug would
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await post_stream(client)

    assert response.status_code == 500
    assert response.text == "Internal Server Error"


async def test_the_openapi_body_schema_is_the_validating_model(client: httpx.AsyncClient) -> None:
    """One model validates and documents the body: its constraints are in the schema."""
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]

    body = schemas["StreamRequestBody"]
    assert body["required"] == ["query"]
    assert body["properties"]["top_k"]["anyOf"][0] == {
        "type": "integer",
        "maximum": 50,
        "minimum": 1,
    }
    assert body["properties"]["messages"]["maxItems"] == 50
    assert "pattern" in body["properties"]["context_id"]["anyOf"][0]


async def test_the_stream_is_a_starlette_streaming_response(
    registry: StreamRegistry,
) -> None:
    """Made by ``StreamingResponse.__init__``: what middleware may read on a response is set."""
    session = registry.open(context_id="c", principal=None, started_at=0.0)
    response = SessionResponse(
        session, registry, encoder=NativeSseEncoder(session.stream_id), headers={"X-A": "b"}
    )

    assert isinstance(response, StreamingResponse)
    assert response.status_code == 200
    assert response.background is None
    headers = dict(response.raw_headers)
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"cache-control"] == b"no-store"
    assert headers[b"x-a"] == b"b"
    assert b"content-length" not in headers
    response.release()
    assert registry.stats().readers == 0
