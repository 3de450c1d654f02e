"""StreamRegistry: how long an ended stream stays resumable (retention), its byte bound, and a
client's cancel. Time is a fake clock the test moves; the loop's timers only matter for the grace
period of running generations."""

from __future__ import annotations

import asyncio
import functools
import gc
import weakref
from collections.abc import AsyncIterator, Callable, Sequence

import httpx
import pytest

from rag_service.domain import TextDelta
from rag_service.errors import NotFound
from rag_service.settings import Settings, StreamSettings
from rag_service.streaming import StreamRegistry, StreamSession
from tests.fakes.upstream import Hold, ScriptedUpstream, Step, answer_script, completed
from tests.streaming.helpers import (
    assert_error_shape,
    native_bytes,
    post_stream,
    resume,
    stream_id_of,
)
from tests.streaming.sse_spec import SseEvent, parse_sse

WAIT_LIMIT_S = 10.0
RETENTION_S = 600.0


class FakeClock:
    """The registry's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingSlot:
    def __init__(self) -> None:
        self.releases = 0

    def release(self) -> None:
        self.releases += 1


async def wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_LIMIT_S):
        while not condition():  # noqa: ASYNC110 - timer-driven state, no event to wait on
            await asyncio.sleep(0.005)


def make_registry(clock: FakeClock | None = None, **settings: object) -> StreamRegistry:
    values: dict[str, object] = {"grace_period_s": 0.0, "retention_s": RETENTION_S} | settings
    return StreamRegistry(StreamSettings.model_validate(values), clock=clock or FakeClock())


def start(
    registry: StreamRegistry,
    script: Sequence[Step],
    slot: CountingSlot | None = None,
) -> tuple[StreamSession, ScriptedUpstream]:
    upstream = ScriptedUpstream(script=script)
    session = registry.open(context_id="c", principal="alice", started_at=0.0, slot=slot)
    session.publish_meta({"stream_id": session.stream_id})
    registry.start(session, functools.partial(upstream.answer, None))  # type: ignore[arg-type]
    return session, upstream


async def finished(registry: StreamRegistry, pieces: Sequence[str] = ("x",)) -> StreamSession:
    """A session whose answer has ended, its reader still attached."""
    session, _ = start(registry, answer_script(list(pieces)))
    assert session.task is not None
    await session.task
    return session


def events(session: StreamSession) -> list[SseEvent]:
    return parse_sse(native_bytes(session)).events


def is_held(registry: StreamRegistry, session: StreamSession) -> bool:
    try:
        return registry.find(session.stream_id, "alice") is session
    except NotFound:
        return False


async def loop_turns(count: int = 5) -> None:
    """Let the loop run due callbacks (a grace timer of 0 s fires in the next turn)."""
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_finished_stream_is_resumable_past_the_grace_period_until_retention_ends() -> None:
    clock = FakeClock()
    registry = make_registry(clock, grace_period_s=0.0)
    session = await finished(registry)
    registry.detach(session)  # the client dropped just before reading `done`

    await loop_turns()  # a grace timer (0 s) would have fired by now
    clock.advance(RETENTION_S - 1)
    assert is_held(registry, session)
    assert events(session)[-1].type == "done"
    assert registry.stats().retained == 1

    clock.advance(1)
    assert not is_held(registry, session)
    assert registry.stats().sessions == 0
    assert registry.stats().retained == 0
    assert registry.stats().retained_bytes == 0
    await registry.close()


async def test_retention_counts_from_the_last_reader_leaving() -> None:
    clock = FakeClock()
    registry = make_registry(clock)
    session = await finished(registry)

    clock.advance(2 * RETENTION_S)  # read for a long time (a slow client): kept meanwhile
    registry.detach(session)
    clock.advance(RETENTION_S - 1)
    registry.attach(registry.find(session.stream_id, "alice"))  # a resume ...
    clock.advance(RETENTION_S)
    registry.detach(session)  # ... that left again: a new retention from here
    clock.advance(RETENTION_S - 1)
    assert is_held(registry, session)

    clock.advance(1)
    assert not is_held(registry, session)
    await registry.close()


async def test_a_zero_retention_forgets_a_stream_when_its_last_reader_leaves() -> None:
    registry = make_registry(retention_s=0.0)
    session = await finished(registry)
    assert is_held(registry, session)

    registry.detach(session)

    assert not is_held(registry, session)
    await registry.close()


async def test_the_retention_timer_frees_expired_streams_without_a_look_up() -> None:
    registry = StreamRegistry(StreamSettings(grace_period_s=0.0, retention_s=0.01))  # real time
    session = await finished(registry)
    registry.detach(session)
    # The session itself takes no weak reference (__slots__); its task lives as long as it.
    assert session.task is not None
    held = weakref.ref(session.task)
    del session

    # No find/stats here (they forget expired streams themselves): only the timer frees it.
    await wait_until(lambda: gc.collect() >= 0 and held() is None)
    await registry.close()


async def test_the_byte_bound_forgets_the_oldest_retained_streams_first() -> None:
    probe = make_registry()
    size = (await finished(probe, ["some ", "answer"])).nbytes
    await probe.close()
    registry = make_registry(retention_max_bytes=2 * size + size // 2)
    oldest, middle, newest = [await finished(registry, ["some ", "answer"]) for _ in range(3)]
    assert {oldest.nbytes, middle.nbytes, newest.nbytes} == {size}
    registry.detach(middle)  # retained first, so the oldest
    registry.detach(oldest)
    assert registry.stats().retained_bytes == 2 * size

    registry.detach(newest)

    assert not is_held(registry, middle)
    assert is_held(registry, oldest)
    assert is_held(registry, newest)
    stats = registry.stats()
    assert (stats.retained, stats.retained_bytes, stats.evicted_bytes) == (2, 2 * size, 1)
    await registry.close()


async def test_the_byte_bound_never_evicts_a_generating_or_read_stream() -> None:
    registry = make_registry(grace_period_s=60.0, retention_max_bytes=0)
    running, upstream = start(registry, [TextDelta("a" * 1000), Hold(), completed()])
    await upstream.holding.wait()
    registry.detach(running)  # no reader, still generating: in its grace period
    being_read = await finished(registry, ["b" * 1000])
    ended = await finished(registry, ["c"])

    registry.detach(ended)  # retained, and alone over a bound of 0 bytes: forgotten at once

    assert not is_held(registry, ended)
    assert is_held(registry, running)
    assert is_held(registry, being_read)
    assert running.nbytes > 1000
    stats = registry.stats()
    assert (stats.generating, stats.retained, stats.retained_bytes) == (1, 0, 0)
    assert stats.evicted_bytes == 1
    upstream.release()
    await registry.close()


async def test_a_generation_whose_readers_left_is_still_cancelled_after_grace() -> None:
    clock = FakeClock()
    registry = make_registry(clock, grace_period_s=0.01)
    session, upstream = start(registry, [TextDelta("a"), Hold(), completed()])
    await upstream.holding.wait()

    registry.detach(session)
    await asyncio.wait_for(upstream.closed_event.wait(), WAIT_LIMIT_S)

    assert upstream.closed_early == 1
    assert not is_held(registry, session)
    await registry.close()


async def test_cancel_ends_a_running_generation_and_keeps_the_stream_resumable() -> None:
    registry = make_registry(grace_period_s=60.0)
    slot = CountingSlot()
    session, upstream = start(registry, [TextDelta("a"), Hold(), completed()], slot)
    await upstream.holding.wait()
    waiter = session.change_waiter()

    assert registry.cancel(session) is True

    assert waiter.done()  # attached readers wake up to the end
    last = events(session)[-1]
    assert last.type == "error"
    assert last.json() == {
        "code": "cancelled",
        "message": "the answer was cancelled by its client",
        "retryable": False,
    }
    await asyncio.wait_for(upstream.closed_event.wait(), WAIT_LIMIT_S)
    assert upstream.closed_early == 1
    assert session.task is not None
    await wait_until(session.task.done)
    assert slot.releases == 1
    assert registry.stats().generating == 0
    assert registry.stats().cancelled == 1
    registry.detach(session)
    assert is_held(registry, session)  # retained: a reconnecting client sees the end
    assert registry.stats().retained == 1
    assert registry.cancel(session) is False  # ended already: nothing to cancel
    assert registry.stats().cancelled == 1
    await registry.close()


async def test_cancel_before_the_generation_ran_a_step_still_ends_it() -> None:
    registry = make_registry(grace_period_s=60.0)
    slot = CountingSlot()
    session, upstream = start(registry, answer_script(["never"]), slot)
    registry.detach(session)  # a stream nobody reads any more

    assert registry.cancel(session) is True  # its task has not run yet

    assert session.task is not None
    await wait_until(session.task.done)
    await loop_turns()  # the task's done callbacks
    assert slot.releases == 1
    assert [e.type for e in events(session)] == ["meta", "error"]
    assert upstream.answer_calls == 0
    assert is_held(registry, session)
    assert registry.stats().retained == 1
    await registry.close()


async def test_cancel_of_a_finished_stream_changes_nothing() -> None:
    registry = make_registry()
    session = await finished(registry)

    assert registry.cancel(session) is False

    assert events(session)[-1].type == "done"
    assert registry.stats().cancelled == 0
    await registry.close()


# -- over HTTP: the stream routes of tests/streaming/conftest.py on a registry with a fake clock --


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def registry(settings: Settings, clock: FakeClock) -> AsyncIterator[StreamRegistry]:
    registry = StreamRegistry(settings.stream, clock=clock)
    yield registry
    await registry.close()


@pytest.mark.parametrize("stream_overrides", [{"grace_period_s": 0.0, "retention_s": RETENTION_S}])
async def test_a_finished_stream_resumes_over_http_until_its_retention_ends(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    alice = {"X-Client": "alice"}
    answered = parse_sse((await post_stream(client, headers=alice)).content)
    stream_id = stream_id_of(answered)
    assert answered.events[-1].type == "done"

    clock.advance(RETENTION_S - 1)  # far past the grace period (0 s)
    late = await resume(client, stream_id, f"{stream_id}:2", headers=alice)

    assert late.status_code == 200
    assert parse_sse(late.content).events == answered.events[2:]
    clock.advance(RETENTION_S)  # from the end of that resume, when its reader left
    gone = await resume(client, stream_id, f"{stream_id}:2", headers=alice)
    assert assert_error_shape(gone, 404)["code"] == "not_found"
