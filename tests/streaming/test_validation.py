"""Every invalid request is refused before the stream with a 4xx JSON error, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.resolver import FakeResolver
from tests.fakes.upstream import ScriptedUpstream
from tests.streaming.helpers import assert_error_shape

VALID_CONTEXT = "shop:user-1"


@pytest.fixture(autouse=True)
def nothing_started(resolver: FakeResolver, upstream: ScriptedUpstream) -> Iterator[None]:
    """No refused request may reach the resolver or the upstream."""
    yield
    assert resolver.calls == []
    assert upstream.answer_calls == 0


@pytest.mark.parametrize(
    "context",
    [
        "",
        "has space",
        "slash/not-allowed",
        "umlaut-ä",
        "x" * 129,
        "line\nbreak",
    ],
)
async def test_bad_context_id_is_400(client: httpx.AsyncClient, context: str) -> None:
    response = await client.post("/rag/stream", params={"context": context}, json={"query": "q"})

    error = assert_error_shape(response, 400)
    assert error["code"] == "invalid_request"


async def test_bad_context_id_in_body_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/rag/stream", json={"query": "q", "context_id": "bad id"})

    assert_error_shape(response, 400)


async def test_missing_context_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/rag/stream", json={"query": "q"})

    error = assert_error_shape(response, 400)
    assert "context" in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"query": ""},
        {"query": "   \n\t "},
        {"query": "x" * 4001},
        {"query": 5},
        {"query": None},
        {"query": ["q"]},
        {"query": "q", "top_k": "5"},
        {"query": "q", "top_k": 0},
        {"query": "q", "top_k": 51},
        {"query": "q", "top_k": 2.5},
        {"query": "q", "refresh": "yes"},
        {"query": "q", "refresh": 1},
        {"query": "q", "messages": "earlier"},
        {"query": "q", "messages": [{"role": "robot", "content": "beep"}]},
        {"query": "q", "messages": [{"role": "user"}]},
        {"query": "q", "messages": [{"role": "user", "content": 3}]},
        {"query": "q", "messages": [{"role": "user", "content": "hi"}] * 51},
        {"query": "q", "filters": ["category"]},
        {"query": "q", "filters": {"category": {"in": ["a", "b"]}}},
        {"query": "q", "filters": {"category": None}},
        {"query": "q", "filters": {"": "x"}},
        {"query": "q", "filters": {f"k{i}": i for i in range(17)}},
        {"query": "q", "context_id": 12},
    ],
)
async def test_invalid_body_is_400(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post("/rag/stream", params={"context": VALID_CONTEXT}, json=body)

    error = assert_error_shape(response, 400)
    assert error["code"] == "invalid_request"


async def test_validation_errors_name_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/rag/stream", params={"context": VALID_CONTEXT}, json={"query": "q", "top_k": "many"}
    )

    error = assert_error_shape(response, 400)
    assert [e["field"] for e in error["details"]["errors"]] == ["top_k"]
    assert "many" not in response.text  # input values are not echoed back


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"",
        b'{"query": "q",}',
        b"[1, 2]",
        b'"just a string"',
        b"\xff\xfe{}",
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
async def test_malformed_json_is_400(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(
        "/rag/stream",
        params={"context": VALID_CONTEXT},
        content=raw,
        headers={"content-type": "application/json"},
    )

    error = assert_error_shape(response, 400)
    assert error["code"] == "invalid_request"


async def test_body_over_the_limit_by_content_length_is_413(client: httpx.AsyncClient) -> None:
    body = b'{"query": "' + b"x" * (256 * 1024) + b'"}'

    response = await client.post("/rag/stream", params={"context": VALID_CONTEXT}, content=body)

    error = assert_error_shape(response, 413)
    assert error["code"] == "payload_too_large"


async def test_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    """Without Content-Length the limit is enforced on the bytes that actually arrive."""
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"query": "'
        for _ in range(64):
            sent += 1
            yield b"x" * 8192
        yield b'"}'

    response = await client.post("/rag/stream", params={"context": VALID_CONTEXT}, content=chunks())

    assert "content-length" not in response.request.headers
    assert_error_shape(response, 413)


@pytest.mark.parametrize("stream_overrides", [{"max_query_chars": 10}])
async def test_query_limit_follows_settings(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/rag/stream", params={"context": VALID_CONTEXT}, json={"query": "x" * 11}
    )

    error = assert_error_shape(response, 400)
    assert "10" in error["message"]
