"""The real app from ``create_app`` over a real embedded Chroma store, with fast fakes for the
embedder and the upstream, driven in-process (ASGI) with its lifespan running."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from ingest.pipeline import IngestPipeline
from rag_service.adapters.chroma_store import ChromaStore
from rag_service.app import Components, create_app
from rag_service.settings import ChromaSettings, IngestSettings, Settings, StreamSettings
from tests.fakes.retrieval import HashingEmbedder
from tests.fakes.upstream import ScriptedUpstream, answer_script
from tests.ingest.catalogs import product, write_policy, write_products

ANSWER = ["The ", "Tents model 0 ", "costs 50.00 EUR."]
CLIENT_KEY = "client-key-1"
ADMIN_KEY = "admin-key-1"


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    store: ChromaStore
    upstream: ScriptedUpstream
    embedder: HashingEmbedder
    settings: Settings


def app_settings(tmp_path: Path, **stream: Any) -> Settings:
    """Test settings; ``stream``: StreamSettings fields. Overload shedding is off unless asked
    for (tests/app/test_overload.py): on a machine whose cores are busy with other work, a test's
    loop runs late for reasons that are not the service's load, and a refused request is not
    what those tests check."""
    stream.setdefault("shed_loop_lag_ms", 0)
    catalog_dir = tmp_path / "catalogs"
    write_products(catalog_dir / "products.jsonl", [product(i) for i in range(12)])
    write_policy(catalog_dir / "returns.md")
    fallback = tmp_path / "fallback.md"
    fallback.write_text("FALLBACK: call support at +49 30 1234567.")
    return Settings(
        chroma=ChromaSettings(path=tmp_path / "chroma", collection="app"),
        ingest=IngestSettings(catalog_dir=catalog_dir),
        fallback_context_file=fallback,
        api_keys=[SecretStr(CLIENT_KEY)],
        admin_api_key=SecretStr(ADMIN_KEY),
        stream=StreamSettings.model_validate(stream),
    )


@asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[Service]:
    """The app for ``settings`` over its ingested catalog, lifespan running, with a client."""
    embedder = HashingEmbedder(64)
    store = ChromaStore.open(settings.chroma)
    IngestPipeline(store, embedder, IngestSettings()).run([settings.ingest.catalog_dir])
    upstream = ScriptedUpstream(script=answer_script(ANSWER))
    app = create_app(settings, Components(embedder=embedder, store=store, upstream=upstream))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield Service(app, client, store, upstream, embedder, settings)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    async with running_service(app_settings(tmp_path)) as running:
        yield running


def client_auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {CLIENT_KEY}"}


def admin_auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


JOB_DEADLINE_S = 120.0  # an ingest of a few documents; the bound only stops a hang


async def wait_for_job(service: Service, job_id: str) -> dict[str, Any]:
    """The admin ingest job once it has finished (succeeded or failed)."""
    deadline = time.monotonic() + JOB_DEADLINE_S
    while time.monotonic() < deadline:
        response = await service.client.get(f"/admin/ingest/{job_id}", headers=admin_auth())
        job: dict[str, Any] = response.json()
        if job["status"] in {"succeeded", "failed"}:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"ingest job {job_id} did not finish in {JOB_DEADLINE_S} s")
