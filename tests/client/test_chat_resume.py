"""``stream_chat``: an OpenAI-style ``/v1/chat/completions`` answer read as the same typed
events, and resumed through ``GET /rag/stream/{id}`` when the service's side drops it, with
the exact text of an uninterrupted run wherever the cut falls (also between the final chunks)."""

from __future__ import annotations

from typing import Any

import pytest

from rag_service.client import (
    Connected,
    Delta,
    Done,
    Meta,
    Reconnecting,
    StreamEvent,
)
from tests.client.conftest import QUESTION, LiveService, async_client
from tests.fixture_servers.fault_proxy import CutPlan

WORDS = 40  # the fault upstream's answer; events: 1 meta chunk, 40 deltas, finish, (usage), DONE
MESSAGES = [{"role": "user", "content": QUESTION}]


async def chat_events(url: str, context: str, **options: Any) -> list[StreamEvent]:
    async with async_client(url) as client:
        stream = client.stream_chat(MESSAGES, context=context, **options)
        async with stream:
            return [event async for event in stream]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, Delta))


async def test_an_openai_stream_reads_as_typed_events(service: LiveService) -> None:
    events = await chat_events(
        service.direct_url, "shop:v1", stream_options={"include_usage": True}
    )
    meta = events[1]
    assert isinstance(meta, Meta) and meta.context_id == "shop:v1" and meta.sources
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "stop"
    assert done.usage is not None and done.usage["completion_tokens"] == WORDS
    assert len(text_of(events).split()) == WORDS


@pytest.mark.parametrize(
    ("after_events", "include_usage"),
    [
        (5, False),  # mid-answer
        (WORDS + 1, False),  # every delta, not the finish chunk
        (WORDS + 2, False),  # the finish chunk, not [DONE]
        (WORDS + 3, True),  # the finish and usage chunks, not [DONE]
    ],
)
async def test_a_dropped_openai_stream_resumes_with_the_exact_text(
    service: LiveService, after_events: int, include_usage: bool
) -> None:
    options = {"stream_options": {"include_usage": include_usage}}
    reference = text_of(await chat_events(service.direct_url, "shop:v1-ref", **options))
    service.proxy.cut_next(CutPlan(after_events=after_events))
    events = await chat_events(service.url, "shop:v1-cut", **options)
    assert service.proxy.cuts == 1
    assert [type(e) for e in events if isinstance(e, Connected | Reconnecting)] == [
        Connected,
        Reconnecting,
        Connected,
    ]
    assert text_of(events) == reference
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "stop"
    # The resumed part is the native stream: its done carries the timings.
    assert done.timings is not None
