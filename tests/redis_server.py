"""A real ``redis-server`` on a loopback port, for the tests of shared state (issue #14).

No persistence (``--save ''``, ``--appendonly no``): a restarted server starts empty, as a
Redis that lost its data does. Debian's package; ``scripts/install-redis`` installs it, and
``REDIS_SERVER`` may name another executable. A missing server fails the tests, never skips them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
import redis

HOST = "127.0.0.1"
START_LIMIT_S = 30.0  # generous: the suite runs on a busy 2-core machine


def redis_executable() -> str:
    found = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if not found or not os.access(found, os.X_OK):
        pytest.fail(
            "redis-server is not installed: run scripts/install-redis (Debian: apt-get "
            "install redis-server), or set REDIS_SERVER=/path/to/redis-server"
        )
    return found


@dataclass
class RedisServer:
    """One ``redis-server`` process in ``data``; ``stop`` and ``start`` again keep its port."""

    data: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.data / "redis.log"

    def start(self) -> None:
        if self.process is not None:
            raise RuntimeError("redis-server is already running")
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                redis_executable(),
                "--bind", HOST,
                "--port", str(self.port),
                "--dir", str(self.data),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--protected-mode", "yes",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._wait_for_ping()

    def stop(self) -> None:
        """Terminate the server (without persistence it exits at once) and wait for it."""
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def client(self) -> redis.Redis:
        """A synchronous client, for tests that look at the keys themselves."""
        return redis.Redis(host=HOST, port=self.port, socket_timeout=5, decode_responses=True)

    def _wait_for_ping(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_LIMIT_S
        with redis.Redis(
            host=HOST, port=self.port, socket_connect_timeout=1, socket_timeout=1
        ) as probe:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    pytest.fail(f"redis-server exited early:\n{self._log_tail()}")
                try:
                    if probe.ping():
                        return
                except redis.exceptions.RedisError:  # not listening yet, or still loading
                    time.sleep(0.05)
        self.stop()
        pytest.fail(
            f"redis-server did not answer PING within {START_LIMIT_S:g} s:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]


@contextmanager
def running_redis(data: Path, port: int) -> Iterator[RedisServer]:
    server = RedisServer(data, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()
