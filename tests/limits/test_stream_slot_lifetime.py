"""When the stream registry gives a key's stream slot back: at the end of the generation (done,
error, cancelled), not when the last reader leaves; and exactly once on every other path."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator

import pytest

from rag_service.domain import Failed, TextDelta
from rag_service.errors import ServiceUnavailable, UpstreamRetryable
from rag_service.settings import StreamSettings
from rag_service.streaming import StreamRegistry, StreamSession
from tests.fakes.upstream import Hold, ScriptedUpstream, Step, answer_script, completed
from tests.limits.conftest import WAIT_LIMIT_S


class CountingSlot:
    """A ``StreamSlot`` that counts its releases."""

    def __init__(self) -> None:
        self.releases = 0

    def release(self) -> None:
        self.releases += 1


@pytest.fixture
async def registry() -> AsyncIterator[StreamRegistry]:
    registry = StreamRegistry(StreamSettings(grace_period_s=30.0), max_sessions=2)
    yield registry
    await registry.close()


def start(
    registry: StreamRegistry, script: list[Step], upstream: ScriptedUpstream | None = None
) -> tuple[StreamSession, CountingSlot]:
    slot = CountingSlot()
    session = registry.open(context_id="c", principal="key-a", started_at=0.0, slot=slot)
    upstream = upstream or ScriptedUpstream(script=script)
    registry.start(session, functools.partial(upstream.answer, None))  # type: ignore[arg-type]
    return session, slot


async def ended(session: StreamSession) -> None:
    assert session.task is not None
    async with asyncio.timeout(WAIT_LIMIT_S):
        await asyncio.wait([session.task])


@pytest.mark.parametrize(
    "script",
    [
        answer_script(["a", "b"]),
        [TextDelta("a"), Failed(UpstreamRetryable("cut", reason="cut"), attempts=1)],
    ],
    ids=["done", "error"],
)
async def test_the_slot_is_released_once_when_the_generation_ends(
    registry: StreamRegistry, script: list[Step]
) -> None:
    session, slot = start(registry, script)

    await ended(session)

    assert slot.releases == 1
    registry.detach(session)  # the reader leaves afterwards: nothing more to release
    assert slot.releases == 1


async def test_a_reader_leaving_does_not_release_a_running_generation(
    registry: StreamRegistry,
) -> None:
    upstream = ScriptedUpstream(script=[TextDelta("a"), Hold(), completed()])
    session, slot = start(registry, [], upstream)
    await asyncio.wait_for(upstream.holding.wait(), WAIT_LIMIT_S)  # generating

    registry.detach(session)  # the client disconnected; the grace period (30 s) runs

    assert slot.releases == 0
    assert session.task is not None
    assert not session.task.done()
    await registry.close()  # cancels the generation
    assert slot.releases == 1


async def test_a_generation_cancelled_before_its_first_step_releases_its_slot(
    registry: StreamRegistry,
) -> None:
    session, slot = start(registry, answer_script(["a"]))

    await registry.close()  # before the task ran at all: its own ``finally`` never runs

    assert slot.releases == 1
    await ended(session)
    assert slot.releases == 1


async def test_a_session_refused_by_a_full_registry_releases_the_slot_it_was_given(
    registry: StreamRegistry,
) -> None:
    start(registry, [Hold()])
    start(registry, [Hold()])
    refused = CountingSlot()

    with pytest.raises(ServiceUnavailable):
        registry.open(context_id="c", principal="key-a", started_at=0.0, slot=refused)

    assert refused.releases == 1


async def test_an_abandoned_session_releases_its_slot(registry: StreamRegistry) -> None:
    slot = CountingSlot()
    session = registry.open(context_id="c", principal="key-a", started_at=0.0, slot=slot)

    registry.abandon(session)

    assert slot.releases == 1
