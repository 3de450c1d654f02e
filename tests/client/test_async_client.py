"""``AsyncRagClient`` against the real app on uvicorn: a normal answer, a connection the service's
side drops mid-answer (resumed with the exact text), refusals (429 waited out, 401 not retried),
the overall deadline, and nothing left behind (tasks, responses, connections)."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import pytest

from rag_service.client import (
    AsyncAnswerStream,
    AsyncRagClient,
    Connected,
    ConnectionFailed,
    DeadlineExceeded,
    Delta,
    Done,
    Meta,
    RateLimited,
    Reconnecting,
    RetryPolicy,
    StreamEvent,
    StreamNotFound,
    Unauthorized,
)
from tests.client.conftest import QUESTION, LiveService, async_client, running_service
from tests.conftest import free_port
from tests.fixture_servers.fault_plan import Stall
from tests.fixture_servers.fault_proxy import CutPlan
from tests.upstream.conftest import wait_until

WAIT_FOR_TEARDOWN_S = 10.0  # a loaded machine may answer late; the bound only stops a hang


async def collect(client: AsyncRagClient, context: str) -> list[StreamEvent]:
    async with client.stream(QUESTION, context=context) as stream:
        return [event async for event in stream]


async def read_into(stream: AsyncAnswerStream, seen: list[StreamEvent]) -> None:
    async with stream:
        async for event in stream:
            seen.append(event)


def text_of(events: list[StreamEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, Delta))


async def reference_text(service: LiveService) -> str:
    """An uninterrupted run's text, straight from the service."""
    async with async_client(service.direct_url) as client:
        return (await client.answer(QUESTION, context="reference")).text


async def test_a_normal_answer_streams_as_typed_events(service: LiveService) -> None:
    async with async_client(service.url) as client:
        events = await collect(client, "shop:normal")
    assert isinstance(events[0], Connected) and not events[0].resumed
    meta = events[1]
    assert isinstance(meta, Meta)
    assert meta.context_id == "shop:normal"
    assert meta.state == "refreshed"
    assert meta.sources and meta.sources[0].title
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "stop"
    assert not any(isinstance(event, Reconnecting) for event in events)
    text = text_of(events)
    assert len(text.split()) == 40  # the fault upstream's answer: 40 words
    assert text == await reference_text(service)


@pytest.mark.parametrize("after_events", [2, 9, 30])
async def test_a_drop_mid_answer_resumes_with_the_exact_text(
    service: LiveService, after_events: int
) -> None:
    reference = await reference_text(service)
    service.proxy.cut_next(CutPlan(after_events=after_events))
    async with async_client(service.url) as client:
        events = await collect(client, "shop:dropped")
    assert service.proxy.cuts == 1
    reconnects = [event for event in events if isinstance(event, Reconnecting)]
    assert [(n.attempt, n.max_attempts, n.status) for n in reconnects] == [(1, 10, None)]
    resumed = [event for event in events if isinstance(event, Connected) and event.resumed]
    assert len(resumed) == 1 and resumed[0].stream_id is not None
    # Every delta arrived once: the text before the cut plus the resumed rest is the answer.
    assert text_of(events) == reference
    assert sum(isinstance(event, Meta) for event in events) == 1
    assert isinstance(events[-1], Done)


async def test_several_drops_each_resume_and_reset_the_attempt_count(
    service: LiveService,
) -> None:
    reference = await reference_text(service)
    # The first response is cut after 5 events, the first resume after 4 more, the next after 4.
    service.proxy.cut_next(
        CutPlan(after_events=5), CutPlan(after_events=4), CutPlan(after_events=4)
    )
    async with async_client(service.url) as client:
        events = await collect(client, "shop:drops")
    assert service.proxy.cuts == 3
    assert [e.attempt for e in events if isinstance(e, Reconnecting)] == [1, 1, 1]
    assert text_of(events) == reference


async def test_a_429_is_waited_out_after_its_retry_after(tmp_path: Path) -> None:
    # One answer per key at once, refilled every 2 s: the second question is refused (unless
    # the first took 2 s, which even a loaded machine does not come near).
    limits = {"burst": 1, "requests_per_s": 0.5}
    async with (
        running_service(tmp_path, limits=limits) as service,
        async_client(service.url) as client,
    ):
        first = await client.answer(QUESTION, context="shop:first")
        started = time.monotonic()
        events = await collect(client, "shop:second")
    refused = [event for event in events if isinstance(event, Reconnecting)]
    assert refused and refused[0].status == 429
    assert refused[0].reason.startswith("429 rate_limited")
    assert refused[0].delay_s >= 1.0  # the Retry-After (1-3 s) is the floor
    assert time.monotonic() - started >= refused[0].delay_s
    assert isinstance(events[-1], Done)
    assert text_of(events) and first.text


async def test_a_429_past_the_attempts_raises_rate_limited(tmp_path: Path) -> None:
    limits = {"burst": 1, "requests_per_s": 0.01}
    no_retries = RetryPolicy(max_attempts=0)
    async with (
        running_service(tmp_path, limits=limits) as service,
        async_client(service.url, policy=no_retries) as client,
    ):
        await client.answer(QUESTION, context="shop:first")
        with pytest.raises(RateLimited) as refused:
            await client.answer(QUESTION, context="shop:second")
    assert refused.value.status == 429
    assert refused.value.code == "rate_limited"
    assert refused.value.retryable is True
    assert refused.value.retry_after_s is not None and refused.value.retry_after_s >= 1


async def test_a_401_is_not_retried(service: LiveService) -> None:
    async with async_client(service.url, key="wrong-key") as client:
        with pytest.raises(Unauthorized) as refused:
            await client.answer(QUESTION, context="shop:intruder")
    assert refused.value.status == 401
    assert refused.value.code == "unauthorized"
    assert refused.value.retryable is False
    assert service.proxy.connections == 1
    assert service.proxy.records[0].responses == 1
    assert service.upstream.request_count == 0


async def test_the_overall_deadline_ends_a_stalled_answer(tmp_path: Path) -> None:
    async with running_service(tmp_path) as service:
        service.upstream.set_plan([Stall(after_events=3, seconds=60)])
        policy = RetryPolicy(base_delay_s=0.02, deadline_s=1.5)
        async with async_client(service.url, policy=policy) as client:
            started = time.monotonic()
            stream = client.stream(QUESTION, context="shop:stalled")
            seen: list[StreamEvent] = []
            with pytest.raises(DeadlineExceeded, match=r"deadline of 1\.5 s"):
                await read_into(stream, seen)
            elapsed = time.monotonic() - started
        assert 1.5 <= elapsed < 1.5 + WAIT_FOR_TEARDOWN_S
        assert text_of(seen)  # the text before the stall arrived
        assert await wait_until(lambda: service.proxy.open_connections == 0)


async def test_an_unreachable_service_fails_after_the_attempts() -> None:
    policy = RetryPolicy(max_attempts=2, base_delay_s=0.01, max_delay_s=0.02)
    async with AsyncRagClient(f"http://127.0.0.1:{free_port()}", policy=policy) as client:
        with pytest.raises(ConnectionFailed, match="could not reach the service") as failed:
            await client.answer(QUESTION, context="shop:nobody")
    assert failed.value.attempts == 3


async def test_nothing_is_left_behind(service: LiveService) -> None:
    """The client runs in an event loop of its own (in a thread), so every task of that loop
    is the client's: none may outlive it, and no connection to the service stays open."""

    async def use_the_client() -> tuple[int, set[asyncio.Task[object]]]:
        tasks_before = asyncio.all_tasks()
        client = async_client(service.url)
        answer = await client.answer(QUESTION, context="shop:tidy")
        # An iterator abandoned mid-answer: the client's aclose closes its response.
        abandoned = client.stream(QUESTION, context="shop:abandoned")
        async for event in abandoned:
            if isinstance(event, Delta):
                break
        await client.aclose()
        return answer.reconnects, asyncio.all_tasks() - tasks_before

    service.proxy.cut_next(CutPlan(after_events=6))
    reconnects, leftover = await asyncio.to_thread(asyncio.run, use_the_client())
    assert reconnects == 1
    assert leftover == set()
    # The cut connection, and the resume's (kept alive and reused by the abandoned stream).
    assert service.proxy.connections == 2
    assert await wait_until(lambda: service.proxy.open_connections == 0)


async def test_an_abandoned_stream_closes_its_response(service: LiveService) -> None:
    """Neither closed nor read to its end: once the stream is garbage, its response closes
    (asyncio finalizes the iterator), while the client stays open."""
    async with async_client(service.url) as client:
        stream = client.stream(QUESTION, context="shop:forgotten")
        async for event in stream:
            if isinstance(event, Delta):
                break
        assert service.proxy.open_connections == 1
        del stream, event
        gc.collect()
        assert await wait_until(lambda: service.proxy.open_connections == 0)


async def test_resume_picks_up_a_stream_by_id_after_the_last_event_seen(
    service: LiveService,
) -> None:
    reference = await reference_text(service)
    async with async_client(service.url) as client:
        first = client.stream(QUESTION, context="shop:later")
        async with first:
            async for event in first:
                if isinstance(event, Delta) and len(first.progress.text.split()) == 5:
                    break
        stream_id, last_event_id = first.progress.stream_id, first.progress.last_event_id
        assert stream_id is not None and last_event_id == f"{stream_id}:6"  # meta + 5 deltas
        rest = await client.resume(stream_id, last_event_id=last_event_id).answer()
        assert first.progress.text + rest.text == reference
        assert rest.meta is None  # the meta event came before the resume point
        whole = await client.resume(stream_id).answer()  # without an id: from the start
        assert whole.text == reference and whole.meta is not None
        with pytest.raises(StreamNotFound):
            await client.resume("no-such-stream").answer()
