"""Live events written by the appender: a caught-up reader's task sleeps while tokens go out.

``SessionResponse`` follows its session once caught up; each append runs the server's ``send``
by hand from the appending code (in production, the upstream's data callback). These tests drive
a response with a recording ``send`` and check who wrote what, in which order, and what happens
when ``send`` suspends, fails, or the reader's own encoding breaks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from starlette.types import Message

from rag_service.settings import StreamSettings
from rag_service.streaming import StreamRegistry, StreamSession
from rag_service.streaming.sse_response import SseResponse
from rag_service.upstream_events import Completed, TextDelta, Timings
from tests.streaming.sse_spec import parse_sse

DONE = Completed(finish_reason="stop", usage=None, timings=Timings(1.0, 2.0), attempts=1)


@dataclass
class Client:
    """The ASGI side: records each body write and the task that made it."""

    writes: list[tuple[bytes, asyncio.Task[object] | None]] = field(default_factory=list)
    gate: asyncio.Future[None] | None = None  # when set, the write of ``hold_on`` waits for it
    hold_on: bytes = b"\x00"
    fail_on: bytes = b"\x00"
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, message: Message) -> None:
        if message["type"] != "http.response.body":
            return
        body: bytes = message.get("body", b"")
        if self.fail_on in body:
            raise OSError("connection reset by peer")
        if self.gate is not None and self.hold_on in body:
            await self.gate
        self.writes.append((body, asyncio.current_task()))

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    @property
    def text(self) -> str:
        events = parse_sse(b"".join(body for body, _ in self.writes)).events
        return "".join(e.json()["text"] for e in events if e.type == "delta")

    def writer_of(self, fragment: bytes) -> asyncio.Task[object] | None:
        [task] = [task for body, task in self.writes if fragment in body]
        return task


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(2.0):
        while not condition():  # noqa: ASYNC110 - waiting for other tasks to take their turn
            await asyncio.sleep(0)


async def start(
    client: Client, response_type: type[SseResponse] = SseResponse
) -> tuple[StreamRegistry, StreamSession, asyncio.Task[None]]:
    registry = StreamRegistry(StreamSettings(grace_period_s=5.0))
    session = registry.open(context_id="c", principal=None, started_at=0.0)
    session.publish_meta({"stream_id": session.stream_id})
    response = response_type(session, registry)
    task = asyncio.get_running_loop().create_task(
        response({"type": "http"}, client.receive, client.send)
    )
    await until(lambda: bool(client.writes))  # the meta event: the reader has caught up
    return registry, session, task


async def test_a_live_event_is_written_by_the_appender_not_the_readers_task() -> None:
    client = Client()
    registry, session, task = await start(client)
    me = asyncio.current_task()

    session.apply(TextDelta("hello"))

    assert client.writer_of(b"hello") is me  # written before apply returned
    session.apply(TextDelta(" world"))
    session.apply(DONE)
    await asyncio.wait_for(task, 2.0)
    assert client.text == "hello world"
    assert client.writer_of(b'"finish_reason"') is me
    assert client.writes[-1] == (b"", task)  # the reader's task ends the response
    seqs = [e.last_event_id for e in parse_sse(b"".join(b for b, _ in client.writes)).events]
    assert seqs == [f"{session.stream_id}:{n}" for n in range(1, 5)]
    await registry.close()


async def test_a_send_that_suspends_is_finished_by_the_task_and_order_is_kept() -> None:
    client = Client(hold_on=b'"b"')
    client.gate = asyncio.get_running_loop().create_future()
    registry, session, task = await start(client)
    me = asyncio.current_task()

    session.apply(TextDelta("a"))
    session.apply(TextDelta("b"))  # this write suspends: the reader stops following
    session.apply(TextDelta("c"))
    session.apply(TextDelta("d"))
    assert client.text == "a"  # nothing overtakes the suspended write
    client.gate.set_result(None)
    await until(lambda: client.text == "abcd")
    assert client.writer_of(b'"b"') is task
    assert client.writer_of(b'"c"') is task  # c and d went out together, after b
    # The task wrote c and d and parked again in the same step: the reader follows again.
    session.apply(TextDelta("e"))
    assert client.writer_of(b'"e"') is me  # following again once caught up
    session.apply(DONE)
    await asyncio.wait_for(task, 2.0)
    assert client.text == "abcde"
    await registry.close()


async def test_a_failed_write_ends_the_response_and_leaves_the_answer_running() -> None:
    client = Client(fail_on=b"gone")
    registry, session, task = await start(client)

    session.apply(TextDelta("gone"))  # must not raise into the generation
    await asyncio.wait_for(task, 2.0)

    assert session.readers == 0  # detached: the grace period runs
    session.apply(TextDelta("more"))
    session.apply(DONE)
    assert session.finished
    assert registry.find(session.stream_id, None) is session
    await registry.close()


class BrokenEncoding(SseResponse):
    __slots__ = ()

    def _encode(self, chunk: bytes) -> bytes:
        if b"boom" in chunk:
            raise RuntimeError("cannot encode")
        return chunk


async def test_a_readers_own_failure_stays_with_the_reader() -> None:
    client = Client()
    registry, session, task = await start(client, BrokenEncoding)

    session.apply(TextDelta("boom"))  # the appender is not hurt
    session.apply(DONE)

    with pytest.raises(RuntimeError, match="cannot encode"):
        await asyncio.wait_for(task, 2.0)
    assert session.finished
    await registry.close()


async def test_a_disconnect_while_following_stops_the_writes() -> None:
    client = Client()
    registry, session, task = await start(client)

    client.gone.set()
    await asyncio.wait_for(task, 2.0)
    session.apply(TextDelta("unseen"))

    assert b"unseen" not in b"".join(body for body, _ in client.writes)
    assert session.readers == 0
    await registry.close()


async def test_a_send_that_always_yields_still_gets_every_event_in_order() -> None:
    """Servers or middleware whose ``send`` always gives the loop a turn (an anyio checkpoint,
    a queue) make every direct write suspend: the reader's task then writes them all."""
    client = Client()
    recorded = client.send

    async def yielding_send(message: Message) -> None:
        await asyncio.sleep(0)
        await recorded(message)

    client.send = yielding_send  # type: ignore[method-assign]
    registry, session, task = await start(client)

    for word in ["one ", "two ", "three ", "four"]:
        session.apply(TextDelta(word))
        await asyncio.sleep(0)
    session.apply(DONE)
    await asyncio.wait_for(task, 2.0)

    assert client.text == "one two three four"
    assert {writer for body, writer in client.writes if body} == {task}
    await registry.close()


async def test_the_disconnect_after_the_request_body_detaches_the_reader_at_once() -> None:
    """``receive()`` first gives the request's body (in parts here); only the disconnect after
    it ends the stream, and the reader is detached then, before any further write."""
    client = Client()
    parts = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.request", "body": b"}", "more_body": False},
    ]
    disconnected = client.receive

    async def receive() -> Message:
        return parts.pop(0) if parts else await disconnected()

    client.receive = receive  # type: ignore[method-assign]
    registry, session, task = await start(client)
    await until(lambda: not parts)
    session.apply(TextDelta("seen"))
    assert session.readers == 1

    client.gone.set()
    await until(lambda: session.readers == 0)  # detached by the watcher, not by the task's end
    session.apply(TextDelta("unseen"))
    await asyncio.wait_for(task, 2.0)

    assert client.text == "seen"
    assert all(body for body, _ in client.writes)  # no end of the body for a client that left
    await registry.close()


async def test_a_receive_that_fails_with_an_os_error_counts_as_a_disconnect() -> None:
    client = Client()

    async def receive() -> Message:
        await client.gone.wait()
        raise OSError("connection reset by peer")

    client.receive = receive  # type: ignore[method-assign]
    registry, session, task = await start(client)

    client.gone.set()
    await asyncio.wait_for(task, 2.0)
    session.apply(TextDelta("unseen"))

    assert b"unseen" not in b"".join(body for body, _ in client.writes)
    assert session.readers == 0
    await registry.close()
