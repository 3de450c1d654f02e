"""How readers sleep on a session: one future each, resolved by the next append or the end."""

from __future__ import annotations

import asyncio

from rag_service.domain import TextDelta
from rag_service.errors import UpstreamProtocolError
from rag_service.streaming import StreamSession


def new_session() -> StreamSession:
    return StreamSession(
        stream_id="s" * 22,
        context_id="c",
        principal=None,
        buffer_capacity=64,
        clock=lambda: 0.0,
        started_at=0.0,
    )


async def test_every_waiting_reader_wakes_at_the_next_append_and_only_then() -> None:
    session = new_session()
    loop = asyncio.get_running_loop()
    first: asyncio.Future[None] = loop.create_future()
    second: asyncio.Future[None] = loop.create_future()
    session.notify(first)
    session.notify(second)

    assert not first.done()
    session.apply(TextDelta("hello"))

    assert first.done()
    assert second.done()
    later: asyncio.Future[None] = loop.create_future()
    session.notify(later)
    assert not later.done()  # an append wakes only the readers waiting at that moment


async def test_a_reader_may_resolve_its_own_future_before_the_append() -> None:
    session = new_session()
    loop = asyncio.get_running_loop()
    pinged: asyncio.Future[None] = loop.create_future()
    session.notify(pinged)
    pinged.set_result(None)  # a ping or a disconnect woke the reader first
    waiting: asyncio.Future[None] = loop.create_future()
    session.notify(waiting)

    session.apply(TextDelta("x"))

    assert waiting.done()


async def test_waiting_on_an_ended_session_returns_at_once() -> None:
    session = new_session()
    session.fail(UpstreamProtocolError("broken"))
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    session.notify(waiter)

    assert waiter.done()
    assert session.change_waiter().done()
