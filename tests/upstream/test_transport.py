"""ShardedTransport: small pools, least-loaded choice, every shard released on close."""

from __future__ import annotations

import httpx
import pytest

from rag_service.testing.fault_plan import AnswerStyle
from rag_service.testing.fault_upstream import FaultUpstream
from rag_service.upstream.transport import ShardedTransport


def test_pools_are_small() -> None:
    transport = ShardedTransport(max_connections=1000, shard_size=100)
    assert transport.in_flight == (0,) * 10
    assert ShardedTransport(max_connections=50).in_flight == (0,)


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
        assert transport.in_flight == (2, 2, 2)
        assert upstream.open_connections == 6
        for response in responses[:3]:
            await response.aclose()
        assert sum(transport.in_flight) == 3
        for response in responses[3:]:
            await response.aread()
            await response.aclose()
        assert transport.in_flight == (0, 0, 0)


async def test_a_failed_request_releases_its_shard() -> None:
    transport = ShardedTransport(max_connections=4, shard_size=2)
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(3):
            with pytest.raises(httpx.ConnectError):
                await client.get("http://127.0.0.1:9/")  # discard port: connection refused
    assert transport.in_flight == (0, 0)
