"""Upstream client CPU per token: our client against bare aiohttp and bare httpx, in one run.

    .venv/bin/python -m bench.client_cpu           # 300 streams x 200 tokens, 3 rounds
    .venv/bin/python -m bench.client_cpu --quick   # 100 streams x 40 tokens, 1 round

The bench upstream (``bench.token_upstream``, its own process: first token after 50 ms, then one
every 50 ms per stream, the chunked terminator 2 ms after ``[DONE]``) serves every contender.
Each round runs the three contenders one after another, in an order that rotates per round, each
in a fresh child process (``bench.client_cpu_child``: one unmeasured pass, then the measured
pass of all streams at once; CPU time of the whole child, user + system). The pacing keeps every
contender below its saturation on this machine (300 streams x 20 tokens/s = 6,000 tokens/s), so
each token arrives in a read of its own, as from a real LLM, and no client gets the discount of
reading many tokens per wakeup. Reported: µs of CPU per token (median of the rounds, and each
round), split into user and system, and the ratio to bare aiohttp. Goal: ours <= 1.2 x aiohttp.
``--connect-delay-ms`` puts the delaying proxy in front of the upstream for every contender.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from bench.client_cpu_child import CONTENDERS
from bench.repo_paths import REPO_ROOT
from bench.result_output import (
    command_line,
    goals_and_notes,
    log_to_stderr,
    results_file,
    run_with_options,
)
from bench.service_process import child_env, token_upstream

RESULTS_FILE = results_file("client_cpu")
FULL = {"streams": 300, "tokens": 200, "rounds": 3}
QUICK = {"streams": 100, "tokens": 40, "rounds": 1}
FIRST_TOKEN_MS = 50.0
INTER_TOKEN_MS = 50.0
GOAL_RATIO = 1.2
CHILD_TIMEOUT_S = 600.0
LABELS = {
    "ours": "(a) `OpenAICompatibleUpstream.answer`",
    "aiohttp": "(b) bare aiohttp + `json.loads` per chunk",
    "httpx": "(c) bare httpx + `json.loads` per chunk",
}


@dataclass
class ClientCpuResult:
    streams: int
    tokens: int
    connect_delay_ms: float
    rounds: list[dict[str, dict[str, Any]]]  # per round: contender -> the child's figures
    notes: list[str] = field(default_factory=list)

    def median(self, contender: str, key: str = "us_per_token") -> float:
        return round(float(statistics.median(r[contender][key] for r in self.rounds)), 2)

    def ratio(self, contender: str) -> float:
        return round(self.median(contender) / self.median("aiohttp"), 3)

    @property
    def goals(self) -> dict[str, bool]:
        return {"ours_at_most_1.2x_aiohttp": self.ratio("ours") <= GOAL_RATIO}

    @property
    def data(self) -> dict[str, Any]:
        return {
            "streams": self.streams,
            "tokens_per_stream": self.tokens,
            "inter_token_ms": INTER_TOKEN_MS,
            "connect_delay_ms": self.connect_delay_ms,
            "us_per_token": {name: self.median(name) for name in CONTENDERS},
            "ratio_to_aiohttp": {name: self.ratio(name) for name in CONTENDERS},
            "rounds": self.rounds,
            "goals": self.goals,
            "notes": self.notes,
        }

    @property
    def markdown(self) -> str:
        lines = [
            f"{self.streams} concurrent streams x {self.tokens} tokens, {len(self.rounds)} "
            "round(s); CPU of the client's process per token received.",
            "",
            "| client | µs per token (median) | user / system µs | each round (µs) | × bare aiohttp "
            "| pass wall s (median) | client cores |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name in CONTENDERS:
            each = " / ".join(str(r[name]["us_per_token"]) for r in self.rounds)
            lines.append(
                f"| {LABELS[name]} | {self.median(name)} "
                f"| {self.median(name, 'user_us_per_token')} / "
                f"{self.median(name, 'system_us_per_token')} | {each} | {self.ratio(name)} "
                f"| {self.median(name, 'wall_s')} | {self.median(name, 'cores')} |"
            )
        lines += goals_and_notes(self.goals, self.notes, heading="Goal")
        return "\n".join(lines)


def run(
    quick: bool = False,
    *,
    streams: int | None = None,
    tokens: int | None = None,
    rounds: int | None = None,
    connect_delay_ms: float = 0.0,
    log: Callable[[str], None] | None = None,
) -> ClientCpuResult:
    say = log or log_to_stderr
    size = QUICK if quick else FULL
    streams = streams or size["streams"]
    tokens = tokens or size["tokens"]
    rounds = rounds or size["rounds"]
    load_before = os.getloadavg()[0]
    say(f"client cpu: {streams} streams x {tokens} tokens, {rounds} round(s)")
    with tempfile.TemporaryDirectory(prefix="client-cpu-bench-") as tmp:
        measured = uvloop.run(
            measure(Path(tmp), streams, tokens, rounds, connect_delay_ms / 1000, say)
        )
    notes = [
        f"{streams} concurrent streams x {tokens} tokens; upstream (`bench/token_upstream.py`, "
        f"its own process): first token after {FIRST_TOKEN_MS:g} ms, then one every "
        f"{INTER_TOKEN_MS:g} ms per stream, the chunked terminator 2 ms after `[DONE]`.",
        "each contender in a fresh process on uvloop: one unmeasured pass, then the measured "
        "pass; CPU = user + system time of that whole process (getrusage) over the pass.",
        "the client, the upstream and whatever else runs share the machine's 2 cores.",
        f"load average (1 min) at the start: {load_before:.2f}, at the end: "
        f"{os.getloadavg()[0]:.2f}",
    ]
    if connect_delay_ms:
        notes.append(f"every new connection cost {connect_delay_ms:g} ms (the delaying proxy)")
    return ClientCpuResult(streams, tokens, connect_delay_ms, measured, notes)


async def measure(
    work: Path,
    streams: int,
    tokens: int,
    rounds: int,
    connect_delay_s: float,
    say: Callable[[str], None],
) -> list[dict[str, dict[str, Any]]]:
    results: list[dict[str, dict[str, Any]]] = []
    upstream = token_upstream(
        work,
        words=tokens,
        first_token_ms=FIRST_TOKEN_MS,
        inter_token_ms=INTER_TOKEN_MS,
        connect_delay_ms=connect_delay_s * 1000,
    )
    async with upstream as (_, target):
        for index in range(rounds):
            shift = index % len(CONTENDERS)
            figures = {}
            for name in CONTENDERS[shift:] + CONTENDERS[:shift]:
                figures[name] = await run_child(
                    name, f"{target.base_url}/v1", streams, tokens, work
                )
                say(f"round {index + 1}: {name} {figures[name]['us_per_token']} µs/token")
            results.append({name: figures[name] for name in CONTENDERS})
    return results


async def run_child(
    name: str, base_url: str, streams: int, tokens: int, work: Path
) -> dict[str, Any]:
    args = [name, "--base-url", base_url, "--streams", str(streams), "--tokens", str(tokens)]
    args += ["--spread-ms", str(INTER_TOKEN_MS)]
    log = work / f"client-{name}.log"
    with log.open("wb") as errors:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.client_cpu_child", *args,
            stdout=asyncio.subprocess.PIPE, stderr=errors, env=child_env(), cwd=REPO_ROOT,
        )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(child.communicate(), CHILD_TIMEOUT_S)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
    raise RuntimeError(f"client {name} ended without a result (exit {child.returncode}):\n{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = command_line(
        "bench.client_cpu", __doc__, quick="100 streams x 40 tokens, 1 round", output=RESULTS_FILE
    )
    parser.add_argument("--streams", type=int, default=None)
    parser.add_argument("--tokens", type=int, default=None, help="tokens per answer")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--connect-delay-ms", type=float, default=0.0, help="0: no proxy")
    return run_with_options(parser, argv, run)


if __name__ == "__main__":
    raise SystemExit(main())
