"""End-to-end fixtures: the real app (create_app) on a real uvicorn, the real embedder, a real
embedded Chroma store holding part of the sample catalog, and the real local llama.cpp model."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from rag_service.adapters.sentence_transformer_embedder import SentenceTransformerEmbedder
from rag_service.app import Components, create_app
from rag_service.ingest_composition import ingest_catalog
from rag_service.settings import ChromaSettings, EmbeddingSettings, Settings, StreamSettings
from tests.conftest import REPO
from tests.fixture_servers.local_llm_server import local_llm_server, local_llm_unavailable_reason
from tests.live_server import live_server

SAMPLE_PRODUCTS = 60


@pytest.fixture(scope="session")
def llm_url() -> Iterator[str]:
    reason = local_llm_unavailable_reason()
    if reason is not None:
        pytest.skip(f"local model server not available: {reason}")
    with local_llm_server() as base_url:
        yield base_url


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    model = SentenceTransformerEmbedder(EmbeddingSettings())
    model.load()
    return model


@pytest.fixture(scope="session")
def sample_store(
    tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder
) -> ChromaSettings:
    """The policies and FAQ plus the first products of data/catalog, ingested once."""
    root = tmp_path_factory.mktemp("e2e")
    catalog = root / "catalog"
    shutil.copytree(REPO / "data" / "catalog" / "policies", catalog / "policies")
    lines = (REPO / "data" / "catalog" / "products.jsonl").read_text().splitlines()
    (catalog / "products.jsonl").write_text("\n".join(lines[:SAMPLE_PRODUCTS]) + "\n")
    chroma = ChromaSettings(path=root / "chroma", collection="e2e")
    report = ingest_catalog(Settings(chroma=chroma), [catalog], embedder=embedder)
    assert report.published
    return chroma


def e2e_settings(chroma: ChromaSettings, upstream_url: str, **stream: object) -> Settings:
    settings = Settings(
        chroma=chroma,
        stream=StreamSettings.model_validate(stream),
        fallback_context_file=REPO / "data" / "fallback_context.md",
    )
    settings.upstream.base_url = upstream_url
    settings.upstream.params = {"temperature": 0, "seed": 42, "max_tokens": 60}
    settings.upstream.retry.base_delay_s = 0.05
    return settings


@asynccontextmanager
async def running_service(
    settings: Settings, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> AsyncIterator[str]:
    """create_app on a real uvicorn, with its lifespan; yields the base URL."""
    app = create_app(settings, Components(embedder=embedder))
    # The session store is shared by the tests; its owner lock goes in each test's directory.
    settings.ingest.lock_file = tmp_path / "serve.lock"
    async with app.router.lifespan_context(app), live_server(app) as url:
        yield url
