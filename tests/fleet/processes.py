"""Processes of the fleet tests: a service replica (``python -m rag_service serve``) and the
fleet's upstream (``tests/fleet/upstream_process.py``), each on a loopback port with its output in
a log file. Waits are for conditions (a port answering, ``/readyz`` saying ready) with generous
limits, failing early, with the log's tail, when the process exits (``ManagedProcess``, in
tests/managed_process.py).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import PROXY_VARIABLES, REPO
from tests.managed_process import ManagedProcess

# Generous: a replica loads its embedding model, and the suite runs on a busy 2-core machine.
START_LIMIT_S = 240.0


# As tests/conftest.py's hermetic environment: no hub access, no telemetry.
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}


def child_env(settings: dict[str, str]) -> dict[str, str]:
    """The environment of a child process: this one's without RAG_* and proxies, offline,
    then ``settings``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("RAG_") and name.lower() not in PROXY_VARIABLES
    }
    return env | OFFLINE | {"PYTHONPATH": str(REPO)} | settings


@dataclass
class Replica(ManagedProcess):
    """A service process (``rag-service serve``) on ``port``."""

    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def readyz(self) -> httpx.Response | None:
        """``GET /readyz``, or None while nothing answers on the port."""
        try:
            return httpx.get(f"{self.url}/readyz", timeout=10)
        except httpx.HTTPError:
            return None

    def wait_ready(self, limit_s: float = START_LIMIT_S) -> None:
        """Until ``/readyz`` answers 200 (store, embedder and upstream ok)."""

        def ready() -> bool:
            response = self.readyz()
            return response is not None and response.status_code == 200

        self.wait_until(ready, "ready (/readyz 200)", limit_s)


def replica_process(
    name: str, port: int, settings: dict[str, str], directory: Path, *options: str
) -> Replica:
    """A replica (not started): ``python -m rag_service serve`` with ``settings`` as its
    environment's RAG_* variables and ``options`` after ``serve``, its cwd and log in
    ``directory``."""
    return Replica(
        name=name,
        command=[sys.executable, "-m", "rag_service", "serve", "--port", str(port), *options],
        env=child_env(settings),
        cwd=directory / name,
        log_path=directory / f"{name}.log",
        port=port,
    )


def upstream_process(port: int, directory: Path, *options: str) -> ManagedProcess:
    """The fleet's upstream (``tests.fleet.upstream_process``), started and listening."""
    module = "tests.fleet.upstream_process"
    upstream = ManagedProcess(
        name="upstream",
        command=[sys.executable, "-m", module, "--port", str(port), *options],
        env=child_env({}),
        cwd=directory / "upstream",
        log_path=directory / "upstream.log",
    )
    upstream.start()
    upstream.wait_until(lambda: f"ready {port}" in upstream.log_tail(), "listening", START_LIMIT_S)
    return upstream
