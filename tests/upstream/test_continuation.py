"""Continuing a cut answer: replay (verified), prefix (DeepSeek / vLLM), none."""

from __future__ import annotations

from typing import Any

import pytest

from rag_service.domain import Completed, Failed, Resumed, RetryNotice, TextDelta
from rag_service.errors import ContinuationMismatch, UpstreamRetryable
from rag_service.upstream.continuation import TextAligner
from tests.fixture_servers.fault_plan import answer_pieces
from tests.fixture_servers.fault_upstream import (
    AnswerStyle,
    Complete,
    CutAfter,
    Fault,
    FaultUpstream,
    Status,
)
from tests.upstream.conftest import QUESTION, QUESTION_MESSAGES, Answer, ClientFactory, collect

PIECES = answer_pieces(QUESTION_MESSAGES, AnswerStyle())
ANSWER = "".join(PIECES)


async def answer_with_prefix(
    make_client: ClientFactory, plan: list[Fault], **overrides: Any
) -> tuple[Answer, FaultUpstream]:
    """QUESTION answered with continuation "prefix" by a fault server playing ``plan``."""
    async with FaultUpstream(plan) as upstream:
        client = make_client(upstream.base_url, continuation="prefix", **overrides)
        items = await collect(client.stream(QUESTION))
    return items, upstream


async def test_prefix_strategy_sends_the_delivered_text_deepseek_style(
    make_client: ClientFactory,
) -> None:
    items, upstream = await answer_with_prefix(make_client, [CutAfter(5)])
    delivered = "".join(PIECES[:5])
    assert isinstance(items[5], RetryNotice)
    assert items[6] == Resumed(attempt=2, strategy="prefix")
    assert items[7:-1] == [TextDelta(piece) for piece in PIECES[5:]]
    assert items.text == ANSWER
    second = upstream.requests[1].body
    assert second is not None
    assert second["messages"] == [
        *QUESTION_MESSAGES,
        {"role": "assistant", "content": delivered, "prefix": True},
    ]
    assert "continue_final_message" not in second


async def test_prefix_strategy_vllm_style(make_client: ClientFactory) -> None:
    items, upstream = await answer_with_prefix(make_client, [CutAfter(3)], prefix_style="vllm")
    assert items.text == ANSWER
    second = upstream.requests[1].body
    assert second is not None
    assert second["messages"][-1] == {"role": "assistant", "content": "".join(PIECES[:3])}
    assert (second["continue_final_message"], second["add_generation_prompt"]) == (True, False)


async def test_prefix_strategy_before_any_text_sends_the_plain_request(
    make_client: ClientFactory,
) -> None:
    items, upstream = await answer_with_prefix(make_client, [Status(503)])
    assert items.text == ANSWER
    assert not any(isinstance(item, Resumed) for item in items)
    assert upstream.requests[0].body == upstream.requests[1].body


async def test_none_strategy_keeps_partial_text_and_fails(make_client: ClientFactory) -> None:
    async with FaultUpstream([CutAfter(4)]) as upstream:
        client = make_client(upstream.base_url, continuation="none")
        items = await collect(client.stream(QUESTION))
    assert items[:-1] == [TextDelta(piece) for piece in PIECES[:4]]
    failed = items.terminal
    assert isinstance(failed, Failed)
    assert type(failed.error) is UpstreamRetryable
    assert failed.error.reason == "stream_cut"
    assert f"cut after {len(''.join(PIECES[:4]))} characters" in failed.error.message
    assert (failed.attempts, upstream.request_count) == (1, 1)


async def test_none_strategy_still_retries_before_any_text(make_client: ClientFactory) -> None:
    async with FaultUpstream([Status(502)]) as upstream:
        client = make_client(upstream.base_url, continuation="none")
        items = await collect(client.stream(QUESTION))
    assert items.text == ANSWER
    assert upstream.request_count == 2


async def test_replay_divergence_fails_with_mismatch(make_client: ClientFactory) -> None:
    plan: list[Fault] = [CutAfter(3), Complete(style=AnswerStyle(variant=1))]  # sampling
    async with FaultUpstream(plan) as upstream:
        items = await collect(make_client(upstream.base_url).stream(QUESTION))
    assert items.text == "".join(PIECES[:3])  # delivered text stays, nothing added
    error = items.error
    assert isinstance(error, ContinuationMismatch)
    assert not any(isinstance(item, Resumed) for item in items)
    assert upstream.request_count == 2


async def test_replay_that_ends_early_is_a_mismatch(make_client: ClientFactory) -> None:
    plan: list[Fault] = [CutAfter(6), Complete(style=AnswerStyle(words=4))]
    async with FaultUpstream(plan) as upstream:
        items = await collect(make_client(upstream.base_url).stream(QUESTION))
    error = items.error
    assert isinstance(error, ContinuationMismatch)
    assert "ended after" in error.message


async def test_replay_cut_exactly_at_the_end_resumes_and_completes(
    make_client: ClientFactory,
) -> None:
    async with FaultUpstream([CutAfter(len(PIECES))]) as upstream:
        items = await collect(make_client(upstream.base_url).stream(QUESTION))
    assert items.text == ANSWER
    assert items[-2:] == [Resumed(attempt=2, strategy="replay"), items[-1]]
    assert isinstance(items[-1], Completed)


async def test_replay_with_differently_chunked_text_is_aligned(make_client: ClientFactory) -> None:
    plan: list[Fault] = [CutAfter(5), Complete(style=AnswerStyle(words_per_chunk=4))]
    async with FaultUpstream(plan) as upstream:
        items = await collect(make_client(upstream.base_url).stream(QUESTION))
    assert items.text == ANSWER
    assert isinstance(items.terminal, Completed)


def test_aligner_splits_a_chunk_that_straddles_the_delivered_end() -> None:
    aligner = TextAligner("hello wor", verify=True)
    assert aligner.accept("hel") == ""
    assert aligner.accept("lo world") == "ld"
    assert aligner.caught_up
    assert aligner.accept(" again") == " again"
    with pytest.raises(ContinuationMismatch):
        TextAligner("hello", verify=True).accept("help")
    assert TextAligner("hello", verify=False).accept("x") == "x"
