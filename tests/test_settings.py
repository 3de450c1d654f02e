"""Configuration: the contract's variable names, secrets kept secret, .env.example in sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_service.cli.settings_doc import render
from rag_service.settings import ContinuationStrategy, Settings
from tests.conftest import REPO


def test_the_fixed_variable_names_of_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "RAG_UPSTREAM__BASE_URL": "https://api.example.test/v1",
        "RAG_UPSTREAM__API_KEY": "sk-secret-123",
        "RAG_UPSTREAM__MODEL": "deepseek-v3",
        "RAG_CHROMA__PATH": "/srv/chroma",
        "RAG_FRESHNESS__TTL_SECONDS": "120",
        "RAG_FALLBACK_CONTEXT_FILE": "/srv/fallback.md",
        "RAG_API_KEYS": "k1, k2,,",
        "RAG_ADMIN_API_KEY": "admin-1",
        "RAG_UPSTREAM__CONTINUATION": "prefix",
        "RAG_UPSTREAM__PARAMS": '{"temperature": 0.2}',
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.upstream.base_url == "https://api.example.test/v1"
    assert settings.upstream.api_key.get_secret_value() == "sk-secret-123"
    assert settings.upstream.model == "deepseek-v3"
    assert settings.chroma.path == Path("/srv/chroma")
    assert settings.freshness.ttl_seconds == 120
    assert settings.fallback_context_file == Path("/srv/fallback.md")
    assert [k.get_secret_value() for k in settings.api_keys] == ["k1", "k2"]
    assert settings.admin_api_key is not None
    assert settings.upstream.continuation is ContinuationStrategy.prefix
    assert settings.upstream.params == {"temperature": 0.2}
    assert "sk-secret-123" not in repr(settings)
    assert "admin-1" not in repr(settings)


def test_the_upstream_connection_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "RAG_UPSTREAM__PROXY": "http://user:proxy-secret-7@proxy.example.test:3128",
        "RAG_UPSTREAM__TRUST_ENV": "false",
        "RAG_UPSTREAM__CA_BUNDLE": "/etc/ssl/private-ca.pem",
        "RAG_UPSTREAM__VERIFY_TLS": "false",
        "RAG_UPSTREAM__KEEPALIVE_S": "2.5",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    upstream = Settings().upstream
    assert upstream.proxy is not None
    assert upstream.proxy.get_secret_value() == env["RAG_UPSTREAM__PROXY"]
    assert (upstream.trust_env, upstream.verify_tls) == (False, False)
    assert upstream.ca_bundle == Path("/etc/ssl/private-ca.pem")
    assert upstream.keepalive_s == 2.5
    assert "proxy-secret-7" not in repr(upstream)


def test_upstream_connections_are_verified_and_take_the_environments_proxy_by_default() -> None:
    upstream = Settings().upstream
    assert (upstream.proxy, upstream.trust_env) == (None, True)
    assert (upstream.ca_bundle, upstream.verify_tls) == (None, True)


def test_server_chroma_is_chosen_by_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_CHROMA__HOST", "127.0.0.1")
    monkeypatch.setenv("RAG_CHROMA__PORT", "8123")
    settings = Settings()
    assert (settings.chroma.host, settings.chroma.port) == ("127.0.0.1", 8123)


def test_defaults_are_the_documented_ones() -> None:
    settings = Settings()
    assert settings.freshness.ttl_seconds == 300
    assert settings.upstream.params["temperature"] == 0
    assert settings.chroma.host is None


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_FRESHNESS__TTL_SECONDS", "-1")
    with pytest.raises(ValueError, match="ttl_seconds"):
        Settings()


def test_env_example_is_in_sync_with_the_settings() -> None:
    committed = (REPO / ".env.example").read_text(encoding="utf-8")
    assert committed == render(), (
        "regenerate: python -m rag_service.cli.settings_doc > .env.example"
    )
