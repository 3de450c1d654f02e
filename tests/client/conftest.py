"""The real app (create_app: embedded Chroma, fake embedder, the real upstream client) on a real
uvicorn, its upstream the fault-injecting OpenAI server, and a cutting TCP proxy between the
client under test and the service, so a test can drop the service's connection mid-answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI

from ingest.pipeline import IngestPipeline
from rag_service.adapters.chroma_store import ChromaStore
from rag_service.app import Components, create_app
from rag_service.client import AsyncRagClient, RagClient, RetryPolicy
from rag_service.settings import IngestSettings, KeyLimitSettings, Settings
from tests.app.conftest import CLIENT_KEY, app_settings
from tests.fakes.retrieval import HashingEmbedder
from tests.fixture_servers.fault_plan import AnswerStyle
from tests.fixture_servers.fault_proxy import FaultProxy
from tests.fixture_servers.fault_upstream import FaultUpstream
from tests.live_server import live_server

QUESTION = "How much is the Tents model 0?"
# Quick reconnects keep the tests short; the attempts and their order are what is tested.
FAST = RetryPolicy(base_delay_s=0.02, max_delay_s=0.2, deadline_s=60.0, read_timeout_s=20.0)


def async_client(url: str, *, key: str = CLIENT_KEY, policy: RetryPolicy = FAST) -> AsyncRagClient:
    """The async client under test on ``url``, with the test key and quick reconnects."""
    return AsyncRagClient(url, api_key=key, policy=policy)


def sync_client(url: str, *, key: str = CLIENT_KEY, policy: RetryPolicy = FAST) -> RagClient:
    """The blocking client under test on ``url``, with the test key and quick reconnects."""
    return RagClient(url, api_key=key, policy=policy)


@dataclass
class LiveService:
    app: FastAPI
    settings: Settings
    upstream: FaultUpstream
    proxy: FaultProxy  # in front of the service: clients that should be cut connect here
    direct_url: str

    @property
    def url(self) -> str:
        return self.proxy.url()


def client_settings(tmp_path: Path, upstream_url: str, **stream: Any) -> Settings:
    settings = app_settings(tmp_path, retry_hint_ms=20, **stream)
    settings.upstream.base_url = upstream_url
    settings.upstream.retry.base_delay_s = 0.02
    return settings


@asynccontextmanager
async def running_service(
    tmp_path: Path,
    *,
    style: AnswerStyle | None = None,
    limits: dict[str, Any] | None = None,
    **stream: Any,
) -> AsyncIterator[LiveService]:
    async with FaultUpstream(style=style or AnswerStyle(words=40)) as upstream:
        settings = client_settings(tmp_path, upstream.base_url, **stream)
        if limits is not None:
            settings = settings.model_copy(
                update={"limits": KeyLimitSettings.model_validate(limits)}
            )
        embedder = HashingEmbedder(64)
        store = ChromaStore.open(settings.chroma)
        IngestPipeline(store, embedder, IngestSettings()).run([settings.ingest.catalog_dir])
        app = create_app(settings, Components(embedder=embedder, store=store))
        async with app.router.lifespan_context(app), live_server(app) as url:
            port = urlsplit(url).port
            assert port is not None
            async with FaultProxy("127.0.0.1", port) as proxy:
                yield LiveService(app, settings, upstream, proxy, url)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[LiveService]:
    async with running_service(tmp_path) as live:
        yield live


async def metric(url: str, name: str) -> float:
    """One unlabelled gauge or counter of the service's /metrics."""
    async with httpx.AsyncClient(base_url=url) as http:
        text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


__all__ = [
    "CLIENT_KEY",
    "FAST",
    "QUESTION",
    "LiveService",
    "async_client",
    "running_service",
    "sync_client",
]
