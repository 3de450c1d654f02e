"""Time-to-first-token benchmark: what the service adds to the upstream's own first token.

    .venv/bin/python -m bench.ttft            # 200 requests per path after 20 warm-up rounds
    .venv/bin/python -m bench.ttft --quick    # 50 requests per path after 5 warm-up rounds

One loopback upstream (``bench.stream_children upstream``: the fault-injecting server, first token
after a fixed 50 ms, an 8-token answer) in its own process, the service in another (``create_app``
under uvicorn + uvloop, the real sentence-transformers embedder, embedded Chroma holding the
sample catalog, ingested into a temp dir first), and this process as the client. Three paths,
measured side by side in one run, round-robin (the order rotates every round), one request at a
time with a 10 ms pause between requests:

- ``direct``: ``OpenAICompatibleUpstream`` straight to the upstream; TTFT = until its first
  ``TextDelta``. The request carries a system prompt of about the service's prompt size.
- ``fresh``: ``POST /rag/stream`` for a contextId asked before (state ``fresh``: no retrieval);
  TTFT = from the request's start until the first ``delta`` event is parsed.
- ``refresh``: the same with ``"refresh": true`` (state ``refreshed``: embedding + vector search).

Overhead = (path's percentile) - (direct's percentile). Every answer is checked: the direct text
equals the upstream's deterministic answer, and every service stream has the right context state,
a whole 8-word answer (the same one every time) and a ``done`` event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvloop

from bench.latency_stats import summarise_ms
from bench.load_report import is_whole_answer
from bench.service_process import (
    REPO_ROOT,
    SAMPLE_CATALOG,
    ChildProcess,
    child_env,
    ingest_sample_catalog,
    service_env,
)
from bench.sse_load_client import QUERY
from rag_service.retrieval.prompt import INSTRUCTIONS
from rag_service.settings import UpstreamSettings
from rag_service.testing.fault_plan import AnswerStyle, answer_text
from rag_service.upstream import OpenAICompatibleUpstream
from rag_service.upstream_events import ChatMessage, ChatRequest, Completed, Failed, TextDelta

RESULTS_FILE = REPO_ROOT / "bench" / "results" / "ttft.json"
WORDS = 8
FIRST_TOKEN_MS = 50.0
FULL_REQUESTS, FULL_WARMUP = 200, 20
QUICK_REQUESTS, QUICK_WARMUP = 50, 5
PAUSE_S = 0.01
PROMPT_CONTEXT_CHARS = 5000  # the service's prompts carry up to 6,000 characters of context
GOAL_MEDIAN_MS = 5.0
GOAL_P99_MS = 15.0
MODES = ("direct", "fresh", "refresh")
EXPECTED_STATE = {"fresh": "fresh", "refresh": "refreshed"}
LABELS = {
    "direct": "(a) direct to the upstream (`OpenAICompatibleUpstream`)",
    "fresh": "(b) `POST /rag/stream`, context fresh",
    "refresh": '(c) `POST /rag/stream`, re-retrieval (`"refresh": true`)',
}


@dataclass
class Sample:
    ttft_s: float
    server_ttft_ms: float | None = None  # the service's own figure (done.timings.ttft_ms)
    meta_s: float | None = None  # until the `meta` event: the service's work before the upstream


@dataclass
class TtftResult:
    requests: int
    warmup_rounds: int
    samples: dict[str, list[Sample]]
    notes: list[str] = field(default_factory=list)

    def summary(self, mode: str) -> dict[str, Any]:
        return summarise_ms(s.ttft_s for s in self.samples[mode])

    def overhead(self, mode: str) -> dict[str, float]:
        ours, direct = self.summary(mode), self.summary("direct")
        return {
            f"{key}_ms": round(ours[f"{key}_ms"] - direct[f"{key}_ms"], 2)
            for key in ("median", "p90", "p99")
        }

    def time_to_meta(self, mode: str) -> dict[str, Any]:
        return summarise_ms(s.meta_s for s in self.samples[mode] if s.meta_s is not None)

    def server_ttft(self, mode: str) -> dict[str, Any]:
        values = [s.server_ttft_ms / 1000 for s in self.samples[mode] if s.server_ttft_ms]
        return summarise_ms(values)

    @property
    def goals(self) -> dict[str, bool]:
        fresh = self.overhead("fresh")
        return {
            "fresh_overhead_median_at_most_5ms": fresh["median_ms"] <= GOAL_MEDIAN_MS,
            "fresh_overhead_p99_at_most_15ms": fresh["p99_ms"] <= GOAL_P99_MS,
        }

    @property
    def data(self) -> dict[str, Any]:
        return {
            "requests_per_path": self.requests,
            "warmup_rounds": self.warmup_rounds,
            "first_token_delay_ms": FIRST_TOKEN_MS,
            "answer_tokens": WORDS,
            "paths": {
                mode: {
                    "ttft": self.summary(mode),
                    "overhead_vs_direct": None if mode == "direct" else self.overhead(mode),
                    "service_reported_ttft": None if mode == "direct" else self.server_ttft(mode),
                    "time_to_meta": None if mode == "direct" else self.time_to_meta(mode),
                }
                for mode in MODES
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
    store: Path | None = None,
    catalog: Path = SAMPLE_CATALOG,
    log: Callable[[str], None] | None = None,
) -> TtftResult:
    """Measure the three paths; ``store``: an already ingested embedded store (else ingest)."""
    say = log or _log_to_stderr
    count = requests or (QUICK_REQUESTS if quick else FULL_REQUESTS)
    # At least one warm-up round: it is the one that puts the fresh path's context in the cache.
    rounds = max(1, warmup if warmup is not None else (QUICK_WARMUP if quick else FULL_WARMUP))
    with tempfile.TemporaryDirectory(prefix="ttft-bench-") as tmp:
        work = Path(tmp)
        if store is None:
            store = work / "chroma"
            say(f"ingesting {catalog} ...")
            ingest_sample_catalog(store, catalog)
        load_before = os.getloadavg()[0]
        say(f"measuring {count} requests per path after {rounds} warm-up rounds ...")
        samples = uvloop.run(measure(store, work, count, rounds))
    notes = [
        f"upstream: first token after {FIRST_TOKEN_MS:g} ms, {WORDS} tokens; its own process "
        "(uvloop). Service: uvicorn + uvloop in another, access log off. Client: this process.",
        "one request at a time, paths interleaved round-robin with the order rotating per round, "
        f"{PAUSE_S * 1000:g} ms pause between requests; the service keeps one keep-alive "
        "connection to the client, the upstream closes each connection after its answer.",
        f"load average (1 min) when the measurement started: {load_before:.2f}, "
        f"after: {os.getloadavg()[0]:.2f}",
    ]
    return TtftResult(count, rounds, samples, notes)


async def measure(store: Path, work: Path, count: int, rounds: int) -> dict[str, list[Sample]]:
    upstream_args = ["upstream", "--words", str(WORDS), "--first-token-ms", str(FIRST_TOKEN_MS)]
    samples: dict[str, list[Sample]] = {mode: [] for mode in MODES}
    async with await ChildProcess.start(
        "upstream", upstream_args, env=child_env(), workdir=work
    ) as upstream:
        env = service_env(store, f"{upstream.base_url}/v1", max_connections=1000)
        async with await ChildProcess.start("service", ["service"], env=env, workdir=work) as svc:
            direct = OpenAICompatibleUpstream(UpstreamSettings(base_url=f"{upstream.base_url}/v1"))
            paths = Paths(direct, httpx.AsyncClient(base_url=svc.base_url, timeout=30.0))
            try:
                for index in range(rounds + count):
                    shift = index % len(MODES)
                    for mode in MODES[shift:] + MODES[:shift]:
                        sample = await paths.one(mode)
                        if index >= rounds:
                            samples[mode].append(sample)
                        await asyncio.sleep(PAUSE_S)
            finally:
                await paths.aclose()
    return samples


class Paths:
    """One request on each path, with its answer checked."""

    def __init__(self, direct: OpenAICompatibleUpstream, client: httpx.AsyncClient) -> None:
        self._direct = direct
        self._client = client
        self._request = direct_request()
        messages = [{"role": m.role, "content": m.content} for m in self._request.messages]
        self._direct_answer = answer_text(messages, AnswerStyle(words=WORDS))
        self._service_answers: dict[str, str] = {}
        self._asked: dict[str, int] = {}

    async def one(self, mode: str) -> Sample:
        if mode == "direct":
            return await self._one_direct()
        return await self._one_service(mode)

    async def aclose(self) -> None:
        await self._direct.aclose()
        await self._client.aclose()

    async def _one_direct(self) -> Sample:
        started = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        async for item in self._direct.stream(self._request):
            if isinstance(item, TextDelta):
                first = first or time.perf_counter()
                parts.append(item.text)
            elif isinstance(item, Failed):
                raise RuntimeError(f"direct stream failed: {item.error}")
            elif isinstance(item, Completed):
                break
        if first is None or "".join(parts) != self._direct_answer:
            raise RuntimeError(f"direct stream gave a wrong answer: {''.join(parts)!r}")
        return Sample(first - started)

    async def _one_service(self, mode: str) -> Sample:
        body: dict[str, Any] = {"query": QUERY, "refresh": mode == "refresh"}
        params = {"context": f"ttft-{mode}"}
        started = time.perf_counter()
        events = ServiceEvents()
        async with self._client.stream("POST", "/rag/stream", params=params, json=body) as reply:
            if reply.status_code != 200:
                raise RuntimeError(f"{mode}: HTTP {reply.status_code}: {await reply.aread()!r}")
            async for chunk in reply.aiter_raw():
                events.feed(chunk)
                if events.meta_at is None and events.state is not None:
                    events.meta_at = time.perf_counter()
                if events.first_delta_at is None and events.parts:
                    events.first_delta_at = time.perf_counter()
        self._check(mode, events)
        assert events.first_delta_at is not None and events.meta_at is not None
        return Sample(
            events.first_delta_at - started, events.server_ttft_ms, events.meta_at - started
        )

    def _check(self, mode: str, events: ServiceEvents) -> None:
        text = "".join(events.parts)
        known = self._service_answers.setdefault(mode, text)
        # The first question of a contextId is retrieved; after it, the context is fresh.
        expected = EXPECTED_STATE[mode] if self._asked.get(mode) else "refreshed"
        self._asked[mode] = self._asked.get(mode, 0) + 1
        if events.state != expected:
            raise RuntimeError(f"{mode}: context state {events.state!r}, expected {expected!r}")
        if not events.done or not is_whole_answer(text, WORDS) or text != known:
            raise RuntimeError(f"{mode}: wrong answer {text!r} (done: {events.done})")


class ServiceEvents:
    """Incremental parse of one ``/rag/stream`` response: context state, deltas, done."""

    def __init__(self) -> None:
        self._buffer = b""
        self.parts: list[str] = []
        self.state: str | None = None
        self.done = False
        self.server_ttft_ms: float | None = None
        self.first_delta_at: float | None = None
        self.meta_at: float | None = None

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        *blocks, self._buffer = self._buffer.split(b"\n\n")
        for block in blocks:
            fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
            data = fields.get(b"data")
            event = fields.get(b"event")
            if data is None or event is None:
                continue
            payload = json.loads(data)
            if event == b"delta":
                self.parts.append(payload["text"])
            elif event == b"meta":
                self.state = payload["context"]["state"]
            elif event == b"done":
                self.done = True
                self.server_ttft_ms = payload["timings"]["ttft_ms"]
            elif event == b"error":
                raise RuntimeError(f"stream error: {payload}")


def direct_request() -> ChatRequest:
    """A request shaped like the service's: instructions, a catalog context, the question."""
    context = (SAMPLE_CATALOG / "faq.md").read_text(encoding="utf-8")[:PROMPT_CONTEXT_CHARS]
    system = f"{INSTRUCTIONS}\n\n<context>\n{context}\n</context>"
    return ChatRequest(
        messages=(ChatMessage("system", system), ChatMessage("user", QUERY)),
    )


def render_markdown(result: TtftResult) -> str:
    lines = [
        f"{result.requests} requests per path after {result.warmup_rounds} warm-up rounds; "
        f"upstream first token after {FIRST_TOKEN_MS:g} ms.",
        "",
        "| path | median (ms) | p90 (ms) | p99 (ms) | max (ms) | overhead vs (a): median / p99 "
        "(ms) | service-reported TTFT median / p99 (ms) | time to `meta` median / p99 (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in MODES:
        ttft = result.summary(mode)
        overhead = served = to_meta = "–"
        if mode != "direct":
            extra = result.overhead(mode)
            overhead = f"{extra['median_ms']:+.2f} / {extra['p99_ms']:+.2f}"
            own = result.server_ttft(mode)
            served = f"{own.get('median_ms', '–')} / {own.get('p99_ms', '–')}"
            meta = result.time_to_meta(mode)
            to_meta = f"{meta.get('median_ms', '–')} / {meta.get('p99_ms', '–')}"
        lines.append(
            f"| {LABELS[mode]} | {ttft['median_ms']} | {ttft['p90_ms']} | {ttft['p99_ms']} "
            f"| {ttft['max_ms']} | {overhead} | {served} | {to_meta} |"
        )
    goals = ", ".join(f"{name} {'met' if met else 'MISSED'}" for name, met in result.goals.items())
    lines += ["", f"Goals: {goals}", ""]
    lines += [f"- {note}" for note in result.notes]
    return "\n".join(lines)


def _log_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ttft", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="50 requests per path")
    parser.add_argument("--requests", type=int, default=None, help="requests per path")
    parser.add_argument("--store", type=Path, default=None, help="an already ingested store")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    args = parser.parse_args(argv)
    result = run(args.quick, requests=args.requests, store=args.store)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result.data, indent=2) + "\n", encoding="utf-8")
    print(result.markdown)
    print(f"\nJSON: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
