"""Exactly-once answers from the real local llama.cpp server, with the stream cut mid-answer.

The cutting proxy sits between OpenAICompatibleUpstream (continuation=replay) and the server.
Decoding is deterministic (temperature 0, fixed seed), so a replayed attempt produces the same
text again, and the client must deliver each character exactly once: the concatenated TextDelta
text has to equal, byte for byte, the answer fetched directly (raw httpx, no proxy, no client).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from rag_service.domain import ChatMessage, ChatRequest, Failed, Resumed
from rag_service.settings import ContinuationStrategy, RetrySettings, UpstreamSettings
from rag_service.upstream import OpenAICompatibleUpstream
from tests.fixture_servers.fault_proxy import CutPlan, FaultProxy
from tests.streaming.sse_spec import iter_sse_events
from tests.upstream.conftest import Answer, collect

pytestmark = pytest.mark.llm

SYSTEM = "You are a helpful assistant of an online shoe shop."
QUESTION = "How do I return a pair of boots I bought online?"
PARAMS = {"temperature": 0, "seed": 42, "max_tokens": 80}
REQUEST = ChatRequest(messages=(ChatMessage("system", SYSTEM), ChatMessage("user", QUESTION)))


@pytest.fixture(scope="module")
def reference_answer(local_llm_url: str) -> str:
    """The uninterrupted answer, read straight from the server without our client.

    Read twice, and the second kept: llama.cpp's first evaluation of a prompt (nothing cached)
    can pick other tokens than every later one (the prompt's prefix taken from its cache), so the
    cold first answer is not what any replay reproduces. The later ones must agree.
    """
    fetch_directly(local_llm_url)  # the cold evaluation, not kept
    warm = fetch_directly(local_llm_url)
    assert fetch_directly(local_llm_url) == warm, "the server is not deterministic when warm"
    assert len(warm) > 100, f"the reference answer is too short to cut mid-way: {warm!r}"
    return warm


def fetch_directly(local_llm_url: str) -> str:
    body = {
        "model": "smollm2",
        "stream": True,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        **PARAMS,
    }
    pieces: list[str] = []
    with httpx.stream("POST", f"{local_llm_url}/chat/completions", json=body, timeout=120) as r:
        r.raise_for_status()
        for event in iter_sse_events(r):
            if event.data != "[DONE]":
                for choice in event.json()["choices"]:
                    pieces.append(choice["delta"].get("content") or "")
    return "".join(pieces)


def client_for(base_url: str) -> OpenAICompatibleUpstream:
    settings = UpstreamSettings(
        base_url=base_url,
        model="smollm2",
        params=PARAMS,
        continuation=ContinuationStrategy.replay,
        read_timeout_s=60.0,
        # Short backoff keeps the test quick; the attempts and their order are what is tested.
        retry=RetrySettings(base_delay_s=0.05, max_delay_s=0.2, max_attempts=5, deadline_s=120),
    )
    return OpenAICompatibleUpstream(settings)


async def stream_through_proxy(
    local_llm_url: str, plans: list[CutPlan]
) -> tuple[Answer, FaultProxy]:
    target = urlsplit(local_llm_url)
    assert target.hostname is not None and target.port is not None
    async with FaultProxy(target.hostname, target.port, plans=plans) as proxy:
        upstream = client_for(proxy.url("/v1"))
        try:
            items = await collect(upstream.stream(REQUEST))
        finally:
            await upstream.aclose()
    return items, proxy


def assert_delivered_once(items: Answer, reference_answer: str, *, attempts: int) -> None:
    """The stream completed in ``attempts`` attempts with the reference answer, each character
    delivered exactly once."""
    last = items.terminal
    assert not isinstance(last, Failed), f"stream failed: {last.error.to_payload()}"
    assert items.text == reference_answer
    assert last.attempts == attempts


async def test_first_attempt_cut_after_a_few_events_delivers_the_answer_once(
    local_llm_url: str, reference_answer: str
) -> None:
    # Event 1 is the role-only delta; events 2-6 carry the answer's first tokens.
    items, proxy = await stream_through_proxy(local_llm_url, [CutPlan(after_events=6)])
    assert_delivered_once(items, reference_answer, attempts=2)
    assert [item.attempt for item in items if isinstance(item, Resumed)] == [2]
    assert (proxy.cuts, proxy.records[0].events) == (1, 6)
    resumed_at = next(index for index, item in enumerate(items) if isinstance(item, Resumed))
    first_cut_text = Answer(items[:resumed_at]).text
    assert 0 < len(first_cut_text) < len(reference_answer)


async def test_first_and_second_attempts_cut_still_deliver_the_answer_once(
    local_llm_url: str, reference_answer: str
) -> None:
    plans = [CutPlan(after_events=4), CutPlan(after_events=14)]
    items, proxy = await stream_through_proxy(local_llm_url, plans)
    assert_delivered_once(items, reference_answer, attempts=3)
    assert [item.attempt for item in items if isinstance(item, Resumed)] == [2, 3]
    assert proxy.cuts == 2


async def test_cut_in_the_middle_of_an_sse_event_loses_and_repeats_nothing(
    local_llm_url: str, reference_answer: str
) -> None:
    # 1,500 bytes: the HTTP head and a few events, ending inside a `data:` line.
    items, proxy = await stream_through_proxy(local_llm_url, [CutPlan(after_response_bytes=1500)])
    assert_delivered_once(items, reference_answer, attempts=2)
    assert proxy.records[0].cut and proxy.records[0].response_bytes == 1500
