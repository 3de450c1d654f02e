"""Per-key limits across real service processes (issue #14): a key's limit spent on replica A
is enforced on replica B; with Redis killed mid-run the replicas go on serving new streams on
their own state, ``/readyz`` (still ready) and the metrics say so, and the limits are shared
again once Redis is back."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.fleet.conftest import HOLD, KEY_A, KEY_B, Fleet, StartFleet
from tests.fleet.processes import Replica
from tests.redis_server import RedisServer
from tests.streaming.sse_spec import iter_sse_events, parse_sse

WAIT_LIMIT_S = 60.0  # generous: the replicas share two busy cores with the test
LIMITS = {
    "RAG_LIMITS__STREAMS": "1",
    "RAG_LIMITS__REQUESTS_PER_S": "0.01",  # a token per 100 s: no refill during a test
    "RAG_LIMITS__BURST": "3",
}


def ask(replica: Replica, key: str, context: str, query: str = "Do you ship abroad?") -> Any:
    """A whole answer on ``replica``: the response, its SSE body read."""
    with replica.client() as http:
        return http.post(
            "/rag/stream", params={"context": context}, json={"query": query},
            headers=Fleet.auth(key),
        )  # fmt: skip


def assert_answered(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert parse_sse(response.content).events[-1].type == "done", response.text


def refusal_reason(response: httpx.Response) -> str:
    assert response.status_code == 429, response.text
    reason: str = response.json()["error"]["details"]["reason"]
    return reason


@contextmanager
def held_stream(replica: Replica, key: str, context: str) -> Iterator[str]:
    """A stream of ``key`` on ``replica`` whose generation runs (its first word is out, the rest
    held by the upstream) for the block; yields its id, cancelled (DELETE) at the end."""
    request = {"query": f"Which tent for two? {HOLD}"}
    with (
        replica.client() as http,
        http.stream(
            "POST", "/rag/stream", params={"context": context}, json=request,
            headers=Fleet.auth(key),
        ) as response,
    ):  # fmt: skip
        assert response.status_code == 200, response.read()
        stream_id = ""
        for event in iter_sse_events(response):
            if event.type == "meta":
                stream_id = event.json()["stream_id"]
            elif event.type == "delta":
                break
        assert stream_id
        try:
            yield stream_id
        finally:
            with replica.client() as control:
                cancel = control.delete(f"/rag/stream/{stream_id}", headers=Fleet.auth(key))
            assert cancel.status_code == 200, cancel.text


def eventually(attempt: Any, what: str) -> Any:
    """Call ``attempt`` until it returns something true (at most WAIT_LIMIT_S); returns it."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    while True:
        result = attempt()
        if result:
            return result
        assert time.monotonic() < deadline, f"not {what} within {WAIT_LIMIT_S:g} s"
        time.sleep(0.2)


def shared_state(replica: Replica) -> dict[str, Any]:
    response = replica.readyz()
    assert response is not None
    # Degraded shared state never makes a replica unready (the upstream process is up).
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()["components"]["shared_state"]
    return report


def metric(replica: Replica, line_start: str) -> float:
    with replica.client() as http:
        text = http.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not in the metrics of {replica.name}")


def test_a_keys_limit_spent_on_a_is_enforced_on_b(start_fleet: StartFleet) -> None:
    a, b = start_fleet(2, settings=LIMITS).replicas

    with held_stream(a, KEY_A, "shop:held"):  # key A's one stream, and its first request
        assert refusal_reason(ask(b, KEY_A, "shop:b-1")) == "streams"
        assert_answered(ask(b, KEY_B, "shop:b-2"))  # another key is not affected

    # The cancelled generation gave its slot back; B sees it a round trip later.
    eventually(lambda: ask(b, KEY_A, "shop:b-3").status_code == 200, "admitted on B")
    assert_answered(ask(a, KEY_A, "shop:a-1"))  # key A's third and last request of its burst
    assert refusal_reason(ask(b, KEY_A, "shop:b-4")) == "rate"
    assert refusal_reason(ask(a, KEY_A, "shop:a-2")) == "rate"


def test_redis_killed_mid_run_serves_on_local_state_and_recovers(
    start_fleet: StartFleet, own_redis: RedisServer
) -> None:
    a, b = start_fleet(2, redis=own_redis, settings=LIMITS | {"RAG_LIMITS__BURST": "50"}).replicas
    for replica in (a, b):
        assert shared_state(replica)["redis"] == "answers"

    own_redis.stop()
    # New streams go on, each replica admitting on its own state: key A holds a stream
    # on A, and B (which cannot see it) admits one more.
    with held_stream(a, KEY_A, "shop:down-a"):
        assert_answered(ask(b, KEY_A, "shop:down-b"))
        report = shared_state(b)
    assert report["ok"] is False
    assert "key_limits" in report["degraded"]
    assert report["redis"].startswith("unavailable")
    assert metric(b, 'rag_shared_state_fallbacks_total{component="key_limits"}') >= 1
    assert metric(b, 'rag_shared_state_degraded{component="key_limits"}') == 1

    own_redis.start()  # empty: no persistence

    questions = itertools.count()

    def recovered(replica: Replica) -> bool:
        # The limiter tries Redis again at its next admission past the retry interval.
        assert_answered(ask(replica, KEY_B, f"shop:after-{next(questions)}"))
        report = shared_state(replica)
        return report["redis"] == "answers" and "key_limits" not in report["degraded"]

    for replica in (a, b):
        eventually(lambda replica=replica: recovered(replica), f"{replica.name} recovered")
    # Shared again: key A's stream on A counts on B.
    with held_stream(a, KEY_A, "shop:again"):
        assert refusal_reason(ask(b, KEY_A, "shop:again-b")) == "streams"
    assert metric(b, 'rag_shared_state_degraded{component="key_limits"}') == 0
