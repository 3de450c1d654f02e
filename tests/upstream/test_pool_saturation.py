"""The upstream client over its connection pool: local saturation is not an upstream failure."""

from __future__ import annotations

import asyncio

from tests.fixture_servers.fault_plan import AnswerStyle
from tests.fixture_servers.fault_upstream import FaultUpstream


async def test_a_full_connection_pool_does_not_open_the_breaker() -> None:
    """Saturating our own pool says nothing about the upstream's health."""
    from rag_service.domain import ChatMessage, ChatRequest, Completed
    from rag_service.settings import BreakerSettings, RetrySettings, UpstreamSettings
    from rag_service.upstream import OpenAICompatibleUpstream

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
