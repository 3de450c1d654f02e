"""A lone surrogate or a NUL byte, in every text a client sends, is a 4xx in the JSON error shape.

A lone surrogate (``"\\ud800"``) is valid JSON but no text: nothing can encode it as UTF-8 for
the embedder, the store, the upstream or a log line. A NUL passes JSON too and breaks paths and
C libraries. Both are refused where they come in (400 naming the field), never a 500 marked
retryable, and never an in-stream ``internal_error`` (the cached-context case below).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.app.conftest import Service, admin_auth, client_auth
from tests.streaming.helpers import assert_error_shape
from tests.streaming.sse_spec import parse_sse

SURROGATE = "\ud800"
NUL = "\x00"
HOSTILE = pytest.mark.parametrize("bad", [SURROGATE, NUL], ids=["lone-surrogate", "nul"])
CONTEXT = "ctx-hostile"


def json_body(body: dict[str, Any]) -> dict[str, Any]:
    """Request arguments for ``body`` as JSON text (``\\ud800`` written as JSON writes it)."""
    return {
        "content": json.dumps(body),
        "headers": {**client_auth(), "Content-Type": "application/json"},
    }


def assert_refused(response: httpx.Response, field: str) -> None:
    error = assert_error_shape(response, 400)
    assert error["code"] == "invalid_request"
    assert error["retryable"] is False
    fields = [problem["field"] for problem in error["details"]["errors"]]
    assert any(name == field or name.startswith(field + ".") for name in fields), fields


def native_bodies(bad: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("query", {"query": f"tents{bad}"}),
        ("query", {"query": bad}),
        ("messages.0.content", {"query": "q", "messages": [{"role": "user", "content": bad}]}),
        ("filters", {"query": "q", "filters": {f"category{bad}": "tents"}}),
        ("filters.category", {"query": "q", "filters": {"category": f"tents{bad}"}}),
    ]


@HOSTILE
async def test_native_stream_refuses_it_in_every_text(service: Service, bad: str) -> None:
    for field, body in native_bodies(bad):
        response = await service.client.post(
            "/rag/stream", params={"context": CONTEXT}, **json_body(body)
        )
        assert_refused(response, field)
    response = await service.client.post(
        "/rag/stream", **json_body({"query": "q", "context_id": f"c{bad}"})
    )
    assert_refused(response, "context_id")
    # In a URL it can only arrive percent-encoded (the bytes of the surrogate, U+FFFD once read).
    encoded = quote(f"c{bad}".encode("utf-8", "surrogatepass"))
    response = await service.client.post(
        f"/rag/stream?context={encoded}", **json_body({"query": "q"})
    )
    assert_refused(response, "context")


@HOSTILE
async def test_a_cached_context_refuses_it_before_the_stream(service: Service, bad: str) -> None:
    first = await service.client.post(
        "/rag/stream", params={"context": CONTEXT}, **json_body({"query": "tents"})
    )
    assert first.status_code == 200
    assert "event: done" in first.text  # the context is now cached
    answers_before = service.upstream.answer_calls

    response = await service.client.post(
        "/rag/stream", params={"context": CONTEXT}, **json_body({"query": f"tents{bad}"})
    )
    assert_refused(response, "query")
    assert service.upstream.answer_calls == answers_before


def openai_bodies(bad: str) -> list[tuple[str, dict[str, Any]]]:
    question = [{"role": "user", "content": "How much are tents?"}]
    return [
        ("messages.0.content", {"messages": [{"role": "user", "content": f"tents{bad}"}]}),
        (
            "messages.0.content",
            {"messages": [{"role": "user", "content": [{"type": "text", "text": bad}]}]},
        ),
        ("messages.0.content", {"messages": [{"role": "system", "content": bad}, *question]}),
        ("messages.0.name", {"messages": [{"role": "user", "content": "q", "name": bad}]}),
        ("model", {"model": bad, "messages": question}),
        ("user", {"user": bad, "messages": question}),
        ("stop", {"stop": bad, "messages": question}),
        ("stop", {"stop": ["x", bad], "messages": question}),
        ("rag.filters", {"rag": {"filters": {bad: "tents"}}, "messages": question}),
        ("rag.filters", {"rag": {"filters": {"category": bad}}, "messages": question}),
    ]


@HOSTILE
@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
async def test_openai_facade_refuses_it_in_every_text(
    service: Service, bad: str, stream: bool
) -> None:
    for field, body in openai_bodies(bad):
        response = await service.client.post(
            "/v1/chat/completions", **json_body({**body, "stream": stream})
        )
        assert_refused(response, field)
    assert service.upstream.answer_calls == 0


async def test_headers_and_paths_with_nul_are_client_errors(service: Service) -> None:
    question = {"messages": [{"role": "user", "content": "q"}]}
    args = json_body(question)
    args["headers"]["X-Context-Id"] = "c\x00"
    assert_refused(await service.client.post("/v1/chat/completions", **args), "X-Context-Id")

    resume = await service.client.get("/rag/stream/a%00b", headers=client_auth())
    assert_error_shape(resume, 404)
    for stream_path in ("/rag/stream/a%00b", "/rag/stream/%ED%A0%80"):
        assert_error_shape(await service.client.delete(stream_path, headers=client_auth()), 404)
    stream_id = await _a_finished_stream(service)
    for last_event_id in (f"{stream_id}:1\x00", f"{stream_id}\x00:1", "\x00"):
        response = await service.client.get(
            f"/rag/stream/{stream_id}",
            headers={**client_auth(), "Last-Event-ID": last_event_id},
        )
        assert_error_shape(response, 400)

    for path in ("/v1/models/a%00b", "/v1/models/%ED%A0%80"):
        assert_error_shape(await service.client.get(path, headers=client_auth()), 404)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/v1/models"])
async def test_routes_without_text_inputs_ignore_it_in_the_query_string(
    service: Service, path: str
) -> None:
    response = await service.client.get(path + "?x=%00&y=%ED%A0%80", headers=client_auth())
    assert response.status_code == 200


async def _a_finished_stream(service: Service) -> str:
    response = await service.client.post(
        "/rag/stream", params={"context": CONTEXT}, **json_body({"query": "tents"})
    )
    assert response.status_code == 200
    return parse_sse(response.content).events[0].last_event_id.rpartition(":")[0]


@HOSTILE
async def test_admin_refuses_it_in_paths_and_names(service: Service, bad: str) -> None:
    admin = {**admin_auth(), "Content-Type": "application/json"}
    body = json.dumps({"path": f"catalogs{bad}"})
    response = await service.client.post("/admin/ingest", content=body, headers=admin)
    assert_refused(response, "path")

    encoded = quote(f"p{bad}.jsonl".encode("utf-8", "surrogatepass"))
    upload = await service.client.post(
        f"/admin/ingest?filename={encoded}", content=b"{}\n", headers=admin_auth()
    )
    if bad == NUL:
        assert_error_shape(upload, 400)
    else:  # a URL's invalid UTF-8 reads as U+FFFD: a name like any other, no surrogate
        assert upload.status_code == 202, upload.text

    context = quote(f"c{bad}".encode("utf-8", "surrogatepass"))
    invalidate = await service.client.post(
        f"/admin/contexts/{context}/invalidate", headers=admin_auth()
    )
    assert_refused(invalidate, "context_id")
