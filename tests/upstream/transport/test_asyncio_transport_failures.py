"""``AsyncioHTTPTransport`` when things go wrong: cut and malformed answers, timeouts, a full pool.

Every failure must surface as httpx's own exception (what ``classify`` translates) and leave the
pool's accounting right, so a failed request never holds a slot. Runs on asyncio and uvloop.
"""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import pytest

from tests.conftest import free_port
from tests.upstream.transport.conftest import MakePool, Serve
from tests.upstream.transport.scripted_server import (
    Peer,
    answer_every_request,
    answer_in_turn,
    chunk,
    eventually,
    response,
)

OK = response(b"ok")
HEAD_ONLY = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


async def hang(peer: Peer) -> None:
    """Read the request and never answer it (until the client closes the connection)."""
    await peer.read_request()


async def read_into(received: list[bytes], answer: httpx.Response) -> None:
    """Append the body's parts to ``received`` as they come, up to the end or an error."""
    async for part in answer.aiter_raw():
        received.append(part)


def read_timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(2.0, read=seconds)


# -- broken answers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "partial",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfour",
        HEAD_ONLY + chunk(b"four") + b"6\r\nsi",
    ],
    ids=["content-length", "chunked"],
)
async def test_a_connection_cut_mid_body_raises_while_iterating(
    serve: Serve, make_pool: MakePool, partial: bytes
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(partial)
        await asyncio.sleep(0.02)
        await peer.close()

    server = await serve(handler)
    pool = make_pool()
    received: list[bytes] = []

    async with pool.client.stream("GET", server.url) as answer:
        assert answer.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            await read_into(received, answer)

    assert b"".join(received).startswith(b"four")
    assert await pool.counts((0, 0)) == (0, 0)


@pytest.mark.parametrize(
    "malformed",
    [
        b"HTPT/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\nok",
    ],
    ids=["protocol-name", "status-code", "content-length"],
)
async def test_a_malformed_head_raises_remote_protocol_error(
    serve: Serve, make_pool: MakePool, malformed: bytes
) -> None:
    server = await serve(answer_every_request(malformed))
    pool = make_pool()

    with pytest.raises(httpx.RemoteProtocolError, match="malformed HTTP response"):
        await pool.client.get(server.url)

    assert await pool.counts((0, 0)) == (0, 0)


async def test_a_malformed_chunk_size_raises_while_iterating(
    serve: Serve, make_pool: MakePool
) -> None:
    server = await serve(answer_every_request(HEAD_ONLY + chunk(b"good") + b"zz\r\nbad\r\n"))
    pool = make_pool()

    with pytest.raises(httpx.RemoteProtocolError, match="malformed HTTP response"):
        await pool.client.get(server.url)

    assert await pool.counts((0, 0)) == (0, 0)


async def test_bytes_after_the_end_of_an_answer_close_the_connection(
    serve: Serve, make_pool: MakePool
) -> None:
    """Unasked-for bytes while idle: the next answer could not be told apart from them."""

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(OK)
        if len(server.peers) == 1:
            await asyncio.sleep(0.05)  # after the client took the answer and pooled the socket
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfake")

    server = await serve(handler)
    pool = make_pool()

    await pool.client.get(server.url)
    async with asyncio.timeout(1):
        await server.peers[0].closed_by_client.wait()
    again = await pool.client.get(server.url)

    assert again.content == b"ok"
    assert len(server.peers) == 2


async def test_a_second_answer_in_the_same_write_is_not_taken_as_body(
    serve: Serve, make_pool: MakePool
) -> None:
    unasked = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfake"
    server = await serve(answer_in_turn(response(b"real") + unasked, then=OK))
    pool = make_pool()

    first = await pool.client.get(server.url)
    again = await pool.client.get(server.url)

    assert first.content == b"real"
    assert again.content == b"ok"
    assert len(server.peers) == 2


# -- connect and read timeouts --------------------------------------------------------------------


async def test_a_refused_connection_raises_connect_error(make_pool: MakePool) -> None:
    pool = make_pool()

    with pytest.raises(httpx.ConnectError):
        await pool.client.get(f"http://127.0.0.1:{free_port()}/")

    assert (pool.transport.open_connections, pool.transport.idle_connections) == (0, 0)


async def test_no_head_within_the_read_timeout_raises_read_timeout(
    serve: Serve, make_pool: MakePool
) -> None:
    server = await serve(hang)
    pool = make_pool(timeout=read_timeout(0.2))

    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await pool.client.get(server.url)

    assert time.monotonic() - started >= 0.18  # not before the timeout
    assert await pool.counts((0, 0)) == (0, 0)
    async with asyncio.timeout(1):
        await server.peers[0].closed_by_client.wait()


async def test_a_reused_connection_that_times_out_is_not_sent_again(
    serve: Serve, make_pool: MakePool
) -> None:
    """Only a connection closed without any answer is retried; a slow one is the caller's."""

    async def answer_only_the_first(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(OK)
        await peer.read_request()  # and no answer to it

    server = await serve(answer_only_the_first)
    pool = make_pool(timeout=read_timeout(0.2))

    await pool.client.get(server.url)
    with pytest.raises(httpx.ReadTimeout):
        await pool.client.get(server.url)

    assert [len(peer.requests) for peer in server.peers] == [2]
    assert await pool.counts((0, 0)) == (0, 0)


async def test_a_stall_between_body_chunks_raises_read_timeout(
    serve: Serve, make_pool: MakePool
) -> None:
    answered_at: list[float] = []

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        answered_at.append(time.monotonic())
        await peer.send(HEAD_ONLY + chunk(b"first"))
        await asyncio.Event().wait()

    server = await serve(handler)
    pool = make_pool(timeout=read_timeout(0.2))
    received: list[bytes] = []

    async with pool.client.stream("GET", server.url) as answer:
        with pytest.raises(httpx.ReadTimeout):
            await read_into(received, answer)
        failed_at = time.monotonic()

    assert received == [b"first"]
    assert await pool.counts((0, 0)) == (0, 0)
    assert pool.transport.watched_connections == 0
    # Never early: the stall is measured from the last byte, which came before the head returned.
    assert failed_at - answered_at[0] >= 0.2


async def test_the_read_timeout_is_per_gap_not_per_answer(
    serve: Serve, make_pool: MakePool
) -> None:
    """A byte every 0.1 s for 0.6 s in all, under a 0.3 s read timeout: never a stall."""
    wire = HEAD_ONLY + chunk(b"abcdef") + chunk(b"")
    cut = len(HEAD_ONLY) + 3

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await asyncio.sleep(0.1)
        await peer.send(wire[:cut])
        for index in range(cut, cut + 6):
            await asyncio.sleep(0.1)
            await peer.send(wire[index : index + 1])
        await peer.send(wire[cut + 6 :])

    server = await serve(handler)
    pool = make_pool(timeout=read_timeout(0.3))

    answer = await pool.client.get(server.url)

    assert answer.content == b"abcdef"
    assert pool.transport.watched_connections == 0  # the exchange ended: nothing to watch


async def test_a_cancelled_request_frees_its_connection(serve: Serve, make_pool: MakePool) -> None:
    server = await serve(hang)
    pool = make_pool()

    request = asyncio.create_task(pool.client.get(server.url))
    await server.wait_for_peers(1)
    assert await eventually(lambda: bool(server.peers[0].requests))
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request

    assert await pool.counts((0, 0)) == (0, 0)
    async with asyncio.timeout(1):
        await server.peers[0].closed_by_client.wait()


# -- a slow reader --------------------------------------------------------------------------------


def two_megabytes(framing: str) -> tuple[bytes, bytes]:
    """A random payload and the answer carrying it: (payload, wire bytes)."""
    payload = random.Random(5).randbytes(2 * 1024 * 1024)
    if framing == "content-length":
        return payload, response(payload)
    pieces = [payload[i : i + 100_000] for i in range(0, len(payload), 100_000)]
    return payload, HEAD_ONLY + b"".join(chunk(piece) for piece in pieces) + chunk(b"")


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_slow_reader_gets_every_byte_of_a_fast_answer(
    serve: Serve, make_pool: MakePool, framing: str
) -> None:
    """2 MB sent at once, read late and in small steps: reading pauses and resumes."""
    payload, wire = two_megabytes(framing)
    server = await serve(answer_every_request(wire, OK))
    pool = make_pool()
    received = bytearray()

    async with pool.client.stream("GET", server.url) as answer:
        await asyncio.sleep(0.05)  # the answer piles up unread: the socket stops being read
        async for part in answer.aiter_raw():
            received += part
            await asyncio.sleep(0)
    again = await pool.client.get(server.url)

    assert len(received) == len(payload)
    assert received == payload
    assert again.content == b"ok"
    assert len(server.peers) == 1


async def test_a_pause_longer_than_the_read_timeout_is_not_a_stall(
    serve: Serve, make_pool: MakePool
) -> None:
    """The reader comes back after 0.3 s (read timeout 0.2 s) and is busy a few ms per part.

    The upstream sent everything long ago; a stall is only time spent waiting for it. (Over
    TLS on uvloop this fails: see the TLS twin of this test.)
    """
    payload, wire = two_megabytes("content-length")
    server = await serve(answer_every_request(wire))
    pool = make_pool(timeout=read_timeout(0.2))
    received = bytearray()

    async with pool.client.stream("GET", server.url) as answer:
        await asyncio.sleep(0.3)
        async for part in answer.aiter_raw():
            received += part
            time.sleep(0.005)  # noqa: ASYNC251 - a consumer busy with CPU, holding the loop

    assert received == payload


async def test_an_early_answer_to_an_unfinished_upload_is_returned(
    serve: Serve, make_pool: MakePool
) -> None:
    """nginx's lingering close: answer 413 after the head, shut the write side, drain the rest."""

    async def reject_early(peer: Peer) -> None:
        await peer.reader.readuntil(b"\r\n\r\n")
        await peer.send(response(b"too long", status=413, headers=[("Connection", "close")]))
        peer.writer.write_eof()
        await peer.linger()

    server = await serve(reject_early)
    pool = make_pool()

    answer = await pool.client.post(server.url, content=bytes(8 * 1024 * 1024))

    assert (answer.status_code, answer.content) == (413, b"too long")
