"""``RedisStreamStore`` on a real ``redis-server``: what it writes (ids, fields, record,
expiry, trimming), what it reads back, a batch written twice, a hole, and the session side
(``replicate``) that copies rely on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from rag_service.adapters.redis_connection import redis_client
from rag_service.adapters.redis_stream_store import RedisStreamStore
from rag_service.domain import (
    ChatMessage,
    ChatRequest,
    DeltaEvent,
    NamedEvent,
    SharedState,
    TextDelta,
)
from rag_service.errors import RagServiceError
from rag_service.settings import RedisSettings, StreamSettings
from rag_service.streaming.registry import StreamRegistry
from rag_service.streaming.session import StreamSession
from tests.fakes.upstream import completed
from tests.redis_server import RedisServer

WAIT_LIMIT_S = 30.0
REQUEST = ChatRequest(messages=(ChatMessage("user", "Which boots?"),), params={"seed": 7})


@pytest.fixture
async def parts(
    redis_server: RedisServer, redis_prefix: str
) -> AsyncIterator[tuple[StreamRegistry, RedisStreamStore]]:
    stream = StreamSettings(shared_flush_ms=5, replay_buffer_events=16, retention_s=60)
    redis_settings = RedisSettings(url=SecretStr(redis_server.url), key_prefix=redis_prefix)
    client = redis_client(redis_settings)
    registry = StreamRegistry(stream)
    store = RedisStreamStore(
        client, redis_settings=redis_settings, stream_settings=stream, replica_id="replica-A"
    )
    yield registry, store
    await store.aclose()
    await registry.close()
    await client.aclose()


async def written(session: StreamSession) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while session.mirror is not None:
        assert time.monotonic() < deadline, "the store did not write the stream's end"
        await asyncio.sleep(0.01)


def shared_session(registry: StreamRegistry, store: RedisStreamStore) -> StreamSession:
    session = registry.open(context_id="shop:user-1", principal="key-1", started_at=0.0)
    store.share(session, registry, REQUEST)
    session.publish_meta({"stream_id": session.stream_id})
    return session


async def test_events_records_and_expiry_as_documented(
    parts: tuple[StreamRegistry, RedisStreamStore], redis_server: RedisServer, redis_prefix: str
) -> None:
    registry, store = parts
    session = shared_session(registry, store)
    for piece in ["Our ", 'boots "x"\n']:
        session.apply(TextDelta(piece))
    session.apply(completed())
    await written(session)

    sid = session.stream_id
    with redis_server.client() as sync:
        entries = sync.xrange(f"{redis_prefix}stream:{sid}:events")
        record = sync.hgetall(f"{redis_prefix}stream:{sid}:rec")
        ttl_ms = sync.pttl(f"{redis_prefix}stream:{sid}:events")
    assert [entry_id for entry_id, _ in entries] == ["0-1", "0-2", "0-3", "0-4"]
    assert entries[1][1] == {"d": '"Our "'}
    assert entries[2][1] == {"d": '"boots \\"x\\"\\n"'}
    assert list(entries[3][1]) == ["done"]
    assert record == {
        "context_id": "shop:user-1",
        "principal": "key-1",
        "replica": "replica-A",
        "state": "ended",
        "last": "4",  # no "request" any more: it is kept for a take-over while the stream runs
    }
    assert 50_000 < ttl_ms <= 60_000  # retention_s after the end

    # Read back as the session holds them: the bytes a copy serves are the generator's.
    events = await store.read(sid, 0, max_events=100, wait_s=0)
    assert list(events) == session.read_events(0, 100)
    assert list(await store.read(sid, 2, max_events=100, wait_s=0)) == session.read_events(2, 100)
    found = await store.record(sid)
    assert found is not None
    assert (found.state, found.principal, found.last_seq) == (SharedState.ENDED, "key-1", 4)
    assert await store.record("A" * 22) is None


async def test_a_long_stream_is_trimmed_like_the_replay_buffer(
    parts: tuple[StreamRegistry, RedisStreamStore],
) -> None:
    registry, store = parts
    session = shared_session(registry, store)
    for i in range(400):
        session.apply(TextDelta(f"w{i} "))
    session.apply(completed())
    await written(session)
    events = await store.read(session.stream_id, 0, max_events=1000, wait_s=0)
    assert 16 <= len(events) < 400  # MAXLEN ~ replay_buffer_events: at least that many kept
    assert [e.seq for e in events] == list(range(events[0].seq, 403))


async def test_a_follower_waits_for_new_events(
    parts: tuple[StreamRegistry, RedisStreamStore],
) -> None:
    registry, store = parts
    session = shared_session(registry, store)
    session.apply(TextDelta("a"))
    deadline = time.monotonic() + WAIT_LIMIT_S
    while len(await store.read(session.stream_id, 0, max_events=10, wait_s=0)) < 2:
        assert time.monotonic() < deadline
    waiting = asyncio.create_task(store.read(session.stream_id, 2, max_events=10, wait_s=5))
    session.apply(TextDelta("b"))
    assert [e.seq for e in await asyncio.wait_for(waiting, WAIT_LIMIT_S)] == [3]
    session.apply(completed())
    await written(session)


def copy_of(events: list[DeltaEvent | NamedEvent]) -> StreamSession:
    session = StreamSession(
        stream_id="s" * 22,
        context_id="c",
        principal=None,
        buffer_capacity=16,
        clock=time.monotonic,
        started_at=0.0,
        first_seq=events[0].seq,
    )
    session.replicate(events)
    return session


def test_a_copy_holds_the_events_given_skips_repeats_and_refuses_a_hole() -> None:
    events = [DeltaEvent(5, b'"a"'), NamedEvent(6, "retry", b'{"attempt":2}')]
    session = copy_of(events)
    assert (session.first_seq, session.last_seq, session.finished) == (5, 6, False)
    assert session.read_events(4, 10) == events
    session.replicate([DeltaEvent(6, b'"x"'), DeltaEvent(7, b'"b"')])  # 6 again: skipped
    assert session.read_events(6, 10) == [DeltaEvent(7, b'"b"')]
    with pytest.raises(RagServiceError, match=r"misses events 8\.\.8"):
        session.replicate([DeltaEvent(9, b'"c"')])
    session.replicate([NamedEvent(8, "done", b"{}")])
    assert session.finished
    session.replicate([DeltaEvent(9, b'"late"')])  # nothing after the end
    assert session.last_seq == 8
