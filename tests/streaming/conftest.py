"""Fixtures of the streaming tests: a small FastAPI app with the stream routes mounted, and fakes.

The app installs the real app's error handlers but none of ``create_app``'s
components, so the routes run against fakes only.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest
from fastapi import FastAPI, Request

from rag_service.api import install_error_handlers
from rag_service.domain import ChatMessage, ChatRequest, ResolvedContext
from rag_service.settings import Settings, StreamSettings
from rag_service.streaming import StreamDeps, StreamRegistry
from rag_service.streaming.registry import DEFAULT_MAX_SESSIONS
from rag_service.streaming.router import stream_router
from tests.fakes.resolver import FakeResolver
from tests.fakes.upstream import ScriptedUpstream, answer_script
from tests.live_server import live_server

ANSWER_PIECES = ["Our ", "trail ", "boots ", "are ", "water", "proof", " — ", "größe 38-47."]


def simple_prompt(
    context: ResolvedContext,
    query: str,
    history: Sequence[ChatMessage],
    *,
    char_budget: int,
) -> ChatRequest:
    """Stand-in for retrieval's prompt builder: context text, history, then the question."""
    context_text = "\n".join(p.text for p in context.passages)[:char_budget]
    return ChatRequest(
        messages=(
            ChatMessage(role="system", content=context_text),
            *history,
            ChatMessage(role="user", content=query),
        )
    )


async def header_principal(request: Request) -> str | None:
    """Test auth: the caller's identity is whatever ``X-Client`` says (None without it)."""
    return request.headers.get("x-client")


def build_app(deps: StreamDeps, *, error_handlers: bool = True) -> FastAPI:
    """The stream routes as ``create_app`` mounts them (``error_handlers=False``: without the
    app's error mapping, i.e. Starlette's defaults)."""
    app = FastAPI()
    if error_handlers:
        install_error_handlers(app)  # the real app's error mapping (JSON shape, Retry-After)
    app.state.stream_deps = deps
    app.include_router(
        stream_router(
            get_deps=lambda request: request.app.state.stream_deps, principal=header_principal
        )
    )
    return app


def stream_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"grace_period_s": 5.0, "ping_interval_s": 15.0} | overrides
    return Settings(stream=StreamSettings.model_validate(values))


@pytest.fixture
def stream_overrides() -> dict[str, object]:
    """StreamSettings fields a test changes: ``@pytest.mark.parametrize("stream_overrides", ...)``."""
    return {}


@pytest.fixture
def registry_limit() -> int:
    return DEFAULT_MAX_SESSIONS


@pytest.fixture
def settings(stream_overrides: dict[str, object]) -> Settings:
    return stream_settings(**stream_overrides)


@pytest.fixture
def upstream() -> ScriptedUpstream:
    return ScriptedUpstream(script=answer_script(ANSWER_PIECES))


@pytest.fixture
def resolver() -> FakeResolver:
    return FakeResolver()


@pytest.fixture
async def registry(settings: Settings, registry_limit: int) -> AsyncIterator[StreamRegistry]:
    registry = StreamRegistry(settings.stream, max_sessions=registry_limit, rng=random.Random(7))
    yield registry
    await registry.close()


@pytest.fixture
def deps(
    settings: Settings,
    upstream: ScriptedUpstream,
    resolver: FakeResolver,
    registry: StreamRegistry,
) -> StreamDeps:
    return StreamDeps(
        resolver=resolver,
        upstream=upstream,
        registry=registry,
        settings=settings,
        build_request=simple_prompt,
        rng=random.Random(11),
    )


@pytest.fixture
def app(deps: StreamDeps) -> FastAPI:
    return build_app(deps)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=10) as c:
        yield c


@pytest.fixture
async def server_url(app: FastAPI) -> AsyncIterator[str]:
    async with live_server(app) as url:
        yield url
