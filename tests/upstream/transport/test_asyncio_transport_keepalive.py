"""``AsyncioHTTPTransport``'s keep-alive: which connections are reused, dropped or retried on.

Runs on asyncio and uvloop (``conftest``); the server scripts its exact bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from rag_service.upstream.asyncio_transport import ReleasableBody
from tests.upstream.transport.conftest import MakePool, Serve
from tests.upstream.transport.scripted_server import Peer, answer_every_request, response

OK = response(b"ok")


# -- keep-alive -----------------------------------------------------------------------------------


async def test_sequential_requests_share_one_connection(serve: Serve, make_pool: MakePool) -> None:
    server = await serve(answer_every_request(response(b"one"), response(b"two")))
    pool = make_pool()

    first = await pool.client.get(f"{server.url}/a")
    second = await pool.client.get(f"{server.url}/b")

    assert (first.content, second.content) == (b"one", b"two")
    [peer] = server.peers
    assert [request.target for request in peer.requests] == ["/a", "/b"]
    assert await pool.counts((1, 1)) == (1, 1)


@pytest.mark.parametrize(
    "first_answer",
    [
        response(b"bye", headers=[("Connection", "close")]),
        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nbye",  # 1.0 without keep-alive
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_an_answer_that_ends_the_connection_is_not_reused(
    serve: Serve, make_pool: MakePool, first_answer: bytes
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(first_answer if len(server.peers) == 1 else OK)

    server = await serve(handler)
    pool = make_pool()

    first = await pool.client.get(server.url)
    second = await pool.client.get(server.url)

    assert (first.content, second.content) == (b"bye", b"ok")
    assert [len(peer.requests) for peer in server.peers] == [1, 1]
    async with asyncio.timeout(1):
        await server.peers[0].closed_by_client.wait()


async def test_a_response_closed_before_its_end_takes_its_connection_along(
    serve: Serve, make_pool: MakePool
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        if len(server.peers) == 1:
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        else:
            await peer.send(OK)

    server = await serve(handler)
    pool = make_pool()

    async with pool.client.stream("GET", server.url) as answer:
        async for part in answer.aiter_raw():
            assert part == b"only ten b"
            break
    assert await pool.counts((0, 0)) == (0, 0)
    again = await pool.client.get(server.url)

    assert again.content == b"ok"
    assert len(server.peers) == 2
    async with asyncio.timeout(1):
        await server.peers[0].closed_by_client.wait()


async def test_an_idle_connection_past_its_expiry_is_dropped(
    serve: Serve, make_pool: MakePool
) -> None:
    server = await serve(answer_every_request(OK, OK))
    pool = make_pool(keepalive_expiry_s=0.1)

    await pool.client.get(server.url)
    await asyncio.sleep(0.15)  # time passing, not a measurement: the idle socket expires
    await pool.client.get(server.url)

    assert [len(peer.requests) for peer in server.peers] == [1, 1]
    async with asyncio.timeout(1):
        await server.peers[0].closed_by_client.wait()
    assert await pool.counts((1, 1)) == (1, 1)


# -- a pooled connection the server closed ---------------------------------------------------------


@pytest.mark.parametrize("max_connections", [1, 4])
async def test_a_request_the_pooled_connection_dropped_is_sent_again_on_a_fresh_one(
    serve: Serve, make_pool: MakePool, max_connections: int
) -> None:
    """The keep-alive race: the server closes the idle socket as the next request arrives."""

    async def handler(peer: Peer) -> None:
        if len(server.peers) == 1:
            await peer.read_request()
            await peer.send(response(b"first"))
            await peer.read_request()
            await peer.close()  # read the second request, answer nothing
        else:
            await peer.read_request()
            await peer.send(response(b"second"))

    server = await serve(handler)
    pool = make_pool(max_connections=max_connections)

    first = await pool.client.get(f"{server.url}/1")
    second = await pool.client.post(f"{server.url}/2", content=b"body")

    assert (first.content, second.content) == (b"first", b"second")
    stale, fresh = server.peers
    assert [request.target for request in stale.requests] == ["/1", "/2"]
    assert [(request.target, request.body) for request in fresh.requests] == [("/2", b"body")]
    assert await pool.counts((1, 1)) == (1, 1)


async def test_a_pooled_connection_seen_closed_is_not_used(
    serve: Serve, make_pool: MakePool
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        if len(server.peers) == 1:
            await peer.send(response(b"first"))
            await peer.close()
        else:
            await peer.send(response(b"second"))

    server = await serve(handler)
    pool = make_pool()

    await pool.client.get(server.url)
    assert await pool.counts((0, 0)) == (0, 0)  # the loop reported the close: out of the pool
    second = await pool.client.get(server.url)

    assert second.content == b"second"
    assert [len(peer.requests) for peer in server.peers] == [1, 1]


async def test_a_fresh_connection_closed_without_an_answer_is_an_error_not_a_retry(
    serve: Serve, make_pool: MakePool
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.close()

    server = await serve(handler)
    pool = make_pool()

    with pytest.raises(httpx.RemoteProtocolError):
        await pool.client.get(server.url)

    assert len(server.peers) == 1
    assert await pool.counts((0, 0)) == (0, 0)


async def test_a_one_shot_body_the_stale_connection_took_is_not_sent_again(
    serve: Serve, make_pool: MakePool
) -> None:
    """A generator body cannot be replayed: the retry must fail as a transport error."""

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(OK)
        if len(server.peers) == 1:
            await peer.read_request()
            await peer.close()

    server = await serve(handler)
    pool = make_pool()

    async def parts() -> AsyncIterator[bytes]:
        yield b"only once"

    await pool.client.get(server.url)
    with pytest.raises(httpx.TransportError):
        await pool.client.post(server.url, content=parts())


async def test_a_releasable_body_is_sent_again_until_released(
    serve: Serve, make_pool: MakePool
) -> None:
    """The service's prompt body: replayable on a fresh connection, freed once answered."""

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(OK)
        if len(server.peers) == 1:
            await peer.read_request()
            await peer.close()

    server = await serve(handler)
    pool = make_pool()
    await pool.client.get(server.url)

    body = ReleasableBody(b'{"prompt": "long"}')
    request = pool.client.build_request("POST", server.url)
    request.stream = body
    request.headers["Content-Length"] = str(len(body))
    answer = await pool.client.send(request)
    body.release()

    assert answer.content == b"ok"
    assert [request.body for request in server.peers[1].requests] == [b'{"prompt": "long"}']
    assert len(body) == 0
