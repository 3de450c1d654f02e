"""StreamRegistry: generation tasks, grace periods, capacity, ownership, shutdown (retention of
ended streams and cancels: test_retention.py)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

import pytest

from rag_service.domain import TextDelta
from rag_service.errors import Forbidden, NotFound, ServiceUnavailable
from rag_service.settings import StreamSettings
from rag_service.streaming import StreamRegistry, StreamSession
from tests.fakes.upstream import Hold, ScriptedUpstream, Step, answer_script, completed
from tests.streaming.helpers import native_bytes
from tests.streaming.sse_spec import parse_sse

WAIT_LIMIT_S = 5.0


async def wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_LIMIT_S):
        while not condition():  # noqa: ASYNC110 - timer-driven state, no event to wait on
            await asyncio.sleep(0.005)


def make_registry(grace_s: float = 0.05, max_sessions: int = 100) -> StreamRegistry:
    return StreamRegistry(StreamSettings(grace_period_s=grace_s), max_sessions=max_sessions)


def event_types(session: StreamSession) -> list[str]:
    return [e.type for e in parse_sse(native_bytes(session)).events]


def started(
    script: list[Step], *, grace_s: float = 0.05, max_sessions: int = 100
) -> tuple[StreamRegistry, ScriptedUpstream, StreamSession]:
    """A registry with one session generating what an upstream playing ``script`` answers."""
    registry = make_registry(grace_s, max_sessions)
    upstream = ScriptedUpstream(script=script)
    return registry, upstream, start(registry, upstream)


def start(registry: StreamRegistry, upstream: ScriptedUpstream) -> StreamSession:
    session = registry.open(context_id="c", principal="alice", started_at=0.0)
    session.publish_meta({"stream_id": session.stream_id})
    registry.start(session, functools.partial(upstream.answer, None))  # type: ignore[arg-type]
    return session


async def test_generation_runs_to_the_end_without_any_reader() -> None:
    registry, _, session = started(answer_script(["a", "b", "c"]), grace_s=5.0)
    registry.detach(session)

    assert session.task is not None
    await session.task

    assert event_types(session) == ["meta", "delta", "delta", "delta", "done"]
    assert registry.find(session.stream_id, "alice") is session
    await registry.close()


async def test_expiry_cancels_a_running_generation_and_forgets_the_session() -> None:
    registry, upstream, session = started([TextDelta("a"), Hold(), completed()], grace_s=0.05)
    await upstream.holding.wait()

    registry.detach(session)
    await asyncio.wait_for(upstream.closed_event.wait(), WAIT_LIMIT_S)

    assert upstream.closed_early == 1
    assert session.task is not None
    await wait_until(session.task.done)
    assert session.task.cancelled()
    with pytest.raises(NotFound):
        registry.find(session.stream_id, "alice")
    assert registry.stats().sessions == 0


async def test_a_reader_returning_within_grace_keeps_the_generation() -> None:
    registry, upstream, session = started(
        [TextDelta("a"), Hold(), TextDelta("b"), completed()], grace_s=0.2
    )
    await upstream.holding.wait()

    registry.detach(session)
    registry.attach(session)  # the client reconnected
    await asyncio.sleep(0.4)  # twice the grace period: expiry would have fired by now
    upstream.release()
    assert session.task is not None
    await session.task

    assert upstream.closed_early == 0
    assert event_types(session)[-1] == "done"
    await registry.close()


async def test_only_the_creator_finds_its_stream() -> None:
    registry = make_registry()
    session = registry.open(context_id="c", principal="alice", started_at=0.0)
    anonymous = registry.open(context_id="c", principal=None, started_at=0.0)

    assert registry.find(session.stream_id, "alice") is session
    assert registry.find(anonymous.stream_id, None) is anonymous
    for owner, caller in [(session, "bob"), (session, None), (anonymous, "alice")]:
        with pytest.raises(Forbidden):
            registry.find(owner.stream_id, caller)
    await registry.close()


async def test_full_registry_evicts_retained_sessions_before_refusing() -> None:
    registry, _, ended = started(answer_script(["x"]), grace_s=60.0, max_sessions=2)
    assert ended.task is not None
    await ended.task
    registry.detach(ended)
    live = registry.open(context_id="c", principal=None, started_at=0.0)

    newest = registry.open(context_id="c", principal=None, started_at=0.0)  # evicts `ended`

    with pytest.raises(NotFound):
        registry.find(ended.stream_id, "alice")
    with pytest.raises(ServiceUnavailable) as refused:
        registry.open(context_id="c", principal=None, started_at=0.0)
    assert refused.value.retry_after_s is not None
    assert refused.value.retry_after_s >= 1.0
    assert registry.stats().sessions == 2
    assert registry.find(live.stream_id, None) is live
    assert registry.find(newest.stream_id, None) is newest
    assert registry.stats().evicted_full == 1
    await registry.close()


async def test_stats_count_sessions_generations_and_readers() -> None:
    registry, upstream, session = started([TextDelta("a"), Hold(), completed()], grace_s=5.0)
    await upstream.holding.wait()
    registry.attach(session)

    stats = registry.stats()

    assert (stats.sessions, stats.generating, stats.readers) == (1, 1, 2)
    upstream.release()
    assert session.task is not None
    await session.task
    registry.detach(session)
    registry.detach(session)
    assert registry.stats().readers == 0
    assert registry.stats().generating == 0
    await registry.close()


async def test_close_ends_every_stream_and_refuses_new_ones() -> None:
    registry, upstream, session = started([TextDelta("a"), Hold(), completed()], grace_s=5.0)
    await upstream.holding.wait()
    waiter = session.change_waiter()

    await registry.close()

    assert waiter.done()  # attached readers wake up and see the end
    assert session.finished
    assert event_types(session) == ["meta", "delta", "error"]
    assert upstream.closed_early == 1
    assert registry.stats().sessions == 0
    with pytest.raises(ServiceUnavailable):
        registry.open(context_id="c", principal=None, started_at=0.0)


class FakeLag:
    """The loop lag the registry reads, set by the test (seconds)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


def lagging_registry(lag: FakeLag, shed_ms: float = 100.0) -> StreamRegistry:
    return StreamRegistry(StreamSettings(shed_loop_lag_ms=shed_ms), loop_lag=lag)


async def test_new_streams_are_refused_while_the_loop_is_behind() -> None:
    lag = FakeLag()
    registry = lagging_registry(lag, shed_ms=100.0)
    lag.seconds = 0.1
    registry.check_capacity()  # at the threshold: still accepted

    lag.seconds = 0.35
    with pytest.raises(ServiceUnavailable) as refused:
        registry.check_capacity()

    assert refused.value.details == {"reason": "overloaded", "loop_lag_ms": 350}
    assert refused.value.retry_after_s is not None
    assert 1.0 <= refused.value.retry_after_s <= 3.0
    assert registry.stats().refused_overloaded == 1
    assert registry.stats().refused_full == 0
    lag.seconds = 0.02
    registry.check_capacity()  # caught up: accepted again
    assert registry.stats().refused_overloaded == 1
    await registry.close()


async def test_a_session_whose_context_was_looked_up_opens_even_if_the_loop_fell_behind() -> None:
    lag = FakeLag()
    registry = lagging_registry(lag)
    registry.check_capacity()
    lag.seconds = 5.0  # e.g. the look-up opened the store in the loop

    session = registry.open(context_id="c", principal=None, started_at=0.0)

    assert registry.find(session.stream_id, None) is session
    await registry.close()


async def test_shedding_is_off_with_a_zero_threshold() -> None:
    lag = FakeLag()
    registry = lagging_registry(lag, shed_ms=0.0)
    lag.seconds = 60.0

    registry.check_capacity()

    assert registry.stats().refused_overloaded == 0
    await registry.close()


async def test_a_full_registry_says_why_it_refuses() -> None:
    registry = make_registry(max_sessions=1)
    registry.open(context_id="c", principal=None, started_at=0.0)

    with pytest.raises(ServiceUnavailable) as refused:
        registry.check_capacity()

    assert refused.value.details == {"reason": "too_many_streams"}
    assert registry.stats().refused_full == 1
    await registry.close()
