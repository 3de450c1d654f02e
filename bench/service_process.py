"""Parent side of the streaming benchmarks: start, watch and stop the child processes.

- ``ingest_sample_catalog`` fills an embedded Chroma store with ``rag-service ingest`` (the real
  sentence-transformers model) in a child process, so the benchmark process never loads torch.
- ``ChildProcess`` runs one ``bench.stream_children`` child (upstream, proxy, relay or service)
  and gives its port, its RSS (``/proc/<pid>/status`` VmRSS), its CPU time (``/proc/<pid>/stat``)
  and, for the upstream and the proxy, its live counters (``counts``); it stops the child with
  SIGTERM, returning the ``STATS`` line the child prints on the way out.
- ``token_upstream`` starts the token upstream, behind the delaying proxy when asked.
- ``ProcessSampler`` records a child's RSS and CPU time a few times a second while a load runs.

Children get a clean environment: no ``RAG_*`` variable from the caller leaks in, no model hub, no
telemetry, no proxy variables (everything is on loopback, and a client that honours
``HTTP(S)_PROXY`` must not send it elsewhere); the service reads only what ``service_env`` sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.repo_paths import REPO_ROOT, SAMPLE_CATALOG
from tests.fixture_servers.async_server import LoopTask, StopOnExit

FALLBACK_CONTEXT = REPO_ROOT / "data" / "fallback_context.md"
INGEST_TIMEOUT_S = 900.0
READY_TIMEOUT_S = 180.0  # the service loads the embedding model before it is ready
STOP_TIMEOUT_S = 20.0
COUNTS_TIMEOUT_S = 30.0
PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("RAG_") and name.lower() not in PROXY_VARIABLES
    }
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def service_env(
    store: Path, upstream_base_url: str, *, max_connections: int, **extra: str
) -> dict[str, str]:
    """The service's configuration: embedded store, the loopback upstream, its pool size."""
    return child_env(
        {
            "RAG_CHROMA__PATH": str(store),
            "RAG_UPSTREAM__BASE_URL": upstream_base_url,
            "RAG_UPSTREAM__MAX_CONNECTIONS": str(max_connections),
            "RAG_FALLBACK_CONTEXT_FILE": str(FALLBACK_CONTEXT),
            **extra,
        }
    )


def ingest_sample_catalog(store: Path, catalog: Path = SAMPLE_CATALOG) -> None:
    """``rag-service ingest <catalog>`` into the embedded store at ``store``."""
    run_ingest(catalog, cwd=store.parent, settings={"RAG_CHROMA__PATH": str(store)})


def run_ingest(catalog: Path, *, cwd: Path, settings: dict[str, str]) -> None:
    """``rag-service ingest <catalog>`` in a child process configured by ``settings``; raises
    with the end of its output when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "rag_service", "ingest", str(catalog)],
        cwd=cwd,
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=INGEST_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"ingest of {catalog} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


@dataclass
class ChildProcess(StopOnExit):
    """One running ``bench.stream_children`` child (see ``start``)."""

    name: str
    process: asyncio.subprocess.Process
    port: int
    log: Path
    stats: dict[str, Any] = field(default_factory=dict)

    @classmethod
    async def start(
        cls, name: str, args: list[str], *, env: dict[str, str], workdir: Path
    ) -> ChildProcess:
        """Start ``python -m bench.stream_children <args>`` and wait for its ``READY <port>``."""
        log = workdir / f"{name}.log"
        with log.open("wb") as errors:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.stream_children", *args,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=errors,
                env=env, cwd=workdir,
            )  # fmt: skip
        child = cls(name, process, 0, log)
        try:
            child.port = await asyncio.wait_for(child._read_ready(), READY_TIMEOUT_S)
        except BaseException:
            await child.stop()
            raise
        return child

    async def _read_ready(self) -> int:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line.startswith(b"READY "):
            raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")
        return int(line.split()[1])

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_kb(self) -> int:
        return read_rss_kb(self.pid)

    def cpu_s(self) -> float:
        return read_cpu_s(self.pid)

    async def counts(self) -> dict[str, Any]:
        """The child's live counters (token upstream, proxy): ``COUNTS`` asked on its stdin."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(b"COUNTS\n")
        await stdin.drain()
        line = await asyncio.wait_for(stdout.readline(), COUNTS_TIMEOUT_S)
        if not line.startswith(b"COUNTS "):
            raise RuntimeError(f"{self.name} gave no counts ({line!r}):\n{self.log_tail()}")
        counts: dict[str, Any] = json.loads(line[len(b"COUNTS ") :])
        return counts

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    async def stop(self) -> dict[str, Any]:
        """SIGTERM, then the child's ``STATS`` (empty when it had to be killed). Idempotent."""
        if self.process.returncode is not None:
            return self.stats
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = await asyncio.wait_for(self.process.communicate(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
            return self.stats
        for line in out.decode(errors="replace").splitlines():
            if line.startswith("STATS "):
                self.stats = json.loads(line[len("STATS ") :])
        return self.stats


@contextlib.asynccontextmanager
async def token_upstream(
    work: Path,
    *,
    words: int,
    first_token_ms: float,
    inter_token_ms: float,
    connect_delay_ms: float = 0.0,
) -> AsyncIterator[tuple[ChildProcess, ChildProcess]]:
    """The token upstream in a child process and what clients reach it through: the delaying
    proxy when ``connect_delay_ms`` > 0, else the upstream itself. Both stop on exit (the proxy
    first)."""
    upstream_args = ["token-upstream", "--words", str(words)]
    upstream_args += ["--first-token-ms", str(first_token_ms)]
    upstream_args += ["--inter-token-ms", str(inter_token_ms)]
    env = child_env()
    async with contextlib.AsyncExitStack() as children:
        upstream = await children.enter_async_context(
            await ChildProcess.start("upstream", upstream_args, env=env, workdir=work)
        )
        front = upstream
        if connect_delay_ms > 0:
            proxy_args = ["proxy", "--target-port", str(upstream.port)]
            proxy_args += ["--delay-ms", str(connect_delay_ms)]
            front = await children.enter_async_context(
                await ChildProcess.start("proxy", proxy_args, env=env, workdir=work)
            )
        yield upstream, front


def read_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def read_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class ProcessSampler(LoopTask):
    """Samples a process's RSS (kB) and CPU seconds every ``interval_s`` until stopped."""

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        super().__init__()
        self.samples: list[tuple[float, int, float]] = []  # (monotonic time, RSS kB, CPU s)
        self._pid = pid
        self._interval_s = interval_s

    async def _run(self) -> None:
        while True:
            at = time.monotonic()
            self.samples.append((at, read_rss_kb(self._pid), read_cpu_s(self._pid)))
            await asyncio.sleep(self._interval_s)

    def rss_between(self, start: float, end: float) -> list[int]:
        return [rss for at, rss, _ in self.samples if start <= at <= end]

    def cores_between(self, start: float, end: float) -> float | None:
        """CPU cores used between the first and the last sample inside ``start..end``."""
        inside = [(at, cpu) for at, _, cpu in self.samples if start <= at <= end]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return None
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])
