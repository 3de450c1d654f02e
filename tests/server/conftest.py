"""The stream routes on a real uvicorn built by ``server_config``, with small connection limits,
driven over raw sockets; a scripted upstream stands in for the model. Every test runs on
asyncio's loop and on uvloop's, which ``rag-service serve`` runs: their transports differ."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import uvicorn
import uvloop
from fastapi import FastAPI

from rag_service.server.connection_guard import ConnectionGuard
from rag_service.settings import ServerSettings, Settings
from rag_service.streaming import StreamDeps, StreamRegistry
from tests.fakes.resolver import FakeResolver
from tests.fakes.upstream import ScriptedUpstream, answer_script
from tests.live_server import running_server
from tests.streaming.conftest import build_app, simple_prompt

ANSWER = [f"word{i} " for i in range(12)]

Serve = Callable[..., AbstractAsyncContextManager[tuple[uvicorn.Server, int]]]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture
def upstream() -> ScriptedUpstream:
    return ScriptedUpstream(script=answer_script(ANSWER))


@pytest.fixture
async def app(upstream: ScriptedUpstream) -> AsyncIterator[FastAPI]:
    settings = Settings()
    registry = StreamRegistry(settings.stream, rng=random.Random(7))
    deps = StreamDeps(
        resolver=FakeResolver(),
        upstream=upstream,
        registry=registry,
        settings=settings,
        build_request=simple_prompt,
        rng=random.Random(11),
    )
    yield build_app(deps)
    await registry.close()


@pytest.fixture
def serve(app: FastAPI) -> Serve:
    """``serve(http=..., **server_settings)``: the app on uvicorn under those ``ServerSettings``."""

    @asynccontextmanager
    async def serving(
        http: str = "httptools", **limits: object
    ) -> AsyncIterator[tuple[uvicorn.Server, int]]:
        settings = Settings(server=ServerSettings.model_validate(limits))
        async with running_server(app, settings, http=http) as (server, port):
            yield server, port

    return serving


def guard_of(server: uvicorn.Server) -> ConnectionGuard:
    guard = server.config.http.connection_guard  # type: ignore[union-attr]
    assert isinstance(guard, ConnectionGuard)
    return guard
