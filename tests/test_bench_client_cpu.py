"""The client CPU benchmark with tiny numbers: every contender reads every exact answer.

Real processes (the token upstream, the delaying proxy, one child per contender); figures are
checked for presence and consistency, never against the goal.
"""

from __future__ import annotations

from bench import client_cpu
from bench.client_cpu_child import CONTENDERS

STREAMS, TOKENS = 6, 5


def test_each_contender_reads_every_token_of_every_stream_through_the_proxy() -> None:
    messages: list[str] = []
    result = client_cpu.run(
        streams=STREAMS, tokens=TOKENS, rounds=2, connect_delay_ms=5, log=messages.append
    )

    assert len(result.rounds) == 2
    for figures in result.rounds:
        assert set(figures) == set(CONTENDERS)
        for name, measured in figures.items():
            assert measured["contender"] == name
            assert measured["tokens"] == STREAMS * TOKENS  # the child checked every text too
            assert measured["cpu_s"] > 0
            assert measured["us_per_token"] > 0
    # The order of the contenders rotates from one round to the next.
    assert [m.split(" ")[2] for m in messages[1:]] == [
        "ours", "aiohttp", "httpx", "aiohttp", "httpx", "ours"
    ]  # fmt: skip
    assert result.ratio("aiohttp") == 1.0
    data = result.data
    assert set(data["us_per_token"]) == set(CONTENDERS)
    assert set(data["goals"]) == {"ours_at_most_1.2x_aiohttp"}
    assert data["connect_delay_ms"] == 5
    for label in client_cpu.LABELS.values():
        assert label in result.markdown
