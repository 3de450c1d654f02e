"""A real ``redis-server`` on a loopback port, for the tests of shared state (issue #14).

No persistence (``--save ''``, ``--appendonly no``): a restarted server starts empty, as a
Redis that lost its data does. Debian's package; ``scripts/install-redis`` installs it, and
``REDIS_SERVER`` may name another executable. A missing server fails the tests, never skips them.
The process is a ``ManagedProcess`` (tests/managed_process.py), as the fleet tests' replicas are.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.managed_process import ManagedProcess

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
class RedisServer(ManagedProcess):
    """One ``redis-server`` process (``redis_process``); ``stop`` and ``start`` again keep its
    port."""

    port: int = 0

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        super().start()
        try:
            self.wait_until(self._answers_ping, "answering PING", START_LIMIT_S)
        except BaseException:  # pytest.fail's too: no server is left running
            self.stop()
            raise

    def client(self) -> redis.Redis:
        """A synchronous client, for tests that look at the keys themselves."""
        return redis.Redis(host=HOST, port=self.port, socket_timeout=5, decode_responses=True)

    def _answers_ping(self) -> bool:
        with redis.Redis(
            host=HOST, port=self.port, socket_connect_timeout=1, socket_timeout=1
        ) as probe:
            try:
                return bool(probe.ping())
            except redis.exceptions.RedisError:  # not listening yet, or still loading
                return False


def redis_process(data: Path, port: int) -> RedisServer:
    """A ``redis-server`` (not started) on ``port``, its files and log in ``data``."""
    return RedisServer(
        name="redis-server",
        command=[
            redis_executable(),
            "--bind", HOST,
            "--port", str(port),
            "--dir", str(data),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "yes",
        ],
        env=dict(os.environ),
        cwd=data,
        log_path=data / "redis.log",
        port=port,
    )  # fmt: skip


@contextmanager
def running_redis(data: Path, port: int) -> Iterator[RedisServer]:
    server = redis_process(data, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()
