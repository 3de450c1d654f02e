"""Concurrency benchmark: how many simultaneous SSE streams one service process holds, per route.

    .venv/bin/python -m bench.concurrency            # 1,000 and 3,000 streams, both routes
    .venv/bin/python -m bench.concurrency --quick    # 100 and 300 streams, both routes
    .venv/bin/python -m bench.concurrency --levels 5000 --routes rag --profile   # cProfile
    .venv/bin/python -m bench.concurrency --workers 1,2 --routes rag   # fleet mode, side by side

Per route (``rag``: ``POST /rag/stream``; ``v1``: ``POST /v1/chat/completions`` read as the
``openai`` SDK would) and level, three fresh processes share the machine's 2 cores: the token
upstream (``bench/token_upstream.py``: 5 tokens/s per stream, first token after 200 ms, the
chunked terminator in a write of its own after ``[DONE]``), the service (``create_app`` under
uvicorn + uvloop, the real embedder, embedded Chroma holding the sample catalog) and the load
client (``bench.sse_load_client``). ``--connect-delay-ms`` adds the delaying proxy
(``bench.connect_delay_proxy``) between the service and the upstream. The client first asks
once per contextId (10), so every measured stream is served from the freshness cache (state
``fresh``); then it opens the level's streams at ``RAMP_RATE`` per second. Answers are long
enough that all streams of a level are open at once for ``PLATEAU_S`` seconds, even when the
last ones waited up to ``ADMISSION_ALLOWANCE_S`` to be admitted.

Figures: streams completed with the exact answer; the *added inter-token latency* (gap between
two consecutive text events at the client minus the upstream's 200 ms) over all gaps and over
the plateau; the event-loop lag of each process (a late 10 ms timer: on the upstream it is the
upstream's own share of a late token); memory per stream = (median service VmRSS during the
plateau - VmRSS after warm-up) / streams (reported, no goal); CPU cores used by each process
(and the upstream's per delta: it must not be what is measured). Goals, for each route: 1,000
streams all complete, with an added p99 (whole run) of at most ``GOAL_P99_ADDED_MS``. A level
that clearly fails is stopped early by the load client (5 % of its streams failed, or waited
over 10 s for their first token) and reported as failed, as is one with lost streams or a p99
added latency over ``FAILED_P99_MS``; the next level still runs.

``--workers 1,2``: each level once per worker count, the service run as in fleet mode
(``bench.fleet_service``); the rows differ only in their number of worker processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from bench.concurrency_figures import judge, memory_figures
from bench.concurrency_report import render_markdown, run_notes
from bench.fleet_service import (
    WORKER_NOTES,
    FleetBackends,
    ServeProcess,
    fleet_backends,
    serve_env,
    serve_process,
)
from bench.repo_paths import REPO_ROOT, SAMPLE_CATALOG
from bench.result_output import command_line, log_to_stderr, print_result, results_file
from bench.service_process import (
    ChildProcess,
    ProcessSampler,
    child_env,
    ingest_sample_catalog,
    read_cpu_s,
    service_env,
    token_upstream,
)

RESULTS_FILE = results_file("concurrency")
FULL_LEVELS = (1000, 3000)
QUICK_LEVELS = (100, 300)
ROUTES = ("rag", "v1")
INTER_TOKEN_MS = 200.0
CONTEXTS = 10
RAMP_RATE = 500.0  # new streams per second
PLATEAU_S = 10.0
QUICK_PLATEAU_S = 4.0
# At the edge of a process's capacity the last streams of the ramp wait seconds in the kernel's
# accept queue (docs/benchmarks.md). Answers last this much longer, so that every stream is
# still open at once for the plateau when the last ones were admitted that late: the same
# 10 s after which the load client counts a stream as stalled.
ADMISSION_ALLOWANCE_S = 10.0
GOAL_STREAMS = 1000
GOAL_P99_ADDED_MS = 20.0
FAILED_P99_MS = 1000.0
SETTLE_S = 2.0  # after the warm-up, before the idle RSS is read
POOL_HEADROOM = 100  # RAG_UPSTREAM__MAX_CONNECTIONS = streams + warm-up streams + this


@dataclass(frozen=True)
class LevelPlan:
    streams: int
    rate: float
    plateau_s: float
    admission_s: float = 0.0
    route: str = "rag"
    connect_delay_ms: float = 0.0

    @property
    def ramp_s(self) -> float:
        return self.streams / self.rate

    @property
    def words(self) -> int:
        """Tokens per answer: every stream stays open through the ramp, the admission allowance
        and the plateau."""
        return math.ceil(
            (self.ramp_s + self.admission_s + self.plateau_s) / (INTER_TOKEN_MS / 1000)
        )

    @property
    def deadline_s(self) -> float:
        return self.ramp_s + self.words * INTER_TOKEN_MS / 1000 + 60.0


@dataclass
class ConcurrencyResult:
    levels: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    connect_delay_ms: float = 0.0

    @property
    def goals(self) -> dict[str, bool | None]:
        """Per route at ``GOAL_STREAMS``; None: the run had no level of that size (not measured)."""
        goals: dict[str, bool | None] = {}
        for route in dict.fromkeys(lvl["route"] for lvl in self.levels):
            at_goal = [
                lvl
                for lvl in self.levels
                if lvl["route"] == route and lvl["streams"] == GOAL_STREAMS
            ]
            complete = any(lvl["all_completed"] for lvl in at_goal) if at_goal else None
            latency = any(lvl["latency_met"] for lvl in at_goal) if at_goal else None
            goals[f"{route}_{GOAL_STREAMS}_streams_complete"] = complete
            goals[f"{route}_p99_added_at_most_{GOAL_P99_ADDED_MS:g}ms"] = latency
        return goals

    @property
    def data(self) -> dict[str, Any]:
        return {
            "inter_token_ms": INTER_TOKEN_MS,
            "ramp_rate_per_s": RAMP_RATE,
            "contexts": CONTEXTS,
            "connect_delay_ms": self.connect_delay_ms,
            "goals": self.goals,
            "levels": self.levels,
            "notes": self.notes,
        }

    @property
    def markdown(self) -> str:
        return render_markdown(self.levels, self.goals, self.notes, goal_streams=GOAL_STREAMS)


def run(
    quick: bool = False,
    *,
    levels: Sequence[int] | None = None,
    routes: Sequence[str] = ROUTES,
    connect_delay_ms: float = 0.0,
    plateau_s: float | None = None,
    admission_s: float | None = None,
    rate: float = RAMP_RATE,
    store: Path | None = None,
    catalog: Path = SAMPLE_CATALOG,
    profile_dir: Path | None = None,
    gc_freeze: bool = False,
    workers: Sequence[int] = (),
    settings: Mapping[str, str] | None = None,
    log: Callable[[str], None] | None = None,
) -> ConcurrencyResult:
    """Run the levels of each route one after another (each with fresh processes); see the
    module docstring."""
    say = log or log_to_stderr
    settings = dict(settings or {})  # RAG_* variables for the service, over the run's own
    chosen = tuple(levels or (QUICK_LEVELS if quick else FULL_LEVELS))
    plateau = plateau_s if plateau_s is not None else (QUICK_PLATEAU_S if quick else PLATEAU_S)
    if admission_s is None:
        admission_s = 0.0 if quick else ADMISSION_ALLOWANCE_S
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="concurrency-")))
        backends = stack.enter_context(fleet_backends(work, catalog)) if workers else None
        if store is None and backends is None:
            store = work / "chroma"
            say(f"ingesting {catalog} ...")
            ingest_sample_catalog(store, catalog)
        results: list[dict[str, Any]] = []
        for route in routes:
            for streams in chosen:
                for count in workers or (0,):  # 0: the service child, not fleet mode
                    plan = LevelPlan(streams, rate, plateau, admission_s, route, connect_delay_ms)
                    say(f"{route} level {streams}, workers {count}: {plan.words} tokens each")
                    profile = (
                        profile_dir / f"service-{route}-{streams}.prof" if profile_dir else None
                    )
                    load_before = os.getloadavg()[0]
                    fleet = (backends, count)
                    level = uvloop.run(
                        run_level(
                            plan,
                            store,
                            work,
                            profile,
                            gc_freeze=gc_freeze,
                            fleet=fleet,
                            settings=settings,
                        )
                    )
                    level["load_avg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
                    say(f"{route} level {streams}: {json.dumps(_brief(level))}")
                    results.append(level)
    notes = run_notes(connect_delay_ms, INTER_TOKEN_MS, RAMP_RATE, ADMISSION_ALLOWANCE_S, CONTEXTS)
    notes += WORKER_NOTES if workers else []
    notes += [f"service settings of this run: {name}={value}" for name, value in settings.items()]
    if gc_freeze:
        notes.append("DIAGNOSTIC RUN: the service child called gc.freeze() after startup.")
    return ConcurrencyResult(results, notes=notes, connect_delay_ms=connect_delay_ms)


async def run_level(
    plan: LevelPlan,
    store: Path | None,
    work: Path,
    profile: Path | None,
    *,
    gc_freeze: bool = False,
    fleet: tuple[FleetBackends | None, int] = (None, 0),
    settings: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One level, fresh processes; ``fleet``: ``--workers``' backends and worker count."""
    pool = plan.streams + CONTEXTS + POOL_HEADROOM
    service_args = ["service"] + (["--profile", str(profile)] if profile else [])
    service_args += ["--gc-freeze"] if gc_freeze else []
    async with contextlib.AsyncExitStack() as children:
        upstream, target = await children.enter_async_context(
            token_upstream(
                work,
                words=plan.words,
                first_token_ms=INTER_TOKEN_MS,
                inter_token_ms=INTER_TOKEN_MS,
                connect_delay_ms=plan.connect_delay_ms,
            )
        )
        backends, workers = fleet
        service: ChildProcess | ServeProcess
        if backends is not None:
            prefix = f"bench-{plan.route}-{plan.streams}-{workers}:"
            env = serve_env(
                backends, f"{target.base_url}/v1", max_connections=pool, key_prefix=prefix
            ) | dict(settings or {})
            service = await children.enter_async_context(serve_process(workers, env, work))
        else:
            assert store is not None
            base_url = f"{target.base_url}/v1"
            env = service_env(store, base_url, max_connections=pool, **(settings or {}))
            service = await children.enter_async_context(
                await ChildProcess.start("service", service_args, env=env, workdir=work)
            )
        level = await _drive_client(plan, service, upstream)
        level["service_stats"] = await service.stop()
        if target is not upstream:
            level["proxy_stats"] = await target.stop()
        level["upstream_stats"] = await upstream.stop()
    level["route"] = plan.route
    level["upstream_pool"] = pool
    if workers:
        level["workers"] = workers
    return judge(level, plan.streams, plan.words, GOAL_P99_ADDED_MS, FAILED_P99_MS)


async def _drive_client(
    plan: LevelPlan, service: ChildProcess | ServeProcess, upstream: ChildProcess
) -> dict[str, Any]:
    args = ["--port", str(service.port), "--streams", str(plan.streams), "--rate", str(plan.rate)]
    args += ["--words", str(plan.words), "--inter-token-ms", str(INTER_TOKEN_MS)]
    args += ["--contexts", str(CONTEXTS), "--deadline", str(plan.deadline_s)]
    args += ["--route", plan.route]
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.sse_load_client", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env=child_env(), cwd=REPO_ROOT,
    )  # fmt: skip
    assert client.stdin is not None and client.stdout is not None
    try:
        warmed = await asyncio.wait_for(client.stdout.readline(), 120.0)
        if not warmed.startswith(b"WARMED"):
            raise RuntimeError(f"load client failed to warm up: {warmed!r}")
        await asyncio.sleep(SETTLE_S)
        idle_kb = statistics.median([service.rss_kb() for _ in range(3)])
        cpu_before = _cpu(service, upstream, client.pid)
        # --workers: sampled over the parent and its workers
        sampler = (
            service.sampler() if isinstance(service, ServeProcess) else ProcessSampler(service.pid)
        )
        sampler.start()
        client.stdin.write(b"GO\n")
        await client.stdin.drain()
        began = time.monotonic()
        line = await asyncio.wait_for(client.stdout.readline(), plan.deadline_s + 60.0)
        took = time.monotonic() - began
        cpu_after = _cpu(service, upstream, client.pid)
        await sampler.stop()
    finally:
        if client.returncode is None:
            client.kill()
        await client.wait()
    if not line.startswith(b"RESULT "):
        raise RuntimeError(f"load client ended without a result: {line!r}")
    report: dict[str, Any] = json.loads(line[len(b"RESULT ") :])
    report["run_s"] = round(took, 2)
    report["cores"] = {
        name: round((cpu_after[name] - cpu_before[name]) / took, 2) for name in cpu_before
    }
    # All the service's CPU during the run (stream setup included) per delta it delivered.
    service_cpu_s = cpu_after["service"] - cpu_before["service"]
    report["service_us_per_delta"] = round(service_cpu_s / max(1, report["deltas"]) * 1e6, 1)
    upstream_cpu_s = cpu_after["upstream"] - cpu_before["upstream"]
    report["upstream_us_per_delta"] = round(upstream_cpu_s / max(1, report["deltas"]) * 1e6, 1)
    report.update(memory_figures(report, sampler, idle_kb, plan.streams, INTER_TOKEN_MS))
    return report


def _cpu(
    service: ChildProcess | ServeProcess, upstream: ChildProcess, client_pid: int
) -> dict[str, float]:
    return {
        "service": service.cpu_s(),
        "upstream": upstream.cpu_s(),
        "client": read_cpu_s(client_pid),
    }


def _brief(level: dict[str, Any]) -> dict[str, Any]:
    keys = ("route", "completed", "outcomes", "added_gap_all", "kb_per_stream", "cores")
    return {key: level[key] for key in keys}


def main(argv: list[str] | None = None) -> int:
    parser = command_line(
        "bench.concurrency", __doc__, quick="levels 100 and 300", output=RESULTS_FILE
    )
    parser.add_argument("--levels", default=None, help="comma-separated stream counts")
    parser.add_argument("--routes", default=",".join(ROUTES), help="rag, v1 or both")
    parser.add_argument(
        "--connect-delay-ms", type=float, default=0.0, help="a proxy's delay per new connection"
    )
    parser.add_argument("--rate", type=float, default=RAMP_RATE, help="new streams per second")
    parser.add_argument("--plateau", type=float, default=None, help="seconds with all open")
    parser.add_argument("--profile", action="store_true", help="cProfile the service per level")
    parser.add_argument("--gc-freeze", action="store_true", help="diagnostic: gc.freeze() service")
    parser.add_argument("--store", type=Path, default=None, help="an already ingested store")
    parser.add_argument("--workers", default="", help="fleet mode's worker counts, e.g. 1,2")
    parser.add_argument(
        "--service-setting", action="append", default=[], help="RAG_NAME=VALUE for the service"
    )
    args = parser.parse_args(argv)
    if any(not item.startswith("RAG_") or "=" not in item for item in args.service_setting):
        parser.error("--service-setting takes RAG_NAME=VALUE")
    levels = [int(n) for n in args.levels.split(",")] if args.levels else None
    profile_dir = args.output.parent if args.profile else None
    routes = [route.strip() for route in args.routes.split(",") if route.strip()]
    if not routes or set(routes) - set(ROUTES):
        parser.error(f"--routes takes {', '.join(ROUTES)}; got {args.routes!r}")
    result = run(
        args.quick,
        levels=levels,
        routes=routes,
        connect_delay_ms=args.connect_delay_ms,
        plateau_s=args.plateau,
        rate=args.rate,
        store=args.store,
        profile_dir=profile_dir,
        gc_freeze=args.gc_freeze,
        workers=[int(n) for n in args.workers.split(",") if n.strip()],
        settings=dict(item.split("=", 1) for item in args.service_setting),
    )
    return print_result(result, args.output)


if __name__ == "__main__":
    raise SystemExit(main())
