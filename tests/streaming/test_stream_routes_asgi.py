"""The stream routes as served by ``StreamRoutes`` (in front of FastAPI's middleware stack): what
FastAPI used to give them for free still holds - docs, CORS, 404/405, root_path, 500 on a bug."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.requests import Request

from rag_service.api.stream_routes import StreamingFastAPI, mount_stream_routes
from rag_service.streaming import StreamDeps, StreamRegistry, StreamStats
from tests.fakes.resolver import FakeResolver
from tests.live_server import live_server
from tests.streaming.conftest import build_app, header_principal
from tests.streaming.helpers import assert_error_shape, deltas, post_stream
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
    assert set(create["responses"]) >= {"200", "400", "401", "404", "413", "503"}


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
    preflight = await cors_client.options(
        "/rag/stream",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
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


def broken_deps_lookup(request: Request) -> StreamDeps:
    raise ZeroDivisionError("a bug")


async def test_without_an_exception_handler_a_bug_is_a_plain_500(deps: StreamDeps) -> None:
    app = StreamingFastAPI()  # no install_error_handlers: Starlette's default answer
    app.state.stream_deps = deps
    mount_stream_routes(app, get_deps=broken_deps_lookup, principal=header_principal)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await post_stream(client)

    assert response.status_code == 500
    assert response.text == "Internal Server Error"


def stream_scope(app: FastAPI) -> dict[str, object]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/rag/stream",
        "raw_path": b"/rag/stream",
        "root_path": "",
        "query_string": b"context=c-1",
        "headers": [(b"content-type", b"application/json")],
        "app": app,
    }


async def never_called(*_: object) -> None:
    raise AssertionError("the request was only to be dispatched, not run")


def first_frame_of(app: FastAPI) -> str:
    """The code that a request's task would run first for a stream (the awaitable is closed)."""
    awaitable = app(stream_scope(app), never_called, never_called)
    try:
        return awaitable.cr_code.co_qualname  # type: ignore[attr-defined,no-any-return]
    finally:
        awaitable.close()  # type: ignore[attr-defined]


async def test_with_telemetry_off_a_stream_keeps_no_frame_of_fastapi_or_starlette(
    deps: StreamDeps,
) -> None:
    app = build_app(deps)
    assert not app._native_telemetry.enabled()  # type: ignore[attr-defined]
    assert first_frame_of(app) == "StreamEndpoint.__call__"


async def test_with_native_telemetry_on_requests_take_fastapis_own_path(
    deps: StreamDeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = build_app(deps)
    monkeypatch.setattr(app._native_telemetry, "enabled", lambda: True)  # type: ignore[attr-defined]
    assert first_frame_of(app) == "FastAPI.__call__"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=10) as c:
        response = await post_stream(c)
    assert response.status_code == 200
    assert deltas(parse_sse(response.content).events)


def test_servers_detect_the_app_as_asgi3(deps: StreamDeps) -> None:
    """uvicorn picks ASGI 2 or 3 by whether ``app.__call__`` looks like a coroutine function."""
    config = uvicorn.Config(build_app(deps))
    config.load()
    assert config.interface == "asgi3"
