"""The child processes of the streaming benchmarks: the loopback upstream and the service.

    python -m bench.stream_children upstream --words 30 --first-token-ms 50 --inter-token-ms 200
    python -m bench.stream_children token-upstream --words 60 [--tick-ms 1]  # 200 ms pacing
    python -m bench.stream_children service [--profile FILE]     # settings from RAG_* env

``upstream`` is the fault-injecting ``FaultUpstream`` (one request per connection, 36-52 µs of
CPU per token; the TTFT benchmark uses it). ``token-upstream`` is ``bench.token_upstream``: the
same answers, keep-alive, one ticker for all streams, 9-15 µs per token; the concurrency
benchmark uses it so that 25,000 tokens/s leave the service its share of the two cores.

Each child runs on uvloop in its own process, so the benchmark client, the upstream and the
service never share an event loop (or a GIL). A child prints ``READY <port>`` on stdout once it
accepts connections (the service: once its lifespan, model load included, has completed) and, when
stopped with SIGTERM, one ``STATS <json>`` line: the lateness of a 10 ms timer on its event loop
(how late a sleeping stream would wake up there) and its CPU seconds; the upstreams add their
chat request count and most connections open at once, the token upstream its tokens sent.

The service child is ``rag-service serve`` minus the access log: the same ``create_app(Settings())``
served by uvicorn with uvloop and httptools. ``--gc-freeze`` (a diagnostic, off by default) moves
the startup heap (torch, transformers, chromadb: ~470,000 objects) out of the garbage collector's
reach, which is what the service itself does not do (yet); see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import os
import resource
import signal
import socket
import sys
import time
from array import array
from pathlib import Path
from typing import Any

import uvloop

LOOPBACK = "127.0.0.1"
LAG_PROBE_S = 0.01
LISTEN_BACKLOG = 8192  # thousands of streams connect within seconds; the default 100 drops SYNs


def raise_open_file_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit (every stream holds 2-3 sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class LagProbe:
    """Samples how late a ``LAG_PROBE_S`` timer fires on the running loop, until stopped."""

    def __init__(self) -> None:
        self.samples = array("d")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_PROBE_S)
            self.samples.append(time.monotonic() - before - LAG_PROBE_S)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.samples)
        if not ordered:
            return {"samples": 0}

        def at(share: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000, 2)

        return {"samples": len(ordered), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0)}


def _stats_line(probe: LagProbe, extra: dict[str, Any]) -> str:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats = {
        "loop_lag": probe.summary(),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "max_rss_kb": usage.ru_maxrss,
        **extra,
    }
    return "STATS " + json.dumps(stats)


# -- the upstream -----------------------------------------------------------------------------


async def serve_upstream(words: int, first_token_s: float, inter_token_s: float) -> None:
    from rag_service.testing.fault_upstream import AnswerStyle, FaultUpstream

    style = AnswerStyle(
        words=words, first_token_delay_s=first_token_s, inter_token_delay_s=inter_token_s
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    probe = LagProbe()
    upstream = FaultUpstream(style=style)
    await upstream.start()
    probe.start()
    print(f"READY {upstream.port}", flush=True)
    chat_requests = 0
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            # The server records every request with its body; keep only a count.
            chat_requests += len(upstream.requests)
            upstream.requests.clear()
    finally:
        await probe.stop()
        await upstream.stop()
    chat_requests += len(upstream.requests)
    extra = {"requests": chat_requests, "max_open_connections": upstream.max_open_connections}
    print(_stats_line(probe, extra), flush=True)


async def serve_token_upstream(
    words: int, first_token_s: float, inter_token_s: float, tick_s: float
) -> None:
    from bench.token_upstream import TokenUpstream

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    probe = LagProbe()
    upstream = TokenUpstream(
        words=words, first_token_s=first_token_s, inter_token_s=inter_token_s, tick_s=tick_s
    )
    await upstream.start()
    probe.start()
    print(f"READY {upstream.port}", flush=True)
    try:
        await stop.wait()
    finally:
        await probe.stop()
        await upstream.stop()
    extra = {
        "requests": upstream.chat_requests,
        "max_open_connections": upstream.max_open_connections,
        "tokens": upstream.tokens_sent,
    }
    print(_stats_line(probe, extra), flush=True)


# -- the service ------------------------------------------------------------------------------


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, 0))
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


async def serve_service(profile_path: Path | None, *, gc_freeze: bool = False) -> None:
    import uvicorn

    from rag_service.app import create_app
    from rag_service.http_server import server_config
    from rag_service.settings import Settings

    sock = listening_socket()
    config = server_config(
        create_app(Settings()),
        log_level="warning",
        access_log=False,
        backlog=LISTEN_BACKLOG,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    probe = LagProbe()
    profiler = cProfile.Profile() if profile_path else None
    # uvicorn re-raises the signal it shut down on; a no-op handler lets the stats be printed.
    signal.signal(signal.SIGTERM, lambda *_: None)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.05)
    if server.started:
        if gc_freeze:  # diagnostic: what the service would gain from freezing its startup heap
            gc.collect()
            gc.freeze()
        print(f"READY {sock.getsockname()[1]}", flush=True)
        probe.start()
        if profiler is not None:
            profiler.enable()
    try:
        await serving
    finally:
        if profiler is not None:
            profiler.disable()
        await probe.stop()
    print(_stats_line(probe, {}), flush=True)
    if profiler is not None and profile_path is not None:
        profile_path.parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(str(profile_path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_children")
    kinds = parser.add_subparsers(dest="kind", required=True)
    upstream = kinds.add_parser("upstream", help="the fault-injecting loopback upstream")
    upstream.add_argument("--words", type=int, required=True, help="tokens per answer")
    upstream.add_argument("--first-token-ms", type=float, default=0.0)
    upstream.add_argument("--inter-token-ms", type=float, default=0.0)
    token = kinds.add_parser(
        "token-upstream", help="the lean paced upstream (bench.token_upstream)"
    )
    token.add_argument("--words", type=int, required=True, help="tokens per answer")
    token.add_argument("--first-token-ms", type=float, default=200.0)
    token.add_argument("--inter-token-ms", type=float, default=200.0)
    token.add_argument("--tick-ms", type=float, default=1.0, help="the ticker's resolution")
    service = kinds.add_parser("service", help="create_app(Settings()) under uvicorn")
    service.add_argument("--profile", type=Path, default=None, help="write cProfile stats here")
    service.add_argument(
        "--gc-freeze", action="store_true", help="gc.freeze() once started (diagnostic)"
    )
    args = parser.parse_args(argv)
    raise_open_file_limit()
    if args.kind in ("upstream", "token-upstream"):
        first_s, inter_s = args.first_token_ms / 1000, args.inter_token_ms / 1000
        if args.kind == "upstream":
            uvloop.run(serve_upstream(args.words, first_s, inter_s))
        else:
            uvloop.run(serve_token_upstream(args.words, first_s, inter_s, args.tick_ms / 1000))
    else:
        uvloop.run(serve_service(args.profile, gc_freeze=args.gc_freeze))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
