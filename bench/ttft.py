"""Time-to-first-token benchmark: what the service adds to the upstream's own first token, next to
a direct client and a minimal relay, with a realistic cost per new upstream connection.

    .venv/bin/python -m bench.ttft                         # 200 requests per path, 20 warm-up rounds
    .venv/bin/python -m bench.ttft --quick                 # 50 requests per path, 5 warm-up rounds
    .venv/bin/python -m bench.ttft --connect-delay-ms 0    # no connection cost (no proxy)

Processes, all on loopback: the token upstream (``bench.token_upstream``: first token after 50 ms,
8 tokens 2 ms apart, the chunked terminator 2 ms after ``[DONE]`` in a write of its own), the
delaying proxy in front of it (``bench.connect_delay_proxy``: every new connection waits
``--connect-delay-ms``, default 60 ms, like a TCP+TLS handshake across a region), the minimal
relay (``bench.minimal_relay``), the service (``create_app`` under uvicorn + uvloop, the real
embedder, embedded Chroma holding the sample catalog, ingested into a temp dir first) and this
process as the client. Everything that talks to the upstream goes through the proxy, the direct
client too. The four paths and their checks are in ``bench.ttft_paths``.

Two phases, in one run:

1. **Upstream connections for 40 sequential answers**, path after path (the proxy's count of
   accepted connections before and after). It starts cold, so a client that keeps its
   connection needs 1; the service's two routes share its pool, so ``/v1`` needs 0 more after
   ``/rag/stream``. This phase also asks each service contextId its first question.
2. **TTFT**: warm-up rounds, then the measured rounds; each round asks every path once, in an
   order that rotates every round, one request at a time with a 10 ms pause between requests.
   Every service answer comes from a fresh (cached) context. Overhead = (the path's percentile)
   - (the direct path's percentile).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvloop

from bench.latency_stats import summarise_ms
from bench.repo_paths import SAMPLE_CATALOG
from bench.result_output import (
    command_line,
    goals_and_notes,
    log_to_stderr,
    results_file,
    run_with_options,
)
from bench.service_process import (
    ChildProcess,
    child_env,
    ingest_sample_catalog,
    service_env,
    token_upstream,
)
from bench.ttft_paths import LABELS, PATHS, SERVICE_PATHS, Paths, Sample

RESULTS_FILE = results_file("ttft")
WORDS = 8
FIRST_TOKEN_MS = 50.0
INTER_TOKEN_MS = 2.0
CONNECT_DELAY_MS = 60.0
SEQUENTIAL_ANSWERS = 40
FULL_REQUESTS, FULL_WARMUP = 200, 20
QUICK_REQUESTS, QUICK_WARMUP = 50, 5
PAUSE_S = 0.01
GOAL_OVERHEAD_MEDIAN_MS = 3.0
GOAL_SERVICE_CONNECTIONS = 1
CLIENT_TIMEOUT_S = 30.0


@dataclass
class TtftResult:
    requests: int
    warmup_rounds: int
    connect_delay_ms: float
    samples: dict[str, list[Sample]]
    connections: dict[str, int]  # new upstream connections for SEQUENTIAL_ANSWERS answers
    notes: list[str] = field(default_factory=list)

    def summary(self, path: str) -> dict[str, Any]:
        return summarise_ms(s.ttft_s for s in self.samples[path])

    def overhead(self, path: str) -> dict[str, float]:
        ours, direct = self.summary(path), self.summary("direct")
        return {
            f"{key}_ms": round(ours[f"{key}_ms"] - direct[f"{key}_ms"], 2)
            for key in ("median", "p90", "p99")
        }

    def time_to_meta(self, path: str) -> dict[str, Any]:
        return summarise_ms(s.meta_s for s in self.samples[path] if s.meta_s is not None)

    @property
    def goals(self) -> dict[str, bool]:
        service_connections = sum(self.connections[path] for path in SERVICE_PATHS)
        return {
            "rag_overhead_median_at_most_3ms": self.overhead("rag")["median_ms"]
            <= GOAL_OVERHEAD_MEDIAN_MS,
            "v1_overhead_median_at_most_3ms": self.overhead("v1")["median_ms"]
            <= GOAL_OVERHEAD_MEDIAN_MS,
            "service_one_upstream_connection": service_connections <= GOAL_SERVICE_CONNECTIONS,
        }

    @property
    def data(self) -> dict[str, Any]:
        return {
            "requests_per_path": self.requests,
            "warmup_rounds": self.warmup_rounds,
            "connect_delay_ms": self.connect_delay_ms,
            "first_token_delay_ms": FIRST_TOKEN_MS,
            "answer_tokens": WORDS,
            "sequential_answers": SEQUENTIAL_ANSWERS,
            "paths": {
                path: {
                    "ttft": self.summary(path),
                    "overhead_vs_direct": None if path == "direct" else self.overhead(path),
                    "time_to_meta": self.time_to_meta(path) if path in SERVICE_PATHS else None,
                    "upstream_connections": self.connections[path],
                }
                for path in PATHS
            },
            "goals": self.goals,
            "notes": self.notes,
        }

    @property
    def markdown(self) -> str:
        return render_markdown(self)


def run(
    quick: bool = False,
    *,
    requests: int | None = None,
    warmup: int | None = None,
    connect_delay_ms: float = CONNECT_DELAY_MS,
    sequential: int = SEQUENTIAL_ANSWERS,
    store: Path | None = None,
    catalog: Path = SAMPLE_CATALOG,
    log: Callable[[str], None] | None = None,
) -> TtftResult:
    """Measure the four paths; ``store``: an already ingested embedded store (else ingest)."""
    say = log or log_to_stderr
    count = requests or (QUICK_REQUESTS if quick else FULL_REQUESTS)
    rounds = warmup if warmup is not None else (QUICK_WARMUP if quick else FULL_WARMUP)
    with tempfile.TemporaryDirectory(prefix="ttft-bench-") as tmp:
        work = Path(tmp)
        if store is None:
            store = work / "chroma"
            say(f"ingesting {catalog} ...")
            ingest_sample_catalog(store, catalog)
        load_before = os.getloadavg()[0]
        say(f"{sequential} sequential answers per path, then {count} requests per path ...")
        plan = Plan(count, rounds, connect_delay_ms / 1000, sequential)
        samples, connections = uvloop.run(measure(store, work, plan))
    notes = [
        f"upstream (`bench/token_upstream.py`): first token after {FIRST_TOKEN_MS:g} ms, {WORDS} "
        f"tokens {INTER_TOKEN_MS:g} ms apart, the chunked terminator 2 ms after `[DONE]` in a "
        "write of its own (as over TLS).",
        f"every new upstream connection costs {connect_delay_ms:g} ms (`bench/connect_delay_proxy.py`"
        ", for all four paths)"
        if connect_delay_ms
        else "no connection cost (no proxy)",
        "processes: upstream, proxy, relay, service (uvicorn + uvloop, access log off) and this "
        "client (httpx, keep-alive, the same for every path), on the same 2 cores.",
        "one request at a time, paths interleaved round-robin with the order rotating per round, "
        f"{PAUSE_S * 1000:g} ms pause between requests; every service answer from a fresh context.",
        f"upstream connections: new connections during {sequential} sequential answers per path, "
        "from a cold start, in the order of the table; the service's routes share one pool.",
        f"load average (1 min) when the measurement started: {load_before:.2f}, "
        f"after: {os.getloadavg()[0]:.2f}",
    ]
    return TtftResult(count, rounds, connect_delay_ms, samples, connections, notes)


@dataclass(frozen=True)
class Plan:
    requests: int
    warmup_rounds: int
    connect_delay_s: float
    sequential: int


async def measure(
    store: Path, work: Path, plan: Plan
) -> tuple[dict[str, list[Sample]], dict[str, int]]:
    env = child_env()
    upstream = token_upstream(
        work,
        words=WORDS,
        first_token_ms=FIRST_TOKEN_MS,
        inter_token_ms=INTER_TOKEN_MS,
        connect_delay_ms=plan.connect_delay_s * 1000,
    )
    async with upstream as (_, counter):
        upstream_url = f"{counter.base_url}/v1"
        service = service_env(
            store, upstream_url, max_connections=1000, RAG_FRESHNESS__TTL_SECONDS="3600"
        )
        async with (
            await ChildProcess.start(
                "relay", ["relay", "--upstream", upstream_url], env=env, workdir=work
            ) as relay,
            await ChildProcess.start("service", ["service"], env=service, workdir=work) as svc,
        ):
            paths = Paths(
                direct=_client(counter.base_url),
                relay=_client(relay.base_url),
                service=_client(svc.base_url),
                words=WORDS,
            )
            try:
                connections = await count_connections(paths, counter, plan.sequential)
                samples = await measure_ttft(paths, plan)
            finally:
                await paths.aclose()
    return samples, connections


async def count_connections(paths: Paths, counter: ChildProcess, answers: int) -> dict[str, int]:
    """New upstream connections during ``answers`` sequential answers, path after path."""
    key = "connected" if counter.name == "proxy" else "accepted_connections"
    connections = {}
    for path in PATHS:
        before = (await counter.counts())[key]
        for _ in range(answers):
            await paths.one(path)
        connections[path] = (await counter.counts())[key] - before
    return connections


async def measure_ttft(paths: Paths, plan: Plan) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {path: [] for path in PATHS}
    for index in range(plan.warmup_rounds + plan.requests):
        shift = index % len(PATHS)
        for path in PATHS[shift:] + PATHS[:shift]:
            sample = await paths.one(path)
            if index >= plan.warmup_rounds:
                samples[path].append(sample)
            await asyncio.sleep(PAUSE_S)
    return samples


def _client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT_S, trust_env=False)


def render_markdown(result: TtftResult) -> str:
    delay = f"{result.connect_delay_ms:g} ms per new upstream connection"
    lines = [
        f"{result.requests} requests per path after {result.warmup_rounds} warm-up rounds; "
        f"upstream first token after {FIRST_TOKEN_MS:g} ms; {delay}.",
        "",
        "| path | median (ms) | p90 (ms) | p99 (ms) | max (ms) | overhead vs (a): median / p99 "
        f"(ms) | time to context median / p99 (ms) | upstream connections for {SEQUENTIAL_ANSWERS} "
        "answers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for path in PATHS:
        ttft = result.summary(path)
        overhead = to_meta = "–"
        if path != "direct":
            extra = result.overhead(path)
            overhead = f"{extra['median_ms']:+.2f} / {extra['p99_ms']:+.2f}"
        if path in SERVICE_PATHS:
            meta = result.time_to_meta(path)
            to_meta = f"{meta.get('median_ms', '–')} / {meta.get('p99_ms', '–')}"
        lines.append(
            f"| {LABELS[path]} | {ttft['median_ms']} | {ttft['p90_ms']} | {ttft['p99_ms']} "
            f"| {ttft['max_ms']} | {overhead} | {to_meta} | {result.connections[path]} |"
        )
    lines += goals_and_notes(result.goals, result.notes)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = command_line("bench.ttft", __doc__, quick="50 requests per path", output=RESULTS_FILE)
    parser.add_argument("--requests", type=int, default=None, help="requests per path")
    parser.add_argument(
        "--connect-delay-ms", type=float, default=CONNECT_DELAY_MS, help="0: no proxy"
    )
    parser.add_argument("--store", type=Path, default=None, help="an already ingested store")
    return run_with_options(parser, argv, run)


if __name__ == "__main__":
    raise SystemExit(main())
