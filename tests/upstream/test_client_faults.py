"""Every fault class of the fault server through the real client: exact text, exact attempts."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from rag_service import __version__
from rag_service.domain import Completed, Failed, Resumed, RetryNotice, TextDelta
from rag_service.errors import (
    ConfigurationError,
    RetriesExhausted,
    UpstreamProtocolError,
    UpstreamRejected,
)
from rag_service.upstream import OpenAICompatibleUpstream
from rag_service.upstream.chunks import MAX_EVENT_CHARS
from tests.fixture_servers.fault_plan import answer_pieces
from tests.fixture_servers.fault_upstream import (
    AnswerStyle,
    CutAfter,
    Drop,
    ErrorEvent,
    FaultUpstream,
    MalformedJson,
    Stall,
    Status,
    TruncatedJson,
    WrongContentType,
    answer_text,
)
from tests.upstream.conftest import (
    QUESTION,
    QUESTION_MESSAGES,
    ClientFactory,
    FakeTime,
    collect,
    settings_for,
)

ANSWER = answer_text(QUESTION_MESSAGES)
HEAD_200_SSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
PIECES = answer_pieces(QUESTION_MESSAGES, AnswerStyle())


def first_backoff(seed: int = 7, base: float = 0.5) -> float:
    return random.Random(seed).uniform(0, base)


async def test_complete_answer_with_request_shape(
    upstream: FaultUpstream, make_client: ClientFactory
) -> None:
    client = make_client(
        upstream.base_url,
        api_key="sk-test-123",
        extra_headers={"X-Tenant": "shop"},
        params={"temperature": 0, "seed": 42, "max_tokens": 64},
    )
    items = await collect(client.stream(QUESTION))
    assert items[:-1] == [TextDelta(piece) for piece in PIECES]
    done = items.terminal
    assert isinstance(done, Completed)
    assert (done.finish_reason, done.attempts) == ("stop", 1)
    assert done.usage == {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22}
    assert done.timings.ttft_ms is not None
    [request] = upstream.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test-123"
    assert request.headers["x-tenant"] == "shop"
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["user-agent"] == f"rag-service/{__version__}"
    assert request.headers["content-type"] == "application/json"
    assert "accept-encoding" not in request.headers  # the answer comes uncoded
    assert "cookie" not in request.headers
    assert request.body == {
        "model": "smollm2",
        "temperature": 0,
        "seed": 42,
        "max_tokens": 64,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": QUESTION_MESSAGES,
    }
    assert "sk-test-123" not in repr(client)


async def test_stream_options_can_be_left_out(
    upstream: FaultUpstream, make_client: ClientFactory
) -> None:
    client = make_client(upstream.base_url, params={"stream_options": None})
    items = await collect(client.stream(QUESTION))
    assert items.text == ANSWER
    done = items.terminal
    assert isinstance(done, Completed)
    assert done.usage is None
    assert upstream.requests[0].body is not None
    assert "stream_options" not in upstream.requests[0].body


async def test_no_authorization_header_without_a_key(
    upstream: FaultUpstream, make_client: ClientFactory
) -> None:
    await collect(make_client(upstream.base_url).stream(QUESTION))
    assert "authorization" not in upstream.requests[0].headers


async def test_503_then_success(make_client: ClientFactory, fake_time: FakeTime) -> None:
    async with FaultUpstream([Status(503)]) as upstream:
        items = await collect(make_client(upstream.base_url).stream(QUESTION))
    delay = first_backoff()
    assert items[0] == RetryNotice(attempt=2, max_attempts=5, delay_s=delay, reason="status_503")
    assert items.text == ANSWER
    done = items.terminal
    assert isinstance(done, Completed)
    assert done.attempts == 2
    assert upstream.request_count == 2
    assert fake_time.sleeps == [delay]


@pytest.mark.parametrize(
    ("headers", "asked"),
    [({"Retry-After": "3"}, 3.0), ({"retry-after-ms": "2500"}, 2.5)],
)
async def test_429_retry_after_is_honoured(
    make_client: ClientFactory, fake_time: FakeTime, headers: dict[str, str], asked: float
) -> None:
    async with FaultUpstream([Status(429, "slow down", headers=headers)]) as upstream:
        items = await collect(make_client(upstream.base_url).stream(QUESTION))
    rng = random.Random(7)
    backoff = rng.uniform(0, 0.5)
    expected = max(backoff, asked + rng.uniform(0, 0.1 * asked))
    assert fake_time.sleeps == [expected]
    assert asked <= expected <= asked * 1.1
    assert items[0] == RetryNotice(2, 5, expected, "status_429")
    assert items.text == ANSWER
    assert upstream.request_count == 2


async def test_retry_after_above_the_cap_fails_at_once(make_client: ClientFactory) -> None:
    async with FaultUpstream([Status(503, headers={"Retry-After": "120"})]) as upstream:
        items = await collect(make_client(upstream.base_url).stream(QUESTION))
    [failed] = items
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, RetriesExhausted)
    assert "asked to wait 120 s" in failed.error.message
    assert failed.error.retry_after_s == 120
    assert failed.error.details["reason"] == "retry_after_too_long"
    assert (failed.attempts, upstream.request_count) == (1, 1)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_fail_at_once_with_the_upstream_message(
    make_client: ClientFactory, status: int
) -> None:
    async with FaultUpstream([Status(status, "model 'x' does not exist")]) as upstream:
        items = await collect(make_client(upstream.base_url).stream(QUESTION))
    [failed] = items
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, UpstreamRejected)
    assert failed.error.status == status
    assert f"({status}): model 'x' does not exist" in failed.error.message
    assert (failed.attempts, upstream.request_count) == (1, 1)


async def test_echoed_api_key_is_redacted(make_client: ClientFactory) -> None:
    async with FaultUpstream([Status(401, "Incorrect API key provided: sk-secret-9")]) as upstream:
        items = await collect(
            make_client(upstream.base_url, api_key="sk-secret-9").stream(QUESTION)
        )
    error = items.error
    assert "sk-secret-9" not in error.message
    assert "Incorrect API key provided: ***" in error.message


async def test_x_should_retry_overrides_the_status(make_client: ClientFactory) -> None:
    plan = [Status(400, "flaky", headers={"x-should-retry": "true"})]
    async with FaultUpstream(plan) as upstream:
        items = await collect(make_client(upstream.base_url).stream(QUESTION))
    assert items.text == ANSWER
    assert upstream.request_count == 2
    async with FaultUpstream(
        [Status(503, "do not", headers={"x-should-retry": "false"})]
    ) as upstream:
        items = await collect(make_client(upstream.base_url).stream(QUESTION))
    error = items.error
    assert isinstance(error, UpstreamRejected)
    assert upstream.request_count == 1


async def test_non_sse_content_type_is_a_protocol_error(make_client: ClientFactory) -> None:
    async with FaultUpstream([WrongContentType()]) as upstream:
        items = await collect(make_client(upstream.base_url).stream(QUESTION))
    [failed] = items
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, UpstreamProtocolError)
    assert "text/html" in failed.error.message
    assert upstream.request_count == 1


@pytest.mark.parametrize("fault", [CutAfter(4), CutAfter(4, mid_line=True), TruncatedJson(4)])
async def test_cut_stream_is_replayed_without_duplicates(
    make_client: ClientFactory, fault: CutAfter | TruncatedJson
) -> None:
    async with FaultUpstream([fault]) as upstream:
        items = await collect(make_client(upstream.base_url).stream(QUESTION))
    assert items[:4] == [TextDelta(piece) for piece in PIECES[:4]]
    assert items[4] == RetryNotice(2, 5, first_backoff(), "stream_cut")
    assert items[5] == Resumed(attempt=2, strategy="replay")
    assert items[6:-1] == [TextDelta(piece) for piece in PIECES[4:]]
    assert items.text == ANSWER
    assert upstream.request_count == 2
    assert upstream.requests[0].body == upstream.requests[1].body  # an identical replay


async def test_cut_of_a_close_delimited_body_is_seen_as_eof_before_done(
    make_client: ClientFactory,
) -> None:
    async with FaultUpstream([CutAfter(2)], style=AnswerStyle(chunked=False)) as upstream:
        items = await collect(make_client(upstream.base_url).stream(QUESTION))
    notices = [item for item in items if isinstance(item, RetryNotice)]
    assert [notice.reason for notice in notices] == ["stream_cut"]
    assert items.text == ANSWER
    assert upstream.request_count == 2


async def test_stall_is_detected_by_the_read_timeout(make_client: ClientFactory) -> None:
    async with FaultUpstream([Stall(after_events=3, seconds=5.0)]) as upstream:
        client = make_client(upstream.base_url, read_timeout_s=1.0)
        items = await collect(client.stream(QUESTION))
    assert [i.reason for i in items if isinstance(i, RetryNotice)] == ["stalled"]
    assert items.text == ANSWER
    assert upstream.request_count == 2


async def test_stall_on_the_last_attempt_fails_as_stalled(make_client: ClientFactory) -> None:
    async with FaultUpstream([Stall(after_events=1, seconds=5.0)]) as upstream:
        client = make_client(upstream.base_url, read_timeout_s=0.1, retry={"max_attempts": 1})
        items = await collect(client.stream(QUESTION))
    error = items.error
    assert isinstance(error, RetriesExhausted)
    assert error.details == {"reason": "max_attempts", "last_reason": "stalled"}
    assert items.text == PIECES[0]


async def test_malformed_json_fails_without_retry_keeping_partial_text(
    make_client: ClientFactory,
) -> None:
    async with FaultUpstream([MalformedJson(after_events=2)]) as upstream:
        items = await collect(make_client(upstream.base_url).stream(QUESTION))
    assert items.text == "".join(PIECES[:2])
    failed = items.terminal
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, UpstreamProtocolError)
    assert "malformed JSON" in failed.error.message
    assert (failed.attempts, upstream.request_count) == (1, 1)


@pytest.mark.parametrize("named", [True, False])
async def test_error_payload_in_the_stream(make_client: ClientFactory, named: bool) -> None:
    async with FaultUpstream([ErrorEvent(after_events=1, message="overloaded", named=named)]) as up:
        items = await collect(make_client(up.base_url).stream(QUESTION))
    error = items.error
    assert isinstance(error, UpstreamProtocolError)
    assert error.message == "upstream sent an error in the stream: overloaded"
    assert items.text == PIECES[0]
    assert up.request_count == 1


@pytest.mark.parametrize("reset", [True, False])
async def test_dropped_connection_before_any_answer_is_retried(
    make_client: ClientFactory, reset: bool
) -> None:
    async with FaultUpstream([Drop(reset=reset)]) as upstream:
        items = await collect(make_client(upstream.base_url).stream(QUESTION))
    assert [i.reason for i in items if isinstance(i, RetryNotice)] == ["connection_lost"]
    assert items.text == ANSWER
    assert upstream.request_count == 2


@pytest.mark.parametrize(
    "style",
    [
        AnswerStyle(line_ending="\r\n", write_size=3),
        AnswerStyle(line_ending="\r", write_size=1),
        AnswerStyle(comments=True, multiline_data=True, event_ids=True, bom=True, write_size=7),
        AnswerStyle(words=40, words_per_chunk=3, write_size=2),
    ],
)
async def test_wire_variants_give_the_same_text(
    make_client: ClientFactory, style: AnswerStyle
) -> None:
    async with FaultUpstream([CutAfter(2, mid_line=True)], style=style) as upstream:
        items = await collect(make_client(upstream.base_url).stream(QUESTION))
    assert items.text == answer_text(QUESTION_MESSAGES, style)
    assert isinstance(items.terminal, Completed)
    assert upstream.request_count == 2


async def test_refused_connection_uses_every_attempt(
    make_client: ClientFactory, fake_time: FakeTime
) -> None:
    from tests.conftest import free_port

    client = make_client(f"http://127.0.0.1:{free_port()}/v1", retry={"max_attempts": 4})
    items = await collect(client.stream(QUESTION))
    notices = [item for item in items if isinstance(item, RetryNotice)]
    assert [(n.attempt, n.reason) for n in notices] == [(a, "connect_error") for a in (2, 3, 4)]
    failed = items.terminal
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, RetriesExhausted)
    assert failed.error.details == {"reason": "max_attempts", "last_reason": "connect_error"}
    assert failed.attempts == 4
    assert fake_time.sleeps == [n.delay_s for n in notices]


@pytest.mark.parametrize("base_url", ["ftp://127.0.0.1:9/v1", "127.0.0.1:8088/v1", "http:///v1"])
def test_a_base_url_that_is_not_http_is_refused_when_the_client_is_built(base_url: str) -> None:
    with pytest.raises(ConfigurationError, match="RAG_UPSTREAM__BASE_URL must be an http"):
        OpenAICompatibleUpstream(settings_for(base_url))


async def test_an_endless_line_is_cut_off_as_a_protocol_error(make_client: ClientFactory) -> None:
    """A server that sends one data line without end: the client stops reading past 1 MB."""

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(HEAD_200_SSE + b"data: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(MAX_EVENT_CHARS // 65536 + 2):
                writer.write(b"x" * 65536)
                await writer.drain()
            await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        items = await collect(make_client(f"http://127.0.0.1:{port}/v1").stream(QUESTION))
    [failed] = items
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, UpstreamProtocolError)
    assert "longer than" in failed.error.message


async def test_no_response_head_within_the_read_timeout_is_a_timeout(
    make_client: ClientFactory,
) -> None:
    async with FaultUpstream([Status(503, delay_s=5.0)]) as upstream:
        items = await collect(make_client(upstream.base_url, read_timeout_s=1.0).stream(QUESTION))
    assert [i.reason for i in items if isinstance(i, RetryNotice)] == ["timeout"]
    assert items.text == ANSWER
    assert upstream.request_count == 2
