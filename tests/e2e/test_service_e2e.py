"""The whole service end to end, with real parts: uvicorn, create_app, sentence-transformers,
Chroma, and the local llama.cpp model (deterministic with temperature 0 and a seed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from rag_service.adapters.sentence_transformer_embedder import SentenceTransformerEmbedder
from rag_service.settings import ChromaSettings
from tests.e2e.conftest import e2e_settings, running_service
from tests.fixture_servers.fault_proxy import CutPlan, FaultProxy
from tests.streaming.sse_spec import SseEvent, parse_sse, sse_events

pytestmark = [pytest.mark.llm, pytest.mark.slow]

QUESTION = "How long do I have to return an item, and who pays return shipping?"


async def stream(url: str, context: str, **body: Any) -> list[SseEvent]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        response = await client.post(
            "/rag/stream", params={"context": context}, json={"query": QUESTION, **body}
        )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return parse_sse(response.content).events


def text_of(events: list[SseEvent]) -> str:
    return "".join(e.json()["text"] for e in events if e.type == "delta")


def assert_well_formed(events: list[SseEvent]) -> str:
    """meta first, done last, ids <stream_id>:1..n without gaps; returns the stream id."""
    assert events[0].type == "meta"
    assert events[-1].type == "done", events[-1]
    stream_id = events[0].json()["stream_id"]
    assert [e.last_event_id for e in events] == [
        f"{stream_id}:{n}" for n in range(1, len(events) + 1)
    ]
    return str(stream_id)


async def test_a_grounded_answer_streams_from_the_real_model(
    llm_url: str,
    sample_store: ChromaSettings,
    embedder: SentenceTransformerEmbedder,
    tmp_path: Path,
) -> None:
    settings = e2e_settings(sample_store, llm_url)
    async with running_service(settings, embedder, tmp_path) as url:
        first = await stream(url, "e2e-plain")
        assert_well_formed(first)
        meta = first[0].json()["context"]
        assert meta["state"] == "refreshed"
        assert any(s["id"].startswith("policies/returns.md") for s in meta["sources"]), meta
        done = first[-1].json()
        assert "usage" in done  # llama.cpp's server sends no usage in streams: null here
        assert done["finish_reason"] in {"stop", "length"}
        assert done["timings"]["ttft_ms"] > 0
        assert text_of(first).strip()
        again = await stream(url, "e2e-plain")
        assert again[0].json()["context"]["state"] == "fresh"
        assert text_of(again) == text_of(first)  # deterministic: temperature 0 and a seed


async def test_upstream_cuts_mid_answer_do_not_change_a_single_character(
    llm_url: str,
    sample_store: ChromaSettings,
    embedder: SentenceTransformerEmbedder,
    tmp_path: Path,
) -> None:
    upstream = urlsplit(llm_url)
    assert upstream.hostname and upstream.port
    async with FaultProxy(upstream.hostname, upstream.port) as proxy:
        settings = e2e_settings(sample_store, proxy.url("/v1"))
        async with running_service(settings, embedder, tmp_path) as url:
            reference = await stream(url, "e2e-reference")
            proxy.cut_next(CutPlan(after_events=4), CutPlan(after_events=9))
            cut = await stream(url, "e2e-cut")
    assert_well_formed(cut)
    assert text_of(cut) == text_of(reference)
    kinds = [e.type for e in cut]
    assert kinds.count("retry") == 2
    assert kinds.count("resumed") == 2
    assert cut[-1].json()["finish_reason"] == reference[-1].json()["finish_reason"]
    assert proxy.cuts == 2


async def test_a_client_that_reconnects_with_last_event_id_gets_the_exact_rest(
    llm_url: str,
    sample_store: ChromaSettings,
    embedder: SentenceTransformerEmbedder,
    tmp_path: Path,
) -> None:
    settings = e2e_settings(sample_store, llm_url, grace_period_s=30)
    async with running_service(settings, embedder, tmp_path) as url:
        reference = text_of(await stream(url, "e2e-resume-ref"))
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            seen = await read_then_drop(client, "e2e-resume", events=3)
            stream_id, last_id = seen[0]["stream_id"], seen[-1]["id"]
            resumed = await client.get(
                f"/rag/stream/{stream_id}", headers={"Last-Event-ID": last_id}
            )
        rest = parse_sse(resumed.content).events
    first_part = "".join(e["text"] for e in seen if "text" in e)
    assert rest[0].last_event_id == f"{stream_id}:{int(last_id.rsplit(':', 1)[1]) + 1}"
    assert rest[-1].type == "done"
    assert first_part + text_of(rest) == reference


async def read_then_drop(
    client: httpx.AsyncClient, context: str, events: int
) -> list[dict[str, Any]]:
    """Read ``events`` events of a new stream (meta included), then drop the connection."""
    seen: list[dict[str, Any]] = []
    request = client.build_request(
        "POST", "/rag/stream", params={"context": context}, json={"query": QUESTION}
    )
    response = await client.send(request, stream=True)
    async for event in sse_events(response):
        seen.append({"id": event.last_event_id, **event.json()})
        if len(seen) == events:
            break
    await response.aclose()
    return seen
