"""The fleet's upstream as a process of its own: ``tests.fixture_servers.fault_upstream`` on a
loopback port, so that service processes share one upstream the way replicas share a model
server. Run as ``python -m tests.fleet.upstream_process --port P [--words N]
[--inter-token-delay-s S]``; it prints ``ready <port>`` once it listens and runs until SIGTERM.

What a request gets is chosen by markers in its last user message (the client's question is in
it), so that each test asks for the behaviour it needs through the service's own API:

- ``[hold]``: the answer's first word, then nothing for ``HOLD_S``: a generation that keeps its
  stream slot until the test cancels the stream (``DELETE /rag/stream/{id}``);
- ``[fail]``: ``503`` (a retryable upstream failure, counted by the breaker);
- ``[hold-once]``: the first request of a question stalls after ``HOLD_ONCE_WORDS`` words
  for ``HOLD_S``; any later one of the same question (a take-over's continuation, replayed
  or with the delivered text as a prefix) streams its answer: a replica killed mid-answer;
- anything else: a complete answer, a deterministic function of the messages (a replayed
  request streams the same text), paced by ``--inter-token-delay-s``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from typing import Any

from tests.fixture_servers.fault_plan import AnswerStyle, Complete, Fault, Stall, Status
from tests.fixture_servers.fault_upstream import FaultUpstream

HOLD = "[hold]"
HOLD_ONCE = "[hold-once]"
HOLD_ONCE_WORDS = 4
FAIL = "[fail]"
HOLD_S = 600.0  # longer than any test; the stream is cancelled or the process stopped first


def fleet_plan() -> Callable[[int, dict[str, Any] | None], Fault]:
    held_once: set[str] = set()

    def plan(index: int, body: dict[str, Any] | None) -> Fault:
        question = _last_user_message(body or {})
        if HOLD_ONCE in question:
            if question in held_once:
                return Complete()
            held_once.add(question)
            return Stall(after_events=HOLD_ONCE_WORDS, seconds=HOLD_S)
        if HOLD in question:
            return Stall(after_events=1, seconds=HOLD_S)
        if FAIL in question:
            return Status(503, "injected by the fleet upstream")
        return Complete()

    return plan


def _last_user_message(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else str(content)
    return ""


async def serve(port: int, style: AnswerStyle) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with FaultUpstream(fleet_plan(), style=style, port=port) as upstream:
        print(f"ready {upstream.port}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--words", type=int, default=24)
    parser.add_argument("--inter-token-delay-s", type=float, default=0.02)
    args = parser.parse_args(argv)
    style = AnswerStyle(words=args.words, inter_token_delay_s=args.inter_token_delay_s)
    asyncio.run(serve(args.port, style))


if __name__ == "__main__":
    main(sys.argv[1:])
