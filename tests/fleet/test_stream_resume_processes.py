"""Streams resumable on any replica, with real service processes (tests/fleet/conftest.py: two
``rag-service serve`` on loopback sharing one redis-server, one chroma run and an upstream
process): a stream dropped on A resumes exactly on B; a replica SIGKILLed mid-answer leaves
its stream to B, which takes it over and finishes the answer: the client's text is whole,
exactly once, with either continuation strategy."""

from __future__ import annotations

import httpx
import pytest

from tests.fleet.conftest import KEY_A, Fleet, StartFleet
from tests.fleet.upstream_process import HOLD_ONCE, HOLD_ONCE_WORDS
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


@pytest.mark.parametrize("strategy", ["replay", "prefix"])
def test_a_replica_killed_mid_answer_is_taken_over_and_the_answer_is_whole(
    start_fleet: StartFleet, strategy: str
) -> None:
    fleet = start_fleet(2, settings={"RAG_UPSTREAM__CONTINUATION": strategy})
    a, b = fleet.replicas
    question = f"{HOLD_ONCE} Which tent is the lightest?"  # A's answer stalls mid-way
    first = ask_and_drop(a.url, question, deltas=HOLD_ONCE_WORDS)
    stream_id = first.events[0].json()["stream_id"]
    a.kill()  # SIGKILL mid-answer: its heartbeat lapses, its stream is B's to take over

    events = parse_sse(resume(b.url, stream_id, first.events[-1].last_event_id).content).events
    assert [e.type for e in events][:1] == ["resumed"], [e.type for e in events]
    assert events[0].json()["strategy"] == strategy
    assert events[-1].type == "done"
    seqs = [int(e.last_event_id.rpartition(":")[2]) for e in first.events + events]
    assert seqs == list(range(1, len(seqs) + 1))  # one numbering, no event twice

    # The same question answered whole (the upstream answers it at once now): the answer the
    # client pieced together across the kill is exactly that, with no gap and no repeat.
    whole = ask_and_drop(b.url, question, deltas=10_000)
    assert whole.events[-1].type == "done"
    assert text(first.events) + text(events) == text(whole.events)
    with fleet.redis.client() as redis:
        record = redis.hgetall(f"{fleet.key_prefix}stream:{stream_id}:rec")
    assert record["state"] == "ended"
    assert record["takeovers"] == "1"
