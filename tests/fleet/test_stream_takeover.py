"""Take-over with in-process replicas (issue #14; the SIGKILL case with real processes is in
test_stream_resume_processes.py): two apps on loopback sharing one real ``redis-server`` and one
``chroma run``. A's heartbeat lapses while its answer is held mid-way (beats are made rare and
short here, as if A froze); a resume on B takes the stream over and finishes the answer after
the text A's client has, and A's later writes are refused (its session is cut).
"""

from __future__ import annotations

import asyncio

import pytest

from rag_service.adapters import redis_stream_store
from rag_service.api.auth import principal_of
from rag_service.domain import TextDelta
from rag_service.settings import ContinuationStrategy, Settings
from rag_service.streaming import replicas as replicas_module
from tests.app.conftest import CLIENT_KEY
from tests.fakes.upstream import Hold, Pause, Step
from tests.fleet.replicas import SharedSettings, wait_until
from tests.fleet.served_replicas import (
    FIRST,
    SECOND,
    SERVED_OVERRIDES,
    WAIT_LIMIT_S,
    held_script,
    replicas,
    shown,
    text,
)
from tests.redis_server import RedisServer
from tests.streaming.sse_spec import parse_sse

HEARTBEAT_TTL_S = 1.0


@pytest.fixture
def settings(shared_settings: SharedSettings) -> Settings:
    return shared_settings(**SERVED_OVERRIDES)


@pytest.fixture
def frozen_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    """A replica beats once, briefly, and never again: to the others it dies a second after
    its first stream, while it runs on (a frozen process; its fencing is tested here too)."""
    monkeypatch.setattr(redis_stream_store, "HEARTBEAT_EVERY_S", 3600.0)
    monkeypatch.setattr(redis_stream_store, "HEARTBEAT_TTL_S", HEARTBEAT_TTL_S)
    monkeypatch.setattr(replicas_module, "HEARTBEAT_TTL_S", HEARTBEAT_TTL_S)


@pytest.mark.usefixtures("frozen_heartbeats")
async def test_a_dead_replicas_stream_is_taken_over_and_completed_exactly_once(
    settings: Settings, redis_server: RedisServer
) -> None:
    async with replicas(settings, held_script(FIRST, SECOND)) as (a, b):
        first = await a.read_until(deltas=len(FIRST))
        stream_id = first.events[0].json()["stream_id"]
        heartbeat = f"{settings.redis.key_prefix}replica:{a.shared.replica_id}"
        with redis_server.client() as sync:
            await wait_until(lambda: not sync.exists(heartbeat), "A's heartbeat lapses")

        resumed = asyncio.create_task(b.resume(stream_id, first.events[-1].last_event_id))
        await wait_until(lambda: b.shared.stats().taken_over == 1, "B takes the stream over")
        b.upstream.release()  # B's answer (after the text A's client has) runs on
        rest = parse_sse((await asyncio.wait_for(resumed, WAIT_LIMIT_S)).content).events

        assert rest[0].type == "resumed"
        assert rest[-1].type == "done"
        assert text(first.events) + text(rest) == "".join(FIRST + SECOND)  # no gap, no repeat
        assert b.upstream.delivered[-1] == "".join(FIRST)  # B continued after A's text
        seqs = [int(e.last_event_id.rpartition(":")[2]) for e in first.events + rest]
        assert seqs == list(range(1, len(seqs) + 1))

        # A wakes up and writes on: refused, its session cut; a resume on A follows B's stream.
        a.upstream.release()
        await wait_until(lambda: a.shared.stats().moved == 1, "A's writes are fenced off")
        whole = parse_sse((await a.resume(stream_id)).content).events
        assert shown(whole) == shown(first.events + rest)


@pytest.mark.usefixtures("frozen_heartbeats")
async def test_without_durable_delivery_a_dead_replicas_stream_ends_with_replica_lost(
    settings: Settings,
) -> None:
    settings.stream.shared_durable_delivery = False  # its clients may be ahead of Redis
    async with replicas(settings, held_script(FIRST, SECOND)) as (a, b):
        first = await a.read_until(deltas=len(FIRST))
        stream_id = first.events[0].json()["stream_id"]
        await wait_until(lambda: a.shared.stats().events >= len(FIRST) + 1, "A wrote its text")
        response = await b.resume(stream_id, first.events[-1].last_event_id)
        events = parse_sse(response.content).events
        assert [e.type for e in events] == ["error"]
        assert events[0].json()["details"] == {"reason": "replica_lost"}
        assert b.shared.stats().taken_over == 0
        a.upstream.release()


@pytest.mark.usefixtures("frozen_heartbeats")
async def test_with_continuation_none_a_dead_replicas_answer_with_text_ends_with_replica_lost(
    settings: Settings,
) -> None:
    settings.upstream.continuation = ContinuationStrategy.none  # no way on after delivered text
    async with replicas(settings, held_script(FIRST, SECOND)) as (a, b):
        first = await a.read_until(deltas=len(FIRST))
        stream_id = first.events[0].json()["stream_id"]
        response = await b.resume(stream_id, first.events[-1].last_event_id)
        events = parse_sse(response.content).events
        assert [e.type for e in events] == ["error"]
        assert events[0].json()["details"] == {"reason": "replica_lost"}
        assert b.shared.stats().taken_over == 0
        assert b.upstream.answer_calls == 0  # nothing was sent upstream for it
        a.upstream.release()


@pytest.mark.usefixtures("frozen_heartbeats")
async def test_a_dead_replicas_answer_whose_start_was_trimmed_ends_with_replica_lost(
    settings: Settings,
) -> None:
    """The continuation needs the answer's whole text: once the replay window has dropped the
    start of the answer (it holds fewer events than the answer has), no take-over."""
    settings.stream.replay_buffer_events = 16  # the smallest window; the answer outgrows it
    rest = [TextDelta(f"word{index} ") for index in range(1, 40)]
    # A's answer: a first word, then (once released) 39 more, then A stops as if frozen.
    script: list[Step] = [TextDelta("word0 "), Hold(), *rest, Pause(3600.0)]
    async with replicas(settings, script) as (a, b):
        first = await a.read_until(deltas=1)
        stream_id = first.events[0].json()["stream_id"]
        a.upstream.release()
        session = a.registry.find(stream_id, principal_of(CLIENT_KEY))
        await wait_until(lambda: session.last_seq >= 41, "A has its 40 words")
        await wait_until(lambda: a.shared.stats().events >= session.last_seq, "A wrote them all")
        last_event_id = f"{stream_id}:{session.last_seq}"  # a client that read them all

        response = await b.resume(stream_id, last_event_id)
        events = parse_sse(response.content).events
        assert [e.type for e in events] == ["error"]
        assert events[0].json()["details"] == {"reason": "replica_lost"}
        assert b.shared.stats().taken_over == 0
        assert b.upstream.answer_calls == 0  # nothing was sent upstream for it
