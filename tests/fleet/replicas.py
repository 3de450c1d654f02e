"""Several in-process replicas of the service (``create_app`` more than once in one event loop)
sharing one real Redis and one real ``chroma run``: the fleet tests of shared state (issue #14)
that need no separate processes.

``fleet_settings`` makes one replica's settings (each replica may get its own overrides; the
``shared_settings`` fixture of tests/fleet/conftest.py makes them on the session's Chroma and
Redis under the test's key prefix); ``running_replicas`` starts their lifespans and gives each
an ASGI client. Components (embedder,
upstream) are per replica, as in separate processes; tests may pass shared fakes to count calls
cluster-wide.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from ingest.pipeline import IngestPipeline
from rag_service.adapters.chroma_store import ChromaStore
from rag_service.app import Components, create_app
from rag_service.retrieval.freshness import ContextService
from rag_service.settings import IngestSettings, Settings
from tests.app.conftest import ADMIN_KEY, CLIENT_KEY, app_settings
from tests.fakes.retrieval import HashingEmbedder
from tests.streaming.sse_spec import parse_sse


@dataclass
class Replica:
    name: str
    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings

    @property
    def contexts(self) -> ContextService:
        contexts: ContextService = self.app.state.admin_deps.contexts
        return contexts


class SharedSettings(Protocol):
    """``fleet_settings`` on the session's Chroma and Redis (the ``shared_settings`` fixture)."""

    def __call__(self, *, collection: str | None = None, **overrides: Any) -> Settings: ...


def fleet_settings(
    tmp_path: Path,
    chroma: tuple[str, int],
    redis_url: str,
    redis_prefix: str,
    *,
    collection: str | None = None,
    **overrides: Any,
) -> Settings:
    """The app test settings (tests/app/conftest.py) on the Chroma server and Redis given, in
    ``collection`` (by default one of its own, so a test's catalog changes reach no other);
    ``overrides``: top-level settings sections as dicts (e.g. ``freshness={...}``) or values."""
    base = app_settings(tmp_path)
    host, port = chroma
    data = base.model_dump()
    collection = collection or f"fleet-{uuid.uuid4().hex[:8]}"
    data["chroma"] = {"host": host, "port": port, "collection": collection}
    data["ingest"] |= {"lock_file": tmp_path / "ingest.lock"}
    data["redis"] = {"url": redis_url, "key_prefix": redis_prefix}
    data["api_keys"] = [SecretStr(CLIENT_KEY)]
    data["admin_api_key"] = SecretStr(ADMIN_KEY)
    for section, values in overrides.items():
        data[section] = data[section] | values if isinstance(data[section], dict) else values
    return Settings.model_validate(data)


def ingest_initial_catalog(settings: Settings, embedder: HashingEmbedder) -> int:
    """Ingest the settings' catalog directory into its (server) store; the version published."""
    store = ChromaStore.open(settings.chroma)
    report = IngestPipeline(store, embedder, IngestSettings()).run([settings.ingest.catalog_dir])
    assert report.published
    return report.version_after


@asynccontextmanager
async def running_replicas(
    replicas: Sequence[tuple[Settings, Components]],
) -> AsyncIterator[list[Replica]]:
    """Each ``(settings, components)`` as a running app with its lifespan and an ASGI client."""
    async with AsyncExitStack() as stack:
        running: list[Replica] = []
        for index, (settings, components) in enumerate(replicas):
            app = create_app(settings, components)
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://replica")
            )
            running.append(Replica(chr(ord("A") + index), app, client, settings))
        yield running


CONDITION_TIMEOUT_S = 60.0  # generous: a busy 2-core machine; only a hang reaches it


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail after ``CONDITION_TIMEOUT_S``."""
    deadline = time.monotonic() + CONDITION_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {CONDITION_TIMEOUT_S:g} s: {what}")
        await asyncio.sleep(0.02)


def client_auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {CLIENT_KEY}"}


async def ask_context(replica: Replica, context: str, query: str) -> dict[str, Any]:
    """Stream an answer from ``replica``; the ``meta`` event's ``context`` object."""
    response = await replica.client.post(
        "/rag/stream", params={"context": context}, json={"query": query}, headers=client_auth()
    )
    assert response.status_code == 200, response.text
    meta: dict[str, Any] = parse_sse(response.content).events[0].json()["context"]
    return meta
