"""Fixtures of the per-key limit tests: limiter adapters for the contract tests, and the real app
with two client keys over an upstream that holds chosen answers open until a test lets them go.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from ingest.pipeline import IngestPipeline
from rag_service.adapters.chroma_store import ChromaStore
from rag_service.adapters.redis_key_limiter import RedisKeyLimiter
from rag_service.api import principal_of
from rag_service.app import Components, create_app
from rag_service.domain import ChatRequest, TextDelta
from rag_service.limits import FallbackKeyLimiter, InMemoryKeyLimiter
from rag_service.ports import EventSink, KeyLimiter
from rag_service.settings import IngestSettings, KeyLimitSettings, Settings
from tests.app.conftest import Service, app_settings
from tests.fakes.retrieval import HashingEmbedder, ManualClock
from tests.fakes.upstream import ScriptedUpstream, completed
from tests.live_server import live_server
from tests.redis_server import RedisServer

KEY_A = "client-key-a"
KEY_B = "client-key-b"
ID_A = principal_of(KEY_A)
ID_B = principal_of(KEY_B)
HOLD = "[hold]"  # a question containing this is held by ``GatedUpstream`` until released
ANSWER = ["The tent ", "costs ", "50.00 EUR."]
WAIT_LIMIT_S = 10.0  # generous: the suite runs on a busy 2-core machine

# A limiter adapter under contract: built from settings, a clock and the jitter's randomness.
LimiterFactory = Callable[[KeyLimitSettings, ManualClock, random.Random], KeyLimiter]


def memory_limiter(
    settings: KeyLimitSettings, clock: ManualClock, rng: random.Random
) -> KeyLimiter:
    return InMemoryKeyLimiter(settings, clock=clock, rng=rng)


@pytest.fixture(params=["memory", "redis", "redis-with-fallback"])
async def limiter_factory(request: pytest.FixtureRequest) -> AsyncIterator[LimiterFactory]:
    """Every ``KeyLimiter`` adapter: in memory; in Redis (a real server, this test's own key
    prefix, the test's clock passed to the scripts); Redis behind the local fallback."""
    if request.param == "memory":
        yield memory_limiter
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix: str = request.getfixturevalue("redis_prefix")
    opened: list[RedisKeyLimiter] = []

    def redis_limiter(
        settings: KeyLimitSettings, clock: ManualClock, rng: random.Random
    ) -> KeyLimiter:
        shared = RedisKeyLimiter(
            Redis.from_url(server.url),  # replies as bytes (from_settings: as text)
            settings,
            key_prefix=prefix,
            clock=clock,
            rng=rng,
        )
        opened.append(shared)
        if request.param == "redis":
            return shared
        return FallbackKeyLimiter(shared, memory_limiter(settings, clock, rng), clock=clock)

    yield redis_limiter
    for limiter in opened:
        await limiter.aclose()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class GatedUpstream(ScriptedUpstream):
    """Answers ``ANSWER``; an answer whose question contains ``HOLD`` first waits at a gate.

    ``held`` counts the answers waiting at the gate, ``cancelled`` the ones cancelled there;
    ``changed`` is notified whenever either changes, so tests wait on the condition itself.
    """

    held: int = 0
    cancelled: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def answer(self, request: ChatRequest, sink: EventSink, delivered: str = "") -> None:
        self.answer_calls += 1
        self.requests.append(request)
        if HOLD in request.messages[-1].content:
            await self._count(held=1)
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                await asyncio.shield(self._count(held=-1, cancelled=1))
                raise
            await self._count(held=-1)
        for piece in ANSWER:
            sink(TextDelta(piece))
        sink(completed())

    async def _count(self, *, held: int, cancelled: int = 0) -> None:
        async with self.changed:
            self.held += held
            self.cancelled += cancelled
            self.changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT_LIMIT_S), self.changed:
            await self.changed.wait_for(predicate)


def limits_settings(tmp_path: Path, limits: dict[str, Any], **stream: Any) -> Settings:
    """The app's test settings with two client keys and the given limits."""
    base = app_settings(tmp_path, **stream)
    return base.model_copy(
        update={
            "api_keys": [SecretStr(KEY_A), SecretStr(KEY_B)],
            "limits": KeyLimitSettings.model_validate(limits),
        }
    )


@asynccontextmanager
async def gated_service(settings: Settings) -> AsyncIterator[tuple[Service, GatedUpstream]]:
    """The real app over its ingested catalog and a ``GatedUpstream``, lifespan running."""
    embedder = HashingEmbedder(64)
    store = ChromaStore.open(settings.chroma)
    IngestPipeline(store, embedder, IngestSettings()).run([settings.ingest.catalog_dir])
    upstream = GatedUpstream()
    app = create_app(settings, Components(embedder=embedder, store=store, upstream=upstream))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://service", timeout=WAIT_LIMIT_S
        ) as client:
            yield Service(app, client, store, upstream, embedder, settings), upstream


@asynccontextmanager
async def gated_live_service(
    settings: Settings,
) -> AsyncIterator[tuple[Service, GatedUpstream, httpx.AsyncClient]]:
    """``gated_service`` on uvicorn on loopback, and an HTTP client on it: over a real
    connection a test reads a stream while it runs, and a client can leave mid-answer."""
    async with (
        gated_service(settings) as (service, upstream),
        live_server(service.app) as url,
        httpx.AsyncClient(base_url=url, timeout=WAIT_LIMIT_S) as http,
    ):
        yield service, upstream, http
