"""Streams resumable on any replica, with real service processes (tests/fleet/conftest.py: two
``rag-service serve`` on loopback sharing one redis-server, one chroma run and an upstream
process): a stream dropped on A resumes exactly on B; a replica SIGKILLed mid-answer leaves
its stream's copy on B ending with a clear, retryable ``error`` (the answer does not continue
on another replica yet: issue #14's takeover is still to come)."""

from __future__ import annotations

import time

import httpx

from tests.fleet.conftest import HOLD, KEY_A, Fleet
from tests.streaming.sse_spec import ParsedStream, SseEvent, parse_sse

WAIT_LIMIT_S = 60.0


def ask_and_drop(url: str, question: str, deltas: int) -> ParsedStream:
    """POST a question, read until ``deltas`` delta events came, then drop the connection."""
    received = b""
    with (
        httpx.Client(base_url=url, timeout=WAIT_LIMIT_S) as http,
        http.stream(
            "POST",
            "/rag/stream",
            params={"context": "shop:fleet-1"},
            json={"query": question},
            headers=Fleet.auth(KEY_A),
        ) as response,
    ):
        assert response.status_code == 200, response.read()
        for chunk in response.iter_raw():
            received += chunk
            if sum(e.type == "delta" for e in parse_sse(received).events) >= deltas:
                break
    return parse_sse(received)


def resume(url: str, stream_id: str, last_event_id: str | None = None) -> httpx.Response:
    headers = Fleet.auth(KEY_A) | ({"Last-Event-ID": last_event_id} if last_event_id else {})
    return httpx.get(f"{url}/rag/stream/{stream_id}", headers=headers, timeout=WAIT_LIMIT_S)


def text(events: list[SseEvent]) -> str:
    return "".join(e.json()["text"] for e in events if e.type == "delta")


def shown(events: list[SseEvent]) -> list[tuple[str, str, str]]:
    return [(e.last_event_id, e.type, e.data) for e in events]


def test_a_stream_dropped_on_one_process_resumes_exactly_on_another(fleet: Fleet) -> None:
    a, b = fleet.replicas
    first = ask_and_drop(a.url, "Which tent is the lightest?", deltas=3)
    stream_id = first.events[0].json()["stream_id"]

    on_b = resume(b.url, stream_id, first.events[-1].last_event_id)
    assert on_b.status_code == 200, on_b.text
    rest = parse_sse(on_b.content).events
    assert rest[-1].type == "done"
    whole_on_a = parse_sse(resume(a.url, stream_id).content).events
    assert text(first.events) + text(rest) == text(whole_on_a)  # no gap, no repeat
    assert shown(first.events) + shown(rest) == shown(whole_on_a)  # A's ids and bytes


def test_a_copy_of_a_killed_replicas_stream_ends_with_a_clear_error(fleet: Fleet) -> None:
    a, b = fleet.replicas
    first = ask_and_drop(a.url, f"{HOLD} Which tent is the lightest?", deltas=1)
    stream_id = first.events[0].json()["stream_id"]
    record = f"{fleet.key_prefix}stream:{stream_id}:rec"
    seen = int(first.events[-1].last_event_id.rpartition(":")[2])
    deadline = time.monotonic() + WAIT_LIMIT_S
    with fleet.redis.client() as redis:
        while int(redis.hget(record, "last") or 0) < seen:  # until Redis has what the client has
            assert time.monotonic() < deadline, "the stream's events never reached Redis"
            time.sleep(0.05)
    a.kill()  # its heartbeat lapses; the idle limit (120 s) is not what ends the copy

    started = time.monotonic()
    events = parse_sse(resume(b.url, stream_id, first.events[-1].last_event_id).content).events
    assert time.monotonic() - started < 60
    assert [e.type for e in events] == ["error"]
    error = events[0].json()
    assert error["code"] == "unavailable"
    assert error["details"] == {"reason": "replica_lost"}
    assert error["retryable"] is True
