"""The child processes of the streaming benchmarks: the upstream, proxy, relay and the service.

    python -m bench.stream_children token-upstream --words 60 [--terminator-delay-ms 2]
    python -m bench.stream_children proxy --target-port P --delay-ms 60
    python -m bench.stream_children relay --upstream http://127.0.0.1:P/v1
    python -m bench.stream_children service [--profile FILE]     # settings from RAG_* env

``token-upstream`` is ``bench.token_upstream``: keep-alive, one ticker for all streams, 9-15 µs
of CPU per token, the chunked terminator in a write of its own after ``[DONE]``; every streaming
benchmark uses it (the fault-injecting ``FaultUpstream`` costs 36-52 µs per token). ``proxy`` is
``bench.connect_delay_proxy`` (a set-up delay per new connection), ``relay`` the minimal FastAPI
+ httpx relay (``bench.minimal_relay``) under stock uvicorn.

Each child runs on uvloop in its own process, so the benchmark client, the upstream and the
service never share an event loop (or a GIL). A child prints ``READY <port>`` on stdout once it
accepts connections (the service: once its lifespan, model load included, has completed) and, when
stopped with SIGTERM, one ``STATS <json>`` line: the lateness of a 10 ms timer on its event loop
(how late a sleeping stream would wake up there) and its CPU seconds; the upstream adds its chat
request count, connections accepted and most open at once and tokens sent, the proxy its
connection counts. While running, the token upstream and the proxy answer a ``COUNTS`` line on
stdin with a ``COUNTS <json>`` line of their counters (``ChildProcess.counts``).

The service child is ``rag-service serve`` minus the access log: the same ``create_app(Settings())``
served by uvicorn with uvloop and httptools. ``--gc-freeze`` (a diagnostic, off by default) moves
the startup heap (torch, transformers, chromadb: ~470,000 objects) out of the garbage collector's
reach, which is what the service itself does not do (yet); see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop

from tests.fixture_servers.async_server import LoopTask

LOOPBACK = "127.0.0.1"
LAG_PROBE_S = 0.01
LISTEN_BACKLOG = 8192  # thousands of streams connect within seconds; the default 100 drops SYNs


def raise_open_file_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit (every stream holds 2-3 sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class LagProbe(LoopTask):
    """Samples how late a ``LAG_PROBE_S`` timer fires on the running loop, until stopped."""

    def __init__(self) -> None:
        super().__init__()
        self.samples = array("d")

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


async def answer_counts(counts: Callable[[], dict[str, Any]]) -> None:
    """Answer every ``COUNTS`` line on stdin with ``COUNTS <json>`` until stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (OSError, ValueError):  # stdin is not a pipe (run by hand): no control channel
        return
    while line := await reader.readline():
        if line.strip() == b"COUNTS":
            print("COUNTS " + json.dumps(counts()), flush=True)


async def until_sigterm(counts: Callable[[], dict[str, Any]] | None = None) -> None:
    """Wait for SIGTERM, answering ``COUNTS`` meanwhile when ``counts`` is given."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    control = asyncio.ensure_future(answer_counts(counts)) if counts else None
    try:
        await stop.wait()
    finally:
        if control is not None:
            control.cancel()
            await asyncio.gather(control, return_exceptions=True)


# -- the upstreams and the proxy --------------------------------------------------------------


async def serve_token_upstream(args: argparse.Namespace) -> None:
    from bench.token_upstream import TokenUpstream

    probe = LagProbe()
    upstream = TokenUpstream(
        words=args.words,
        first_token_s=args.first_token_ms / 1000,
        inter_token_s=args.inter_token_ms / 1000,
        tick_s=args.tick_ms / 1000,
        terminator_delay_s=args.terminator_delay_ms / 1000,
    )

    def counts() -> dict[str, Any]:
        return {
            "requests": upstream.chat_requests,
            "accepted_connections": upstream.accepted_connections,
            "max_open_connections": upstream.max_open_connections,
            "tokens": upstream.tokens_sent,
        }

    await upstream.start()
    probe.start()
    print(f"READY {upstream.port}", flush=True)
    try:
        await until_sigterm(counts)
    finally:
        await probe.stop()
        await upstream.stop()
    print(_stats_line(probe, counts()), flush=True)


async def serve_proxy(target_port: int, delay_s: float) -> None:
    from bench.connect_delay_proxy import ConnectDelayProxy

    probe = LagProbe()
    proxy = ConnectDelayProxy(target_port=target_port, delay_s=delay_s)
    await proxy.start()
    probe.start()
    print(f"READY {proxy.port}", flush=True)
    try:
        await until_sigterm(proxy.counts)
    finally:
        await probe.stop()
        await proxy.stop()
    print(_stats_line(probe, proxy.counts()), flush=True)


# -- the relay and the service ----------------------------------------------------------------


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, 0))
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


async def serve_config(
    config: Any, profile_path: Path | None = None, on_started: Callable[[], None] | None = None
) -> None:
    """Serve a ``uvicorn.Config`` on a loopback socket: ``READY``, then ``STATS`` on SIGTERM."""
    import uvicorn

    sock = listening_socket()
    server = uvicorn.Server(config)
    probe = LagProbe()
    profiler = cProfile.Profile() if profile_path else None
    # uvicorn re-raises the signal it shut down on; a no-op handler lets the stats be printed.
    signal.signal(signal.SIGTERM, lambda *_: None)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.05)
    if server.started:
        if on_started is not None:
            on_started()
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


async def serve_relay(upstream_base_url: str) -> None:
    """The minimal relay under stock uvicorn (uvloop + httptools), as a plain service would run."""
    import uvicorn

    from bench.minimal_relay import relay_app

    config = uvicorn.Config(
        relay_app(upstream_base_url),
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        backlog=LISTEN_BACKLOG,
        timeout_graceful_shutdown=5,
    )
    await serve_config(config)


def _freeze_startup_heap() -> None:
    gc.collect()
    gc.freeze()


async def serve_service(profile_path: Path | None, *, gc_freeze: bool = False) -> None:
    from rag_service.app import create_app
    from rag_service.server import server_config, serving_gc
    from rag_service.settings import Settings

    settings = Settings()
    config = server_config(
        create_app(settings, process_tuning=serving_gc),
        settings,
        log_level="warning",
        access_log=False,
        backlog=LISTEN_BACKLOG,
        timeout_graceful_shutdown=5,
    )
    # gc_freeze: a diagnostic, what the service would gain from freezing its startup heap.
    await serve_config(config, profile_path, _freeze_startup_heap if gc_freeze else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_children")
    kinds = parser.add_subparsers(dest="kind", required=True)
    token = kinds.add_parser("token-upstream", help="the paced upstream (bench.token_upstream)")
    token.add_argument("--words", type=int, required=True, help="tokens per answer")
    token.add_argument("--first-token-ms", type=float, default=200.0)
    token.add_argument("--inter-token-ms", type=float, default=200.0)
    token.add_argument("--tick-ms", type=float, default=1.0, help="the ticker's resolution")
    token.add_argument(
        "--terminator-delay-ms", type=float, default=2.0, help="from [DONE] to the body's end"
    )
    proxy = kinds.add_parser("proxy", help="the delaying TCP proxy (bench.connect_delay_proxy)")
    proxy.add_argument("--target-port", type=int, required=True)
    proxy.add_argument("--delay-ms", type=float, required=True, help="per new connection")
    relay = kinds.add_parser("relay", help="the minimal FastAPI + httpx relay under uvicorn")
    relay.add_argument("--upstream", required=True, help="the upstream's base URL (.../v1)")
    service = kinds.add_parser("service", help="create_app(Settings()) under uvicorn")
    service.add_argument("--profile", type=Path, default=None, help="write cProfile stats here")
    service.add_argument(
        "--gc-freeze", action="store_true", help="gc.freeze() once started (diagnostic)"
    )
    args = parser.parse_args(argv)
    raise_open_file_limit()
    if args.kind == "token-upstream":
        uvloop.run(serve_token_upstream(args))
    elif args.kind == "proxy":
        uvloop.run(serve_proxy(args.target_port, args.delay_ms / 1000))
    elif args.kind == "relay":
        uvloop.run(serve_relay(args.upstream))
    else:
        uvloop.run(serve_service(args.profile, gc_freeze=args.gc_freeze))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
