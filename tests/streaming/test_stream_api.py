"""POST /rag/stream through the real router and app, in process (httpx ASGITransport)."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from rag_service.domain import ContextState, Failed, Resumed, RetryNotice, TextDelta
from rag_service.errors import CircuitOpen, RetriesExhausted, UpstreamRetryable
from rag_service.streaming import StreamRegistry, StreamStats
from tests.fakes.resolver import FakeResolver
from tests.fakes.upstream import Pause, Raise, ScriptedUpstream, completed
from tests.streaming.conftest import ANSWER_PIECES
from tests.streaming.helpers import deltas, post_stream, stream_id_of
from tests.streaming.sse_spec import parse_sse


async def test_events_come_in_order_with_gapless_ids(client: httpx.AsyncClient) -> None:
    response = await post_stream(client)

    assert response.status_code == 200
    parsed = parse_sse(response.content)
    events = parsed.events
    assert [e.type for e in events] == ["meta"] + ["delta"] * len(ANSWER_PIECES) + ["done"]
    stream_id = stream_id_of(parsed)
    assert [e.last_event_id for e in events] == [
        f"{stream_id}:{seq}" for seq in range(1, len(events) + 1)
    ]
    assert all(e.own_id for e in events)
    assert deltas(events) == "".join(ANSWER_PIECES)
    assert parsed.comments == []  # no pings at the default 15 s interval


async def test_meta_describes_the_context(client: httpx.AsyncClient) -> None:
    parsed = parse_sse((await post_stream(client, context="shop:user-9")).content)

    meta = parsed.events[0].json()
    assert meta == {
        "stream_id": meta["stream_id"],
        "context_id": "shop:user-9",
        "context": {
            "state": "refreshed",
            "age_s": 1.25,
            "catalog_version": 7,
            "extended": False,
            # Two chunks of boots-1 merge into one source with the better score.
            "sources": [
                {"id": "boots-1", "title": "Trail boots", "score": 0.82},
                {"id": "returns", "title": "Returns", "score": 0.74},
            ],
        },
    }


async def test_done_carries_finish_reason_usage_and_timings(client: httpx.AsyncClient) -> None:
    done = parse_sse((await post_stream(client)).content).events[-1]

    body = done.json()
    assert done.type == "done"
    assert body["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
    assert set(body["timings"]) == {"ttft_ms", "total_ms"}
    assert 0 <= body["timings"]["ttft_ms"] <= body["timings"]["total_ms"]
    assert body["attempts"] == 1


async def test_sse_headers(client: httpx.AsyncClient) -> None:
    response = await post_stream(client)

    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-accel-buffering"] == "no"


async def test_stream_starts_with_a_jittered_retry_line(client: httpx.AsyncClient) -> None:
    response = await post_stream(client)

    assert response.content.startswith(b"retry: ")
    parsed = parse_sse(response.content)
    kind, hint = parsed.items[0]
    assert kind == "retry"
    assert 500 <= hint <= 1500  # retry_hint_ms 1000, jittered 0.5-1.5x


async def test_retry_and_resumed_items_become_events(
    client: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    upstream.script = [
        TextDelta("Hello"),
        RetryNotice(attempt=2, max_attempts=5, delay_s=0.25, reason="connect_error"),
        Resumed(attempt=2, strategy="replay"),
        TextDelta(" world"),
        completed(attempts=2),
    ]

    events = parse_sse((await post_stream(client)).content).events

    assert [e.type for e in events] == ["meta", "delta", "retry", "resumed", "delta", "done"]
    assert events[2].json() == {
        "attempt": 2,
        "max_attempts": 5,
        "delay_ms": 250,
        "reason": "connect_error",
    }
    assert events[3].json() == {"attempt": 2, "strategy": "replay"}
    assert deltas(events) == "Hello world"
    assert events[-1].json()["attempts"] == 2


async def test_failed_upstream_ends_with_an_error_event(
    client: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    upstream.script = [TextDelta("Part"), Failed(RetriesExhausted("gave up after 5"), attempts=5)]

    events = parse_sse((await post_stream(client)).content).events

    assert [e.type for e in events] == ["meta", "delta", "error"]
    assert events[-1].json() == {
        "code": "upstream_retries_exhausted",
        "message": "gave up after 5",
        "retryable": True,
    }


@pytest.mark.parametrize(
    ("step", "code"),
    [
        (Raise(UpstreamRetryable("cut", reason="eof")), "upstream_unavailable"),
        (Raise(ValueError("a bug")), "internal_error"),
        (None, "upstream_protocol_error"),  # the stream just ends without a terminal item
    ],
)
async def test_broken_upstream_contract_still_ends_with_error(
    client: httpx.AsyncClient, upstream: ScriptedUpstream, step: Raise | None, code: str
) -> None:
    upstream.script = [TextDelta("Part"), *([step] if step else [])]

    events = parse_sse((await post_stream(client)).content).events

    assert [e.type for e in events] == ["meta", "delta", "error"]
    assert events[-1].json()["code"] == code


async def test_open_circuit_answers_503_before_the_stream(
    client: httpx.AsyncClient,
    upstream: ScriptedUpstream,
    resolver: FakeResolver,
    registry: StreamRegistry,
) -> None:
    upstream.unavailable = CircuitOpen("the upstream is failing", retry_after_s=2.3)

    response = await post_stream(client)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"]["code"] == "upstream_circuit_open"
    assert response.json()["error"]["message"] == "the upstream is failing"
    assert resolver.calls == []
    assert upstream.answer_calls == 0
    assert registry.stats().sessions == 0


@pytest.mark.parametrize("registry_limit", [1])
async def test_full_registry_answers_503_with_retry_after(
    client: httpx.AsyncClient, registry: StreamRegistry, resolver: FakeResolver
) -> None:
    registry.open(context_id="other", principal=None, started_at=0.0)  # one live reader

    response = await post_stream(client)

    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"]["code"] == "unavailable"
    assert resolver.calls == []


async def test_request_fields_reach_resolver_and_prompt(
    client: httpx.AsyncClient, resolver: FakeResolver, upstream: ScriptedUpstream
) -> None:
    body = {
        "query": "  Do you ship to Austria?  ",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
        ],
        "filters": {"category": "boots", "in_stock": True, "size": 42},
        "refresh": True,
        "top_k": 3,
        "client_version": "2.1",  # unknown fields are allowed
    }

    response = await post_stream(client, body)

    assert response.status_code == 200
    [call] = resolver.calls
    assert call.context_id == "shop:user-1"
    assert call.query == "Do you ship to Austria?"
    assert call.filters == {"category": "boots", "in_stock": True, "size": 42}
    assert call.top_k == 3
    assert call.refresh is True
    [request] = upstream.requests
    assert [(m.role, m.content) for m in request.messages[1:]] == [
        ("user", "Hi"),
        ("assistant", "Hello! How can I help?"),
        ("user", "Do you ship to Austria?"),
    ]


async def test_context_id_from_body_and_query_parameter_precedence(
    client: httpx.AsyncClient, resolver: FakeResolver
) -> None:
    await post_stream(client, {"query": "q", "context_id": "from-body"}, context=None)
    await post_stream(client, {"query": "q", "context_id": "from-body"}, context="from-param")

    assert [c.context_id for c in resolver.calls] == ["from-body", "from-param"]


async def test_fallback_context_state_is_reported(
    client: httpx.AsyncClient, resolver: FakeResolver
) -> None:
    resolver.context = replace(
        resolver.context,
        state=ContextState.fallback,
        passages=(),
        fallback_text="We sell outdoor gear.",
    )

    meta = parse_sse((await post_stream(client)).content).events[0].json()

    assert meta["context"]["state"] == "fallback"
    assert meta["context"]["sources"] == []


@pytest.mark.parametrize("stream_overrides", [{"ping_interval_s": 0.05}])
async def test_pings_fill_idle_time(client: httpx.AsyncClient, upstream: ScriptedUpstream) -> None:
    upstream.script = [TextDelta("before"), Pause(0.4), TextDelta(" after"), completed()]

    parsed = parse_sse((await post_stream(client)).content)

    kinds = [
        value.type if kind == "event" else kind
        for kind, value in parsed.items
        if kind in ("event", "comment")
    ]
    assert kinds[:2] == ["meta", "delta"]
    assert kinds[-2:] == ["delta", "done"]
    pings_between = kinds[2:-2]
    assert len(pings_between) >= 1
    assert set(pings_between) == {"comment"}
    assert set(parsed.comments) == {"ping"}
    assert deltas(parsed.events) == "before after"


async def test_longest_context_id_is_accepted(
    client: httpx.AsyncClient, resolver: FakeResolver
) -> None:
    context = "A-z.0_9:" * 16  # 128 characters, every allowed kind

    response = await post_stream(client, {"query": "q"}, context=context)

    assert response.status_code == 200
    assert [c.context_id for c in resolver.calls] == [context]


async def test_body_exactly_at_the_limit_is_accepted(
    client: httpx.AsyncClient, resolver: FakeResolver
) -> None:
    body = b'{"query": "q", "pad": "' + b"x" * (256 * 1024 - 25) + b'"}'
    assert len(body) == 256 * 1024

    response = await client.post("/rag/stream", params={"context": "c"}, content=body)

    assert response.status_code == 200
    assert [c.query for c in resolver.calls] == ["q"]


async def test_a_start_that_fails_half_way_leaves_no_session(
    client: httpx.AsyncClient, resolver: FakeResolver, registry: StreamRegistry
) -> None:
    """A bug after the session opened (here: an unencodable meta) must not leak the session."""
    resolver.context = replace(resolver.context, catalog_version=object())  # type: ignore[arg-type]

    with pytest.raises(TypeError):
        await post_stream(client)

    assert registry.stats() == StreamStats(sessions=0, generating=0, readers=0)
