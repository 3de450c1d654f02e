"""ShardedTransport: small pools, least-loaded choice, every shard released on close."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from rag_service.testing.fault_plan import AnswerStyle
from rag_service.testing.fault_upstream import FaultUpstream
from rag_service.upstream.transport import ShardedTransport


def test_pools_open_as_load_needs_them() -> None:
    assert ShardedTransport(max_connections=1000, shard_size=100).in_flight == (0,)


async def test_open_streams_spread_over_shards_and_are_released_when_closed() -> None:
    transport = ShardedTransport(max_connections=12, shard_size=4)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with (
        FaultUpstream(style=AnswerStyle(words=40, inter_token_delay_s=0.05)) as upstream,
        httpx.AsyncClient(transport=transport) as client,
    ):
        url = upstream.base_url + "/chat/completions"
        responses = [
            await client.send(client.build_request("POST", url, json=body), stream=True)
            for _ in range(6)
        ]
        assert transport.in_flight == (4, 2)  # the first pool fills before a second opens
        assert upstream.open_connections == 6
        for response in responses[:3]:
            await response.aclose()
        assert sum(transport.in_flight) == 3
        for response in responses[3:]:
            await response.aread()
            await response.aclose()
        assert transport.in_flight == (0, 0)


async def test_a_failed_request_releases_its_shard() -> None:
    transport = ShardedTransport(max_connections=4, shard_size=2)
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(3):
            with pytest.raises(httpx.ConnectError):
                await client.get("http://127.0.0.1:9/")  # discard port: connection refused
    assert transport.in_flight == (0,)


async def test_a_full_connection_pool_does_not_open_the_breaker() -> None:
    """Saturating our own pool says nothing about the upstream's health."""
    from rag_service.settings import BreakerSettings, RetrySettings, UpstreamSettings
    from rag_service.upstream import OpenAICompatibleUpstream
    from rag_service.upstream_events import ChatMessage, ChatRequest, Completed

    slow = AnswerStyle(words=30, inter_token_delay_s=0.02)
    async with FaultUpstream(style=slow) as upstream:
        settings = UpstreamSettings(
            base_url=upstream.base_url,
            max_connections=2,
            connect_timeout_s=0.05,  # also the pool timeout
            breaker=BreakerSettings(failure_threshold=2),
            retry=RetrySettings(base_delay_s=0.01, max_delay_s=0.05, max_attempts=50),
        )
        client = OpenAICompatibleUpstream(settings)
        request = ChatRequest(messages=(ChatMessage(role="user", content="hi"),))

        async def answer() -> object:
            items = [item async for item in client.stream(request)]
            return items[-1]

        try:
            results = await asyncio.gather(*(answer() for _ in range(6)))
        finally:
            await client.aclose()
    assert all(isinstance(r, Completed) for r in results), results
    assert client.breaker.state.value == "closed"
    assert upstream.max_open_connections <= 2
