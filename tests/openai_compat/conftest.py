"""The real app from ``create_app`` (embedded Chroma in tmp_path, fake embedder and upstream)
with the OpenAI facade mounted, served by a real uvicorn on loopback, and the official SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI

from ingest.pipeline import IngestPipeline
from rag_service.adapters.chroma_store import ChromaStore
from rag_service.app import Components, create_app
from rag_service.settings import (
    IngestSettings,
    Settings,
)
from tests.app.conftest import ANSWER, CLIENT_KEY, app_settings
from tests.fakes.retrieval import HashingEmbedder
from tests.fakes.upstream import ScriptedUpstream, answer_script
from tests.live_server import live_server

QUESTION = "How much is the Tents model 0?"
SDK_TIMEOUT_S = 10.0


@dataclass
class LiveService:
    url: str
    app: FastAPI
    upstream: ScriptedUpstream
    settings: Settings

    def sdk(self, api_key: str = CLIENT_KEY) -> openai.AsyncOpenAI:
        """The official async client, pointed at this service (no SDK retries: exact counts)."""
        return openai.AsyncOpenAI(
            base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=SDK_TIMEOUT_S
        )

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=SDK_TIMEOUT_S)


@asynccontextmanager
async def running_service(tmp_path: Path, **stream: Any) -> AsyncIterator[LiveService]:
    settings = app_settings(tmp_path, **stream)
    embedder = HashingEmbedder(64)
    store = ChromaStore.open(settings.chroma)
    IngestPipeline(store, embedder, IngestSettings()).run([settings.ingest.catalog_dir])
    upstream = ScriptedUpstream(script=answer_script(ANSWER))
    app = create_app(settings, Components(embedder=embedder, store=store, upstream=upstream))
    async with app.router.lifespan_context(app), live_server(app) as url:
        yield LiveService(url, app, upstream, settings)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[LiveService]:
    async with running_service(tmp_path) as live:
        yield live


@pytest.fixture
async def sdk(service: LiveService) -> AsyncIterator[openai.AsyncOpenAI]:
    async with service.sdk() as client:
        yield client


def user_turn(text: str = QUESTION) -> list[Any]:
    return [{"role": "user", "content": text}]
