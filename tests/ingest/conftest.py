"""Fixtures for ingestion tests: ChromaStore on embedded and on server Chroma."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag_service.adapters.chroma_store import ChromaStore
from rag_service.settings import ChromaSettings


@pytest.fixture(params=["embedded", "server"])
def chroma_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChromaSettings]:
    """The same tests run against embedded Chroma and a real `chroma run` server."""
    collection = f"test-{uuid.uuid4().hex[:12]}"
    if request.param == "embedded":
        yield ChromaSettings(path=tmp_path / "chroma", collection=collection)
    else:
        host, port = request.getfixturevalue("chroma_server")
        yield ChromaSettings(host=host, port=port, collection=collection)


@pytest.fixture
def store(chroma_settings: ChromaSettings) -> ChromaStore:
    return ChromaStore.open(chroma_settings)
