"""The server's lean httptools protocol: ``LazyEvent`` behaves as ``asyncio.Event`` does where
uvicorn uses it, and a real uvicorn with ``LeanHttpToolsProtocol`` keeps no empty ``Event`` or
``deque`` per connection while it still serves request bodies in parts, pipelined requests, a
client that reads slowly, and a disconnect."""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn

from rag_service.http_server import (
    LazyEvent,
    LeanHttpToolsProtocol,
    _swap_idle_event,
)
from tests.live_server import running_server

WAIT_LIMIT_S = 5.0
# Far more than the kernel buffers between the two ends hold while the client does not read.
BIG_KB = 4096
SMALL_RCVBUF = 16 * 1024

EventFactory = Callable[[], Any]
EVENT_KINDS: dict[str, EventFactory] = {"asyncio.Event": asyncio.Event, "LazyEvent": LazyEvent}


@pytest.fixture(params=sorted(EVENT_KINDS))
def make_event(request: pytest.FixtureRequest) -> EventFactory:
    return EVENT_KINDS[request.param]


# -- the event contract, for asyncio.Event and LazyEvent alike -------------------------------------


async def test_wait_returns_at_once_when_set(make_event: EventFactory) -> None:
    event = make_event()
    event.set()
    assert event.is_set()
    assert await asyncio.wait_for(event.wait(), WAIT_LIMIT_S) is True


async def test_set_wakes_every_waiter(make_event: EventFactory) -> None:
    event = make_event()
    waiters = [asyncio.ensure_future(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(waiter.done() for waiter in waiters)
    event.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), WAIT_LIMIT_S) == [True] * 3


async def test_a_waiter_woken_by_set_returns_even_if_cleared_before_it_runs(
    make_event: EventFactory,
) -> None:
    event = make_event()
    waiter = asyncio.ensure_future(event.wait())
    await asyncio.sleep(0)
    event.set()
    event.clear()  # uvicorn's receive() clears right after its wait: the wake-up must hold
    assert await asyncio.wait_for(waiter, WAIT_LIMIT_S) is True
    assert not event.is_set()


async def test_clear_makes_the_next_wait_block(make_event: EventFactory) -> None:
    event = make_event()
    event.set()
    event.clear()
    waiter = asyncio.ensure_future(event.wait())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    event.set()
    assert await asyncio.wait_for(waiter, WAIT_LIMIT_S) is True


async def test_a_cancelled_waiter_leaves_the_others_waiting(make_event: EventFactory) -> None:
    event = make_event()
    cancelled = asyncio.ensure_future(event.wait())
    kept = asyncio.ensure_future(event.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert not kept.done()
    event.set()
    assert await asyncio.wait_for(kept, WAIT_LIMIT_S) is True


async def test_lazy_event_holds_no_waiter_list_when_nobody_waits() -> None:
    event = LazyEvent()
    assert event._waiters is None
    waiters = [asyncio.ensure_future(event.wait()) for _ in range(2)]
    await asyncio.sleep(0)
    assert event._waiters is not None and len(event._waiters) == 2
    waiters[0].cancel()
    event.set()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert event._waiters is None


class Holder:
    def __init__(self, value: object) -> None:
        self.event = value


@pytest.mark.parametrize("is_set", [False, True])
def test_an_idle_asyncio_event_is_swapped_in_the_same_state(is_set: bool) -> None:
    event = asyncio.Event()
    if is_set:
        event.set()
    holder = Holder(event)

    _swap_idle_event(holder, "event")

    assert type(holder.event) is LazyEvent
    assert holder.event.is_set() is is_set


async def test_an_event_with_a_waiter_or_anything_else_is_left_alone() -> None:
    """What uvicorn might one day keep there instead: memory may suffer, behaviour may not."""
    event = asyncio.Event()
    waiter = asyncio.ensure_future(event.wait())
    await asyncio.sleep(0)
    for value in (event, "not an event", None):
        holder = Holder(value)
        _swap_idle_event(holder, "event")
        assert holder.event is value
    _swap_idle_event(holder, "missing")
    assert not hasattr(holder, "missing")
    event.set()
    await waiter


# -- a real uvicorn with the lean protocol --------------------------------------------------------


class EchoStreamApp:
    """``POST /echo``: the request body back, read in whatever parts the server hands over.
    ``GET /big?kb=N``: N KB in 1 KB chunks. ``GET /hold``: a started response held open until
    the client disconnects, which ``disconnects`` records."""

    def __init__(self) -> None:
        self.disconnects = 0
        self.body_parts: list[int] = []
        self.holding = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if scope["path"] == "/echo":
            body = b""
            while True:
                message = await receive()
                body += message["body"]
                self.body_parts.append(len(message["body"]))
                if not message["more_body"]:
                    break
            await send({"type": "http.response.body", "body": body})
        elif scope["path"] == "/big":
            kb = int(scope["query_string"].decode().partition("=")[2])
            for _ in range(kb):
                await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.body", "body": b"started\n", "more_body": True})
            self.holding.set()
            while (await receive())["type"] != "http.disconnect":
                pass  # the (empty) request body
            self.disconnects += 1


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One chunked response's body."""
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"transfer-encoding: chunked" in head.lower()
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return body
        body += chunk[:-2]


async def only_connection(server: uvicorn.Server) -> Any:
    """The server's one connection, once it has accepted it."""
    async with asyncio.timeout(WAIT_LIMIT_S):
        while len(server.server_state.connections) != 1:  # noqa: ASYNC110 - no event for it
            await asyncio.sleep(0.01)
    (protocol,) = server.server_state.connections
    return protocol


def empty_waiting_objects(protocol: Any) -> list[str]:
    """Attributes of the connection that are an ``asyncio.Event`` or a ``deque``."""
    places = {"protocol": protocol, "flow": protocol.flow, "cycle": protocol.cycle}
    return [
        f"{where}.{name}"
        for where, obj in places.items()
        for name, value in vars(obj).items()
        if isinstance(value, (asyncio.Event, deque))
    ]


async def test_the_server_runs_the_lean_protocol_and_keeps_no_event_or_deque_per_stream() -> None:
    app = EchoStreamApp()
    async with running_server(app) as (server, port):
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.wait_for(app.holding.wait(), WAIT_LIMIT_S)
        protocol = await only_connection(server)
        assert type(protocol) is LeanHttpToolsProtocol
        assert empty_waiting_objects(protocol) == []
        writer.close()
        await writer.wait_closed()
        async with asyncio.timeout(WAIT_LIMIT_S):
            while app.disconnects == 0:  # noqa: ASYNC110 - the app's task notices it
                await asyncio.sleep(0.01)


async def test_a_request_body_sent_in_parts_arrives_whole() -> None:
    app = EchoStreamApp()
    async with running_server(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 12\r\n\r\nhello ")
        await writer.drain()
        await asyncio.sleep(0.05)  # the app is waiting on receive() for the rest
        writer.write(b"world!")
        assert await asyncio.wait_for(read_response(reader), WAIT_LIMIT_S) == b"hello world!"
        assert len(app.body_parts) >= 2  # it did wait between the parts
        writer.close()


async def test_pipelined_requests_are_answered_in_order() -> None:
    app = EchoStreamApp()
    async with running_server(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /big?kb=64 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nsecond"
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nthird"
        )
        assert await asyncio.wait_for(read_response(reader), WAIT_LIMIT_S) == b"x" * 64 * 1024
        assert await asyncio.wait_for(read_response(reader), WAIT_LIMIT_S) == b"second"
        assert await asyncio.wait_for(read_response(reader), WAIT_LIMIT_S) == b"third"
        writer.close()


async def test_a_client_that_reads_slowly_gets_every_byte() -> None:
    """Megabytes to a reader that pauses: the server's writes wait on the writability event."""
    app = EchoStreamApp()
    async with running_server(app) as (server, port):
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)  # before connect
        client.setblocking(False)
        await asyncio.get_running_loop().sock_connect(client, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=client, limit=2**16)
        writer.write(f"GET /big?kb={BIG_KB} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        protocol = await only_connection(server)
        async with asyncio.timeout(WAIT_LIMIT_S):  # nothing read: the server's buffer fills
            while not protocol.flow.write_paused:  # noqa: ASYNC110 - uvicorn's own state
                await asyncio.sleep(0.01)
        body = await asyncio.wait_for(read_response(reader), 4 * WAIT_LIMIT_S)
        assert body == b"x" * BIG_KB * 1024
        writer.close()
