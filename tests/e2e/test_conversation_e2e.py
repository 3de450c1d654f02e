"""A conversation with the real encoder, Chroma and model (issue #13): a related follow-up keeps
the fresh context, a topic shift on the same contextId extends it with the right document, and a
SKU in another spelling finds its product first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag_service.adapters.sentence_transformer_embedder import SentenceTransformerEmbedder
from rag_service.settings import ChromaSettings
from tests.e2e.conftest import e2e_settings, running_service
from tests.streaming.sse_spec import parse_sse

pytestmark = [pytest.mark.llm, pytest.mark.slow]


async def context_for(url: str, context: str, query: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        response = await client.post(
            "/rag/stream", params={"context": context}, json={"query": query}
        )
    assert response.status_code == 200, response.text
    events = parse_sse(response.content).events
    assert events[-1].type == "done", events[-1]
    meta: dict[str, Any] = events[0].json()["context"]
    return meta


def sources(meta: dict[str, Any]) -> list[str]:
    return [source["id"] for source in meta["sources"]]


@pytest.fixture
async def url(
    llm_url: str,
    sample_store: ChromaSettings,
    embedder: SentenceTransformerEmbedder,
    tmp_path: Path,
) -> AsyncIterator[str]:
    async with running_service(e2e_settings(sample_store, llm_url), embedder, tmp_path) as base:
        yield base


async def test_a_conversation_keeps_its_context_for_a_follow_up_and_extends_it_for_a_new_topic(
    url: str,
) -> None:
    first = await context_for(url, "chat", "What warranty do I get?")
    assert any(s.startswith("policies/warranty.md") for s in sources(first)), first

    follow_up = await context_for(url, "chat", "what isn't covered?")
    assert (follow_up["state"], follow_up["extended"]) == ("fresh", False)
    assert "policies/warranty.md#what-is-not-covered" in sources(follow_up)

    shifted = await context_for(url, "chat", "Do you ship to Austria?")
    assert (shifted["state"], shifted["extended"]) == ("refreshed", True)
    assert "policies/shipping.md#delivery-to-other-countries" in sources(shifted), shifted
    assert set(sources(first)) & set(sources(shifted))  # the warranty stays at hand


async def test_a_sku_in_any_spelling_finds_its_product_first(url: str) -> None:
    for n, spelling in enumerate(["slb-00001", "SLB 00001", "SLB00001"]):
        meta = await context_for(url, f"sku-{n}", f"Is {spelling} in stock?")
        assert sources(meta)[0] == "SLB-00001", (spelling, meta)
