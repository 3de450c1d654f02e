"""``RagClient``, the blocking API, against the real app: it runs in a worker thread while the
service runs in the test's event loop. The same resumption as the async client."""

from __future__ import annotations

import asyncio

import pytest

from rag_service.client import (
    Delta,
    Done,
    Meta,
    Reconnecting,
    StreamEvent,
    StreamFailed,
    Unauthorized,
)
from tests.client.conftest import CLIENT_KEY, QUESTION, LiveService, sync_client
from tests.fixture_servers.fault_plan import Complete, ErrorEvent
from tests.fixture_servers.fault_proxy import CutPlan
from tests.upstream.conftest import wait_until


def read_events(url: str, context: str, key: str = CLIENT_KEY) -> list[StreamEvent]:
    with (
        sync_client(url, key=key) as client,
        client.stream(QUESTION, context=context) as stream,
    ):
        return list(stream)


def text_of(events: list[StreamEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, Delta))


async def test_the_blocking_client_streams_and_resumes(service: LiveService) -> None:
    reference = await asyncio.to_thread(read_events, service.direct_url, "shop:sync-ref")
    assert isinstance(reference[1], Meta) and isinstance(reference[-1], Done)
    service.proxy.cut_next(CutPlan(after_events=7))
    events = await asyncio.to_thread(read_events, service.url, "shop:sync")
    assert service.proxy.cuts == 1
    assert [e.attempt for e in events if isinstance(e, Reconnecting)] == [1]
    assert text_of(events) == text_of(reference)
    assert await wait_until(lambda: service.proxy.open_connections == 0)


async def test_answer_and_stream_text(service: LiveService) -> None:
    def both() -> tuple[str, str]:
        with sync_client(service.url) as client:
            answer = client.answer(QUESTION, context="shop:sync-answer")
            assert answer.meta is not None and answer.done.finish_reason == "stop"
            return answer.text, "".join(client.stream_text(QUESTION, context="shop:sync-text"))

    answered, streamed = await asyncio.to_thread(both)
    assert answered == streamed and len(answered.split()) == 40


async def test_a_401_raises_at_once(service: LiveService) -> None:
    with pytest.raises(Unauthorized):
        await asyncio.to_thread(read_events, service.url, "shop:sync-401", "wrong-key")
    assert service.proxy.connections == 1


async def test_an_error_event_ends_the_stream_and_answer_raises(service: LiveService) -> None:
    # The upstream fails mid-answer in a way the service does not retry.
    service.upstream.set_plan(
        [Complete(), ErrorEvent(after_events=3, named=False)], default=Complete()
    )

    def ask() -> str:
        with sync_client(service.url) as client:
            return client.answer(QUESTION, context="shop:sync-error").text

    reference = text_of(await asyncio.to_thread(read_events, service.direct_url, "shop:ref"))
    with pytest.raises(StreamFailed) as failed:
        await asyncio.to_thread(ask)
    assert failed.value.code == "upstream_protocol_error"
    assert "the model is overloaded" in failed.value.message
    assert failed.value.retryable is False
    # The text that came before the error: the answer's first three pieces.
    assert failed.value.text == " ".join(reference.split()[:3])


async def test_an_abandoned_iterator_closes_its_response(service: LiveService) -> None:
    client = sync_client(service.url)

    def read_one_piece() -> str:
        for piece in client.stream_text(QUESTION, context="shop:sync-abandoned"):
            return piece  # the generator is dropped here, mid-answer
        raise AssertionError("no text")

    try:
        assert await asyncio.to_thread(read_one_piece)
        # Its response was closed with it, while the client stays open.
        assert await wait_until(lambda: service.proxy.open_connections == 0)
        assert service.proxy.connections == 1
    finally:
        client.close()
