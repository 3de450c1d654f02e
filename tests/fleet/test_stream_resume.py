"""Streams resumable on any replica (issue #14): two apps from ``create_app``, each on its own
loopback uvicorn, sharing one real ``redis-server`` and one real ``chroma run``. A stream started
on A is resumed on B with ``Last-Event-ID``: its events, ids and bytes are A's (no gap, no
repeat), finished or still running; 403/404/400 as for a local stream; a cancel on B stops A's
generation; with Redis stopped, A's readers still get everything and new streams are served."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from rag_service.settings import Settings
from tests.fakes.upstream import Pause, answer_script
from tests.fleet.replicas import SharedSettings, wait_until
from tests.fleet.served_replicas import (
    FIRST,
    OTHER_KEY,
    SECOND,
    SERVED_OVERRIDES,
    WAIT_LIMIT_S,
    auth,
    fleet_settings,
    held_script,
    replicas,
    shown,
    text,
)
from tests.redis_server import RedisServer
from tests.streaming.helpers import assert_error_shape
from tests.streaming.sse_spec import parse_sse


@pytest.fixture
def settings(shared_settings: SharedSettings) -> Settings:
    return shared_settings(**SERVED_OVERRIDES)


async def test_a_dropped_stream_resumes_on_another_replica_exactly(settings: Settings) -> None:
    async with replicas(settings, held_script(FIRST, SECOND)) as (a, b):
        first = await a.read_until(deltas=len(FIRST))
        stream_id = first.events[0].json()["stream_id"]
        a.upstream.release()
        await wait_until(lambda: a.registry.stats().generating == 0, "A's answer ended")

        on_b = await b.resume(stream_id, first.events[-1].last_event_id)
        on_a = await a.resume(stream_id, first.events[-1].last_event_id)

        assert on_b.status_code == 200, on_b.text
        rest = parse_sse(on_b.content).events
        assert text(first.events) + text(rest) == "".join(FIRST + SECOND)
        assert rest[-1].type == "done"
        assert shown(rest) == shown(parse_sse(on_a.content).events)  # ids and bytes: A's
        whole = parse_sse((await b.resume(stream_id)).content).events
        assert shown(whole) == shown(first.events) + shown(rest)


async def test_a_resume_on_another_replica_follows_the_running_answer(settings: Settings) -> None:
    async with replicas(settings, held_script(FIRST, SECOND, pause_s=0.01)) as (a, b):
        first = await a.read_until(deltas=len(FIRST))
        stream_id = first.events[0].json()["stream_id"]
        resumed = asyncio.create_task(b.resume(stream_id, first.events[-1].last_event_id))
        await wait_until(lambda: b.registry.stats().readers == 1, "B serves the resume")
        assert a.registry.stats().generating == 1  # still held: B follows a running answer
        a.upstream.release()

        on_b = await asyncio.wait_for(resumed, WAIT_LIMIT_S)
        rest = parse_sse(on_b.content).events
        assert text(first.events) + text(rest) == "".join(FIRST + SECOND)
        assert [e.type for e in rest] == ["delta"] * len(SECOND) + ["done"]
        assert (
            shown(rest)
            == shown(parse_sse((await a.resume(stream_id)).content).events)[len(first.events) :]
        )


async def test_another_replica_answers_403_404_and_400_as_the_generating_one(
    settings: Settings,
) -> None:
    async with replicas(settings, held_script(FIRST, SECOND)) as (a, b):
        first = await a.read_until(deltas=1)
        stream_id = first.events[0].json()["stream_id"]
        await wait_until(lambda: a.shared.stats().events >= 2, "the first events are in Redis")

        error = assert_error_shape(await b.resume(stream_id, key=OTHER_KEY), 403)
        assert error["code"] == "forbidden"
        unknown = "A" * 22
        assert assert_error_shape(await b.resume(unknown), 404)["code"] == "not_found"
        bad = assert_error_shape(await b.resume(stream_id, f"{unknown}:1"), 400)
        assert bad["code"] == "invalid_request"
        a.upstream.release()


async def test_a_cancel_on_another_replica_stops_the_generation(settings: Settings) -> None:
    script = held_script(FIRST, [f"w{i} " for i in range(200)], pause_s=0.05)
    async with replicas(settings, script) as (a, b):
        first = await a.read_until(deltas=1)
        stream_id = first.events[0].json()["stream_id"]
        await wait_until(lambda: a.shared.stats().events >= 2, "the first events are in Redis")
        async with httpx.AsyncClient(base_url=b.url, timeout=WAIT_LIMIT_S) as http:
            cancel = await http.delete(f"/rag/stream/{stream_id}", headers=auth())
        assert cancel.status_code == 200, cancel.text
        assert cancel.json() == {"stream_id": stream_id, "cancelled": True}
        a.upstream.release()  # the next event A copies brings the request back

        await wait_until(lambda: a.registry.stats().generating == 0, "A's answer ended")
        events = parse_sse((await b.resume(stream_id)).content).events
        assert events[-1].type == "error"
        assert events[-1].json()["code"] == "cancelled"
        assert a.upstream.closed_early == 1


async def test_with_redis_down_streams_are_served_on_local_state(
    tmp_path: Path, chroma_server: tuple[str, int], own_redis: RedisServer
) -> None:
    settings = fleet_settings(tmp_path, chroma_server, own_redis.url, "down:")
    second = [f"w{i} " for i in range(20)]
    async with replicas(settings, held_script(FIRST, second, pause_s=0.01)) as (a, b):
        received = b""
        async with (
            httpx.AsyncClient(base_url=a.url, timeout=WAIT_LIMIT_S) as http,
            http.stream(
                "POST",
                "/rag/stream",
                params={"context": "shop:user-1"},
                json={"query": "Are the boots waterproof?"},
                headers=auth(),
            ) as response,
        ):
            async for chunk in response.aiter_raw():
                received += chunk
                if len(parse_sse(received).events) == 1 + len(FIRST):
                    await wait_until(lambda: a.shared.stats().events >= 4, "copied")
                    await asyncio.to_thread(own_redis.stop)
                    a.upstream.release()
        events = parse_sse(received).events
        assert text(events) == "".join(FIRST + second)  # A's own reader got everything
        assert events[-1].type == "done"
        assert a.shared.degraded
        assert a.shared.stats().dropped == 1
        async with httpx.AsyncClient(base_url=a.url, timeout=WAIT_LIMIT_S) as http:
            ready = (await http.get("/readyz")).json()
        shared_state = ready["components"]["shared_state"]
        assert "streams" in shared_state["degraded"]
        assert shared_state["fallbacks"]["streams"] >= 1
        stream_id = events[0].json()["stream_id"]
        down = assert_error_shape(await b.resume(stream_id), 503)
        assert down["code"] == "state_store_unavailable"

        a.upstream.script = answer_script(FIRST)
        local_before = a.shared.stats().unshared + a.shared.stats().dropped
        fresh = await a.read_until(deltas=len(FIRST))  # served on local state
        assert text(fresh.events) == "".join(FIRST)
        # Not copied: not tried (within retry_interval_s of the failure), or tried and failed.
        await wait_until(
            lambda: a.shared.stats().unshared + a.shared.stats().dropped > local_before,
            "the new stream counted as a fallback",
        )

        await asyncio.to_thread(own_redis.start)  # empty: the copies made before are gone
        shared_before = a.shared.stats().shared
        # Once retry_interval_s (0.2 s) has passed, the next new stream tries Redis again.
        deadline = time.monotonic() + WAIT_LIMIT_S
        while a.shared.stats().shared == shared_before:
            assert time.monotonic() < deadline, "no stream was shared again"
            again = await a.read_until(deltas=len(FIRST))
        again_id = again.events[0].json()["stream_id"]
        await wait_until(lambda: not a.shared.degraded, "A shares streams again")
        on_b = await b.resume(again_id)
        assert on_b.status_code == 200, on_b.text
        assert text(parse_sse(on_b.content).events) == "".join(FIRST)
        gone = assert_error_shape(await b.resume(fresh.events[0].json()["stream_id"]), 404)
        assert gone["code"] == "not_found"


async def test_a_copy_whose_replica_went_silent_ends_with_an_error(
    settings: Settings,
) -> None:
    settings.stream.shared_idle_timeout_s = 1.0
    async with replicas(settings, held_script(FIRST, SECOND)) as (a, b):
        first = await a.read_until(deltas=len(FIRST))
        stream_id = first.events[0].json()["stream_id"]
        # A holds its answer: as far as B can tell, as a replica that died would.
        on_b = parse_sse((await b.resume(stream_id, first.events[-1].last_event_id)).content)
        error = on_b.events[-1]
        assert [e.type for e in on_b.events] == ["error"]
        assert error.json()["code"] == "unavailable"
        assert error.json()["details"] == {"reason": "replica_lost"}
        assert error.json()["retryable"] is True
        a.upstream.release()


async def test_a_copy_with_a_hole_is_never_served(
    tmp_path: Path, chroma_server: tuple[str, int], own_redis: RedisServer
) -> None:
    settings = fleet_settings(tmp_path, chroma_server, own_redis.url, "hole:")
    async with replicas(settings, held_script(FIRST, SECOND)) as (a, b):
        first = await a.read_until(deltas=len(FIRST))
        stream_id = first.events[0].json()["stream_id"]
        await wait_until(lambda: a.shared.stats().events == 1 + len(FIRST), "copied")
        with own_redis.client() as sync_client:
            sync_client.flushall()  # Redis lost the stream's first events
        a.upstream.release()
        await wait_until(lambda: a.registry.stats().generating == 0, "A's answer ended")
        await wait_until(lambda: a.shared.stats().dropped == 1, "A saw the hole")

        gone = assert_error_shape(await b.resume(stream_id), 404)
        assert gone["code"] == "not_found"
        whole = parse_sse((await a.resume(stream_id)).content).events
        assert text(whole) == "".join(FIRST + SECOND)  # A still serves it whole


async def test_a_stream_read_only_on_another_replica_outlives_the_grace_period(
    settings: Settings,
) -> None:
    settings.stream.grace_period_s = 1.0  # A's own client left: only B's reader holds it
    second = [f"w{i} " for i in range(40)]
    async with replicas(settings, held_script(FIRST, second, pause_s=0.1)) as (a, b):
        first = await a.read_until(deltas=len(FIRST))
        stream_id = first.events[0].json()["stream_id"]
        resumed = asyncio.create_task(b.resume(stream_id, first.events[-1].last_event_id))
        await wait_until(lambda: b.registry.stats().readers == 1, "B serves the resume")
        a.upstream.release()  # ~4 s of answer, four grace periods of A's

        rest = parse_sse((await asyncio.wait_for(resumed, WAIT_LIMIT_S)).content).events
        assert text(first.events) + text(rest) == "".join(FIRST + second)
        assert rest[-1].type == "done"
        assert a.upstream.closed_early == 0


async def test_a_copy_that_ends_before_the_clients_last_event_answers_503(
    settings: Settings,
) -> None:
    settings.stream.shared_flush_ms = 600_000.0  # A writes a new stream's start, then nothing
    settings.stream.shared_durable_delivery = False  # and its client reads on all the same
    settings.stream.shared_idle_timeout_s = 1.0  # so, to B, A is as good as dead
    # The start (record, meta) is written at once, alone: the deltas come after a pause.
    script = [Pause(0.5), *held_script(FIRST, SECOND)]
    async with replicas(settings, script) as (a, b):
        first = await a.read_until(deltas=len(FIRST))
        stream_id = first.events[0].json()["stream_id"]
        await wait_until(lambda: a.shared.stats().events >= 1, "the stream's start is in Redis")

        lost = assert_error_shape(await b.resume(stream_id, first.events[-1].last_event_id), 503)
        assert lost["code"] == "unavailable"
        assert lost["details"] == {"reason": "replica_lost"}
        a.upstream.release()
