"""Degraded operation end to end: a vector store that goes down, and clients that go away."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from rag_service.adapters.sentence_transformer_embedder import SentenceTransformerEmbedder
from rag_service.ingest_composition import ingest_catalog
from rag_service.settings import ChromaSettings, Settings
from tests.conftest import chroma_executable, free_port, wait_for_chroma
from tests.e2e.conftest import e2e_settings, running_service
from tests.e2e.test_service_e2e import read_then_drop, stream, text_of
from tests.fixture_servers.fault_plan import AnswerStyle
from tests.fixture_servers.fault_upstream import FaultUpstream
from tests.ingest.catalogs import product, write_policy, write_products
from tests.streaming.sse_spec import parse_sse
from tests.upstream.conftest import wait_until

pytestmark = pytest.mark.slow


async def generating(client: httpx.AsyncClient, count: int) -> bool:
    """Whether the service reports ``count`` sessions still generating (its /metrics)."""
    metrics = (await client.get("/metrics")).text
    return f"rag_streams_generating {float(count)}" in metrics.splitlines()


async def wait_until_async(condition: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.05)
    return await condition()


@pytest.fixture
def own_chroma_server(tmp_path: Path) -> Iterator[tuple[ChromaSettings, subprocess.Popen[bytes]]]:
    """A Chroma server this test may kill."""
    port = free_port()
    log = tmp_path / "chroma.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                chroma_executable(),
                "run",
                "--path",
                str(tmp_path / "db"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_chroma(port, proc, log)
        yield ChromaSettings(host="127.0.0.1", port=port, collection="degraded"), proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


async def test_store_down_serves_the_last_known_context_then_the_fallback(
    own_chroma_server: tuple[ChromaSettings, subprocess.Popen[bytes]],
    embedder: SentenceTransformerEmbedder,
    tmp_path: Path,
) -> None:
    chroma, server = own_chroma_server
    catalog = tmp_path / "catalog"
    write_products(catalog / "p.jsonl", [product(i) for i in range(8)])
    write_policy(catalog / "returns.md")
    assert ingest_catalog(Settings(chroma=chroma), [catalog], embedder=embedder).published
    async with FaultUpstream(style=AnswerStyle(words=6)) as upstream:
        settings = e2e_settings(chroma, upstream.base_url)
        async with running_service(settings, embedder, tmp_path) as url:
            healthy = await stream(url, "known")
            assert healthy[0].json()["context"]["state"] == "refreshed"
            server.kill()
            server.wait(timeout=10)
            stale = await stream(url, "known", refresh=True)
            meta = stale[0].json()["context"]
            assert meta["state"] == "stale"
            assert meta["sources"] == healthy[0].json()["context"]["sources"]
            assert stale[-1].type == "done"  # the answer still comes
            fallback = await stream(url, "never-seen")
            assert fallback[0].json()["context"]["state"] == "fallback"
            assert fallback[-1].type == "done"
            prompt = upstream.requests[-1].body["messages"]
            assert any("Summit & Trail" in m["content"] for m in prompt)  # data/fallback_context.md
            async with httpx.AsyncClient(base_url=url) as client:
                ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["components"]["vector_store"]["ok"] is False


async def test_an_abandoned_stream_is_cancelled_upstream_after_the_grace_period(
    sample_store: ChromaSettings, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    slow = AnswerStyle(words=400, inter_token_delay_s=0.05)  # 20 s: far longer than the grace
    grace_s = 1.0
    async with FaultUpstream(style=slow) as upstream:
        settings = e2e_settings(sample_store, upstream.base_url, grace_period_s=grace_s)
        async with running_service(settings, embedder, tmp_path) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                loop = asyncio.get_running_loop()
                seen = await read_then_drop(client, "abandoned", events=3)
                dropped_at = loop.time()
                assert await wait_until(lambda: upstream.open_connections == 0, timeout_s=15.0)
                # Generation went on through the grace period (a busy machine only adds time)
                # and was cancelled before the answer's end.
                assert loop.time() - dropped_at >= grace_s * 0.9
                gone = await client.get(f"/rag/stream/{seen[0]['stream_id']}")
            assert gone.status_code == 404
            assert gone.json()["error"]["code"] == "not_found"
            assert len(upstream.requests) == 1


async def test_a_resumed_stream_survives_the_grace_period(
    sample_store: ChromaSettings, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    slow = AnswerStyle(words=40, inter_token_delay_s=0.02)
    async with FaultUpstream(style=slow) as upstream:
        settings = e2e_settings(sample_store, upstream.base_url, grace_period_s=60)
        async with running_service(settings, embedder, tmp_path) as url:
            reference = text_of(await stream(url, "ref"))
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                seen = await read_then_drop(client, "resumer", events=4)
                # The client is away while the generation goes on to the answer's end.
                assert await wait_until_async(lambda: generating(client, 0), timeout_s=30.0)
                rest = await client.get(
                    f"/rag/stream/{seen[0]['stream_id']}",
                    headers={"Last-Event-ID": seen[-1]["id"]},
                )
    events = parse_sse(rest.content).events
    first = "".join(e.get("text", "") for e in seen)
    assert first + text_of(events) == reference
    assert events[-1].type == "done"
    assert len(upstream.requests) == 2  # one per answer: the resume did not ask again
