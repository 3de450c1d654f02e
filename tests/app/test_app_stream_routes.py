"""The assembled app's stream routes: documented, and with CORS as configured in the settings
(on the stream, on its errors, and on a refused oversized body)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.app.conftest import ANSWER, app_settings, client_auth, running_service
from tests.streaming.helpers import assert_error_shape, cors_preflight, deltas
from tests.streaming.sse_spec import parse_sse

ORIGIN = "https://shop.example"


@pytest.fixture
async def cors_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = app_settings(tmp_path).model_copy(update={"cors_origins": [ORIGIN]})
    async with running_service(settings) as service:
        yield service.client


async def test_stream_routes_get_the_configured_cors_headers(
    cors_client: httpx.AsyncClient,
) -> None:
    preflight = await cors_preflight(
        cors_client,
        "/rag/stream",
        origin=ORIGIN,
        method="POST",
        headers="authorization,content-type,last-event-id",
    )
    stream = await cors_client.post(
        "/rag/stream",
        params={"context": "shop:user-1"},
        json={"query": "How much is the tent?"},
        headers=client_auth() | {"Origin": ORIGIN},
    )
    refused = await cors_client.post(
        "/rag/stream", params={"context": "c"}, json={"query": "hi"}, headers={"Origin": ORIGIN}
    )

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert stream.status_code == 200
    assert stream.headers["access-control-allow-origin"] == ORIGIN
    assert deltas(parse_sse(stream.content).events) == "".join(ANSWER)
    assert_error_shape(refused, 401)
    assert refused.headers["access-control-allow-origin"] == ORIGIN
    assert "retry-after" in refused.headers["access-control-expose-headers"].lower()


async def test_a_browser_on_another_origin_may_cancel_a_stream(
    cors_client: httpx.AsyncClient,
) -> None:
    preflight = await cors_preflight(
        cors_client,
        "/rag/stream/5nq3Hc0Zr0Xo2qV1d3m2Kw",
        origin=ORIGIN,
        method="DELETE",
        headers="authorization",
    )

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "DELETE" in preflight.headers["access-control-allow-methods"]


async def test_a_refused_oversized_body_carries_the_cors_headers(
    cors_client: httpx.AsyncClient,
) -> None:
    response = await cors_client.post(
        "/rag/stream",
        params={"context": "c"},
        content=b'{"query": "' + b"x" * 300_000 + b'"}',
        headers=client_auth() | {"Origin": ORIGIN, "Content-Type": "application/json"},
    )

    assert assert_error_shape(response, 413)["code"] == "payload_too_large"
    assert response.headers["access-control-allow-origin"] == ORIGIN


async def test_openapi_documents_every_public_route(cors_client: httpx.AsyncClient) -> None:
    response = await cors_client.get("/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/rag/stream", "/rag/stream/{stream_id}", "/v1/chat/completions"} <= set(paths)
    assert set(paths["/rag/stream"]) == {"post"}
    assert set(paths["/rag/stream/{stream_id}"]) == {"get", "delete"}
