"""The resume part of ``bench.stream_replicas``: a finished stream resumed from its middle on the
replica that generated it and on another one, over HTTP.

Two replicas: the stream routes, each on its own loopback uvicorn, sharing one Redis (with the
service's default stream settings: durable delivery, the default flush tick). ``count``
finished streams are generated on A; each is resumed (``Last-Event-ID`` at its middle) once on A
and once on B, the first resume on B (its copy is made from Redis then). The time is from
sending the request to the first replayed event.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import httpx
import uvicorn
from fastapi import FastAPI, Request
from pydantic import SecretStr

from bench.latency_stats import percentile
from bench.stream_replicas_setup import WORDS, new_store, open_session
from rag_service.adapters.redis_connection import redis_client
from rag_service.adapters.redis_stream_store import RedisStreamStore
from rag_service.api import install_error_handlers
from rag_service.domain import Completed, TextDelta, Timings
from rag_service.server import server_config
from rag_service.settings import RedisSettings, Settings
from rag_service.sse_parser import SSEParser
from rag_service.streaming import StreamDeps, StreamRegistry
from rag_service.streaming.answer import SourceLists
from rag_service.streaming.router import stream_router
from rag_service.streaming.session import StreamSession


@dataclass
class BenchReplica:
    url: str
    registry: StreamRegistry
    store: RedisStreamStore


@asynccontextmanager
async def replica(url: str, name: str) -> AsyncIterator[BenchReplica]:
    settings = Settings()
    registry = StreamRegistry(settings.stream)
    client = redis_client(RedisSettings(url=SecretStr(url)))
    store = new_store(client, url, settings.stream, "res:", name)
    deps = StreamDeps(
        resolver=cast(Any, None),  # resumes of finished streams only: no answer is asked for
        upstream=cast(Any, None),
        registry=registry,
        settings=settings,
        build_request=cast(Any, None),
        shared=store,
    )
    app = FastAPI()
    install_error_handlers(app)
    app.state.stream_deps = deps

    async def nobody(request: Request) -> str | None:
        return "key-bench"

    app.include_router(stream_router(get_deps=lambda r: r.app.state.stream_deps, principal=nobody))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(server_config(app, settings, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn has no "listening" event
        await asyncio.sleep(0.01)
    try:
        yield BenchReplica(f"http://127.0.0.1:{sock.getsockname()[1]}", registry, store)
    finally:
        server.should_exit = True
        await task
        await store.aclose()
        await registry.close()
        await client.aclose()


async def written(sessions: list[StreamSession]) -> None:
    """Until the store has written every session's last event (it then drops the mirror)."""
    # The store's flusher sets no event a benchmark could wait on.
    while any(s.mirror is not None for s in sessions):  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def first_event_ms(http: httpx.AsyncClient, base: str, stream_id: str, after: int) -> float:
    start = time.perf_counter()
    headers = {"Last-Event-ID": f"{stream_id}:{after}"}
    async with http.stream("GET", f"{base}/rag/stream/{stream_id}", headers=headers) as response:
        assert response.status_code == 200, response.status_code
        parser = SSEParser()
        async for chunk in response.aiter_raw():
            if parser.feed(chunk):
                elapsed = (time.perf_counter() - start) * 1000
                break
        else:
            raise AssertionError("no event")
    return elapsed


async def resume_times(url: str, count: int, tokens: int) -> dict[str, Any]:
    """``count - 1`` timed resumes on each replica (the first stream warms both servers)."""
    async with replica(url, "A") as a, replica(url, "B") as b:
        sources = SourceLists()
        sessions = []
        for _ in range(count):
            session = open_session(a.registry, a.store, sources)
            for i in range(tokens):
                session.apply(TextDelta(WORDS[i % len(WORDS)]))
            session.apply(Completed("stop", None, Timings(1.0, 2.0), 1))
            a.registry.detach(session)  # its client left: retained for resumes
            sessions.append(session)
        await written(sessions)
        same: list[float] = []
        other: list[float] = []
        async with httpx.AsyncClient(timeout=30) as http:
            await first_event_ms(http, a.url, sessions[0].stream_id, 0)
            await first_event_ms(http, b.url, sessions[0].stream_id, 0)
            for session in sessions[1:]:
                same.append(await first_event_ms(http, a.url, session.stream_id, tokens // 2))
                other.append(await first_event_ms(http, b.url, session.stream_id, tokens // 2))
        return {
            "resumes": len(same),
            "same_replica_median_ms": round(percentile(sorted(same), 0.5), 2),
            "same_replica_p90_ms": round(percentile(sorted(same), 0.9), 2),
            "other_replica_median_ms": round(percentile(sorted(other), 0.5), 2),
            "other_replica_p90_ms": round(percentile(sorted(other), 0.9), 2),
        }
