"""The minimal relay, the proxy and the token upstream as the benches run them: child processes.

The relay relays the upstream's stream byte for byte and keeps its upstream connection: behind
the proxy, three sequential answers cost one connection. Counts come from the children's live
``COUNTS`` answers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bench.answer_prose import answer_text
from bench.service_process import ChildProcess, child_env

WORDS = 5


@pytest.fixture
async def chain(tmp_path: Path) -> AsyncIterator[tuple[ChildProcess, ChildProcess, ChildProcess]]:
    """token upstream <- proxy (20 ms per new connection) <- relay."""
    env = child_env()
    upstream_args = ["token-upstream", "--words", str(WORDS)]
    upstream_args += ["--first-token-ms", "5", "--inter-token-ms", "2"]
    async with await ChildProcess.start(
        "upstream", upstream_args, env=env, workdir=tmp_path
    ) as upstream:
        proxy_args = ["proxy", "--target-port", str(upstream.port), "--delay-ms", "20"]
        async with await ChildProcess.start(
            "proxy", proxy_args, env=env, workdir=tmp_path
        ) as proxy:
            relay_args = ["relay", "--upstream", f"{proxy.base_url}/v1"]
            async with await ChildProcess.start(
                "relay", relay_args, env=env, workdir=tmp_path
            ) as relay:
                yield upstream, proxy, relay


async def test_the_relay_relays_and_keeps_its_upstream_connection(
    chain: tuple[ChildProcess, ChildProcess, ChildProcess],
) -> None:
    upstream, proxy, relay = chain
    texts, expected = [], []
    async with httpx.AsyncClient(base_url=relay.base_url, trust_env=False) as client:
        for question in ("one", "two", "three"):
            messages = [{"role": "user", "content": question}]
            body = {"model": "m", "stream": True, "messages": messages}
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                raw = (await response.aread()).decode()
            assert raw.endswith("data: [DONE]\n\n")
            chunks = [json.loads(line[6:]) for line in raw.split("\n") if line[6:7] == "{"]
            texts.append("".join(c["choices"][0]["delta"].get("content", "") for c in chunks))
            expected.append(answer_text(messages, WORDS))
        proxy_counts = await proxy.counts()
        upstream_counts = await upstream.counts()

    assert texts == expected
    assert proxy_counts == {"accepted": 1, "connected": 1, "failed": 0}
    assert upstream_counts["requests"] == 3
    assert upstream_counts["accepted_connections"] == 1
    assert upstream_counts["tokens"] == 3 * WORDS
    stats = await proxy.stop()
    assert stats["accepted"] == 1  # the exit STATS line carries the counts too
