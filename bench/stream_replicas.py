"""Streams in Redis (issue #14): what sharing streams across replicas costs, on a real
``redis-server`` on loopback: ``python -m bench.stream_replicas [--quick]``.

- Generating side: ``streams`` sessions append ``tokens`` deltas each at ``rate`` tokens/s (one
  task per stream, as a live answer does), once without Redis (today's single process) and
  once copied to Redis (``RedisStreamStore``, the default flush tick). The service's CPU and
  redis-server's CPU per delta (``process_time`` / ``INFO cpu``), Redis commands and round trips
  per delta (the store's counters, checked against ``INFO commandstats``).
- Memory: ``MEMORY USAGE`` (exact, ``SAMPLES 0``) of one typical answer's keys: a ``meta`` event
  with five sources, ``tokens`` deltas of a few characters, ``done``.
- Resume: two replicas (the stream routes, each on its own loopback uvicorn, sharing Redis).
  ``count`` finished streams of ``tokens`` deltas are generated on A; each is resumed from its
  middle (``Last-Event-ID``) once on A and once on B (the first resume on B: its copy is made
  from Redis then). Time from the request to the first replayed event.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import redis
import uvicorn
from fastapi import FastAPI, Request
from pydantic import SecretStr

from bench.result_output import write_and_print
from rag_service.adapters.redis_connection import redis_client
from rag_service.adapters.redis_stream_store import RedisStreamStore
from rag_service.api.errors import install_error_handlers
from rag_service.api.stream_routes import stream_router
from rag_service.http_server import server_config
from rag_service.settings import RedisSettings, Settings, StreamSettings
from rag_service.streaming import StreamDeps, StreamRegistry
from rag_service.streaming.session import StreamSession
from rag_service.streaming.shared_streams import SharedStreams
from rag_service.upstream_events import Completed, TextDelta, Timings

FLUSH_TICKS_MS = (20.0, 50.0, 100.0)  # 100: the default (RAG_STREAM__SHARED_FLUSH_MS)
RESULTS_FILE = Path(__file__).parent / "results" / "stream_replicas.json"
FULL = {"streams": 500, "tokens": 256, "rate": 20.0, "resumes": 50}
QUICK = {"streams": 100, "tokens": 128, "rate": 20.0, "resumes": 20}
WORDS = ["the ", "boots ", "are ", "water", "proof ", "and ", "cost ", "89.90 ", "EUR", ". "]
SOURCES = [
    {"id": f"products.jsonl#SKU-{1000 + i}", "title": f"Trail boot model {i}", "score": 0.71}
    for i in range(5)
]


# -- a redis-server of the benchmark's own ---------------------------------------------------------


@contextmanager
def redis_server() -> Any:
    executable = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not installed (scripts/install-redis)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as data:
        process = subprocess.Popen(
            [executable, "--bind", "127.0.0.1", "--port", str(port), "--dir", data,
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client = redis.Redis(port=port, decode_responses=True)
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.ping()
                    break
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0", client
        finally:
            process.terminate()
            process.wait(timeout=10)


def redis_cpu_s(client: redis.Redis) -> float:
    info = cast(dict[str, Any], client.info("cpu"))
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_calls(client: redis.Redis) -> int:
    stats = cast(dict[str, Any], client.info("commandstats"))
    return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_"))


# -- generating side --------------------------------------------------------------------------------


def new_store(client: Any, url: str, stream: StreamSettings, prefix: str, name: str) -> Any:
    return RedisStreamStore(
        client,
        redis_settings=RedisSettings(url=SecretStr(url), key_prefix=prefix),
        stream_settings=stream,
        replica_id=name,
    )


def open_session(registry: StreamRegistry, shared: SharedStreams | None) -> StreamSession:
    session = registry.open(context_id="shop:user-1", principal="key-bench", started_at=0.0)
    if shared is not None:
        shared.share(session, registry)
    sources = to_json_bytes(SOURCES)
    head = (
        b'{"stream_id":"%s","context_id":"shop:user-1","context":{"state":"fresh","age_s":1.5,'
        b'"catalog_version":3,"extended":false,"sources":' % session.stream_id.encode()
    )
    session.publish_meta((head, sources, b"}}"))
    return session


def to_json_bytes(value: Any) -> bytes:
    import json

    return json.dumps(value, separators=(",", ":")).encode()


async def answer(
    session: StreamSession, tokens: int, interval_s: float, rng: random.Random
) -> None:
    await asyncio.sleep(rng.uniform(0, interval_s))  # streams not in lockstep
    for i in range(tokens):
        session.apply(TextDelta(WORDS[i % len(WORDS)]))
        await asyncio.sleep(interval_s)
    session.apply(Completed("stop", None, Timings(1.0, 2.0), 1))


async def written(sessions: list[StreamSession]) -> None:
    """Until the store has written every session's last event (it then drops the mirror)."""
    # The store's flusher sets no event a benchmark could wait on.
    while any(s.mirror is not None for s in sessions):  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def generating_run(
    url: str | None,
    client: redis.Redis,
    streams: int,
    tokens: int,
    rate: float,
    flush_ms: float = StreamSettings().shared_flush_ms,
) -> dict[str, Any]:
    stream = StreamSettings(shared_flush_ms=flush_ms)
    registry = StreamRegistry(stream, max_sessions=streams + 10)
    redis_async = redis_client(RedisSettings(url=SecretStr(url))) if url else None
    store = new_store(redis_async, url, stream, "gen:", "A") if url else None
    rng = random.Random(5)
    cpu0, redis_cpu0, calls0 = time.process_time(), redis_cpu_s(client), redis_calls(client)
    sessions = [open_session(registry, store) for _ in range(streams)]
    await asyncio.gather(*(answer(s, tokens, 1 / rate, rng) for s in sessions))
    if store is not None:
        await written(sessions)
    cpu = time.process_time() - cpu0
    deltas = streams * tokens
    row = {
        "mode": f"redis, flush {flush_ms:g} ms" if url else "local",
        "streams": streams,
        "deltas": deltas,
        "service_cpu_us_per_delta": round(cpu / deltas * 1e6, 1),
        "redis_cpu_us_per_delta": round((redis_cpu_s(client) - redis_cpu0) / deltas * 1e6, 1),
        "redis_calls_per_delta": round((redis_calls(client) - calls0) / deltas, 3),
    }
    if store is not None:
        stats = store.stats()
        row["round_trips_per_s"] = round(stats.flushes / (tokens / rate), 1)
        row["scripts_per_delta"] = round(stats.commands / stats.events, 3)
        await store.aclose()
        await redis_async.aclose()  # type: ignore[union-attr]
    await registry.close()
    return row


async def memory_of_one_answer(url: str, client: redis.Redis, tokens: int) -> dict[str, Any]:
    stream = StreamSettings()
    registry = StreamRegistry(stream)
    redis_async = redis_client(RedisSettings(url=SecretStr(url)))
    store = new_store(redis_async, url, stream, "mem:", "A")
    session = open_session(registry, store)
    for i in range(tokens):
        session.apply(TextDelta(WORDS[i % len(WORDS)]))
    session.apply(Completed("stop", None, Timings(1.0, 2.0), 1))
    await written([session])
    sid = session.stream_id
    events = client.memory_usage(f"mem:stream:{sid}:events", samples=0)
    record = client.memory_usage(f"mem:stream:{sid}:rec", samples=0)
    await store.aclose()
    await redis_async.aclose()
    await registry.close()
    return {
        "tokens": tokens,
        "events_key_bytes": events,
        "record_key_bytes": record,
        "replay_buffer_bytes": session.nbytes,
    }


# -- resume on the same replica vs another ------------------------------------------------------------


@dataclass
class BenchReplica:
    url: str
    registry: StreamRegistry
    store: Any


@asynccontextmanager
async def replica(url: str, name: str) -> AsyncIterator[BenchReplica]:
    settings = Settings()
    registry = StreamRegistry(settings.stream)
    client = redis_client(RedisSettings(url=SecretStr(url)))
    store = new_store(client, url, settings.stream, "res:", name)
    deps = StreamDeps(
        resolver=cast(Any, None),  # resumes only: no answer is asked for
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


async def first_event_ms(http: httpx.AsyncClient, base: str, stream_id: str, after: int) -> float:
    start = time.perf_counter()
    headers = {"Last-Event-ID": f"{stream_id}:{after}"}
    async with http.stream("GET", f"{base}/rag/stream/{stream_id}", headers=headers) as response:
        assert response.status_code == 200, response.status_code
        async for chunk in response.aiter_raw():
            if b"\nevent: " in chunk:
                elapsed = (time.perf_counter() - start) * 1000
                break
        else:
            raise AssertionError("no event")
    return elapsed


async def resume_times(url: str, count: int, tokens: int) -> dict[str, Any]:
    async with replica(url, "A") as a, replica(url, "B") as b:
        sessions = []
        for _ in range(count):
            session = open_session(a.registry, a.store)
            for i in range(tokens):
                session.apply(TextDelta(WORDS[i % len(WORDS)]))
            session.apply(Completed("stop", None, Timings(1.0, 2.0), 1))
            a.registry.detach(session)  # its client left: retained for resumes
            sessions.append(session)
        await written(sessions)
        same: list[float] = []
        other: list[float] = []
        async with httpx.AsyncClient(timeout=30) as http:
            await first_event_ms(http, a.url, sessions[0].stream_id, 0)  # warm both servers
            await first_event_ms(http, b.url, sessions[0].stream_id, 0)
            for session in sessions[1:]:
                same.append(await first_event_ms(http, a.url, session.stream_id, tokens // 2))
                other.append(await first_event_ms(http, b.url, session.stream_id, tokens // 2))
        return {
            "resumes": len(same),
            "same_replica_median_ms": round(statistics.median(same), 2),
            "same_replica_p90_ms": round(statistics.quantiles(same, n=10)[-1], 2),
            "other_replica_median_ms": round(statistics.median(other), 2),
            "other_replica_p90_ms": round(statistics.quantiles(other, n=10)[-1], 2),
        }


# -- the run -----------------------------------------------------------------------------------------


@dataclass
class StreamReplicasResult:
    data: dict[str, Any]

    @property
    def markdown(self) -> str:
        gen = self.data["generating"]
        mem = self.data["memory"]
        res = self.data["resume"]
        lines = [
            f"Generating side: {gen[0]['streams']} streams x {self.data['tokens']} deltas at "
            f"{self.data['rate']:g} tokens/s each, without Redis and copied to Redis at "
            "three flush ticks:",
            "",
            "| mode | service CPU µs/delta | redis-server CPU µs/delta | Redis calls/delta "
            "| append scripts/delta | round trips/s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for row in gen:
            lines.append(
                f"| {row['mode']} | {row['service_cpu_us_per_delta']} "
                f"| {row['redis_cpu_us_per_delta']} | {row['redis_calls_per_delta']} "
                f"| {row.get('scripts_per_delta', '-')} | {row.get('round_trips_per_s', '-')} |"
            )
        lines += [
            "",
            f"One answer in Redis ({mem['tokens']} deltas, meta with 5 sources, done): events "
            f"key {mem['events_key_bytes']:,} B, record {mem['record_key_bytes']:,} B "
            f"(its replay buffer in the process: {mem['replay_buffer_bytes']:,} B).",
            "",
            f"Resume from the middle of a finished {self.data['tokens']}-delta stream, request "
            f"to first replayed event ({res['resumes']} streams):",
            "",
            "| served by | median ms | p90 ms |",
            "|---|---:|---:|",
            f"| the generating replica | {res['same_replica_median_ms']} "
            f"| {res['same_replica_p90_ms']} |",
            f"| another replica (copy made from Redis) | {res['other_replica_median_ms']} "
            f"| {res['other_replica_p90_ms']} |",
        ]
        return "\n".join(lines)


async def run_async(quick: bool) -> StreamReplicasResult:
    shape = QUICK if quick else FULL
    streams, tokens, rate = int(shape["streams"]), int(shape["tokens"]), float(shape["rate"])
    with redis_server() as (url, client):
        generating = [await generating_run(None, client, streams, tokens, rate)]
        for flush_ms in FLUSH_TICKS_MS:
            generating.append(await generating_run(url, client, streams, tokens, rate, flush_ms))
        memory = await memory_of_one_answer(url, client, tokens)
        resume = await resume_times(url, int(shape["resumes"]) + 1, tokens)
    return StreamReplicasResult(
        {
            "tokens": tokens,
            "rate": rate,
            "generating": generating,
            "memory": memory,
            "resume": resume,
        }
    )


def run(quick: bool = False) -> StreamReplicasResult:
    return asyncio.run(run_async(quick))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 streams of 128 deltas")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    write_and_print(result.markdown, result.data, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
