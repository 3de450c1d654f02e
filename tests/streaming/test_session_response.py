"""``SessionResponse`` driven with a recording ASGI ``send``/``receive``: the response's own task
writes every event, in order, in batches; a slow ``send`` holds the events back (back-pressure);
a disconnect detaches the reader at once; pings, failures and the replay window."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
from starlette.types import Message

from rag_service.domain import Completed, SessionEvent, TextDelta, Timings
from rag_service.openai.stream import ChunkEncoder
from rag_service.settings import StreamSettings
from rag_service.streaming import SessionResponse, StreamRegistry, StreamSession
from rag_service.streaming.sse_format import EventEncoder, NativeSseEncoder
from tests.streaming.sse_spec import parse_sse

DONE = Completed(finish_reason="stop", usage=None, timings=Timings(1.0, 2.0), attempts=1)
WAIT_LIMIT_S = 5.0


@dataclass
class Client:
    """The ASGI side: records each body write and the task that made it."""

    writes: list[tuple[bytes, asyncio.Task[object] | None]] = field(default_factory=list)
    gate: asyncio.Future[None] | None = None  # when set, the write of ``hold_on`` waits for it
    hold_on: bytes = b"\x00"
    held: bool = False  # a write of ``hold_on`` is waiting at the gate
    fail_on: bytes = b"\x00"
    ended: bool = False
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, message: Message) -> None:
        if message["type"] != "http.response.body":
            return
        body: bytes = message.get("body", b"")
        if self.fail_on in body:
            raise OSError("connection reset by peer")
        if self.gate is not None and self.hold_on in body:
            self.held = True
            await self.gate
        if message.get("more_body", False):
            self.writes.append((body, asyncio.current_task()))
        else:
            self.ended = True

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    @property
    def raw(self) -> bytes:
        return b"".join(body for body, _ in self.writes)

    @property
    def text(self) -> str:
        events = parse_sse(self.raw).events
        return "".join(e.json()["text"] for e in events if e.type == "delta")

    def writer_of(self, fragment: bytes) -> asyncio.Task[object] | None:
        [task] = [task for body, task in self.writes if fragment in body]
        return task


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_LIMIT_S):
        while not condition():  # noqa: ASYNC110 - waiting for other tasks to take their turn
            await asyncio.sleep(0)


@dataclass
class Stream:
    registry: StreamRegistry
    session: StreamSession
    response: SessionResponse
    task: asyncio.Task[None]


async def start(
    client: Client,
    encoder: Callable[[StreamSession], EventEncoder] = lambda s: NativeSseEncoder(s.stream_id),
    *,
    capacity: int = 2048,
) -> Stream:
    registry = StreamRegistry(StreamSettings(grace_period_s=5.0, replay_buffer_events=capacity))
    session = registry.open(context_id="c", principal=None, started_at=0.0)
    session.publish_meta({"stream_id": session.stream_id})
    response = SessionResponse(session, registry, encoder=encoder(session))
    task = asyncio.get_running_loop().create_task(
        response({"type": "http"}, client.receive, client.send)
    )
    await until(lambda: bool(client.writes))  # the meta event: the reader has caught up
    return Stream(registry, session, response, task)


async def start_stuck_in_a_write() -> tuple[Client, Stream]:
    """A stream whose task waits in the write of a delta ``stuck`` (the gate stays closed)."""
    client = Client(hold_on=b"stuck")
    client.gate = asyncio.get_running_loop().create_future()
    stream = await start(client)
    stream.session.apply(TextDelta("stuck"))
    await until(lambda: client.held)
    return client, stream


async def test_every_event_is_written_by_the_responses_own_task_in_order() -> None:
    client = Client()
    stream = await start(client)

    for word in ["one ", "two ", "three"]:
        stream.session.apply(TextDelta(word))
        await until(lambda w=word: w.encode() in client.raw)  # type: ignore[misc]
    stream.session.apply(DONE)
    await asyncio.wait_for(stream.task, WAIT_LIMIT_S)

    assert client.text == "one two three"
    assert {writer for _, writer in client.writes} == {stream.task}
    ids = [e.last_event_id for e in parse_sse(client.raw).events]
    assert ids == [f"{stream.session.stream_id}:{n}" for n in range(1, 6)]
    assert client.ended
    assert stream.session.readers == 0
    await stream.registry.close()


async def test_events_appended_while_the_task_sleeps_go_out_in_one_write() -> None:
    client = Client()
    stream = await start(client)
    writes_before = len(client.writes)

    for word in ["a", "b", "c"]:  # no await in between: one wake-up for the three
        stream.session.apply(TextDelta(word))
    await until(lambda: len(client.writes) > writes_before)

    assert client.writes[writes_before][0].count(b"event: delta") == 3
    stream.session.apply(DONE)
    await asyncio.wait_for(stream.task, WAIT_LIMIT_S)
    assert client.text == "abc"
    await stream.registry.close()


async def test_a_send_that_waits_holds_the_events_back_and_they_follow_in_order() -> None:
    """Back-pressure: while a write waits for a slow client, the answer goes on into the
    session; nothing overtakes the waiting write, and what came meanwhile follows in one."""
    client = Client(hold_on=b'"b"')
    client.gate = asyncio.get_running_loop().create_future()
    stream = await start(client)

    stream.session.apply(TextDelta("a"))
    await until(lambda: client.text == "a")
    stream.session.apply(TextDelta("b"))
    await until(lambda: client.held)  # this write waits at the gate
    for word in ["c", "d"]:
        stream.session.apply(TextDelta(word))
    await asyncio.sleep(0)
    assert client.text == "a"
    client.gate.set_result(None)
    await until(lambda: client.text == "abcd")

    assert client.writes[-1][0].count(b"event: delta") == 2  # c and d together, after b
    stream.session.apply(DONE)
    await asyncio.wait_for(stream.task, WAIT_LIMIT_S)
    await stream.registry.close()


async def test_a_failed_write_ends_the_response_and_leaves_the_answer_running() -> None:
    client = Client(fail_on=b"gone")
    stream = await start(client)

    stream.session.apply(TextDelta("gone"))  # never raises into the generation
    await asyncio.wait_for(stream.task, WAIT_LIMIT_S)

    assert stream.session.readers == 0  # detached: the grace period runs
    stream.session.apply(TextDelta("more"))
    stream.session.apply(DONE)
    assert stream.session.finished
    assert stream.registry.find(stream.session.stream_id, None) is stream.session
    await stream.registry.close()


class BrokenEncoder(NativeSseEncoder):
    __slots__ = ()

    def encode(self, events: Sequence[SessionEvent]) -> bytes:
        if any(b"boom" in getattr(event, "literal", b"") for event in events):
            raise RuntimeError("cannot encode")
        return super().encode(events)


async def test_an_encoders_failure_stays_with_the_reader() -> None:
    client = Client()
    stream = await start(client, lambda s: BrokenEncoder(s.stream_id))

    stream.session.apply(TextDelta("boom"))  # the appender is not hurt
    stream.session.apply(DONE)

    with pytest.raises(RuntimeError, match="cannot encode"):
        await asyncio.wait_for(stream.task, WAIT_LIMIT_S)
    assert stream.session.finished
    assert stream.session.readers == 0
    await stream.registry.close()


async def test_a_disconnect_of_a_silent_stream_detaches_the_reader_at_once() -> None:
    """The grace period starts at the disconnect, not at the next write."""
    client = Client()
    stream = await start(client)

    client.gone.set()
    await until(lambda: stream.session.readers == 0)

    assert stream.session.expiry is not None  # the grace timer runs
    await asyncio.wait_for(stream.task, WAIT_LIMIT_S)
    stream.session.apply(TextDelta("unseen"))
    assert b"unseen" not in client.raw
    await stream.registry.close()


async def test_a_disconnect_detaches_the_reader_even_while_a_write_waits() -> None:
    """Not when the task gets to notice it: the watcher detaches the reader itself."""
    client, stream = await start_stuck_in_a_write()

    client.gone.set()
    await until(lambda: stream.session.readers == 0)

    assert not stream.task.done()
    client.gate.set_result(None)
    await asyncio.wait_for(stream.task, WAIT_LIMIT_S)
    assert stream.session.readers == 0  # detached once, not twice
    await stream.registry.close()


async def test_the_disconnect_after_the_request_body_detaches_the_reader_at_once() -> None:
    """``receive()`` first gives the request's body (in parts here); only the disconnect after
    it ends the stream."""
    client = Client()
    parts: list[Message] = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.request", "body": b"}", "more_body": False},
    ]
    disconnected = client.receive

    async def receive() -> Message:
        return parts.pop(0) if parts else await disconnected()

    client.receive = receive  # type: ignore[method-assign]
    stream = await start(client)
    await until(lambda: not parts)
    stream.session.apply(TextDelta("seen"))
    await until(lambda: client.text == "seen")
    assert stream.session.readers == 1

    client.gone.set()
    await until(lambda: stream.session.readers == 0)
    stream.session.apply(TextDelta("unseen"))
    await asyncio.wait_for(stream.task, WAIT_LIMIT_S)

    assert client.text == "seen"
    await stream.registry.close()


async def test_a_receive_that_fails_with_an_os_error_counts_as_a_disconnect() -> None:
    client = Client()

    async def receive() -> Message:
        await client.gone.wait()
        raise OSError("connection reset by peer")

    client.receive = receive  # type: ignore[method-assign]
    stream = await start(client)

    client.gone.set()
    await asyncio.wait_for(stream.task, WAIT_LIMIT_S)

    assert stream.session.readers == 0
    await stream.registry.close()


async def test_a_cancelled_response_releases_its_reader() -> None:
    """Shutdown cancels the request's task, here in the middle of a write."""
    _, stream = await start_stuck_in_a_write()

    stream.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stream.task

    assert stream.session.readers == 0
    assert len(stream.registry.keepalive) == 0
    await stream.registry.close()


async def test_pings_go_out_while_idle_and_pile_up_no_futures() -> None:
    client = Client()
    stream = await start(client)

    for count in range(1, 31):
        stream.response.ping_due()  # what the keep-alive ticker does
        await until(lambda c=count: client.raw.count(b": ping") == c)  # type: ignore[misc]

    pending = [f for f in stream.session._sleepers or [] if not f.done()]
    assert len(pending) <= stream.session.readers
    stream.session.apply(DONE)
    await asyncio.wait_for(stream.task, WAIT_LIMIT_S)
    assert parse_sse(client.raw).comments == ["ping"] * 30
    await stream.registry.close()


@pytest.mark.parametrize(
    ("encoder", "last_words"),
    [
        (lambda s: NativeSseEncoder(s.stream_id), None),
        (
            lambda s: ChunkEncoder(
                stream_id=s.stream_id, model="m", created=1, include_usage=False
            ),
            b'data: {"error":{"code":"unavailable"',
        ),
    ],
    ids=["native", "openai"],
)
async def test_a_reader_left_behind_by_the_replay_window_ends(
    encoder: Callable[[StreamSession], EventEncoder], last_words: bytes | None
) -> None:
    """Its missed events are gone: the native stream just ends (its resume answers 404), the
    OpenAI stream ends with an error; neither passes a holey answer off as whole."""
    client = Client(hold_on=b"first")
    client.gate = asyncio.get_running_loop().create_future()
    stream = await start(client, encoder, capacity=16)
    stream.session.apply(TextDelta("first"))
    await until(lambda: client.held)  # the reader is stuck in this write
    for index in range(40):
        stream.session.apply(TextDelta(f"<{index}>"))
    assert stream.session.first_seq > 3

    client.gate.set_result(None)
    await asyncio.wait_for(stream.task, WAIT_LIMIT_S)

    assert b"<39>" not in client.raw
    if last_words is None:
        assert not client.writes[-1][0].startswith(b"data: ")
    else:
        assert client.writes[-1][0].startswith(last_words)
    assert stream.session.readers == 0
    await stream.registry.close()
