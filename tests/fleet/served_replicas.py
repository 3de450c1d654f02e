"""Replicas served on loopback (``create_app`` on uvicorn, each with a ``ScriptedUpstream``)
sharing the session's Redis and Chroma, for the tests of streams resumed and taken over on
another replica: their settings, the scripts that hold an answer mid-way, and a client's reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from ingest.pipeline import IngestPipeline
from rag_service.adapters.chroma_store import ChromaStore
from rag_service.app import Components, create_app
from rag_service.domain import TextDelta
from rag_service.ports import SharedStreams
from rag_service.settings import IngestSettings, Settings
from rag_service.streaming.registry import StreamRegistry
from tests.app.conftest import CLIENT_KEY
from tests.fakes.retrieval import HashingEmbedder
from tests.fakes.upstream import Hold, ScriptedUpstream, Step, answer_script
from tests.fleet.replicas import fleet_settings as replica_settings
from tests.live_server import live_server
from tests.streaming.helpers import read_deltas
from tests.streaming.sse_spec import ParsedStream, SseEvent

WAIT_LIMIT_S = 60.0  # generous: a busy 2-core machine; only a hang reaches it
OTHER_KEY = "client-key-2"
FIRST = ["Our ", "trail ", "boots "]
SECOND = ["are ", "water", "proof", " — ", "größe 38-47."]
SERVED_OVERRIDES: dict[str, Any] = {
    "redis": {"retry_interval_s": 0.2},
    "api_keys": [SecretStr(CLIENT_KEY), SecretStr(OTHER_KEY)],
    "admin_api_key": None,
    "stream": {"shared_flush_ms": 10.0},
}


@dataclass
class ServedReplica:
    url: str
    upstream: ScriptedUpstream
    registry: StreamRegistry
    shared: SharedStreams

    async def read_until(
        self, deltas: int, method: str = "POST", headers: dict[str, str] | None = None
    ) -> ParsedStream:
        """A stream's events until ``deltas`` deltas came, then the connection is dropped."""
        async with httpx.AsyncClient(base_url=self.url, timeout=WAIT_LIMIT_S) as http:
            request = http.stream(
                method,
                "/rag/stream",
                params={"context": "shop:user-1"},
                json={"query": "Are the boots waterproof?"},
                headers=auth() | (headers or {}),
            )
            async with request as response:
                assert response.status_code == 200
                return await read_deltas(response, deltas)

    async def resume(
        self, stream_id: str, last_event_id: str | None = None, key: str = CLIENT_KEY
    ) -> httpx.Response:
        """``GET /rag/stream/{stream_id}`` on this replica, after ``last_event_id`` if given."""
        headers = auth(key) | ({"Last-Event-ID": last_event_id} if last_event_id else {})
        async with httpx.AsyncClient(base_url=self.url, timeout=WAIT_LIMIT_S) as http:
            return await http.get(f"/rag/stream/{stream_id}", headers=headers)


def held_script(first: Sequence[str], second: Sequence[str], pause_s: float = 0.0) -> list[Step]:
    """Deltas of ``first``, a hold until the upstream is released, deltas of ``second`` (each
    after ``pause_s``), ``Completed``."""
    return [*(TextDelta(piece) for piece in first), Hold(), *answer_script(second, pause_s=pause_s)]


def fleet_settings(
    tmp_path: Path, chroma: tuple[str, int], redis_url: str, prefix: str
) -> Settings:
    """The in-process replicas' settings with a second client key and no admin key."""
    return replica_settings(tmp_path, chroma, redis_url, prefix, **SERVED_OVERRIDES)


@asynccontextmanager
async def replicas(
    settings: Settings, script: Sequence[Step], count: int = 2
) -> AsyncIterator[list[ServedReplica]]:
    """``count`` replicas of ``settings`` serving on loopback, each upstream playing ``script``."""
    embedder = HashingEmbedder(64)
    IngestPipeline(ChromaStore.open(settings.chroma), embedder, IngestSettings()).run(
        [settings.ingest.catalog_dir]
    )
    async with AsyncExitStack() as stack:
        running = []
        for _ in range(count):
            upstream = ScriptedUpstream(script=list(script))
            store = ChromaStore.open(settings.chroma)
            app = create_app(
                settings, Components(embedder=embedder, store=store, upstream=upstream)
            )
            await stack.enter_async_context(app.router.lifespan_context(app))
            url = await stack.enter_async_context(live_server(app))
            deps = app.state.stream_deps
            running.append(ServedReplica(url, upstream, deps.registry, deps.shared))
        yield running


def auth(key: str = CLIENT_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def text(events: list[SseEvent]) -> str:
    return "".join(e.json()["text"] for e in events if e.type == "delta")


def shown(events: list[SseEvent]) -> list[tuple[str, str, str]]:
    """What a client reads of each event: its id, name and data (``done``'s timings vary
    between two reads of the same stream only in nothing: they are the generator's)."""
    return [(e.last_event_id, e.type, e.data) for e in events]
