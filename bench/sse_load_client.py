"""A light SSE load client: thousands of concurrent streams from one process, on either route.

    python -m bench.sse_load_client --port P --streams 5000 --rate 500 --words 80 \
        --inter-token-ms 200 --contexts 10 [--route rag|v1]

``--route rag`` (default) reads ``POST /rag/stream``, ``--route v1`` reads
``POST /v1/chat/completions`` as the ``openai`` SDK would (the two shapes: ``bench.sse_stream``).

httpx costs too much per connection and per chunk to hold 5,000 streams on a shared 2-core machine
without becoming the bottleneck, so each stream is an ``asyncio.Protocol`` on uvloop with a
hand-written HTTP/1.1 request and an incremental parser (``bench.sse_stream``). Each stream
records the monotonic time of every text event; ``time.monotonic()`` is one clock for all
processes on Linux, so the parent can line these times up with its RSS samples.

Protocol with the parent (stdin/stdout lines): the client first opens one stream per contextId
and reads it up to its first ``delta`` (so every context is cached and the streaming path is
warm), prints ``WARMED``, waits for ``GO`` on stdin, opens ``--streams`` streams at ``--rate`` per
second, and prints ``RESULT <json>`` (see ``load_report.build_report``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import uvloop

from bench.load_report import StreamRecord, build_report
from bench.sse_stream import ROUTES, SseStreamProtocol, open_stream, request_bytes
from bench.stream_children import LagProbe, raise_open_file_limit

QUERY = "Which sleeping bags are rated below -5 °C, and how do I return one?"
_START_BATCH_S = 0.01  # streams due within this much time start together
_FAILURE_CHECK_S = 0.5
# A level clearly fails when this share of the streams started so far has failed, or has waited
# longer than _STALLED_S for its first token (the service no longer keeps up).
_FAILING_SHARE = 0.05
_FAILING_MIN = 10
_STALLED_S = 10.0


def failing_reason(started: list[StreamRecord], now: float) -> str | None:
    """Why the level has clearly failed already, or None."""
    enough = max(_FAILING_MIN, _FAILING_SHARE * len(started))
    failed = sum(1 for r in started if r.outcome not in (None, "done", "refused"))
    if failed >= enough:
        return f"{failed} of {len(started)} streams started so far failed"
    stalled = sum(
        1
        for r in started
        if r.outcome is None
        and not r.delta_times
        and r.started_at is not None
        and now - r.started_at > _STALLED_S
    )
    if stalled >= enough:
        return f"{stalled} streams waited more than {_STALLED_S:g} s for their first token"
    return None


async def warm_up(
    port: int, contexts: int, query: str, timeout_s: float, route: str = "rag"
) -> list[StreamRecord]:
    """One stream per contextId, read up to its first delta (retrieval runs here, once each)."""
    records = []
    for index in range(contexts):
        record = StreamRecord(index, f"bench-ctx-{index}")
        request = request_bytes(port, record.context_id, query, route)
        protocol = await open_stream(port, record, request, stop_after_first=True, route=route)
        if protocol is not None:
            await asyncio.wait([protocol.finished], timeout=timeout_s)
            protocol.abort("warm_up_timeout")
        records.append(record)
    return records


async def ramp(
    port: int,
    streams: int,
    rate: float,
    contexts: int,
    query: str,
    deadline_s: float,
    route: str = "rag",
) -> tuple[list[StreamRecord], dict[str, Any]]:
    """Open ``streams`` streams at ``rate``/s and follow them until done, the deadline, or the
    level clearly failing (then every open stream is aborted and the reason reported)."""
    records = [StreamRecord(i, f"bench-ctx-{i % contexts}") for i in range(streams)]
    requests = [request_bytes(port, f"bench-ctx-{i}", query, route) for i in range(contexts)]
    live: dict[int, SseStreamProtocol] = {}
    followers: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    started = next_check = time.monotonic()
    stopped: str | None = None
    for record in records:
        due = started + record.index / rate
        if due - time.monotonic() > _START_BATCH_S:
            await asyncio.sleep(due - time.monotonic())
        if time.monotonic() >= next_check:
            next_check += _FAILURE_CHECK_S
            stopped = failing_reason(records[: record.index], time.monotonic())
            if stopped:
                break  # do not pile more streams onto a service that no longer keeps up
        request = requests[record.index % contexts]
        followers.append(loop.create_task(follow_stream(port, record, request, live, route)))
    ramp_end = time.monotonic()
    deadline = started + deadline_s
    while stopped is None:
        pending = [task for task in followers if not task.done()]
        if not pending or time.monotonic() >= deadline:
            break
        await asyncio.wait(pending, timeout=min(_FAILURE_CHECK_S, deadline - time.monotonic()))
        stopped = failing_reason(records, time.monotonic())
    _stop_all(records, followers, live, "stopped_early" if stopped else "deadline")
    return records, {"started": started, "ramp_s": ramp_end - started, "stopped_early": stopped}


async def follow_stream(
    port: int,
    record: StreamRecord,
    request: bytes,
    live: dict[int, SseStreamProtocol],
    route: str = "rag",
) -> None:
    """Open the stream and wait for its end; a refusal (503) is retried after its Retry-After."""
    while True:
        protocol = await open_stream(port, record, request, route=route)
        if protocol is None:
            return
        live[record.index] = protocol
        await protocol.finished
        if record.outcome != "refused":
            return
        record.refusals += 1
        record.outcome = None
        record.status = None
        record.ended_at = None
        await asyncio.sleep(record.retry_after_s)


def _stop_all(
    records: list[StreamRecord],
    followers: list[asyncio.Task[None]],
    live: dict[int, SseStreamProtocol],
    outcome: str,
) -> None:
    """End every stream still open or waiting to retry with ``outcome``."""
    for task in followers:
        task.cancel()
    for protocol in live.values():
        protocol.abort(outcome)  # no-op when finished
    for record in records:
        if record.outcome is None and record.started_at is not None:
            record.outcome = outcome


async def run_client(args: argparse.Namespace) -> None:
    warmed = await warm_up(args.port, args.contexts, args.query, 60.0, args.route)
    bad = [r for r in warmed if r.outcome != "warmed"]
    print(f"WARMED {len(warmed) - len(bad)}", flush=True)
    if bad:
        print("RESULT " + json.dumps({"warm_up_failed": [r.outcome for r in bad]}), flush=True)
        return
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if line.strip() != "GO":
        return
    probe = LagProbe()
    probe.start()
    records, timing = await ramp(
        args.port, args.streams, args.rate, args.contexts, args.query, args.deadline, args.route
    )
    await probe.stop()
    report = build_report(
        records,
        words=args.words,
        inter_token_s=args.inter_token_ms / 1000,
        ramp_started=timing["started"],
        ramp_s=timing["ramp_s"],
    )
    report["stopped_early"] = timing["stopped_early"]
    report["client_loop_lag"] = probe.summary()
    print("RESULT " + json.dumps(report), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sse_load_client")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="new streams per second")
    parser.add_argument("--words", type=int, required=True, help="expected deltas per answer")
    parser.add_argument("--inter-token-ms", type=float, required=True)
    parser.add_argument("--contexts", type=int, default=10)
    parser.add_argument("--query", default=QUERY)
    parser.add_argument("--deadline", type=float, required=True, help="seconds for the ramp+run")
    parser.add_argument("--route", choices=ROUTES, default="rag", help="/rag/stream or /v1")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_open_file_limit()
    uvloop.run(run_client(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
