"""The cutting TCP proxy, against a tiny loopback origin with known bytes (no model needed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rag_service.errors import InvalidInput
from tests.fixture_servers.fault_proxy import CutPlan, FaultProxy, ResponseScanner
from tests.upstream.conftest import wait_until

EVENTS = [b'data: {"n": %d}\n\n' % n for n in range(1, 6)]
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunked(pieces: list[bytes]) -> bytes:
    framed = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return framed + b"0\r\n\r\n"


# Chunk boundaries deliberately split event terminators ("\n" | "\n") and a comment line.
BODY_PIECES = [
    EVENTS[0][:-1],
    EVENTS[0][-1:] + b": ping\n",
    b"\n" + EVENTS[1],
    b"".join(EVENTS[2:]),
]
RESPONSE = HEAD + chunked(BODY_PIECES)


def bytes_through_event(count: int) -> int:
    """Offset in RESPONSE right after the last byte of the ``count``-th event."""
    scanner = ResponseScanner()
    end = scanner.feed(RESPONSE, stop_after_events=count)
    assert end is not None
    return end


@pytest.fixture
async def origin() -> AsyncIterator[int]:
    """Answers every request on a connection with RESPONSE, one write per 7 bytes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                for start in range(0, len(RESPONSE), 7):
                    writer.write(RESPONSE[start : start + 7])
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def fetch_raw(port: int) -> bytes:
    """One request on a fresh connection; everything received until the response ends or EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
    await writer.drain()
    received = b""
    try:
        while not received.endswith(b"0\r\n\r\n") and (data := await reader.read(4096)):
            received += data
    except ConnectionError:
        pass
    writer.close()
    return received


def test_scanner_counts_data_events_whatever_the_feed_boundaries() -> None:
    whole = ResponseScanner()
    whole.feed(RESPONSE)
    byte_by_byte = ResponseScanner()
    for index in range(len(RESPONSE)):
        byte_by_byte.feed(RESPONSE[index : index + 1])
    assert whole.events == byte_by_byte.events == 5  # the ": ping" comment is not an event


def test_scanner_stops_right_after_the_nth_event_terminator() -> None:
    end = bytes_through_event(2)
    assert RESPONSE[:end].endswith(b"\n")
    assert b'{"n": 2}' in RESPONSE[:end]
    assert b'{"n": 3}' not in RESPONSE[:end]
    assert ResponseScanner().feed(RESPONSE[: end - 1], stop_after_events=2) is None


def test_scanner_ends_an_event_at_a_cr_line_end_like_the_sse_spec() -> None:
    body = b"data: a\r\n\r\ndata: b\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    end = ResponseScanner().feed(response, stop_after_events=1)
    # the CR of the blank line dispatches the event; its LF belongs to the next bytes
    assert end is not None and response[:end].endswith(b"data: a\r\n\r")


def test_scanner_follows_content_length_bodies_and_keep_alive() -> None:
    body = b"data: a\n\ndata: b\n\n"
    one = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    scanner = ResponseScanner()
    scanner.feed(one + one)
    assert scanner.events == 4


def test_cut_plan_needs_exactly_one_limit() -> None:
    with pytest.raises(InvalidInput):
        CutPlan()
    with pytest.raises(InvalidInput):
        CutPlan(after_events=1, after_response_bytes=10)


async def test_passes_bytes_through_unchanged_without_a_plan(origin: int) -> None:
    async with FaultProxy("127.0.0.1", origin) as proxy:
        assert await fetch_raw(proxy.port) == RESPONSE
        assert proxy.connections == 1
        assert proxy.cuts == 0
        assert proxy.records[0].events == 5


async def test_cuts_exactly_after_the_nth_event_then_passes_later_connections(origin: int) -> None:
    async with FaultProxy("127.0.0.1", origin, plans=[CutPlan(after_events=2)]) as proxy:
        first = await fetch_raw(proxy.port)
        second = await fetch_raw(proxy.port)
        assert first == RESPONSE[: bytes_through_event(2)]
        assert second == RESPONSE
        assert [record.cut for record in proxy.records] == [True, False]
        assert proxy.records[0].events == 2


async def test_cuts_after_a_number_of_response_bytes(origin: int) -> None:
    async with FaultProxy("127.0.0.1", origin) as proxy:
        proxy.cut_next(CutPlan(after_response_bytes=100), CutPlan(after_events=0, reset=True))
        assert await fetch_raw(proxy.port) == RESPONSE[:100]
        assert await fetch_raw(proxy.port) == b""
        assert proxy.cuts == 2


async def test_counts_open_connections_until_they_close(origin: int) -> None:
    async with FaultProxy("127.0.0.1", origin) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        await reader.readuntil(b"0\r\n\r\n")
        assert (proxy.connections, proxy.open_connections) == (1, 1)
        writer.close()
        await writer.wait_closed()
        assert await wait_until(lambda: proxy.open_connections == 0, timeout_s=30.0)
        assert proxy.connections == 1


async def test_a_plan_queued_later_cuts_the_next_response_on_a_kept_alive_connection(
    origin: int,
) -> None:
    """The service reuses upstream connections: plans follow responses, not connections."""
    async with FaultProxy("127.0.0.1", origin) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"GET /1 HTTP/1.1\r\nhost: x\r\n\r\n")
        first = await reader.readuntil(b"0\r\n\r\n")
        proxy.cut_next(CutPlan(after_events=3))
        writer.write(b"GET /2 HTTP/1.1\r\nhost: x\r\n\r\n")
        second = await reader.read()  # until the cut closes the connection
        writer.close()
    assert first == RESPONSE
    assert second == RESPONSE[: bytes_through_event(3)]
    assert proxy.connections == 1
    [record] = proxy.records
    assert (record.responses, record.events, record.cut) == (2, 3, True)
