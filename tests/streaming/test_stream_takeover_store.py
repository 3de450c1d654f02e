"""What a take-over rests on (issue #14), below the HTTP layer:

- durable delivery: a shared session's readers never see an event Redis does not hold, and
  see everything once the store gave up copying (Redis down);
- ``cut``: a session taken over elsewhere ends for its readers after what they were shown;
- ``RedisStreamStore.take_over`` on a real ``redis-server``: refused while the generating
  replica's heartbeat lives, when events are missing or when another replica took it first;
  it hands back the stream's request, and the old owner's later writes are fenced off (its
  session is ``moved``: cut and forgotten), while the new owner's follow on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from rag_service.adapters.redis_connection import redis_client
from rag_service.adapters.redis_stream_store import RedisStreamStore
from rag_service.domain import ChatMessage, ChatRequest, DeltaEvent, TextDelta
from rag_service.errors import NotFound
from rag_service.settings import RedisSettings, StreamSettings
from rag_service.streaming.registry import StreamRegistry
from rag_service.streaming.session import StreamSession
from tests.conftest import free_port
from tests.fakes.upstream import completed
from tests.redis_server import RedisServer

WAIT_LIMIT_S = 30.0
REQUEST = ChatRequest(messages=(ChatMessage("user", "Which tent?"),), params={"seed": 1})


async def wait_for(condition: object, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT_LIMIT_S:g} s: {what}"
        await asyncio.sleep(0.01)


def texts(session: StreamSession, after_seq: int = 0) -> list[str]:
    events = session.read_events(after_seq, 1000)
    return [e.literal.decode() for e in events if isinstance(e, DeltaEvent)]


def new_session(registry: StreamRegistry) -> StreamSession:
    return registry.open(context_id="shop:1", principal="key-1", started_at=0.0)


# -- the session's side -----------------------------------------------------------------------


async def test_held_back_events_reach_readers_only_when_released() -> None:
    registry = StreamRegistry(StreamSettings())
    session = new_session(registry)
    session.hold_back()
    session.publish_meta({"stream_id": session.stream_id})
    session.apply(TextDelta("a"))
    assert session.read_events(0, 10) == []
    waiter = session.change_waiter()
    session.apply(TextDelta("b"))
    assert not waiter.done()  # nothing a reader may see came
    session.release(2)
    assert waiter.done()
    assert [e.seq for e in session.read_events(0, 10)] == [1, 2]
    session.apply(completed())
    assert session.finished and not session.ended_for_readers  # its end is not shown yet
    session.release(4)
    assert session.ended_for_readers
    assert [e.seq for e in session.read_events(2, 10)] == [3, 4]
    await registry.close()


async def test_release_all_shows_everything_and_a_cut_ends_at_what_was_shown() -> None:
    registry = StreamRegistry(StreamSettings())
    kept = new_session(registry)
    kept.hold_back()
    kept.apply(TextDelta("a"))
    kept.release_all()  # the store gave up copying: the events stay local, all shown
    assert texts(kept) == ['"a"']

    moved = new_session(registry)
    moved.hold_back()
    moved.apply(TextDelta("shown"))
    moved.release(1)
    moved.apply(TextDelta("never shown"))
    waiter = moved.change_waiter()
    moved.cut()
    assert waiter.done() and moved.ended_for_readers
    assert texts(moved) == ['"shown"']
    moved.release(2)  # a late release changes nothing after a cut
    moved.release_all()
    assert texts(moved) == ['"shown"']
    await registry.close()


# -- the store's side, on a real redis-server -------------------------------------------------


@pytest.fixture
def stores(redis_server: RedisServer, redis_prefix: str) -> tuple[RedisSettings, StreamSettings]:
    return (
        RedisSettings(url=SecretStr(redis_server.url), key_prefix=redis_prefix),
        StreamSettings(shared_flush_ms=5, retention_s=60),
    )


@asynccontextmanager
async def shared_session(
    redis_settings: RedisSettings, stream: StreamSettings
) -> AsyncIterator[tuple[StreamSession, RedisStreamStore]]:
    """A session of replica A's registry, shared through its own store and client; all three
    closed after the block."""
    client = redis_client(redis_settings)
    registry = StreamRegistry(stream)
    store = new_store(client, redis_settings, stream, "replica-A")
    session = new_session(registry)
    store.share(session, registry, REQUEST)
    try:
        yield session, store
    finally:
        await registry.close()
        await store.aclose()
        await client.aclose()


def new_store(
    client: Redis, redis_settings: RedisSettings, stream: StreamSettings, replica: str
) -> RedisStreamStore:
    return RedisStreamStore(
        client, redis_settings=redis_settings, stream_settings=stream, replica_id=replica
    )


async def test_readers_never_see_an_event_redis_lacks(
    stores: tuple[RedisSettings, StreamSettings],
) -> None:
    redis_settings, stream = stores
    async with shared_session(
        redis_settings, stream.model_copy(update={"shared_flush_ms": 50.0})
    ) as (
        session,
        store,
    ):
        await check_readers_trail_redis(session, store)


async def check_readers_trail_redis(session: StreamSession, store: RedisStreamStore) -> None:
    session.publish_meta({"stream_id": session.stream_id})
    for i in range(40):
        session.apply(TextDelta(f"w{i} "))
        visible = session.read_events(0, 1000)
        held = await store.read(session.stream_id, 0, max_events=1000, wait_s=0)
        # Read after the reader's view: whatever the reader saw, Redis had by then.
        assert len(held) >= len(visible)
        await asyncio.sleep(0.005)
    session.apply(completed())
    await wait_for(lambda: session.ended_for_readers, "every event is released")
    assert len(session.read_events(0, 1000)) == 42


async def test_without_redis_a_held_back_session_shows_everything() -> None:
    dead = RedisSettings(
        url=SecretStr(f"redis://127.0.0.1:{free_port()}/0"),
        connect_timeout_s=0.5,
        timeout_s=0.5,
        retry_interval_s=60,
    )
    async with shared_session(dead, StreamSettings(shared_flush_ms=5)) as (session, store):
        session.apply(TextDelta("local "))
        session.apply(TextDelta("answer"))
        await wait_for(lambda: store.degraded, "the failed write is noticed")
        await wait_for(lambda: len(texts(session)) == 2, "the events are shown after all")
        assert store.stats().dropped == 1


async def test_take_over_is_fenced_and_refused_while_the_owner_lives(
    stores: tuple[RedisSettings, StreamSettings], redis_server: RedisServer, redis_prefix: str
) -> None:
    redis_settings, stream = stores
    client = redis_client(redis_settings)
    registry_a, registry_b = StreamRegistry(stream), StreamRegistry(stream)
    a = new_store(client, redis_settings, stream, "replica-A")
    b = new_store(client, redis_settings, stream, "replica-B")
    session = new_session(registry_a)
    a.share(session, registry_a, REQUEST)
    session.publish_meta({"stream_id": session.stream_id})
    session.apply(TextDelta("Our "))
    await wait_for(lambda: len(texts(session)) == 1, "A's first events are written")
    sid = session.stream_id
    heartbeat = f"{redis_prefix}replica:replica-A"
    with redis_server.client() as sync:
        assert sync.exists(heartbeat)
    assert await b.take_over(sid, "replica-A", 2) is None  # A is alive

    await a.aclose()  # A stops: no more beats, no more writes (as if frozen)
    with redis_server.client() as sync:
        sync.delete(heartbeat)  # its heartbeat lapses
    assert await b.take_over(sid, "replica-A", 1) is None  # B's copy would miss an event
    assert await b.take_over(sid, "replica-B", 2) is None  # not B's to take from B
    assert await b.take_over(sid, "replica-A", 2) == REQUEST
    assert await b.take_over(sid, "replica-A", 2) is None  # taken already
    record = await b.record(sid)
    assert record is not None and record.replica == "replica-B"
    assert b.stats().taken_over == 1

    # B continues the stream after the events it holds.
    copy = StreamSession(
        stream_id=sid,
        context_id="shop:1",
        principal="key-1",
        buffer_capacity=64,
        clock=time.monotonic,
        started_at=0.0,
    )
    copy.replicate(await b.read(sid, 0, max_events=10, wait_s=0))
    registry_b.adopt(copy)
    b.share_taken_over(copy, registry_b)
    copy.apply(TextDelta("tents "))
    await wait_for(lambda: len(texts(copy)) == 2, "B's event is written and shown")

    # A comes back to life (same identity, as a frozen process would) and writes on: fenced.
    revived = new_store(client, redis_settings, stream, "replica-A")
    revived.share_taken_over(session, registry_a)
    session.apply(TextDelta("boots"))
    await wait_for(lambda: session.ended_for_readers, "A's session is cut")
    assert texts(session) == ['"Our "']  # what A's readers were shown, nothing after
    assert revived.stats().moved == 1
    with pytest.raises(NotFound):
        registry_a.find(sid, "key-1")  # a resume on A follows the stream in Redis now
    held = await b.read(sid, 0, max_events=10, wait_s=0)
    assert [e.literal for e in held if isinstance(e, DeltaEvent)] == [b'"Our "', b'"tents "']

    for registry in (registry_a, registry_b):
        await registry.close()
    await revived.aclose()
    await b.aclose()
    await client.aclose()
