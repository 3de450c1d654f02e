"""``ResponseBody.push``: the body handed to a callback as it arrives, with no task per piece.

The upstream client reads every streamed answer this way (``wire.ChunkReader``), so these pin
down what it relies on: order, the bytes that came with the head, stopping early, a consumer
that raises, and a body cut or stalled mid-way. Runs on asyncio and uvloop (``conftest``).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from rag_service.upstream.http11_connection import RAW_BODY_EXTENSION, ResponseBody
from tests.upstream.transport.conftest import MakePool, Pool, Serve
from tests.upstream.transport.scripted_server import (
    Handler,
    Peer,
    chunk,
    eventually,
    response,
)

HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


class Recorder:
    """A consumer that keeps each piece and the task it was called from."""

    def __init__(self, *, stop_at: bytes | None = None, fail_at: bytes | None = None) -> None:
        self.pieces: list[bytes] = []
        self.tasks: list[asyncio.Task[object] | None] = []
        self._stop_at = stop_at
        self._fail_at = fail_at

    def __call__(self, data: bytes) -> bool:
        self.pieces.append(data)
        self.tasks.append(asyncio.current_task())
        if self._fail_at is not None and self._fail_at in data:
            raise ValueError(f"cannot take {data!r}")
        return self._stop_at is not None and self._stop_at in data


async def push_through(pool: Pool, url: str, recorder: Recorder) -> None:
    """GET ``url``, push the answer's body into ``recorder``, and close the answer."""
    answer = await pool.client.send(pool.client.build_request("GET", url), stream=True)
    body = answer.extensions[RAW_BODY_EXTENSION]
    assert isinstance(body, ResponseBody)
    try:
        await body.push(recorder)
    finally:
        await answer.aclose()


def paced(*pieces: bytes, then_close: bool = False) -> Handler:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        for piece in pieces:
            await peer.send(piece)
            await asyncio.sleep(0.02)  # each piece its own read on the client
        if then_close:
            await peer.close()

    return handler


async def test_pieces_reach_the_consumer_in_order_from_the_data_callback(
    serve: Serve, make_pool: MakePool
) -> None:
    server = await serve(paced(HEAD, chunk(b"one"), chunk(b"two"), chunk(b"three"), chunk(b"")))
    pool = make_pool()
    recorder = Recorder()

    await push_through(pool, server.url, recorder)

    assert b"".join(recorder.pieces) == b"onetwothree"
    assert len(recorder.pieces) == 3
    # Called from the connection's data_received, not from the pushing task.
    assert recorder.tasks[1:] == [None, None]
    assert await pool.counts((1, 1)) == (1, 1)  # a complete body: the connection is reused


async def test_bytes_that_came_with_the_head_are_pushed_first(
    serve: Serve, make_pool: MakePool
) -> None:
    server = await serve(paced(HEAD + chunk(b"early"), chunk(b"late"), chunk(b"")))
    pool = make_pool()
    recorder = Recorder()

    await push_through(pool, server.url, recorder)

    assert recorder.pieces == [b"early", b"late"]


async def test_a_consumer_that_has_had_enough_ends_the_push_and_the_connection(
    serve: Serve, make_pool: MakePool
) -> None:
    server = await serve(paced(HEAD, chunk(b"a"), chunk(b"stop"), chunk(b"never")))
    pool = make_pool()
    recorder = Recorder(stop_at=b"stop")

    await push_through(pool, server.url, recorder)

    assert recorder.pieces == [b"a", b"stop"]
    assert await pool.counts((0, 0)) == (0, 0)  # an unfinished body: the connection is dropped


async def test_what_the_consumer_raises_is_raised_by_push(
    serve: Serve, make_pool: MakePool
) -> None:
    server = await serve(paced(HEAD, chunk(b"ok"), chunk(b"bad"), chunk(b"after"), chunk(b"")))
    pool = make_pool()
    recorder = Recorder(fail_at=b"bad")

    with pytest.raises(ValueError, match="cannot take"):
        await push_through(pool, server.url, recorder)

    assert recorder.pieces == [b"ok", b"bad"]  # nothing after the failure
    assert await pool.counts((0, 0)) == (0, 0)


async def test_a_body_cut_mid_way_raises_after_what_arrived(
    serve: Serve, make_pool: MakePool
) -> None:
    server = await serve(paced(HEAD, chunk(b"part"), b"9\r\nhal", then_close=True))
    pool = make_pool()
    recorder = Recorder()

    with pytest.raises(httpx.RemoteProtocolError):
        await push_through(pool, server.url, recorder)

    assert b"".join(recorder.pieces).startswith(b"part")


async def test_a_stalled_body_raises_the_read_timeout(serve: Serve, make_pool: MakePool) -> None:
    async def stall(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(HEAD + chunk(b"first"))
        await peer.linger()

    server = await serve(stall)
    pool = make_pool(timeout=httpx.Timeout(2.0, read=0.1))
    recorder = Recorder()

    with pytest.raises(httpx.ReadTimeout):
        await push_through(pool, server.url, recorder)

    assert recorder.pieces == [b"first"]


async def test_a_content_length_body_is_pushed_whole(serve: Serve, make_pool: MakePool) -> None:
    server = await serve(paced(response(b"0123456789")))
    pool = make_pool()
    recorder = Recorder()

    await push_through(pool, server.url, recorder)

    assert b"".join(recorder.pieces) == b"0123456789"
    assert await eventually(lambda: pool.transport.idle_connections == 1, 0.5)


async def test_a_reader_running_the_push_loop_itself_gets_the_same(
    serve: Serve, make_pool: MakePool
) -> None:
    """``wire`` runs ``push``'s loop in its own frame: early bytes first, then each piece from
    the data callback, and what the consumer raised comes out of ``push_pending``."""
    server = await serve(paced(HEAD + chunk(b"early"), chunk(b"late"), chunk(b"bad"), chunk(b"")))
    pool = make_pool()
    recorder = Recorder(fail_at=b"bad")
    answer = await pool.client.send(pool.client.build_request("GET", server.url), stream=True)
    body = answer.extensions[RAW_BODY_EXTENSION]
    assert isinstance(body, ResponseBody)
    me = asyncio.current_task()

    async def push_loop() -> None:
        body.start_push(recorder)
        while body.push_pending():
            await body.next_change()

    try:
        with pytest.raises(ValueError, match="cannot take"):
            await push_loop()
    finally:
        await answer.aclose()

    assert recorder.pieces == [b"early", b"late", b"bad"]
    assert recorder.tasks == [me, None, None]
    assert await pool.counts((0, 0)) == (0, 0)  # an unfinished body: the connection is dropped
