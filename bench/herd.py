"""Thundering-herd benchmark: how hard do reconnecting clients hit an upstream that is down?

    .venv/bin/python -m bench.herd             # 1,000 streams, 20 s outage (about 2-3 minutes)
    .venv/bin/python -m bench.herd --quick     # 200 streams, 5 s outage (smoke test)

Every run starts a fresh loopback upstream in its own process (bench/herd_upstream.py, so that
serving 1,000 req/s does not steal the clients' event loop) and opens N concurrent streams at the
moment the upstream starts failing every request with 503; after ``outage_s`` it answers
normally. The strategies (bench/herd_clients.py) run one after another: ``ours`` (our client,
default settings), ``article`` (the seed article's backoff) and ``fixed`` (a retry every second). The upstream counts
requests per second; the clients record when, and whether, each stream got the exact answer.
Output: a Markdown table on stdout and JSON in bench/results/herd.json.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import resource
import sys
import time
from typing import Any

import httpx

from bench.herd_clients import RUNNERS, StreamOutcome
from bench.herd_upstream import ANSWER_TEXT, serve_forever
from bench.repo_paths import REPO_ROOT
from bench.result_output import command_line, results_file, write_and_print

RESULTS_FILE = results_file("herd")
STRATEGIES = ("ours", "article", "fixed")
GOAL_MAX_RATIO = 0.05  # (a) sends at most 5 % of (c)'s outage requests
GOAL_RECOVERY_S = 10.0  # (a) finishes every stream within 10 s of recovery
LAG_PROBE_S = 0.05
SEED = 20241129


async def run_strategy(
    strategy: str, streams: int, outage_s: float, settle_s: float
) -> dict[str, Any]:
    """One strategy against a fresh upstream; streams unfinished after the settle time count
    as never completed."""
    runner = RUNNERS[strategy]
    outcomes = [StreamOutcome() for _ in range(streams)]
    process, port = await _start_upstream()
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=30.0) as control:
            response = await control.post(f"{base}/_herd/outage", params={"seconds": outage_s})
            recovered_at = response.json()["end"]
            lag = asyncio.ensure_future(_worst_loop_lag())
            run = asyncio.ensure_future(runner(f"{base}/v1", outcomes, random.Random(SEED)))
            await asyncio.wait({run}, timeout=outage_s + settle_s)
            if run.done():
                run.result()  # a broken strategy must fail the bench, not look slow
            for task in (run, lag):
                task.cancel()
            await asyncio.gather(run, return_exceptions=True)
            worst_lag = await lag
            stats = (await control.get(f"{base}/_herd/stats")).json()
    finally:
        process.terminate()
        await process.wait()
    summary = summarise(strategy, outage_s, recovered_at, outcomes, stats)
    summary["client_loop_lag_max_s"] = round(worst_lag, 2)
    return summary


async def _worst_loop_lag() -> float:
    """The longest the clients' event loop was blocked (a timer firing late), until cancelled."""
    worst = 0.0
    try:
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_PROBE_S)
            worst = max(worst, time.monotonic() - before - LAG_PROBE_S)
    except asyncio.CancelledError:
        return worst


async def _start_upstream() -> tuple[asyncio.subprocess.Process, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.herd", "--serve-upstream",
        stdout=asyncio.subprocess.PIPE, env=env, cwd=REPO_ROOT,
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=30.0)
    if not line.startswith(b"READY "):
        process.kill()
        raise RuntimeError(f"herd upstream did not start: {line!r}")
    return process, int(line.split()[1])


def summarise(
    strategy: str,
    outage_s: float,
    recovered_at: float,
    outcomes: list[StreamOutcome],
    stats: dict[str, Any],
) -> dict[str, Any]:
    streams = len(outcomes)
    done = [
        o.completed_at for o in outcomes if o.completed_at is not None and o.text == ANSWER_TEXT
    ]
    after = sorted(max(0.0, at - recovered_at) for at in done)
    outage_requests = stats["outage_requests"]
    return {
        "strategy": strategy,
        "streams": streams,
        "outage_s": outage_s,
        "outage_requests": outage_requests,
        # Every stream starts in the outage's first instant, so its first attempt lands in it.
        "outage_retries": max(0, outage_requests - streams),
        "outage_rps_mean": round(outage_requests / outage_s, 1),
        "outage_rps_peak": max(stats["per_second"][: math.ceil(outage_s)], default=0),
        "requests_after_recovery": stats["after_requests"],
        "completed": len(done),
        "never_completed": streams - len(done),
        "wrong_text": sum(o.completed_at is not None and o.text != ANSWER_TEXT for o in outcomes),
        "attempts_total": sum(o.attempts for o in outcomes),
        "recovery_to_median_s": round(after[len(after) // 2], 2) if after else None,
        "recovery_to_last_s": round(after[-1], 2) if after else None,
        "peak_open_connections": stats["peak_connections"],
        "requests_per_second": stats["per_second"],
    }


async def run_herd(
    streams: int = 1000,
    outage_s: float = 20.0,
    *,
    settle_s: float = 60.0,
    strategies: tuple[str, ...] = STRATEGIES,
) -> dict[str, Any]:
    """Run the strategies one after another; each gets ``outage_s + settle_s`` at most."""
    raise_open_file_limit(4 * streams + 256)
    runs = [await run_strategy(name, streams, outage_s, settle_s) for name in strategies]
    result: dict[str, Any] = {"streams": streams, "outage_s": outage_s, "runs": runs}
    by_name = {run["strategy"]: run for run in runs}
    if "ours" in by_name and "fixed" in by_name:
        result.update(compare(by_name["ours"], by_name["fixed"]))
    return result


def compare(ours: dict[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
    ratio = ours["outage_requests"] / max(1, fixed["outage_requests"])
    retry_ratio = ours["outage_retries"] / max(1, fixed["outage_retries"])
    last = ours["recovery_to_last_s"]
    return {
        "ours_to_fixed_outage_ratio": round(ratio, 4),
        "ours_to_fixed_retry_ratio": round(retry_ratio, 4),
        "goals": {
            "ratio_at_most_5_percent": ratio <= GOAL_MAX_RATIO,
            "all_complete_within_10s": ours["never_completed"] == 0
            and last is not None
            and last <= GOAL_RECOVERY_S,
        },
    }


def raise_open_file_limit(wanted: int) -> None:
    """1,000 streams need ~2,000 sockets (clients + upstream process); lift the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def render_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['streams']} streams, {result['outage_s']:g} s outage",
        "",
        "| strategy | outage requests (retries) | req/s mean / peak | completed "
        "| never completed | recovery → median / last done (s) | client loop lag max (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['strategy']} | {r['outage_requests']} ({r['outage_retries']}) "
        f"| {r['outage_rps_mean']} / {r['outage_rps_peak']} | {r['completed']} "
        f"| {r['never_completed']} | {r['recovery_to_median_s']} / {r['recovery_to_last_s']} "
        f"| {r['client_loop_lag_max_s']} |"
        for r in result["runs"]
    ]
    if "goals" in result:
        lines += [
            "",
            f"ours / fixed outage requests: {result['ours_to_fixed_outage_ratio']:.2%} "
            f"(retries only: {result['ours_to_fixed_retry_ratio']:.2%})",
            f"goals: {result['goals']}",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = command_line(
        "bench.herd", "Herd benchmark.", quick="200 streams, 5 s outage", output=RESULTS_FILE
    )
    parser.add_argument("--streams", type=int, help="concurrent streams (default 1000)")
    parser.add_argument("--outage", type=float, help="outage length in seconds (default 20)")
    parser.add_argument("--settle", type=float, default=60.0, help="longest wait after it")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated")
    parser.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_upstream:
        raise_open_file_limit(8192)
        asyncio.run(serve_forever())
        return 0
    streams = args.streams or (200 if args.quick else 1000)
    outage_s = args.outage or (5.0 if args.quick else 20.0)
    strategies = tuple(name.strip() for name in args.strategies.split(",") if name.strip())
    unknown = set(strategies) - set(RUNNERS)
    if unknown:
        parser.error(f"unknown strategies: {', '.join(sorted(unknown))}")
    result = asyncio.run(run_herd(streams, outage_s, settle_s=args.settle, strategies=strategies))
    write_and_print(render_table(result), result, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
