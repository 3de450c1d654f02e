"""Streams in Redis (issue #14): what sharing streams across replicas costs, on a real
``redis-server`` on loopback: ``python -m bench.stream_replicas [--quick]``.

- Generating side: ``streams`` sessions, started spread over ``arrival_s``, each opened as
  ``start_answer`` opens one (shared, then its ``meta`` event), then ``tokens`` deltas at
  ``rate`` tokens/s from ``FIRST_TOKEN_S`` on (one task per stream, as a live answer does), each
  followed by one reader that waits on the session as an SSE response does (``notify`` a
  future, then ``read_events``). Once without Redis (a single process), once copied to Redis
  (``RedisStreamStore``) with durable delivery at each of ``FLUSH_TICKS_MS``, and once without
  durable delivery at the default tick; ``passes`` runs of each, the modes in turn. Per mode:
  the delay from a delta's append to the moment its reader reads it (p50/p99; with durable
  delivery it includes waiting for its batch to be written), the same for each stream's first
  delta (its share of the time to first token), the service's CPU and redis-server's CPU per
  delta (``process_time`` / ``INFO cpu``), Redis commands per delta and Redis's time per flush
  script (``INFO commandstats``), round trips per second while every stream sends text (the
  store's counters). A PING round trip and the load average put the delays in context: the
  machine is shared.
- Memory: ``MEMORY USAGE`` (exact, ``SAMPLES 0``) of one typical answer's keys: a ``meta`` event
  with five sources, ``MEMORY_TOKENS`` deltas of a few characters, ``done``, and the record with
  the stream's request (kept for a take-over).
- Resume: a finished stream resumed from its middle on its replica and on another one
  (``bench.stream_replicas_resume``).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import redis
from pydantic import SecretStr

from bench.latency_stats import summarise_ms
from bench.result_output import quick_or_full, results_file
from bench.stream_replicas_report import StreamReplicasResult
from bench.stream_replicas_resume import resume_times, written
from bench.stream_replicas_setup import (
    WORDS,
    chat_request,
    new_store,
    open_session,
    redis_calls,
    redis_cpu_s,
    redis_server,
    script_calls,
)
from rag_service.adapters.redis_connection import redis_client
from rag_service.adapters.redis_stream_store import RedisStreamStore, request_json
from rag_service.domain import Completed, DeltaEvent, TextDelta, Timings
from rag_service.settings import RedisSettings, StreamSettings
from rag_service.streaming import StreamRegistry
from rag_service.streaming.answer import SourceLists
from rag_service.streaming.session import StreamSession
from rag_service.streaming.sse_response import BATCH_EVENTS

DEFAULT_FLUSH_MS = StreamSettings().shared_flush_ms  # RAG_STREAM__SHARED_FLUSH_MS
FLUSH_TICKS_MS = (10.0, 25.0, 50.0, 100.0)
MEMORY_TOKENS = 256  # the default max_tokens: a long answer
RESULTS_FILE = results_file("stream_replicas")


@dataclass(frozen=True)
class Shape:
    streams: int
    tokens: int  # deltas per stream
    rate: float  # tokens/s per stream
    resumes: int
    # Streams start spread over this long: a new stream's first batches are written at once, so
    # all starting in the same instant would measure one burst rather than streams arriving.
    arrival_s: float
    passes: int = 1  # runs of each mode, in turn

    def steady_window(self) -> tuple[float, float] | None:
        """From when every stream sends text to when the first one ends (seconds from the
        run's start): round trips per second are counted there. None: too short a run."""
        start = self.arrival_s + FIRST_TOKEN_S + 2 / self.rate
        end = FIRST_TOKEN_S + (self.tokens - 1) / self.rate
        return (start, end) if end - start >= 0.5 else None


# 5,000 deltas/s: what a replica is planned for (docs/deployment.md, "Sizing": 1,000 streams at
# 5 tokens/s). At 10,000 on the shared 2-core machine the benchmark's own event loop lagged
# (p99 37 ms without Redis), which hid what the flushes add.
FULL = Shape(streams=250, tokens=256, rate=20.0, resumes=50, arrival_s=1.0, passes=2)
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


@dataclass
class Pass:
    """What one run of one mode measured."""

    deltas: int
    cpu_s: float
    redis_cpu_s: float
    redis_calls: int
    scripts: int  # EVALSHA calls: the store's flushes (of up to 500 streams each)
    script_us: int  # Redis's time in them: it answers nobody else meanwhile
    delivery: Delivery
    round_trips: int
    round_trips_per_s: float | None  # steady, or (a short run) over the whole run


async def generating_pass(mode: Mode, url: str, client: redis.Redis, shape: Shape) -> Pass:
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
    scripts0, script_us0 = script_calls(client)
    steady = asyncio.create_task(run.steady_round_trips_per_s())
    await asyncio.gather(*(run.answer() for _ in range(shape.streams)))
    if store is not None:
        await written(run.sessions)
    cpu = time.process_time() - cpu0
    run_s = time.perf_counter() - started
    scripts, script_us = script_calls(client)
    measured = Pass(
        deltas=shape.streams * shape.tokens,
        cpu_s=cpu,
        redis_cpu_s=redis_cpu_s(client) - redis_cpu0,
        redis_calls=redis_calls(client) - calls0,
        scripts=scripts - scripts0,
        script_us=script_us - script_us0,
        delivery=run.delivery,
        round_trips=0,
        round_trips_per_s=None,
    )
    assert len(run.delivery.deltas) == measured.deltas, "every delta is read exactly once"
    steady_per_s = await steady
    if store is not None:
        measured.round_trips = store.stats().flushes
        measured.round_trips_per_s = steady_per_s or measured.round_trips / run_s
        await store.aclose()
    if redis_async is not None:
        await redis_async.aclose()
    await registry.close()
    return measured


def mode_row(mode: Mode, shape: Shape, passes: list[Pass]) -> dict[str, Any]:
    """One mode's figures over its passes: delays pooled, CPU and commands per delta summed."""
    deltas = sum(p.deltas for p in passes)
    row: dict[str, Any] = {
        "mode": mode.label,
        "flush_ms": mode.flush_ms,
        "durable": mode.durable,
        "streams": shape.streams,
        "passes": len(passes),
        "deltas": deltas,
        "delta_to_reader": summarise_ms(d for p in passes for d in p.delivery.deltas),
        "first_delta_to_reader": summarise_ms(d for p in passes for d in p.delivery.first_deltas),
        "meta_to_reader": summarise_ms(d for p in passes for d in p.delivery.metas),
        "service_cpu_us_per_delta": round(sum(p.cpu_s for p in passes) / deltas * 1e6, 1),
        # Per pass, to show how much a figure moves on a shared machine.
        "service_cpu_us_per_delta_passes": [round(p.cpu_s / p.deltas * 1e6, 1) for p in passes],
        "redis_cpu_us_per_delta": round(sum(p.redis_cpu_s for p in passes) / deltas * 1e6, 1),
        "redis_calls_per_delta": round(sum(p.redis_calls for p in passes) / deltas, 3),
    }
    if mode.flush_ms is not None:
        rates = [p.round_trips_per_s or 0.0 for p in passes]
        row["round_trips"] = sum(p.round_trips for p in passes)
        row["round_trips_per_s"] = round(sum(rates) / len(rates), 1)
        scripts = sum(p.scripts for p in passes)
        row["script_ms_per_flush"] = round(sum(p.script_us for p in passes) / scripts / 1000, 2)
    return row


async def memory_of_one_answer(url: str, client: redis.Redis, tokens: int) -> dict[str, Any]:
    stream = StreamSettings()
    registry = StreamRegistry(stream)
    redis_async = redis_client(RedisSettings(url=SecretStr(url)))
    store = new_store(redis_async, url, stream, "mem:", "A")
    session = open_session(registry, store, SourceLists())
    for i in range(tokens):
        session.apply(TextDelta(WORDS[i % len(WORDS)]))
    events_key, record_key = (f"mem:stream:{session.stream_id}:{k}" for k in ("events", "rec"))
    # Durable delivery shows an event once Redis has it: wait until all are, still running.
    while len(session.read_events(0, tokens + 1)) < session.last_seq:
        await session.change_waiter()
    request = request_json(chat_request())
    assert client.hget(record_key, "request") == request, "a running stream's record keeps it"
    running_record = cast(int, client.memory_usage(record_key, samples=0))
    session.apply(Completed("stop", None, Timings(1.0, 2.0), 1))
    await written([session])
    assert client.hget(record_key, "request") is None, "an ended stream's record drops it"
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
        "running_record_key_bytes": running_record,
        "stream_bytes": events + record,
        "running_stream_bytes": events + running_record,
        "replay_buffer_bytes": session.nbytes,
    }


# -- the run -----------------------------------------------------------------------------------------


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
        # Passes of every mode in turn: a change in the machine's load meanwhile spreads over
        # all modes rather than falling on one.
        passes: dict[Mode, list[Pass]] = {mode: [] for mode in modes()}
        for _ in range(shape.passes):
            for mode, done in passes.items():
                done.append(await generating_pass(mode, url, client, shape))
        generating = [mode_row(mode, shape, done) for mode, done in passes.items()]
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
    return quick_or_full(argv, run, quick="100 streams of 64 deltas", output=RESULTS_FILE)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
