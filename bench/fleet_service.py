"""The service as fleet mode runs it, for ``bench.concurrency --workers``: a ``redis-server``
and a ``chroma run`` of the benchmark's own (loopback, temporary), the sample catalog ingested
into that Chroma server by ``rag-service ingest``, and ``rag-service serve --workers N`` as the
service, so that 1 and N workers differ in nothing but their worker count.

``ServeProcess`` offers what the concurrency benchmark reads from a service child (``port``,
``rss_kb``, ``cpu_s``, ``stop``), summed over the process tree: the supervising parent and its
workers. It prints no ``STATS`` line, so there is no service loop-lag figure for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.repo_paths import SAMPLE_CATALOG
from bench.service_process import (
    FALLBACK_CONTEXT,
    READY_TIMEOUT_S,
    ProcessSampler,
    child_env,
    read_cpu_s,
    read_rss_kb,
    run_ingest,
)

STOP_TIMEOUT_S = 30.0
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class FleetBackends:
    redis_url: str
    chroma_port: int
    lock_file: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@contextmanager
def fleet_backends(work: Path, catalog: Path = SAMPLE_CATALOG) -> Iterator[FleetBackends]:
    """Redis and a Chroma server holding ``catalog`` for the block; stopped after it."""
    redis_port, chroma_port = free_port(), free_port()
    redis_exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    chroma_exe = str(Path(sys.executable).with_name("chroma"))
    with contextlib.ExitStack() as stack:
        log = stack.enter_context((work / "backends.log").open("ab"))
        redis_cmd = [redis_exe, "--bind", LOOPBACK, "--port", str(redis_port), "--save", ""]
        redis_cmd += ["--appendonly", "no", "--dir", str(work)]
        chroma_cmd = [chroma_exe, "run", "--path", str(work / "chroma-server"), "--host"]
        chroma_cmd += [LOOPBACK, "--port", str(chroma_port)]
        for command in (redis_cmd, chroma_cmd):
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            stack.callback(_terminate, process)
        _wait_for(lambda: _answers(f"http://{LOOPBACK}:{chroma_port}/api/v2/heartbeat"))
        backends = FleetBackends(f"redis://{LOOPBACK}:{redis_port}/0", chroma_port, work / "lock")
        run_ingest(catalog, cwd=work, settings=_store_settings(backends))
        yield backends


def serve_env(
    backends: FleetBackends, upstream_base_url: str, *, max_connections: int, key_prefix: str
) -> dict[str, str]:
    """The service's settings: the fleet's Redis and Chroma server, the loopback upstream."""
    return child_env(
        _store_settings(backends)
        | {
            "RAG_REDIS__URL": backends.redis_url,
            "RAG_REDIS__KEY_PREFIX": key_prefix,
            "RAG_UPSTREAM__BASE_URL": upstream_base_url,
            "RAG_UPSTREAM__MAX_CONNECTIONS": str(max_connections),
            "RAG_FALLBACK_CONTEXT_FILE": str(FALLBACK_CONTEXT),
        }
    )


@dataclass
class ServeProcess:
    """``rag-service serve --workers N`` (access log off: ``--log-level warning``)."""

    workers: int
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def pids(self) -> list[int]:
        """The parent and every process below it (workers, multiprocessing's helpers)."""
        found, queue = [], [self.pid]
        while queue:
            pid = queue.pop()
            found.append(pid)
            with contextlib.suppress(OSError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    children = (task / "children").read_text().split()
                    queue += [int(child) for child in children]
        return found

    def rss_kb(self) -> int:
        return int(sum(_or_zero(read_rss_kb, pid) for pid in self.pids()))

    def cpu_s(self) -> float:
        return sum(_or_zero(read_cpu_s, pid) for pid in self.pids())

    def sampler(self) -> ProcessSampler:
        return TreeSampler(self)

    async def stop(self) -> dict[str, Any]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                await asyncio.to_thread(self.process.wait)
        return self.stats


@asynccontextmanager
async def serve_process(
    workers: int, env: dict[str, str], workdir: Path
) -> AsyncIterator[ServeProcess]:
    """Start ``rag-service serve --workers N`` on a free port; yield it once every worker has
    started (each serves its metrics port once its graph, models included, is built) and
    ``/readyz`` answers 200."""
    metrics_port = free_port_run(workers)
    service = _start_serve(workers, env | {"RAG_SERVER__METRICS_PORT": str(metrics_port)}, workdir)
    try:
        urls = [
            f"http://{LOOPBACK}:{port}/metrics"
            for port in range(metrics_port, metrics_port + workers)
        ]
        urls.append(f"http://{LOOPBACK}:{service.port}/readyz")
        await asyncio.to_thread(_wait_for, lambda: _all_answer(urls, service))
        yield service
    finally:
        await service.stop()


def _start_serve(workers: int, env: dict[str, str], workdir: Path) -> ServeProcess:
    port = free_port()
    log = workdir / f"serve-{workers}.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "rag_service", "serve", "--workers", str(workers),
             "--port", str(port), "--log-level", "warning"],
            stdout=output, stderr=subprocess.STDOUT, env=env, cwd=workdir,
            start_new_session=True,  # a kill takes the workers with the parent
        )  # fmt: skip
    return ServeProcess(workers, process, port, log)


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports."""
    while True:
        first = free_port()
        with contextlib.ExitStack() as held:
            try:
                for port in range(first, first + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind((LOOPBACK, port))
            except OSError:
                continue
            return first


class TreeSampler(ProcessSampler):
    """``ProcessSampler`` over a ``ServeProcess``'s whole tree."""

    def __init__(self, service: ServeProcess, interval_s: float = 0.25) -> None:
        super().__init__(service.pid, interval_s)
        self._service = service

    async def _run(self) -> None:
        while True:
            at = time.monotonic()
            self.samples.append((at, self._service.rss_kb(), self._service.cpu_s()))
            await asyncio.sleep(self._interval_s)


def _all_answer(urls: list[str], service: ServeProcess) -> bool:
    if service.process.poll() is not None:
        raise RuntimeError(f"serve exited:\n{service.log.read_text()[-3000:]}")
    return all(_answers(url) for url in urls)


def _store_settings(backends: FleetBackends) -> dict[str, str]:
    return {
        "RAG_CHROMA__HOST": LOOPBACK,
        "RAG_CHROMA__PORT": str(backends.chroma_port),
        "RAG_INGEST__LOCK_FILE": str(backends.lock_file),
    }


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_for(condition: Callable[[], bool], limit_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready within {limit_s:g} s")
        time.sleep(0.25)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _or_zero(read: Callable[[int], float], pid: int) -> float:
    """``read(pid)``, or 0 for a process that ended meanwhile."""
    try:
        return read(pid)
    except (OSError, RuntimeError, ValueError, IndexError):
        return 0


WORKER_NOTES = [
    "workers rows: the service is `rag-service serve --workers N` (uvicorn's multi-process "
    "mode) on a `redis-server` and a `chroma run` of the benchmark's own, access log off; "
    "1 worker runs the same way, so rows differ only in their worker count. Streams are copied "
    "to Redis (fleet mode). CPU and RSS are summed over the parent and its workers; there is "
    "no service loop-lag figure for them. Each worker has its own freshness cache, so a "
    "worker's first stream of a contextId may retrieve.",
]
