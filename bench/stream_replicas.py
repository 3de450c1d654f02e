"""Streams in Redis (issue #14): what sharing streams across replicas costs, on a real
``redis-server`` on loopback: ``python -m bench.stream_replicas [--quick]``.

- Generating side: ``streams`` sessions, started spread over ``arrival_s``, each opened as
  ``start_answer`` opens one (shared, then its ``meta`` event), then ``tokens`` deltas at
  ``rate`` tokens/s from ``FIRST_TOKEN_S`` on (one task per stream, as a live answer does), each
  followed by one reader that waits on the session as an SSE response does (``notify`` a
  future, then ``read_events``). Once without Redis (a single process), once copied to Redis
  (``RedisStreamStore``) with durable delivery at each of ``FLUSH_TICKS_MS``, and once without
  durable delivery at the default tick. Per run: the delay from a delta's append to the moment
  its reader reads it (p50/p99; with durable delivery it includes waiting for its batch to be
  written), the same for each stream's first delta (its share of the time to first token),
  the service's CPU and redis-server's CPU per delta (``process_time`` / ``INFO cpu``), Redis
  commands per delta (``INFO commandstats``) and round trips per second while every stream
  sends text (the store's counters). A PING round trip and the load average put the delays in
  context: the machine is shared.
- Memory: ``MEMORY USAGE`` (exact, ``SAMPLES 0``) of one typical answer's keys: a ``meta`` event
  with five sources, ``MEMORY_TOKENS`` deltas of a few characters, ``done``, and the record with
  the stream's request (kept for a take-over).
- Resume: a finished stream resumed from its middle on its replica and on another one
  (``bench.stream_replicas_resume``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import redis
from pydantic import SecretStr

from bench.latency_stats import summarise_ms
from bench.result_output import write_and_print
from bench.stream_replicas_resume import resume_times, written
from bench.stream_replicas_setup import (
    WORDS,
    chat_request,
    new_store,
    open_session,
    redis_calls,
    redis_cpu_s,
    redis_server,
)
from rag_service.adapters.redis_connection import redis_client
from rag_service.adapters.redis_stream_store import RedisStreamStore, request_json
from rag_service.settings import RedisSettings, StreamSettings
from rag_service.streaming import StreamRegistry
from rag_service.streaming.answer import SourceLists
from rag_service.streaming.session import StreamSession
from rag_service.streaming.sse_format import DeltaEvent
from rag_service.streaming.sse_response import BATCH_EVENTS
from rag_service.upstream_events import Completed, TextDelta, Timings

DEFAULT_FLUSH_MS = StreamSettings().shared_flush_ms  # RAG_STREAM__SHARED_FLUSH_MS
FLUSH_TICKS_MS = (10.0, 25.0, 50.0, 100.0)
MEMORY_TOKENS = 256  # the default max_tokens: a long answer
RESULTS_FILE = Path(__file__).parent / "results" / "stream_replicas.json"


@dataclass(frozen=True)
class Shape:
    streams: int
    tokens: int  # deltas per stream
    rate: float  # tokens/s per stream
    resumes: int
    # Streams start spread over this long: a new stream's first batches are written at once, so
    # all starting in the same instant would measure one burst rather than streams arriving.
    arrival_s: float

    def steady_window(self) -> tuple[float, float] | None:
        """From when every stream sends text to when the first one ends (seconds from the
        run's start): round trips per second are counted there. None: too short a run."""
        start = self.arrival_s + FIRST_TOKEN_S + 2 / self.rate
        end = FIRST_TOKEN_S + (self.tokens - 1) / self.rate
        return (start, end) if end - start >= 0.5 else None


FULL = Shape(streams=500, tokens=256, rate=20.0, resumes=50, arrival_s=1.0)
QUICK = Shape(streams=100, tokens=64, rate=20.0, resumes=20, arrival_s=0.5)
FIRST_TOKEN_S = 0.2  # from a stream's meta event to its first text: the upstream's TTFT


@dataclass(frozen=True)
class Mode:
    label: str
    flush_ms: float | None  # None: no Redis
    durable: bool = True


def modes() -> list[Mode]:
    """No Redis; durable delivery at each tick; not durable at the default tick."""
    return [
        Mode("no Redis", None, durable=False),
        *(Mode(f"durable, {tick:g} ms", tick) for tick in FLUSH_TICKS_MS),
        Mode(f"not durable, {DEFAULT_FLUSH_MS:g} ms", DEFAULT_FLUSH_MS, durable=False),
    ]


# -- generating side --------------------------------------------------------------------------------


@dataclass
class Delivery:
    """How long after their append readers read events (seconds)."""

    deltas: list[float]
    first_deltas: list[float]
    metas: list[float]


async def follow(session: StreamSession, appended: list[float], delivery: Delivery) -> None:
    """Read ``session`` to its end as ``SessionResponse._body`` does: what may be read, else
    sleep on a future until the session has more for its readers."""
    loop = asyncio.get_running_loop()
    after_seq = 0
    first = True
    while True:
        events = session.read_events(after_seq, BATCH_EVENTS)
        if events:
            now = time.perf_counter()
            for event in events:
                if isinstance(event, DeltaEvent):
                    delivery.deltas.append(now - appended[event.seq])
                    if first:
                        delivery.first_deltas.append(now - appended[event.seq])
                        first = False
                elif event.name == "meta":
                    delivery.metas.append(now - appended[event.seq])
            after_seq = events[-1].seq
        elif session.ended_for_readers:
            return
        else:
            waiter = loop.create_future()
            session.notify(waiter)
            await waiter


@dataclass
class GeneratingRun:
    """What one run's streams share."""

    shape: Shape
    registry: StreamRegistry
    store: RedisStreamStore | None
    rng: random.Random
    sources: SourceLists = field(default_factory=SourceLists)
    delivery: Delivery = field(default_factory=lambda: Delivery([], [], []))
    sessions: list[StreamSession] = field(default_factory=list)

    async def answer(self) -> None:
        """One stream as ``start_answer`` and a live upstream make it, with its reader: it
        arrives, is shared, publishes its ``meta``; its text starts ``FIRST_TOKEN_S`` later
        and comes at ``rate``; ``done``. Each event's append time goes to ``appended[seq]``."""
        shape = self.shape
        await asyncio.sleep(self.rng.uniform(0, shape.arrival_s))
        appended = [0.0] * (shape.tokens + 3)
        session = open_session(self.registry, self.store, self.sources, appended)
        self.sessions.append(session)
        reader = asyncio.create_task(follow(session, appended, self.delivery))
        # Each token at its own time, as an upstream sends them: a late wake-up (the loop was
        # busy) must not shift the tokens after it, or all streams would fall into step with
        # the flushes, every one appending right after a flush, the worst time to.
        loop = asyncio.get_running_loop()
        first = loop.time() + FIRST_TOKEN_S
        for i in range(shape.tokens):
            await asyncio.sleep(max(0.0, first + i / shape.rate - loop.time()))
            appended[session.last_seq + 1] = time.perf_counter()
            session.apply(TextDelta(WORDS[i % len(WORDS)]))
        await asyncio.sleep(max(0.0, first + shape.tokens / shape.rate - loop.time()))
        session.apply(Completed("stop", None, Timings(1.0, 2.0), 1))
        await reader

    async def steady_round_trips_per_s(self) -> float | None:
        """The store's round trips per second in ``Shape.steady_window`` (started with the run)."""
        window = self.shape.steady_window()
        if window is None or self.store is None:
            return None
        await asyncio.sleep(window[0])
        flushes, start = self.store.stats().flushes, time.perf_counter()
        await asyncio.sleep(window[1] - window[0])
        return (self.store.stats().flushes - flushes) / (time.perf_counter() - start)


async def generating_run(mode: Mode, url: str, client: redis.Redis, shape: Shape) -> dict[str, Any]:
    shared = mode.flush_ms is not None
    stream = StreamSettings(
        shared_flush_ms=mode.flush_ms or DEFAULT_FLUSH_MS, shared_durable_delivery=mode.durable
    )
    registry = StreamRegistry(stream, max_sessions=shape.streams + 10)
    redis_async = redis_client(RedisSettings(url=SecretStr(url))) if shared else None
    store = new_store(redis_async, url, stream, "gen:", "A") if shared else None
    run = GeneratingRun(shape, registry, store, random.Random(5))
    started = time.perf_counter()
    cpu0, redis_cpu0, calls0 = time.process_time(), redis_cpu_s(client), redis_calls(client)
    steady = asyncio.create_task(run.steady_round_trips_per_s())
    await asyncio.gather(*(run.answer() for _ in range(shape.streams)))
    if store is not None:
        await written(run.sessions)
    cpu = time.process_time() - cpu0
    run_s = time.perf_counter() - started
    deltas = shape.streams * shape.tokens
    delivery = run.delivery
    assert len(delivery.deltas) == deltas, "every delta is read exactly once"
    row: dict[str, Any] = {
        "mode": mode.label,
        "flush_ms": mode.flush_ms,
        "durable": mode.durable,
        "streams": shape.streams,
        "deltas": deltas,
        "run_s": round(run_s, 2),
        "delta_to_reader": summarise_ms(delivery.deltas),
        "first_delta_to_reader": summarise_ms(delivery.first_deltas),
        "meta_to_reader": summarise_ms(delivery.metas),
        "service_cpu_us_per_delta": round(cpu / deltas * 1e6, 1),
        "redis_cpu_us_per_delta": round((redis_cpu_s(client) - redis_cpu0) / deltas * 1e6, 1),
        "redis_calls_per_delta": round((redis_calls(client) - calls0) / deltas, 3),
    }
    steady_per_s = await steady
    if store is not None:
        flushes = store.stats().flushes
        row["round_trips"] = flushes
        # Steady: all streams sending text; else (a short run) over the whole run.
        row["round_trips_per_s"] = round(steady_per_s or flushes / run_s, 1)
        await store.aclose()
    if redis_async is not None:
        await redis_async.aclose()
    await registry.close()
    return row


async def memory_of_one_answer(url: str, client: redis.Redis, tokens: int) -> dict[str, Any]:
    stream = StreamSettings()
    registry = StreamRegistry(stream)
    redis_async = redis_client(RedisSettings(url=SecretStr(url)))
    store = new_store(redis_async, url, stream, "mem:", "A")
    session = open_session(registry, store, SourceLists())
    for i in range(tokens):
        session.apply(TextDelta(WORDS[i % len(WORDS)]))
    session.apply(Completed("stop", None, Timings(1.0, 2.0), 1))
    await written([session])
    events_key, record_key = (f"mem:stream:{session.stream_id}:{k}" for k in ("events", "rec"))
    request = request_json(chat_request())
    assert client.hget(record_key, "request") == request, "the record keeps the request"
    events = cast(int, client.memory_usage(events_key, samples=0))
    record = cast(int, client.memory_usage(record_key, samples=0))
    await store.aclose()
    await redis_async.aclose()
    await registry.close()
    return {
        "tokens": tokens,
        "request_chars": len(request),
        "system_message_chars": len(chat_request().messages[0].content),
        "events_key_bytes": events,
        "record_key_bytes": record,
        "stream_bytes": events + record,
        "replay_buffer_bytes": session.nbytes,
    }


# -- the run -----------------------------------------------------------------------------------------


@dataclass
class StreamReplicasResult:
    data: dict[str, Any]

    @property
    def markdown(self) -> str:
        shape, gen, mem, res = (self.data[k] for k in ("shape", "generating", "memory", "resume"))
        lines = [
            f"Generating side: {shape['streams']} streams x {shape['tokens']} deltas at "
            f"{shape['rate']:g} tokens/s each, one reader per stream; without Redis, copied to "
            f"Redis with durable delivery at {len(FLUSH_TICKS_MS)} flush ticks, and without it "
            f"at {DEFAULT_FLUSH_MS:g} ms (the default tick). Delay from a delta's append to its "
            "reader reading it, for all deltas and for each stream's first (it comes "
            f"{self.data['first_token_s'] * 1000:g} ms after the stream's `meta`):",
            "",
            "| mode | delta p50 ms | delta p99 ms | first delta p50 ms | first delta p99 ms "
            "| service CPU µs/delta | redis-server CPU µs/delta | Redis calls/delta "
            "| round trips/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in gen:
            delta, first = row["delta_to_reader"], row["first_delta_to_reader"]
            lines.append(
                f"| {row['mode']} | {delta['median_ms']} | {delta['p99_ms']} "
                f"| {first['median_ms']} | {first['p99_ms']} "
                f"| {row['service_cpu_us_per_delta']} | {row['redis_cpu_us_per_delta']} "
                f"| {row['redis_calls_per_delta']} | {row.get('round_trips_per_s', '-')} |"
            )
        ping, load = self.data["ping"], self.data["load_average"]
        lines += [
            "",
            f"A PING round trip to this redis-server, before the runs: {ping['median_ms']} ms "
            f"(median; p99 {ping['p99_ms']} ms). Load average (1 min) of the machine's "
            f"{self.data['cpus']} CPUs: {load['before']:.1f} before the runs, "
            f"{load['after']:.1f} after.",
            "",
            f"One answer in Redis ({mem['tokens']} deltas, meta with 5 sources, done; its "
            f"request, a {mem['system_message_chars']:,}-character system message and the "
            f"question, is {mem['request_chars']:,} characters of JSON): events key "
            f"{mem['events_key_bytes']:,} B, record {mem['record_key_bytes']:,} B, "
            f"{mem['stream_bytes']:,} B per stream (its replay buffer in the process: "
            f"{mem['replay_buffer_bytes']:,} B).",
            "",
            f"Resume from the middle of a finished {shape['tokens']}-delta stream, request "
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


async def ping_round_trip(url: str, count: int = 200) -> dict[str, float | int]:
    """PINGs one after another from an asyncio client: what one round trip to this
    redis-server costs on this machine now (a flush waits for one, a tick apart)."""
    client = redis_client(RedisSettings(url=SecretStr(url)))
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await client.ping()
        samples.append(time.perf_counter() - start)
    await client.aclose()
    return summarise_ms(samples)


async def run_async(shape: Shape) -> StreamReplicasResult:
    load_before = os.getloadavg()[0]
    with redis_server() as (url, client):
        ping = await ping_round_trip(url)
        generating = [await generating_run(mode, url, client, shape) for mode in modes()]
        memory = await memory_of_one_answer(url, client, MEMORY_TOKENS)
        resume = await resume_times(url, shape.resumes + 1, shape.tokens)
    return StreamReplicasResult(
        {
            "shape": asdict(shape),
            "first_token_s": FIRST_TOKEN_S,
            # The machine is shared: what else ran shows in the delays (1-minute load averages).
            "load_average": {"before": load_before, "after": os.getloadavg()[0]},
            "cpus": len(os.sched_getaffinity(0)),
            "ping": ping,
            "generating": generating,
            "memory": memory,
            "resume": resume,
        }
    )


def run(quick: bool = False, shape: Shape | None = None) -> StreamReplicasResult:
    return asyncio.run(run_async(shape or (QUICK if quick else FULL)))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 streams of 64 deltas")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    write_and_print(result.markdown, result.data, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
