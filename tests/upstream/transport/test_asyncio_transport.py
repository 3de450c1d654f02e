"""``AsyncioHTTPTransport`` under a real httpx client: requests and responses on the wire.

Each test scripts the server's exact bytes (``scripted_server``) and runs on both the asyncio
and the uvloop event loop (``conftest``). Keep-alive is in ``test_asyncio_transport_keepalive``,
failures and timeouts in ``..._failures``, the connection limit in ``..._pool``, TLS in ``..._tls``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.upstream.transport.conftest import MakePool, Serve
from tests.upstream.transport.scripted_server import (
    Peer,
    answer_every_request,
    chunk,
    response,
)

OK = response(b"ok")


async def send_in_pieces(peer: Peer, *pieces: bytes) -> None:
    """Each piece its own TCP write, with a pause so the client parses it before the next."""
    for piece in pieces:
        await peer.send(piece)
        await asyncio.sleep(0.01)


async def test_each_test_runs_on_the_loop_its_id_names(request: pytest.FixtureRequest) -> None:
    loop_id = request.node.callspec.id
    loop_module = type(asyncio.get_running_loop()).__module__

    assert loop_id in ("asyncio", "uvloop")
    assert loop_module.split(".")[0] == loop_id


# -- the request on the wire ----------------------------------------------------------------------


async def test_request_line_headers_and_body_go_out_exactly(
    serve: Serve, make_pool: MakePool
) -> None:
    server = await serve(answer_every_request(OK))
    pool = make_pool()

    answer = await pool.client.post(
        f"{server.url}/v1/chat/completions?stream=true&q=a%20b",
        content=b'{"model": "m"}',
        headers={"X-Trace": "t-1"},
    )

    assert (answer.status_code, answer.content) == (200, b"ok")
    [peer] = server.peers
    [request] = peer.requests
    assert (request.method, request.target) == ("POST", "/v1/chat/completions?stream=true&q=a%20b")
    assert request.headers[0] == ("Host", f"127.0.0.1:{server.port}")
    assert request.header("content-length") == "14"
    assert request.header("transfer-encoding") is None
    assert request.header("x-trace") == "t-1"
    assert request.body == b'{"model": "m"}'
    assert request.raw.endswith(b'\r\n\r\n{"model": "m"}')  # the body as is, no chunk framing


async def test_a_streamed_body_without_length_goes_out_chunked(
    serve: Serve, make_pool: MakePool
) -> None:
    server = await serve(answer_every_request(OK))
    pool = make_pool()

    async def parts() -> AsyncIterator[bytes]:
        yield b"first"
        yield b""  # an empty part must not end the chunked body early
        yield b"second part"

    answer = await pool.client.post(f"{server.url}/upload", content=parts())

    assert answer.status_code == 200
    [request] = server.peers[0].requests
    assert request.header("transfer-encoding") == "chunked"
    assert request.header("content-length") is None
    assert request.body == b"firstsecond part"
    assert request.raw.endswith(b"\r\n\r\n5\r\nfirst\r\nb\r\nsecond part\r\n0\r\n\r\n")


async def test_a_url_that_is_not_http_is_unsupported(make_pool: MakePool) -> None:
    pool = make_pool()

    with pytest.raises(httpx.UnsupportedProtocol):
        await pool.client.get("ftp://127.0.0.1/file")


# -- responses ------------------------------------------------------------------------------------


async def test_status_reason_phrase_headers_and_body_reach_httpx(
    serve: Serve, make_pool: MakePool
) -> None:
    answer_bytes = response(
        b"hello",
        status=201,
        reason="Made It Anyway",
        headers=[("X-Request-Id", "r-9"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")],
    )
    server = await serve(answer_every_request(answer_bytes))
    pool = make_pool()

    answer = await pool.client.get(server.url)

    assert answer.status_code == 201
    assert answer.reason_phrase == "Made It Anyway"
    assert answer.http_version == "HTTP/1.1"
    assert answer.headers["x-request-id"] == "r-9"
    assert answer.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert answer.content == b"hello"


async def test_a_head_split_inside_every_token_is_parsed_whole(
    serve: Serve, make_pool: MakePool
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await send_in_pieces(
            peer,
            b"HTTP/1.",
            b"1 200 All ",
            b"Fine\r",
            b"\nX-Lo",
            b"ng-Name: first ha",
            b"lf and second half\r\nContent-Len",
            b"gth: 3\r\n\r",
            b"\nab",
            b"c",
        )

    server = await serve(handler)
    pool = make_pool()

    answer = await pool.client.get(server.url)

    assert answer.reason_phrase == "All Fine"
    assert answer.headers["x-long-name"] == "first half and second half"
    assert answer.content == b"abc"


async def test_a_chunked_body_split_at_awkward_boundaries_arrives_intact(
    serve: Serve, make_pool: MakePool
) -> None:
    body = b"x" * 20 + b"y" * 300 + b"z"
    wire = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunk(body[:20])
        + chunk(body[20:320])
        + chunk(body[320:])
        + chunk(b"")
    )
    cuts = [
        wire.index(b"14\r\n") + 1,  # inside the first size line ("1" | "4\r\n")
        wire.index(b"12c\r\n") + 4,  # between the CR and the LF of a size line
        wire.index(b"y" * 300) + 150,  # in the middle of a chunk's data
        wire.index(b"z") + 2,  # inside the CRLF after a chunk's data
        len(wire) - 3,  # inside the final empty chunk
    ]
    pieces = [wire[start:end] for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True)]

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await send_in_pieces(peer, *pieces)
        await peer.read_request()
        await peer.send(OK)

    server = await serve(handler)
    pool = make_pool()

    answer = await pool.client.get(server.url)
    again = await pool.client.get(server.url)

    assert answer.content == body
    assert again.content == b"ok"
    assert len(server.peers) == 1  # the end of the chunked body was found: the socket was reused


async def test_chunked_trailers_end_the_body_and_keep_the_connection(
    serve: Serve, make_pool: MakePool
) -> None:
    with_trailer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
        + chunk(b"body")
        + b"0\r\nX-Checksum: abc\r\n\r\n"
    )
    server = await serve(answer_every_request(with_trailer, OK))
    pool = make_pool()

    answer = await pool.client.get(server.url)
    again = await pool.client.get(server.url)

    assert answer.content == b"body"
    assert again.content == b"ok"
    assert len(server.peers) == 1


async def test_a_close_delimited_body_ends_when_the_server_closes(
    serve: Serve, make_pool: MakePool
) -> None:
    async def handler(peer: Peer) -> None:
        if await peer.read_request() is None:
            return
        if len(server.peers) == 1:
            await send_in_pieces(peer, b"HTTP/1.1 200 OK\r\n\r\npart one, ", b"part two")
            await peer.close()
        else:
            await peer.send(OK)

    server = await serve(handler)
    pool = make_pool()

    async with pool.client.stream("GET", server.url) as answer:
        body = [part async for part in answer.aiter_raw()]
    again = await pool.client.get(server.url)

    assert b"".join(body) == b"part one, part two"
    assert len(body) == 2  # streamed as it came, not held until the end
    assert again.content == b"ok"
    assert len(server.peers) == 2


@pytest.mark.parametrize("separate_writes", [True, False], ids=["two-writes", "one-write"])
async def test_a_100_continue_is_skipped_for_the_real_answer(
    serve: Serve, make_pool: MakePool, separate_writes: bool
) -> None:
    interim = b"HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n"
    final = response(b"done", status=202, reason="Accepted", headers=[("X-Final", "yes")])

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        if separate_writes:
            await send_in_pieces(peer, interim, final)
        else:
            await peer.send(interim + final)

    server = await serve(handler)
    pool = make_pool()

    answer = await pool.client.post(server.url, content=b"payload")

    assert (answer.status_code, answer.reason_phrase) == (202, "Accepted")
    assert answer.headers["x-final"] == "yes"
    assert "x-interim" not in answer.headers
    assert answer.content == b"done"


async def test_a_204_has_no_body_and_keeps_the_connection(
    serve: Serve, make_pool: MakePool
) -> None:
    server = await serve(answer_every_request(b"HTTP/1.1 204 No Content\r\n\r\n", OK))
    pool = make_pool()

    empty = await pool.client.delete(server.url)
    again = await pool.client.get(server.url)

    assert (empty.status_code, empty.content) == (204, b"")
    assert again.content == b"ok"
    assert len(server.peers) == 1
