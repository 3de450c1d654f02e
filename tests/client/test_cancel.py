"""``cancel(stream_id)``: ``DELETE /rag/stream/{id}`` stops the generation on the server, and the
stream being read ends with an ``error`` event ``cancelled``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rag_service.client import (
    Delta,
    Done,
    Error,
    StreamEvent,
    StreamFailed,
    StreamNotFound,
    Unauthorized,
)
from tests.client.conftest import (
    QUESTION,
    LiveService,
    async_client,
    metric,
    running_service,
    sync_client,
)
from tests.fixture_servers.fault_plan import AnswerStyle
from tests.upstream.conftest import wait_until

WORDS = 200


@pytest.fixture
async def slow_service(tmp_path: Path) -> AsyncIterator[LiveService]:
    # 200 words, 20 ms apart: the answer is still generating when the test cancels it.
    style = AnswerStyle(words=WORDS, inter_token_delay_s=0.02)
    async with running_service(tmp_path, style=style) as live:
        yield live


async def test_cancel_ends_the_stream_with_a_cancelled_error(slow_service: LiveService) -> None:
    seen: list[StreamEvent] = []
    async with async_client(slow_service.url) as client:
        stream = client.stream(QUESTION, context="shop:cancelled")
        async with stream:
            async for event in stream:
                seen.append(event)
                if isinstance(event, Delta) and sum(isinstance(e, Delta) for e in seen) == 2:
                    stream_id = stream.progress.stream_id
                    assert stream_id is not None
                    answer = await client.cancel(stream_id)
                    assert answer == {"stream_id": stream_id, "cancelled": True}
        last = seen[-1]
        assert isinstance(last, Error) and last.code == "cancelled" and not last.retryable
        assert sum(isinstance(e, Delta) for e in seen) < WORDS
        # The generation stopped on the server: its upstream request was closed.
        assert await wait_until(lambda: slow_service.upstream.open_connections == 0)
        assert await metric(slow_service.direct_url, "rag_streams_cancelled_total") == 1
        with pytest.raises(StreamNotFound):
            await client.cancel("no-such-stream")


async def test_a_refused_cancel_leaves_the_stream_running(slow_service: LiveService) -> None:
    async with (
        async_client(slow_service.url) as client,
        async_client(slow_service.url, key="wrong-key") as intruder,
    ):
        stream = client.stream(QUESTION, context="shop:mine")
        async with stream:
            async for event in stream:
                if isinstance(event, Delta) and stream.progress.stream_id is not None:
                    with pytest.raises(Unauthorized):
                        await intruder.cancel(stream.progress.stream_id)
                    break
            rest = [event async for event in stream]
        assert isinstance(rest[-1], Done)
        assert len(stream.progress.text.split()) == WORDS


async def test_the_blocking_client_cancels_too(slow_service: LiveService) -> None:
    def ask_and_cancel() -> StreamFailed:
        with sync_client(slow_service.url) as client:
            stream = client.stream(QUESTION, context="shop:sync-cancel")
            for event in stream:
                if isinstance(event, Delta):
                    assert stream.progress.stream_id is not None
                    client.cancel(stream.progress.stream_id)
                    break
            try:
                stream.answer()
            except StreamFailed as failed:
                return failed
        raise AssertionError("the cancelled answer did not fail")

    failed = await asyncio.to_thread(ask_and_cancel)
    assert failed.code == "cancelled"
    assert failed.text  # the text before the cancel
