"""The client over TLS, against the fault server with throwaway certificates (``certificates``).

A private CA trusted through RAG_UPSTREAM__CA_BUNDLE; sequential answers over one connection
with the realistic ending (the chunked terminator in a delayed write of its own); certificate
failures as configuration errors: one attempt, not retryable, the breaker untouched, the cause
named by ``health()`` and by ``/readyz``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest

from rag_service.app import Components, create_app
from rag_service.domain import BreakerState, Completed, Failed
from rag_service.errors import ConfigurationError, UpstreamConfigurationError
from rag_service.settings import Settings
from rag_service.upstream import OpenAICompatibleUpstream
from rag_service.upstream.breaker import Permit
from tests.fakes.retrieval import HashingEmbedder, InMemoryPassageSearch
from tests.fixture_servers.fault_upstream import FaultUpstream
from tests.upstream.certificates import Certificates, ServerCertificate
from tests.upstream.conftest import (
    QUESTION,
    QUESTION_MESSAGES,
    REALISTIC_ENDING,
    ClientFactory,
    collect,
    settings_for,
)

SEQUENTIAL_ANSWERS = 5


async def test_answers_over_tls_with_a_private_ca_share_one_connection(
    certificates: Certificates, make_client: ClientFactory
) -> None:
    server = certificates.localhost.server_context()
    async with FaultUpstream(ssl_context=server, style=REALISTIC_ENDING) as upstream:
        client = make_client(upstream.url_for("localhost"), ca_bundle=str(certificates.ca))
        for _ in range(SEQUENTIAL_ANSWERS):
            items = await collect(client.stream(QUESTION))
            assert items.text == upstream.answer_text(QUESTION_MESSAGES)
            assert isinstance(items.terminal, Completed)
        assert upstream.request_count == SEQUENTIAL_ANSWERS
        assert upstream.connection_count == 1


def untrusted_cases(certificates: Certificates) -> dict[str, tuple[ServerCertificate, str | None]]:
    return {
        "private CA, no bundle": (certificates.localhost, None),
        "CA not in the bundle": (certificates.untrusted, str(certificates.ca)),
    }


@pytest.mark.parametrize("case", ["private CA, no bundle", "CA not in the bundle"])
async def test_an_untrusted_certificate_fails_once_as_a_configuration_error(
    certificates: Certificates, make_client: ClientFactory, case: str
) -> None:
    certificate, bundle = untrusted_cases(certificates)[case]
    server = certificate.server_context()
    handshakes: list[str | None] = []  # the server name of each TLS handshake begun
    server.sni_callback = lambda _socket, name, _context: handshakes.append(name)
    async with FaultUpstream(ssl_context=server) as upstream:
        # A threshold of 1: a single verdict against the upstream would open the breaker.
        client = make_client(
            upstream.url_for("localhost"), ca_bundle=bundle, breaker={"failure_threshold": 1}
        )
        items = await collect(client.stream(QUESTION))
        assert (handshakes, upstream.request_count) == (["localhost"], 0)
    [failed] = items
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, UpstreamConfigurationError)
    assert failed.attempts == 1
    assert failed.error.to_payload()["retryable"] is False
    assert failed.error.http_status == 502
    message = failed.error.message
    assert "TLS certificate of localhost:" in message
    assert "unable to get local issuer certificate" in message
    assert "RAG_UPSTREAM__CA_BUNDLE" in message
    assert client.breaker.state is BreakerState.closed
    assert client.breaker.try_acquire() is Permit.normal
    health = client.health()
    assert (health.breaker, health.problem, health.ok) == ("closed", message, False)


async def test_a_certificate_for_another_host_is_named_and_cleared_by_a_later_answer(
    certificates: Certificates, make_client: ClientFactory
) -> None:
    server = certificates.other_host.server_context()
    async with FaultUpstream(ssl_context=server) as upstream:
        client = make_client(upstream.url_for("localhost"), ca_bundle=str(certificates.ca))
        [failed] = await collect(client.stream(QUESTION))
        assert isinstance(failed, Failed)
        assert isinstance(failed.error, UpstreamConfigurationError)
        assert "Hostname mismatch" in failed.error.message
        assert "RAG_UPSTREAM__BASE_URL must name a host" in failed.error.message
        assert client.health().problem == failed.error.message
        # The operator fixes the server's certificate: the next answer clears the problem.
        server.load_cert_chain(certificates.localhost.cert, certificates.localhost.key)
        items = await collect(client.stream(QUESTION))
        assert items.text == upstream.answer_text(QUESTION_MESSAGES)
    assert client.health().problem is None
    assert client.health().ok


async def test_verification_switched_off_accepts_any_certificate_and_warns(
    certificates: Certificates, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="rag_service.upstream"):
        async with FaultUpstream(ssl_context=certificates.untrusted.server_context()) as upstream:
            client = make_client(upstream.url_for("localhost"), verify_tls=False)
            items = await collect(client.stream(QUESTION))
    assert items.text == upstream.answer_text(QUESTION_MESSAGES)
    [warning] = [r for r in caplog.records if "VERIFY_TLS=false" in r.getMessage()]
    assert warning.levelno == logging.WARNING


def test_verification_is_silent_when_on(
    certificates: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="rag_service.upstream"):
        OpenAICompatibleUpstream(settings_for("https://localhost:1/v1"))
    assert caplog.records == []


def test_an_unreadable_ca_bundle_is_refused_when_the_client_is_built(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate")
    for bundle in (missing, not_pem):
        settings = settings_for("https://localhost:1/v1", ca_bundle=str(bundle))
        with pytest.raises(ConfigurationError, match="RAG_UPSTREAM__CA_BUNDLE"):
            OpenAICompatibleUpstream(settings)


async def test_readyz_names_the_certificate_problem_in_words(
    certificates: Certificates, tmp_path: Path
) -> None:
    """The real app with the real client: the upstream check says why, not a stack trace."""
    async with FaultUpstream(ssl_context=certificates.other_host.server_context()) as upstream:
        upstream_settings = settings_for(
            upstream.url_for("localhost"), ca_bundle=str(certificates.ca)
        )
        settings = Settings(upstream=upstream_settings, fallback_context_file=tmp_path / "none")
        client = OpenAICompatibleUpstream(settings.upstream)
        embedder = HashingEmbedder(64)
        parts = Components(
            embedder=embedder, store=InMemoryPassageSearch(embedder), upstream=client
        )
        app = create_app(settings, parts)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
                before = (await http.get("/readyz")).json()["components"]["upstream"]
                [failed] = await collect(client.stream(QUESTION))
                after = (await http.get("/readyz")).json()["components"]["upstream"]
    # The probe (GET /models) meets the problem before any question does ...
    assert before["ok"] is False
    assert before["error"].startswith("the TLS certificate of localhost:")
    assert before["error"] == before["probe"]
    # ... and a failed answer's configuration problem is named as well.
    assert isinstance(failed, Failed)
    assert after["ok"] is False
    assert after["error"] == failed.error.message
    assert after["error"].startswith("the TLS certificate of localhost:")
    assert "Traceback" not in after["error"]


async def test_https_to_a_plain_http_port_is_a_configuration_error(
    make_client: ClientFactory,
) -> None:
    """A plain-HTTP server answers a TLS hello with a 400, as uvicorn and nginx do."""

    async def plain_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(plain_http, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        client = make_client(f"https://127.0.0.1:{port}/v1", breaker={"failure_threshold": 1})
        items = await collect(client.stream(QUESTION))
    [failed] = items
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, UpstreamConfigurationError)
    assert "WRONG_VERSION_NUMBER" in failed.error.message
    assert "scheme (http/https)" in failed.error.message
    assert failed.attempts == 1
    assert client.breaker.state is BreakerState.closed
