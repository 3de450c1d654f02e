"""Suite-wide fixtures: a hermetic environment, free loopback ports, a real Chroma server, a
real Redis server (tests/redis_server.py)."""

from __future__ import annotations

import gc
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.redis_server import RedisServer, running_redis

REPO = Path(__file__).resolve().parents[1]
PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})


@pytest.fixture(autouse=True)
def frozen_heap() -> None:
    """Freeze what the libraries and earlier tests left before each test, as a serving process
    does once it has started (``rag_service.server.process_tuning``; apps built by tests leave
    the collector alone). Otherwise a full collection in the middle of a test walks all of it,
    holds the event loop for hundreds of ms, and the service's overload shedding refuses the
    test's requests. Cheap: each collection walks only what came since the last freeze."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No RAG_* setting or .env from the developer's shell leaks into a test; no hub access."""
    for name in list(os.environ):
        # A proxy set in the developer's shell would carry the tests' loopback requests.
        if name.startswith("RAG_") or name.lower() in PROXY_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("ANONYMIZED_TELEMETRY", "False")
    monkeypatch.chdir(tmp_path)  # relative defaults (var/, .env) resolve inside the test's dir


def run_cli(
    cwd: Path | None, *args: str, stdin: str = "", **settings: str
) -> subprocess.CompletedProcess[str]:
    """``rag-service ARGS`` as a process in ``cwd``, ``stdin`` on its input; ``settings`` are its
    RAG_* variables (none from outside)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | settings
    env["PYTHONPATH"] = str(REPO)
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "rag_service", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chroma_executable() -> str:
    candidate = Path(sys.executable).with_name("chroma")
    found = str(candidate) if candidate.exists() else shutil.which("chroma")
    if not found:
        pytest.fail("the `chroma` command (from the chromadb package) is not installed")
    return found


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real `chroma run` on a loopback port for the whole session."""
    data = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    log = (data / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            chroma_executable(),
            "run",
            "--path",
            str(data / "db"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_chroma(port, proc, data / "server.log")
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def wait_for_chroma(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"chroma run exited early:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).is_success:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    pytest.fail(f"chroma run did not answer within 30 s:\n{log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real `redis-server` on a loopback port for the whole session (no persistence). Tests
    share it: each writes under its own ``redis_prefix``. A test that stops Redis takes
    a server of its own (``own_redis``)."""
    with running_redis(tmp_path_factory.mktemp("redis-server"), free_port()) as server:
        yield server


@pytest.fixture
def redis_prefix(redis_server: RedisServer) -> Iterator[str]:
    """A key prefix of this test's own (``RAG_REDIS__KEY_PREFIX``); its keys are deleted after."""
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    with redis_server.client() as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A ``redis-server`` of the test's own, to stop, start or flush (``redis_server`` is the
    session's, shared by every test)."""
    (tmp_path / "redis").mkdir()
    with running_redis(tmp_path / "redis", free_port()) as server:
        yield server
