"""The server the service runs under: ``server_config`` gives stock uvicorn on uvloop and
httptools, and a real uvicorn built from it does what the streams rely on - request bodies in
parts, pipelined requests, back-pressure towards a slow reader, and a disconnect reported by
``receive()``. Every wait is on a condition, bounded only as a safety net."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from rag_service.http_server import server_config
from tests.live_server import running_server

WAIT_LIMIT_S = 10.0
# Far more than the kernel's socket buffers between the two ends hold (loopback autotuning
# caps a send buffer at 4 MB by default) while the client does not read.
BIG_KB = 16 * 1024
SMALL_RCVBUF = 16 * 1024
READ_SIZE = 4096


async def noop_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise AssertionError("not to be called")


def test_the_config_is_stock_uvicorn_on_uvloop_and_httptools() -> None:
    config = server_config(noop_app, port=0)

    assert config.http == "httptools"
    assert config.loop == "uvloop"
    config.load()
    assert config.http_protocol_class.__module__.startswith("uvicorn.protocols.http.")


def test_explicit_options_win_and_reach_uvicorn() -> None:
    config = server_config(noop_app, http="h11", loop="asyncio", timeout_graceful_shutdown=7)

    assert (config.http, config.loop, config.timeout_graceful_shutdown) == ("h11", "asyncio", 7)


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_LIMIT_S):
        while not condition():  # noqa: ASYNC110 - state of the app's task, no event for it
            await asyncio.sleep(0.005)


class EchoStreamApp:
    """``POST /echo``: the request body back, read in whatever parts the server hands over.
    ``GET /big?kb=N``: N KB in 1 KB chunks. ``GET /hold``: a started response held open until
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
            for _ in range(kb):
                await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
                self.sent_kb += 1
            await send({"type": "http.response.body", "body": b""})
            self.big_done = True
        else:
            await send({"type": "http.response.body", "body": b"started\n", "more_body": True})
            self.holding.set()
            while (await receive())["type"] != "http.disconnect":
                pass  # the (empty) request body
            self.disconnects += 1


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One chunked response's body, read in small pieces."""
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"transfer-encoding: chunked" in head.lower()
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        remaining = size + 2
        chunk = bytearray()
        while remaining:
            piece = await reader.read(min(READ_SIZE, remaining))
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
        assert await asyncio.wait_for(read_response(reader), WAIT_LIMIT_S) == b"hello world!"
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
        assert await asyncio.wait_for(read_response(reader), WAIT_LIMIT_S) == b"x" * 64 * 1024
        assert await asyncio.wait_for(read_response(reader), WAIT_LIMIT_S) == b"second"
        assert await asyncio.wait_for(read_response(reader), WAIT_LIMIT_S) == b"third"
        writer.close()


async def test_a_client_that_reads_slowly_gets_every_byte() -> None:
    """16 MB to a reader with a small receive buffer that starts reading late: the app's
    ``send`` waits (back-pressure) instead of buffering, and every byte arrives in order."""
    app = EchoStreamApp()
    async with running_server(app) as (_, port):
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)  # before connect
        client.setblocking(False)
        await asyncio.get_running_loop().sock_connect(client, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=client, limit=2**16)
        writer.write(f"GET /big?kb={BIG_KB} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        await until(lambda: app.sent_kb > 0)
        # Nothing read yet: the buffers cannot hold the whole body, so the app still waits.
        assert not app.big_done
        body = await asyncio.wait_for(read_response(reader), 3 * WAIT_LIMIT_S)
        assert body == b"x" * BIG_KB * 1024
        assert app.big_done
        writer.close()
