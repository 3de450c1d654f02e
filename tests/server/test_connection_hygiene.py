"""Slow and idle clients against the real server (``server_config`` on loopback, raw sockets):
the header time limit, the body time limit and rate, the connection cap, keep-alive, and the
streams that none of these may cut.

Limits are small so the tests are quick; each wait is on the event itself (the server closing
the connection, an answer arriving), bounded by ``CLOSE_BOUND_S`` only as a safety net. Lower
bounds ("not closed before the limit") are safe on a loaded machine: load only makes the server
later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from tests.fakes.upstream import ScriptedUpstream, answer_script
from tests.server.conftest import ANSWER, Serve, guard_of
from tests.streaming.helpers import deltas
from tests.streaming.sse_spec import parse_sse

HEADER_LIMIT_S = 0.5
CLOSE_BOUND_S = 20.0
# Closed "after the limit" means not much before it: uvloop's timers count from the time its
# loop cached at the start of an iteration, which a busy iteration leaves behind the real one.
NOT_BEFORE = 0.5
SHORT_S = 0.3  # the header and body limits a long stream must outlive
KEEPALIVE_S = 1
QUESTION = json.dumps({"query": "Which boots are waterproof?"}).encode()
STREAM_REQUEST = (
    b"POST /rag/stream?context=c-1 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(QUESTION), QUESTION)
)
HALF_HEADERS = b"POST /rag/stream?context=c-1 HTTP/1.1\r\nHost: t\r\nContent-Type: applic"

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@contextlib.asynccontextmanager
async def connections(port: int, count: int) -> AsyncIterator[list[Connection]]:
    opened: list[Connection] = []
    try:
        for _ in range(count):
            opened.append(await asyncio.open_connection("127.0.0.1", port))
        yield opened
    finally:
        for _, writer in opened:
            writer.close()


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (EOF or reset)."""
    received = bytearray()
    async with asyncio.timeout(CLOSE_BOUND_S):
        try:
            while piece := await reader.read(65536):
                received += piece
        except ConnectionResetError:
            pass
    return bytes(received)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response (Content-Length or chunked): status, headers, body."""
    async with asyncio.timeout(CLOSE_BOUND_S):
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status_line, *lines = head.strip().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        if "content-length" in headers:
            return (
                int(status_line.split()[1]),
                headers,
                await reader.readexactly(int(headers["content-length"])),
            )
        body = bytearray()
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
        return int(status_line.split()[1]), headers, bytes(body)


def assert_full_answer(body: bytes, pieces: list[str]) -> None:
    events = parse_sse(body).events
    assert events[-1].type == "done"
    assert deltas(events) == "".join(pieces)


async def wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(CLOSE_BOUND_S):
        while not condition():  # noqa: ASYNC110 - the server's count, no event to wait on
            await asyncio.sleep(0.01)


# The header time limit.


async def test_silent_and_half_sent_headers_are_closed_after_the_header_limit(
    serve: Serve,
) -> None:
    async with serve(header_timeout_s=HEADER_LIMIT_S, keepalive_s=60) as (_, port):
        opened = time.monotonic()  # before: the server's clock starts when it accepts
        async with connections(port, 2) as [(silent, _), (half, half_writer)]:
            half_writer.write(HALF_HEADERS)

            assert await closed_by_server(silent) == b""
            assert await closed_by_server(half) == b""  # closed without an answer
            assert time.monotonic() - opened >= NOT_BEFORE * HEADER_LIMIT_S


async def test_the_header_limit_is_for_the_whole_headers_not_a_pause(serve: Serve) -> None:
    """A client that sends a byte of header lines every tenth of the limit, for ever, is
    closed all the same: the limit is for the headers as a whole."""
    async with (
        serve(header_timeout_s=HEADER_LIMIT_S, keepalive_s=60) as (_, port),
        connections(port, 1) as [(reader, writer)],
    ):

        async def trickle() -> None:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
            with contextlib.suppress(ConnectionError):
                while True:
                    for byte in b"X-Slow: y\r\n":
                        writer.write(bytes([byte]))
                        await writer.drain()
                        await asyncio.sleep(HEADER_LIMIT_S / 10)

        trickling = asyncio.create_task(trickle())
        try:
            assert await closed_by_server(reader) == b""
        finally:
            trickling.cancel()


# The body time limit and minimum rate.


def assert_request_timeout(response: tuple[int, dict[str, str], bytes]) -> None:
    status, headers, body = response
    assert status == 408
    assert headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == "request_timeout"
    assert error["retryable"] is True


async def test_a_body_that_stops_gets_408_and_the_connection_closes(serve: Serve) -> None:
    async with (
        serve(header_timeout_s=HEADER_LIMIT_S, body_timeout_s=0.5) as (_, port),
        connections(port, 1) as [(reader, writer)],
    ):
        writer.write(STREAM_REQUEST[: STREAM_REQUEST.index(b"\r\n\r\n") + 10])

        assert_request_timeout(await read_response(reader))
        assert await closed_by_server(reader) == b""


async def test_a_body_trickled_below_the_minimum_rate_gets_408(serve: Serve) -> None:
    """A byte every 50 ms never pauses for the 1 s limit, but 20 bytes/s is below the 100
    bytes/s the body must keep up after its first second: 408, and the connection closes."""
    body = b'{"query": "' + b"x" * 400 + b'"}'
    headers = (
        b"POST /rag/stream?context=c-1 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    async with (
        serve(body_timeout_s=1.0, body_min_rate_bytes_s=100) as (_, port),
        connections(port, 1) as [(reader, writer)],
    ):

        async def trickle() -> None:
            writer.write(headers)
            with contextlib.suppress(ConnectionError):
                for byte in body:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.05)

        trickling = asyncio.create_task(trickle())
        try:
            assert_request_timeout(await read_response(reader))
            assert await closed_by_server(reader) == b""
        finally:
            trickling.cancel()


# The connection cap.


async def test_past_the_cap_a_new_connection_gets_503_until_idle_ones_time_out(
    serve: Serve,
) -> None:
    cap = 50
    # The 51 connections are made in milliseconds; the header limit is far longer, so the
    # idle ones still hold the cap when the last one arrives.
    async with serve(max_connections=cap, header_timeout_s=3.0) as (server, port):
        guard = guard_of(server)
        async with connections(port, cap) as idle:
            await wait_until(lambda: guard.open_connections == cap)
            async with connections(port, 1) as [(refused, _)]:
                status, headers, body = await read_response(refused)
                assert await closed_by_server(refused) == b""

            assert (status, headers["connection"], headers["retry-after"]) == (503, "close", "1")
            error = json.loads(body)["error"]
            assert (error["code"], error["retryable"]) == ("unavailable", True)
            for reader, _ in idle:  # the header limit frees the cap
                assert await closed_by_server(reader) == b""
            await wait_until(lambda: guard.open_connections == 0)

            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                response = await client.post(
                    "/rag/stream", params={"context": "c-1"}, content=QUESTION
                )
            assert response.status_code == 200
            assert_full_answer(response.content, ANSWER)


async def test_many_idle_connections_under_the_cap_do_not_stop_a_stream(serve: Serve) -> None:
    async with serve(max_connections=300) as (server, port), connections(port, 250):
        await wait_until(lambda: guard_of(server).open_connections == 250)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.post("/rag/stream", params={"context": "c-1"}, content=QUESTION)

        assert response.status_code == 200
        assert_full_answer(response.content, ANSWER)


# What the limits must not cut, and keep-alive.


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_a_stream_longer_than_every_limit_is_not_cut(
    serve: Serve, upstream: ScriptedUpstream, http: str
) -> None:
    upstream.script = answer_script(ANSWER, pause_s=SHORT_S / 3)  # 12 pauses: 4 x the limits
    limits = {"header_timeout_s": SHORT_S, "body_timeout_s": SHORT_S, "keepalive_s": 1}
    async with serve(http=http, **limits) as (_, port), connections(port, 1) as [(reader, writer)]:
        started = time.monotonic()
        writer.write(STREAM_REQUEST)
        status, _, body = await read_response(reader)

        assert time.monotonic() - started > 2 * SHORT_S  # far longer than the limits
        assert status == 200
        assert_full_answer(body, ANSWER)


async def test_keep_alive_serves_the_next_request_and_the_header_limit_rearms(
    serve: Serve,
) -> None:
    async with (
        serve(header_timeout_s=HEADER_LIMIT_S, keepalive_s=60) as (_, port),
        connections(port, 1) as [(reader, writer)],
    ):
        for _ in range(2):
            asked = time.monotonic()  # before: the limit re-arms when the answer ends
            writer.write(STREAM_REQUEST)
            status, _, body = await read_response(reader)
            assert status == 200
            assert_full_answer(body, ANSWER)
        writer.write(HALF_HEADERS)

        # uvicorn's own keep-alive limit (60 s) is far off: the header limit closed it.
        assert await closed_by_server(reader) == b""
        assert time.monotonic() - asked >= NOT_BEFORE * HEADER_LIMIT_S


async def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_limit(
    serve: Serve,
) -> None:
    async with (
        serve(header_timeout_s=60, keepalive_s=KEEPALIVE_S) as (_, port),
        connections(port, 1) as [(reader, writer)],
    ):
        asked = time.monotonic()  # before: uvicorn's limit starts when the answer ends
        writer.write(STREAM_REQUEST)
        assert (await read_response(reader))[0] == 200

        assert await closed_by_server(reader) == b""
        assert time.monotonic() - asked >= NOT_BEFORE * KEEPALIVE_S
