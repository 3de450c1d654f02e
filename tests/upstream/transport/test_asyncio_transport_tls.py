"""``AsyncioHTTPTransport`` over TLS, against a scripted server with a throwaway certificate.

The certificate comes from the ``openssl`` command (neither ``trustme`` nor ``cryptography`` is
installed); without it these tests are skipped. Runs on asyncio and uvloop (``conftest``).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.upstream.transport.conftest import MakePool, Serve
from tests.upstream.transport.scripted_server import Peer, answer_every_request, chunk, response


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key: (cert.pem, key.pem)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no `openssl` command to make a test certificate with")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest.fixture
def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def client_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


async def test_requests_over_tls_are_answered_and_share_one_connection(
    serve: Serve, make_pool: MakePool, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += chunk(b"second ") + chunk(b"answer") + chunk(b"")
    server = await serve(answer_every_request(response(b"first"), chunked), ssl_context=server_tls)
    pool = make_pool(ssl_context=client_tls)

    first = await pool.client.post(f"{server.url}/one", content=b"body")
    second = await pool.client.get(f"{server.url}/two")

    assert server.url.startswith("https://")
    assert (first.content, second.content) == (b"first", b"second answer")
    [peer] = server.peers
    assert [(request.target, request.body) for request in peer.requests] == [
        ("/one", b"body"),
        ("/two", b""),
    ]


async def test_a_close_delimited_body_over_tls_ends_with_the_connection(
    serve: Serve, make_pool: MakePool, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
        await peer.close()

    server = await serve(handler, ssl_context=server_tls)
    pool = make_pool(ssl_context=client_tls)

    answer = await pool.client.get(server.url)

    assert answer.content == b"until the end"
    assert await pool.counts((0, 0)) == (0, 0)


async def test_a_slow_reader_over_tls_gets_every_byte(
    serve: Serve, make_pool: MakePool, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    payload = random.Random(11).randbytes(1024 * 1024)
    server = await serve(answer_every_request(response(payload)), ssl_context=server_tls)
    pool = make_pool(ssl_context=client_tls)
    received = bytearray()

    async with pool.client.stream("GET", server.url) as answer:
        await asyncio.sleep(0.05)  # the answer piles up unread: the socket stops being read
        async for part in answer.aiter_raw():
            received += part

    assert received == payload


async def test_a_pause_longer_than_the_read_timeout_over_tls_is_not_a_stall(
    serve: Serve,
    make_pool: MakePool,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
) -> None:
    """The reader comes back after 0.3 s (read timeout 0.2 s) and is busy a few ms per part.

    The upstream sent everything long ago; a stall is only time spent waiting for it.
    """
    payload = random.Random(12).randbytes(1024 * 1024)
    server = await serve(answer_every_request(response(payload)), ssl_context=server_tls)
    pool = make_pool(ssl_context=client_tls, timeout=httpx.Timeout(2.0, read=0.2))
    received = bytearray()

    async with pool.client.stream("GET", server.url) as answer:
        await asyncio.sleep(0.3)
        async for part in answer.aiter_raw():
            received += part
            time.sleep(0.005)  # noqa: ASYNC251 - a consumer busy with CPU, holding the loop

    assert received == payload


async def test_an_untrusted_certificate_is_a_connect_error(
    serve: Serve, make_pool: MakePool, server_tls: ssl.SSLContext
) -> None:
    server = await serve(answer_every_request(response(b"never")), ssl_context=server_tls)
    pool = make_pool()  # the default context: the system's CAs do not know our certificate

    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        await pool.client.get(server.url)

    assert await pool.counts((0, 0)) == (0, 0)
