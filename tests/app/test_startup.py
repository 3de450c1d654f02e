"""Start-up: auth that cannot be forgotten, and the one summary the service prints."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from rag_service.api import principal_of
from rag_service.app import Components, create_app
from rag_service.domain import CatalogInfo
from rag_service.errors import ConfigurationError, EmbedderUnavailable, VectorStoreUnavailable
from rag_service.settings import Settings
from rag_service.startup import is_loopback
from tests.fakes.retrieval import HashingEmbedder, InMemoryPassageSearch
from tests.fakes.upstream import ScriptedUpstream


def settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(fallback_context_file=tmp_path / "none", **values)


class StoreDown(InMemoryPassageSearch):
    """A store that cannot be read at all (a Chroma server that is down)."""

    def catalog_info(self) -> CatalogInfo:
        raise VectorStoreUnavailable("fake store switched off (catalog_info)")


class ModelThatLoads(HashingEmbedder):
    """An embedder with a model to load (``Embedder.load``), which may fail to load."""

    def __init__(self, *, fails: bool = False) -> None:
        super().__init__(64)
        self.fails = fails
        self.loads = 0

    def load(self) -> None:
        self.loads += 1
        if self.fails:
            raise EmbedderUnavailable("model files missing")


async def start(
    config: Settings,
    caplog: pytest.LogCaptureFixture,
    store: InMemoryPassageSearch | None = None,
    embedder: HashingEmbedder | None = None,
) -> list[logging.LogRecord]:
    """Run the app's start-up and shutdown; the records the service logged."""
    embedder = embedder or HashingEmbedder(64)
    parts = Components(
        embedder=embedder,
        store=store or InMemoryPassageSearch(embedder, version=4),
        upstream=ScriptedUpstream(script=[]),
    )
    app = create_app(config, parts)
    with caplog.at_level(logging.INFO, logger="rag_service"):
        async with app.router.lifespan_context(app):
            pass
    return [r for r in caplog.records if r.name == "rag_service"]


def test_no_client_keys_on_a_public_address_refuses_to_start(tmp_path: Path) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.10", "service.example"):
        with pytest.raises(ConfigurationError) as refused:
            create_app(settings(tmp_path, server={"host": host}))
        message = refused.value.message
        assert f"refusing to listen on {host} without client keys" in message
        assert "RAG_API_KEYS" in message and "RAG_AUTH__DISABLED=true" in message


def test_keys_and_disabled_auth_together_are_a_contradiction(tmp_path: Path) -> None:
    both = settings(tmp_path, api_keys=[SecretStr("k")], auth={"disabled": True})
    with pytest.raises(ConfigurationError, match="both set"):
        create_app(both)


async def test_disabled_auth_on_a_public_address_starts_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings(tmp_path, server={"host": "0.0.0.0", "port": 8123}, auth={"disabled": True})
    records = await start(config, caplog)
    [warning] = [r for r in records if r.levelno == logging.WARNING and "client auth" in r.message]
    assert "client auth is disabled" in warning.message
    assert "0.0.0.0:8123" in warning.message
    [summary] = [r for r in records if r.message.startswith("rag_service ")]
    assert "clients: disabled (RAG_AUTH__DISABLED=true)" in summary.message


async def test_loopback_without_keys_starts_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = await start(settings(tmp_path), caplog)
    warnings = [r.message for r in records if r.levelno == logging.WARNING]
    assert any("no client keys (RAG_API_KEYS)" in w for w in warnings)


async def test_the_summary_names_upstream_store_catalog_auth_and_docs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings(
        tmp_path,
        server={"host": "127.0.0.1", "port": 8456},
        upstream={"base_url": "https://user:pw@llm.example/v1", "model": "qwen-7b"},
        api_keys=[SecretStr("k1"), SecretStr("k2")],
        admin_api_key=SecretStr("admin"),
    )
    records = await start(config, caplog)
    assert not [r for r in records if r.levelno >= logging.WARNING and "client" in r.message]
    [summary] = [r.message for r in records if r.message.startswith("rag_service ")]
    lines = summary.splitlines()
    assert "on http://127.0.0.1:8456 (API docs: http://127.0.0.1:8456/docs)" in lines[0]
    assert "upstream: https://llm.example/v1, model qwen-7b" in lines[1]  # no credentials
    assert "pw" not in summary
    assert "embedded chroma at" in lines[2] and "catalog version 4" in lines[2]
    assert "clients: client keys (2); admin: enabled" in lines[3]


def test_what_counts_as_loopback() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "host.example", ""]))


async def test_the_summary_shows_the_limits_and_an_override_for_no_key_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    known = principal_of("k1")
    stray = "key-0123456789ab"
    config = settings(
        tmp_path,
        api_keys=[SecretStr("k1")],
        limits={"streams": 7, "overrides": {known: {"streams": 9}, stray: {"streams": 1}}},
    )
    records = await start(config, caplog)
    [summary] = [r.message for r in records if r.message.startswith("rag_service ")]
    assert "limits:   per key 7 streams, 20/s (burst 50), 2 override(s)" in summary
    warnings = [r.message for r in records if r.levelno == logging.WARNING]
    assert f"RAG_LIMITS__OVERRIDES names {stray}, which is none of RAG_API_KEYS" in warnings
    assert not [w for w in warnings if known in w]


def test_a_settings_error_does_not_echo_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_LIMITS__OVERRIDES", '{"sk-live-secret-key": {"streams": 2}}')
    with pytest.raises(ValidationError) as invalid:
        Settings()
    assert "sk-live-secret-key" not in str(invalid.value)


@pytest.mark.parametrize(
    ("store", "said"),
    [
        (StoreDown(), "catalog unreadable (see /readyz)"),
        (InMemoryPassageSearch(version=0), "no catalog yet (rag-service ingest data/)"),
    ],
    ids=["store-down", "nothing-ingested"],
)
async def test_the_summary_says_when_there_is_no_catalog_to_report(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    store: InMemoryPassageSearch,
    said: str,
) -> None:
    """The service still starts (it answers from the fallback context) and says why."""
    store.fail_live_version = isinstance(store, StoreDown)
    records = await start(settings(tmp_path), caplog, store)
    [summary] = [r.message for r in records if r.message.startswith("rag_service ")]
    assert f"collection catalog; {said}" in summary.splitlines()[2]


@pytest.mark.parametrize("fails", [False, True], ids=["loads", "fails-to-load"])
async def test_the_embedding_model_is_loaded_at_start_up_and_a_failure_is_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fails: bool
) -> None:
    """Start-up loads the model (the first question then does not wait for it); a model that
    cannot load is logged and the service starts anyway (/readyz reports the embedder)."""
    embedder = ModelThatLoads(fails=fails)
    records = await start(settings(tmp_path), caplog, embedder=embedder)
    assert embedder.loads == 1
    errors = [r.message for r in records if r.levelno == logging.ERROR]
    assert errors == (["embedding model failed to load: model files missing"] if fails else [])
    assert [r for r in records if r.message.startswith("rag_service ")]  # it went on to start
