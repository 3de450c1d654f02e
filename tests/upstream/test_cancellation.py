"""A consumer that stops (aclose, task cancelled) closes the upstream response at once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator

from rag_service.domain import BreakerState, TextDelta
from rag_service.ports import UpstreamEvent
from rag_service.upstream import OpenAICompatibleUpstream
from rag_service.upstream.breaker import Permit
from tests.fixture_servers.fault_upstream import AnswerStyle, FaultUpstream, Status
from tests.upstream.conftest import QUESTION, settings_for, wait_until

SLOW = AnswerStyle(words=200, inter_token_delay_s=0.05)


async def read_deltas(stream: AsyncGenerator[UpstreamEvent, None], count: int) -> None:
    seen = 0
    async for item in stream:
        if isinstance(item, TextDelta):
            seen += 1
            if seen == count:
                return


async def test_fifty_streams_stopped_mid_answer_leave_nothing_open() -> None:
    baseline = asyncio.all_tasks()
    async with FaultUpstream(style=SLOW) as upstream:
        client = OpenAICompatibleUpstream(settings_for(upstream.base_url))
        streams = [client.stream(QUESTION) for _ in range(50)]
        await asyncio.gather(*(read_deltas(stream, 2) for stream in streams))
        assert upstream.open_connections == 50
        # half are closed by the consumer, half are consumed by tasks that get cancelled
        await asyncio.gather(*(stream.aclose() for stream in streams[:25]))

        received = [0] * 25

        async def consume(index: int, stream: AsyncGenerator[UpstreamEvent, None]) -> None:
            async for _ in stream:
                received[index] += 1

        tasks = [asyncio.create_task(consume(i, s)) for i, s in enumerate(streams[25:])]
        # cancelled mid-answer: each task has had more of its answer first
        assert await wait_until(lambda: all(received), timeout_s=60.0)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(result, asyncio.CancelledError) for result in results)
        assert await wait_until(lambda: upstream.open_connections == 0, timeout_s=30.0)
        assert upstream.request_count == 50  # nothing was retried on the way out
        await client.aclose()
    assert await wait_until(lambda: asyncio.all_tasks() == baseline, timeout_s=30.0)


async def test_cancelling_a_parked_stream_leaves_no_waiter_tasks() -> None:
    baseline = asyncio.all_tasks()
    async with FaultUpstream(default=Status(503)) as upstream:
        settings = settings_for(upstream.base_url, breaker={"failure_threshold": 1, "open_s": 30.0})
        parked = asyncio.Event()

        async def sleep(seconds: float) -> None:
            parked.set()  # after the notice, the only wait is the parked one
            await asyncio.sleep(seconds)

        client = OpenAICompatibleUpstream(settings, sleep=sleep)
        stream = client.stream(QUESTION)
        notice = await anext(stream)  # parked: circuit_open
        assert getattr(notice, "reason", None) == "circuit_open"
        parked.clear()
        task = asyncio.create_task(anext(stream))
        await asyncio.wait_for(parked.wait(), timeout=30.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await stream.aclose()
        await client.aclose()
    assert await wait_until(lambda: asyncio.all_tasks() == baseline, timeout_s=30.0)


async def test_cancelled_probe_gives_its_slot_back() -> None:
    # the 503 opens the circuit; the parked stream becomes the probe, which gets no answer
    async with FaultUpstream([Status(503), Status(503, delay_s=30.0)]) as upstream:
        settings = settings_for(
            upstream.base_url,
            breaker={"failure_threshold": 1, "open_s": 0.01, "max_open_s": 0.01},
        )
        client = OpenAICompatibleUpstream(settings, rng=random.Random(1))
        stream = client.stream(QUESTION)
        first = await anext(stream)
        assert getattr(first, "reason", None) == "circuit_open"
        probe = asyncio.create_task(anext(stream))
        assert await wait_until(lambda: upstream.request_count == 2)
        assert client.breaker.state is BreakerState.half_open
        assert client.breaker.try_acquire() is Permit.denied  # the probe is out
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)
        await stream.aclose()
        assert client.breaker.try_acquire() is Permit.probe
        assert await wait_until(lambda: upstream.open_connections == 0)
        await client.aclose()
