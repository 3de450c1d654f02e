"""The bytes of the OpenAI-style stream (ids, ``[DONE]``, comments) and resuming it natively."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from rag_service.domain import Failed, Resumed, RetryNotice, TextDelta
from rag_service.errors import UpstreamRejected
from tests.app.conftest import client_auth
from tests.fakes.upstream import Hold, Pause, Step, completed
from tests.openai_compat.conftest import ANSWER, LiveService, running_service, user_turn
from tests.streaming.sse_spec import ParsedStream, SseEvent, parse_sse, sse_events

ID = re.compile(r"(?P<stream>[A-Za-z0-9_-]{16,64}):(?P<seq>[0-9]+)")


async def post_raw(service: LiveService, **body: Any) -> httpx.Response:
    async with service.http() as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": user_turn(), "stream": True, **body},
            headers=client_auth(),
        )
    assert response.status_code == 200, response.text
    return response


def seqs(events: list[SseEvent]) -> list[int]:
    found = [ID.fullmatch(event.last_event_id) for event in events]
    assert all(found), [event.last_event_id for event in events]
    return [int(match["seq"]) for match in found if match]


def contents(events: list[SseEvent]) -> str:
    chunks = [event.json() for event in events if event.data != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def assert_every_block_has_data(raw: bytes) -> None:
    """The SDKs' decoder turns a block without ``data`` into an event it cannot parse."""
    parsed = parse_sse(raw)
    assert not parsed.unterminated
    assert parsed.blocks_without_data == 0, raw


async def test_every_chunk_has_an_id_and_the_stream_ends_with_done(service: LiveService) -> None:
    response = await post_raw(service, stream_options={"include_usage": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-context-id"].startswith("oai-")
    parsed = parse_sse(response.content)
    assert_every_block_has_data(response.content)
    events = parsed.events
    assert all(event.own_id and event.type == "message" for event in events)
    assert parsed.comments == []
    assert parsed.reconnection_ms is None
    stream_id = json.loads(events[0].data)["rag"]["stream_id"]
    assert {event.last_event_id.partition(":")[0] for event in events} == {stream_id}
    # meta=1, three deltas=2..4; done=5 gives the finish, the usage and the [DONE] events.
    assert seqs(events) == [1, 2, 3, 4, 5, 5, 5]
    assert events[-1].data == "[DONE]"
    assert contents(events) == "".join(ANSWER)


async def test_retry_notices_become_comment_lines_and_the_text_stays_exact(
    service: LiveService,
) -> None:
    service.upstream.script = [
        TextDelta("Half "),
        RetryNotice(attempt=2, max_attempts=5, delay_s=0.01, reason="read_timeout"),
        Resumed(attempt=2, strategy="replay"),
        TextDelta("and the rest."),
        completed(),
    ]
    response = await post_raw(service)
    assert_every_block_has_data(response.content)
    parsed = parse_sse(response.content)
    assert parsed.comments == ["retry attempt=2", "resumed attempt=2"]
    assert contents(parsed.events) == "Half and the rest."
    assert seqs(parsed.events) == [1, 2, 5, 6, 6]  # the notices' seqs 3 and 4 have no chunk


async def test_an_error_after_the_start_is_an_error_data_without_done(
    service: LiveService,
) -> None:
    service.upstream.script = [
        TextDelta("Partial "),
        Failed(UpstreamRejected("the upstream refused the request", status=400), attempts=1),
    ]
    response = await post_raw(service)
    events = parse_sse(response.content).events
    assert seqs(events) == [1, 2, 3]
    assert events[-1].json() == {
        "error": {
            "code": "upstream_rejected",
            "message": "the upstream refused the request",
            "retryable": False,
            "details": {"status": 400},
        }
    }
    assert all(event.data != "[DONE]" for event in events)


async def test_pings_are_single_comment_lines_the_sdk_reads_past(tmp_path: Path) -> None:
    held_script: list[Step] = [TextDelta("Slow "), Hold(), TextDelta("answer."), completed()]
    slow_script: list[Step] = [TextDelta("Slow "), Pause(0.4), TextDelta("answer."), completed()]
    async with running_service(tmp_path, ping_interval_s=0.05) as service:
        service.upstream.script = held_script
        body = b""
        async with (
            service.http() as http,
            http.stream(
                "POST",
                "/v1/chat/completions",
                json={"model": "m", "messages": user_turn(), "stream": True},
                headers=client_auth(),
            ) as response,
        ):
            async for chunk in response.aiter_raw():
                body += chunk
                if b": ping\n" in body:  # the answer is held until a ping came: no race
                    service.upstream.release()
        assert b": ping\n\n" not in body
        assert_every_block_has_data(body)
        service.upstream.script = slow_script
        async with service.sdk() as sdk:
            stream = await sdk.chat.completions.create(model="m", messages=user_turn(), stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Slow answer."


async def read_until_first_content(response: httpx.Response) -> tuple[str, str]:
    """The stream id and the SSE id of the first content chunk (then stop reading)."""
    async for event in sse_events(response):
        if '"content":"The "' in event.data:
            return event.json()["id"].removeprefix("chatcmpl-"), event.last_event_id
    raise AssertionError("the stream ended before its first content")


def native_deltas(parsed: ParsedStream) -> str:
    return "".join(e.json()["text"] for e in parsed.events if e.type == "delta")


async def test_a_broken_stream_resumes_through_the_native_endpoint(service: LiveService) -> None:
    service.upstream.script = [TextDelta("The "), Hold(), TextDelta("rest of it."), completed()]
    async with service.http() as http:
        async with http.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "m", "messages": user_turn(), "stream": True},
            headers=client_auth(),
        ) as response:
            stream_id, last_id = await read_until_first_content(response)
        # The connection is gone; the answer goes on within the grace period.
        service.upstream.release()
        resumed = await http.get(
            f"/rag/stream/{stream_id}", headers=client_auth() | {"Last-Event-ID": last_id}
        )
        foreign = await http.get(f"/rag/stream/{stream_id}", headers={"Last-Event-ID": last_id})
    assert last_id == f"{stream_id}:2"
    assert resumed.status_code == 200, resumed.text
    parsed = parse_sse(resumed.content)
    assert [event.type for event in parsed.events] == ["delta", "done"]
    assert native_deltas(parsed) == "rest of it."
    assert foreign.status_code == 401  # resuming needs the creator's key


async def test_a_chunked_body_over_the_limit_is_cut_off_with_a_json_413(
    service: LiveService,
) -> None:
    """Without Content-Length the limit holds on the bytes that arrive."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "m", "messages": [{"role": "user", "content": "'
        for _ in range(4 * service.settings.stream.max_body_bytes // 8192):
            yield b"x" * 8192
        yield b'"}]}'

    async with service.http() as http:
        response = await http.post(
            "/v1/chat/completions",
            content=chunks(),
            headers=client_auth() | {"Content-Type": "application/json"},
        )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert service.upstream.answer_calls == 0
