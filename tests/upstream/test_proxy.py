"""Proxies: a real HTTP CONNECT proxy on loopback (``pproxy``) between the client and the fault
server; the environment's variables (HTTPS_PROXY, ALL_PROXY, NO_PROXY), the explicit setting
that overrides them, and a proxy's refusal as a configuration error."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from yarl import URL

from rag_service.domain import BreakerState, Completed, Failed, RetryNotice
from rag_service.errors import ConfigurationError, RetriesExhausted, UpstreamConfigurationError
from rag_service.settings import UpstreamSettings
from rag_service.upstream import OpenAICompatibleUpstream
from rag_service.upstream.proxy import choose_proxy
from tests.conftest import free_port
from tests.fixture_servers.fault_upstream import FaultUpstream
from tests.upstream.certificates import Certificates
from tests.upstream.conftest import QUESTION, QUESTION_MESSAGES, ClientFactory, collect
from tests.upstream.loopback_proxy import running_proxy

CREDENTIALS = "rag:proxy-pass-41"


@asynccontextmanager
async def https_upstream(certificates: Certificates) -> AsyncIterator[FaultUpstream]:
    async with FaultUpstream(ssl_context=certificates.localhost.server_context()) as upstream:
        yield upstream


async def test_the_environments_https_proxy_tunnels_the_answers(
    certificates: Certificates, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_proxy() as proxy, https_upstream(certificates) as upstream:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        client = make_client(upstream.url_for("localhost"), ca_bundle=str(certificates.ca))
        for _ in range(2):
            items = await collect(client.stream(QUESTION))
            assert items.text == upstream.answer_text(QUESTION_MESSAGES)
        await client.aclose()
        assert len(proxy.forwarded_to(upstream.port)) == 1  # one CONNECT tunnel, kept alive
        assert upstream.connection_count == 1


@pytest.mark.parametrize("no_proxy", ["localhost", "example.test, localhost", "*"])
async def test_no_proxy_sends_the_named_host_around_the_proxy(
    certificates: Certificates,
    make_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
) -> None:
    async with running_proxy() as proxy, https_upstream(certificates) as upstream:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", no_proxy)
        client = make_client(upstream.url_for("localhost"), ca_bundle=str(certificates.ca))
        items = await collect(client.stream(QUESTION))
        await client.aclose()
    assert items.text == upstream.answer_text(QUESTION_MESSAGES)
    assert proxy.log == []


async def test_all_proxy_carries_a_plain_http_upstream(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp's own trust_env ignores ALL_PROXY; the client does not."""
    async with running_proxy() as proxy, FaultUpstream() as upstream:
        monkeypatch.setenv("ALL_PROXY", proxy.url)
        client = make_client(upstream.url_for("localhost"))
        items = await collect(client.stream(QUESTION))
        await client.aclose()
        assert len(proxy.forwarded_to(upstream.port)) == 1
    assert items.text == upstream.answer_text(QUESTION_MESSAGES)


async def test_the_explicit_proxy_overrides_the_environment(
    certificates: Certificates, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")  # nobody listens
    monkeypatch.setenv("NO_PROXY", "localhost")  # and NO_PROXY does not apply to the setting
    async with running_proxy() as proxy, https_upstream(certificates) as upstream:
        client = make_client(
            upstream.url_for("localhost"), ca_bundle=str(certificates.ca), proxy=proxy.url
        )
        items = await collect(client.stream(QUESTION))
        await client.aclose()
        assert len(proxy.forwarded_to(upstream.port)) == 1
    assert items.text == upstream.answer_text(QUESTION_MESSAGES)


async def test_trust_env_false_ignores_the_environments_proxy(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nobody listens
    async with FaultUpstream() as upstream:
        client = make_client(upstream.url_for("localhost"), trust_env=False)
        items = await collect(client.stream(QUESTION))
    assert isinstance(items.terminal, Completed)


async def test_proxy_credentials_in_the_url_are_sent_and_never_shown(
    certificates: Certificates, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    user, password = CREDENTIALS.split(":")
    async with running_proxy(CREDENTIALS) as proxy, https_upstream(certificates) as upstream:
        with_credentials = proxy.url.replace("http://", f"http://{user}:{password}@")
        with caplog.at_level(logging.INFO, logger="rag_service.upstream"):
            client = make_client(
                upstream.url_for("localhost"),
                ca_bundle=str(certificates.ca),
                proxy=with_credentials,
            )
        items = await collect(client.stream(QUESTION))
        await client.aclose()
    assert items.text == upstream.answer_text(QUESTION_MESSAGES)
    [line] = [record.getMessage() for record in caplog.records]
    assert line == f"upstream requests go through the proxy {proxy.url} (from RAG_UPSTREAM__PROXY)"
    assert password not in repr(client)


@pytest.mark.parametrize("given", ["none", "wrong"])
async def test_a_proxy_refusal_is_a_configuration_error_after_one_attempt(
    certificates: Certificates, make_client: ClientFactory, given: str
) -> None:
    async with running_proxy(CREDENTIALS) as proxy, https_upstream(certificates) as upstream:
        url = proxy.url if given == "none" else proxy.url.replace("://", "://rag:wrong-pass-9@")
        client = make_client(
            upstream.url_for("localhost"),
            ca_bundle=str(certificates.ca),
            proxy=url,
            breaker={"failure_threshold": 1},
        )
        items = await collect(client.stream(QUESTION))
        await client.aclose()
        assert upstream.request_count == 0
    [failed] = items
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, UpstreamConfigurationError)
    assert failed.attempts == 1
    assert failed.error.retryable is False
    message = failed.error.message
    assert message.startswith(f"the proxy {proxy.url} from RAG_UPSTREAM__PROXY refused")
    assert "407 Proxy Authentication Required" in message
    assert "wrong-pass-9" not in message
    assert client.breaker.state is BreakerState.closed
    assert client.health().problem == message


async def test_a_proxy_refusal_of_a_plain_http_request_is_a_configuration_error(
    make_client: ClientFactory,
) -> None:
    """Without a tunnel the proxy answers the request itself: 407 is its refusal, not the LLM's."""
    async with running_proxy(CREDENTIALS) as proxy, FaultUpstream() as upstream:
        client = make_client(upstream.url_for("localhost"), proxy=proxy.url)
        items = await collect(client.stream(QUESTION))
        await client.aclose()
    [failed] = items
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, UpstreamConfigurationError)
    assert "the proxy refused the request (407 Proxy Authentication Required)" in (
        failed.error.message
    )
    assert (failed.attempts, upstream.request_count) == (1, 0)


async def test_an_unreachable_proxy_is_retried_as_a_connect_error(
    make_client: ClientFactory,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client = make_client("http://localhost:9/v1", proxy=dead, retry={"max_attempts": 2})
    items = await collect(client.stream(QUESTION))
    assert [i.reason for i in items if isinstance(i, RetryNotice)] == ["connect_error"]
    failed = items.terminal
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, RetriesExhausted)
    assert f"cannot connect to the proxy {dead} from RAG_UPSTREAM__PROXY" in failed.error.message


@pytest.mark.parametrize(
    ("variable", "value"),
    [("ALL_PROXY", "socks5://127.0.0.1:1080"), ("HTTPS_PROXY", "socks5h://proxy.test:1080")],
)
def test_a_socks_proxy_in_the_environment_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=f"{variable} is a SOCKS proxy"):
        OpenAICompatibleUpstream(UpstreamSettings(base_url="https://api.example.test/v1"))


def test_a_socks_or_odd_explicit_proxy_is_refused_at_start() -> None:
    for proxy, problem in [
        ("socks5://user:secret-3@127.0.0.1:1080", "RAG_UPSTREAM__PROXY is a SOCKS proxy"),
        ("ftp://127.0.0.1:21", "must be an http:// or https:// proxy URL"),
    ]:
        settings = UpstreamSettings(base_url="https://api.example.test/v1", proxy=proxy)
        with pytest.raises(ConfigurationError, match=problem) as raised:
            OpenAICompatibleUpstream(settings)
        assert "secret-3" not in raised.value.message


def test_the_upstreams_scheme_picks_the_variable_and_all_proxy_is_the_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = UpstreamSettings()
    monkeypatch.setenv("HTTP_PROXY", "http://plain.test:1")
    monkeypatch.setenv("ALL_PROXY", "http://any.test:3")
    chosen = {
        scheme: choose_proxy(settings, URL(f"{scheme}://api.example.test/v1"))
        for scheme in ("http", "https")
    }
    assert {scheme: repr(proxy) for scheme, proxy in chosen.items()} == {
        "http": "UpstreamProxy(http://plain.test:1 from HTTP_PROXY)",
        "https": "UpstreamProxy(http://any.test:3 from ALL_PROXY)",
    }


def test_a_proxy_without_a_scheme_is_an_http_proxy_and_its_credentials_stay_hidden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "user:pw-5@proxy.example.test:3128")
    proxy = choose_proxy(UpstreamSettings(), URL("https://api.example.test/v1"))
    assert proxy is not None
    assert (proxy.shown, proxy.source) == ("http://proxy.example.test:3128", "HTTPS_PROXY")
    assert proxy.url.password == "pw-5"  # handed to aiohttp, which sends Proxy-Authorization
    assert "pw-5" not in repr(proxy)
