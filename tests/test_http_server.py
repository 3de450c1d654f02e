"""The server the service runs under: ``server_config`` gives stock uvicorn on uvloop and
httptools, and a real uvicorn built from it does what the streams rely on - request bodies in
parts, pipelined requests, back-pressure towards a slow reader, and a disconnect reported by
``receive()``. Every wait is on a condition, bounded only as a safety net."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest
from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string

from rag_service.server import server_config
from rag_service.server.connection_guard import GuardedConnection
from rag_service.settings import ServerSettings, Settings
from tests.live_server import running_server

WAIT_LIMIT_S = 10.0
# Far more than the kernel's socket buffers between the two ends hold (loopback autotuning
# caps a send buffer at 4 MB by default) while the client does not read.
BIG_KB = 16 * 1024
CHUNK_KB = 16
SMALL_RCVBUF = 16 * 1024
READ_SIZE = 64 * 1024
# The slow reader's writer counts as held by back-pressure once its output stops growing for
# this many polls in a row (a loaded machine only makes that later, never wrong: see the test).
SETTLED_POLLS = 20


async def noop_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise AssertionError("not to be called")


def test_the_config_is_stock_uvicorn_on_uvloop_and_httptools_inside_the_guard() -> None:
    config = server_config(noop_app, Settings(), port=0)
    config.load()

    assert config.loop == "uvloop"
    protocol = config.http_protocol_class
    assert issubclass(protocol, GuardedConnection)
    assert protocol.inner_protocol_class is import_from_string(HTTP_PROTOCOLS["httptools"])
    assert config.ws == "none"


def test_explicit_options_win_and_reach_uvicorn() -> None:
    config = server_config(
        noop_app, Settings(), http="h11", loop="asyncio", timeout_graceful_shutdown=7, port=9
    )

    protocol = config.http  # the class uvicorn will run
    assert isinstance(protocol, type)
    assert issubclass(protocol, GuardedConnection)
    assert protocol.inner_protocol_class is import_from_string(HTTP_PROTOCOLS["h11"])
    assert (config.loop, config.timeout_graceful_shutdown, config.port) == ("asyncio", 7, 9)


def test_the_address_and_keep_alive_come_from_the_settings() -> None:
    settings = Settings(server=ServerSettings(host="127.0.0.2", port=8123, keepalive_s=9))

    config = server_config(noop_app, settings)

    assert (config.host, config.port, config.timeout_keep_alive) == ("127.0.0.2", 8123, 9)


@pytest.mark.parametrize("option", ["ws", "reset_contextvars", "timeout_keep_alive"])
def test_options_that_would_undo_the_guard_are_refused(option: str) -> None:
    with pytest.raises(ValueError, match=option):
        server_config(noop_app, Settings(), **{option: "auto"})


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_LIMIT_S):
        while not condition():  # noqa: ASYNC110 - state of the app's task, no event for it
            await asyncio.sleep(0.005)


class EchoStreamApp:
    """``POST /echo``: the request body back, read in whatever parts the server hands over.
    ``GET /big?kb=N``: N KB in ``CHUNK_KB`` chunks. ``GET /hold``: a started response held open until
    the client disconnects, which ``disconnects`` records."""

    def __init__(self) -> None:
        self.disconnects = 0
        self.body_parts: list[int] = []
        self.sent_kb = 0
        self.big_done = False
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
            chunk = b"x" * CHUNK_KB * 1024
            while self.sent_kb < kb:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                self.sent_kb += CHUNK_KB
            await send({"type": "http.response.body", "body": b""})
            self.big_done = True
        else:
            await send({"type": "http.response.body", "body": b"started\n", "more_body": True})
            self.holding.set()
            while (await receive())["type"] != "http.disconnect":
                pass  # the (empty) request body
            self.disconnects += 1


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One chunked response's body. Not bounded as a whole, however large: each read must make
    progress within ``WAIT_LIMIT_S``, so a slow machine is slow, and only a stall fails."""

    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_LIMIT_S)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"transfer-encoding: chunked" in head.lower()
    body = bytearray()
    while True:
        size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), WAIT_LIMIT_S)).strip(), 16)
        remaining = size + 2
        chunk = bytearray()
        while remaining:
            piece = await asyncio.wait_for(reader.read(min(READ_SIZE, remaining)), WAIT_LIMIT_S)
            assert piece, "the connection closed in the middle of a chunk"
            chunk += piece
            remaining -= len(piece)
        if size == 0:
            return bytes(body)
        body += chunk[:-2]


async def test_a_disconnect_reaches_the_apps_receive() -> None:
    """What a stream's response relies on: uvicorn drops writes to a closed connection
    silently, and only ``receive()`` says that the client has gone."""
    app = EchoStreamApp()
    async with running_server(app) as (_, port):
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.wait_for(app.holding.wait(), WAIT_LIMIT_S)
        writer.close()
        await writer.wait_closed()
        await until(lambda: app.disconnects == 1)


async def test_a_request_body_sent_in_parts_arrives_whole() -> None:
    app = EchoStreamApp()
    async with running_server(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 12\r\n\r\nhello ")
        await writer.drain()
        await until(lambda: bool(app.body_parts))  # the app took the first part and waits
        writer.write(b"world!")
        assert await read_response(reader) == b"hello world!"
        assert app.body_parts[0] == 6
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
        assert await read_response(reader) == b"x" * 64 * 1024
        assert await read_response(reader) == b"second"
        assert await read_response(reader) == b"third"
        writer.close()


async def settled(value: Callable[[], int]) -> int:
    """``value()`` once it has stopped changing for ``SETTLED_POLLS`` polls in a row."""
    last, same = value(), 0
    async with asyncio.timeout(WAIT_LIMIT_S):
        while same < SETTLED_POLLS:
            await asyncio.sleep(0.01)
            current = value()
            same = same + 1 if current == last else 0
            last = current
    return last


async def test_a_client_that_reads_slowly_gets_every_byte() -> None:
    """16 MB to a reader with a small receive buffer that starts reading late: the app's
    ``send`` waits (back-pressure) instead of buffering, and every byte arrives in order.

    No wall-clock limit on the transfer (a loaded 2-core machine moves 16 MB slowly): the
    client reads nothing until the app's output has stopped growing, which back-pressure makes
    happen far short of the whole body (the buffers between the two ends hold ~4 MB); without
    back-pressure the app would run to the end, and ``big_done`` says so."""
    app = EchoStreamApp()
    async with running_server(app) as (_, port):
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)  # before connect
        client.setblocking(False)
        await asyncio.get_running_loop().sock_connect(client, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=client, limit=2**16)
        writer.write(f"GET /big?kb={BIG_KB} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        await until(lambda: app.sent_kb > 0)

        held_at_kb = await settled(lambda: app.sent_kb)

        assert not app.big_done
        assert held_at_kb < BIG_KB
        body = await read_response(reader)
        assert body == b"x" * BIG_KB * 1024
        assert app.big_done
        writer.close()
