"""A light load client for ``POST /rag/stream``: thousands of concurrent SSE streams, one process.

    python -m bench.sse_load_client --port P --streams 5000 --rate 500 --words 80 \
        --inter-token-ms 200 --contexts 10

httpx costs too much per connection and per chunk to hold 5,000 streams on a shared 2-core machine
without becoming the bottleneck, so this is an ``asyncio.Protocol`` on uvloop with a hand-written
HTTP/1.1 request and an incremental parser (chunked transfer coding, then SSE events). Each stream
records the monotonic time of every ``delta`` event; ``time.monotonic()`` is one clock for all
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
from typing import Any, cast

import uvloop

from bench.load_report import StreamRecord, build_report
from bench.stream_children import LagProbe, raise_open_file_limit

QUERY = "Which sleeping bags are rated below -5 °C, and how do I return one?"
_START_BATCH_S = 0.01  # streams due within this much time start together
_STREAM_STATUS_OK = 200
_REFUSED_STATUS = 503  # the service sheds load: retried after Retry-After, as SDK clients do
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


def request_bytes(port: int, context_id: str, query: str) -> bytes:
    body = json.dumps({"query": query}).encode()
    head = (
        f"POST /rag/stream?context={context_id} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class SseStreamProtocol(asyncio.Protocol):
    """One ``POST /rag/stream``: writes the request, parses the response as it arrives."""

    def __init__(self, record: StreamRecord, request: bytes, *, stop_after_first: bool) -> None:
        self.record = record
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._request = request
        self._stop_after_first = stop_after_first
        self._transport: asyncio.Transport | None = None
        self._head = b""
        self._raw = bytearray()  # chunked body bytes not yet de-chunked
        self._body = bytearray()  # de-chunked SSE bytes not yet parsed
        self._in_body = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but they implement it.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self._in_body:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            self._start_body(self._head[:end], self._head[end + 4 :])
            if self.finished.done():
                return
        else:
            self._raw += data
        self._dechunk()
        self._parse_events(now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            if self.record.outcome is None:
                self.record.outcome = "connection_lost"
            self.record.ended_at = time.monotonic()
            self.finished.set_result(None)

    def abort(self, outcome: str) -> None:
        if self.record.outcome is None:
            self.record.outcome = outcome
        self._end()

    def _start_body(self, head: bytes, rest: bytes) -> None:
        self._in_body = True
        status_line, _, headers = head.partition(b"\r\n")
        self.record.status = int(status_line.split()[1])
        if self.record.status == _REFUSED_STATUS:
            self.record.retry_after_s = retry_after_s(headers)
            self.abort("refused")
            return
        if self.record.status != _STREAM_STATUS_OK:
            self.abort(f"http_{self.record.status}")
            return
        if b"transfer-encoding: chunked" not in headers.lower():
            self.abort("not_chunked")
            return
        self._raw += rest

    def _dechunk(self) -> None:
        raw = self._raw
        while True:
            line_end = raw.find(b"\r\n")
            if line_end < 0:
                return
            size = int(raw[:line_end].split(b";")[0], 16)
            if size == 0:
                del raw[:]
                return
            if len(raw) < line_end + 2 + size + 2:
                return
            self._body += raw[line_end + 2 : line_end + 2 + size]
            del raw[: line_end + 2 + size + 2]

    def _parse_events(self, now: float) -> None:
        body = self._body
        start = 0
        while not self.finished.done():
            end = body.find(b"\n\n", start)
            if end < 0:
                break
            self._event(bytes(body[start:end]), now)
            start = end + 2
        del body[:start]

    def _event(self, block: bytes, now: float) -> None:
        name = data = event_id = b""
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                data = line[6:]
            elif line.startswith(b"event: "):
                name = line[7:]
            elif line.startswith(b"id: "):
                event_id = line[4:]
        if not name:
            return  # the opening `retry:` field, or a `: ping` comment
        record = self.record
        record.note_seq(int(event_id.rpartition(b":")[2]))
        if name == b"delta":
            record.delta_times.append(now)
            record.parts.append(json.loads(data)["text"])
            if self._stop_after_first:
                self.abort("warmed")
        elif name == b"meta":
            record.meta_at = now
            record.state = json.loads(data)["context"]["state"]
        elif name == b"done":
            record.done_at = now
            record.outcome = "done"
            self._end()
        elif name == b"error":
            record.outcome = "error:" + str(json.loads(data).get("code"))
            self._end()

    def _end(self) -> None:
        if self.record.ended_at is None:
            self.record.ended_at = time.monotonic()
        if self._transport is not None:
            self._transport.close()
        if not self.finished.done():
            self.finished.set_result(None)


def retry_after_s(headers: bytes) -> float:
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"retry-after":
            return float(value.strip())
    return 1.0


async def open_stream(
    port: int, record: StreamRecord, request: bytes, *, stop_after_first: bool = False
) -> SseStreamProtocol | None:
    """Connect and send; None (with the record's outcome set) when the connection fails."""
    loop = asyncio.get_running_loop()
    record.opened_at = time.monotonic()
    if record.started_at is None:  # a retry keeps the first attempt's start (TTFT as users see it)
        record.started_at = record.opened_at
    protocol = SseStreamProtocol(record, request, stop_after_first=stop_after_first)
    try:
        await loop.create_connection(lambda: protocol, "127.0.0.1", port)
    except OSError as error:
        record.outcome = f"connect_error:{error.errno}"
        return None
    return protocol


async def warm_up(port: int, contexts: int, query: str, timeout_s: float) -> list[StreamRecord]:
    """One stream per contextId, read up to its first delta (retrieval runs here, once each)."""
    records = []
    for index in range(contexts):
        record = StreamRecord(index, f"bench-ctx-{index}")
        protocol = await open_stream(
            port, record, request_bytes(port, record.context_id, query), stop_after_first=True
        )
        if protocol is not None:
            await asyncio.wait([protocol.finished], timeout=timeout_s)
            protocol.abort("warm_up_timeout")
        records.append(record)
    return records


async def ramp(
    port: int, streams: int, rate: float, contexts: int, query: str, deadline_s: float
) -> tuple[list[StreamRecord], dict[str, Any]]:
    """Open ``streams`` streams at ``rate``/s and follow them until done, the deadline, or the
    level clearly failing (then every open stream is aborted and the reason reported)."""
    records = [StreamRecord(i, f"bench-ctx-{i % contexts}") for i in range(streams)]
    requests = [request_bytes(port, f"bench-ctx-{i}", query) for i in range(contexts)]
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
        followers.append(loop.create_task(follow_stream(port, record, request, live)))
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
    port: int, record: StreamRecord, request: bytes, live: dict[int, SseStreamProtocol]
) -> None:
    """Open the stream and wait for its end; a refusal (503) is retried after its Retry-After."""
    while True:
        protocol = await open_stream(port, record, request)
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
    warmed = await warm_up(args.port, args.contexts, args.query, timeout_s=60.0)
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
        args.port, args.streams, args.rate, args.contexts, args.query, args.deadline
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_open_file_limit()
    uvloop.run(run_client(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
