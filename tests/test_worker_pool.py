"""The parent of ``serve --workers N`` (``run_workers``, rag_service/server/worker_pool.py) with
real worker processes on loopback, serving the small app of tests/worker_pool_app.py: a worker
that fails to start stops the command with code 3 and says which; one that dies later is
replaced; SIGHUP replaces every worker, or none when the replacements cannot start; SIGTERM stops
them all with code 0 once their responses in flight have ended; the connection guard (the
``http=`` protocol class) applies in the workers. Every wait is for a condition
(files the workers write, the port answering, processes gone, log lines), with a generous
limit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port

STARTUP_FAILURE = 3
HEADER_TIMEOUT_S = 1  # the connection guard's header limit, short for the guard's test
LIMIT_S = 120.0
POLL_S = 0.1


@dataclass
class Parent:
    process: subprocess.Popen[bytes]
    directory: Path
    port: int
    log: Path

    def started(self) -> set[int]:
        """Pids of every worker whose start-up ran."""
        return {int(path.name) for path in (self.directory / "started").iterdir()}

    def answer(self) -> int | None:
        """The pid of the worker that answers a request, None while none does."""
        try:
            return int(httpx.get(f"http://127.0.0.1:{self.port}/", timeout=5).text)
        except (httpx.HTTPError, ValueError):
            return None

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + LIMIT_S
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(f"the parent exited before {what}:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"not {what} within {LIMIT_S:g} s:\n{self.output()}")
            time.sleep(POLL_S)

    def exit_code(self) -> int:
        return self.process.wait(timeout=LIMIT_S)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_parent(tmp_path: Path) -> Iterator[Callable[[], Parent]]:
    parents: list[Parent] = []

    def start() -> Parent:
        directory = tmp_path / "pool"
        (directory / "started").mkdir(parents=True, exist_ok=True)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {
            "PYTHONPATH": str(REPO),
            "RAG_SERVER__HOST": "127.0.0.1",
            "RAG_SERVER__PORT": str(port),
            "RAG_SERVER__WORKERS": "2",
            "RAG_SERVER__HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        }
        log = tmp_path / "parent.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.worker_pool_app", str(directory)],
                cwd=tmp_path,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        parent = Parent(process, directory, port, log)
        parents.append(parent)
        return parent

    yield start
    for parent in parents:
        if parent.process.poll() is None:
            os.killpg(parent.process.pid, signal.SIGKILL)
            parent.process.wait(timeout=LIMIT_S)


@pytest.fixture
def parent(start_parent: Callable[[], Parent]) -> Parent:
    """A parent whose two workers serve."""
    started = start_parent()
    serving(started, 2)
    return started


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def serving(parent: Parent, count: int) -> None:
    parent.wait_until(lambda: len(parent.started()) >= count, f"{count} workers started")
    parent.wait_until(lambda: parent.answer() is not None, "answering")


def test_a_worker_that_fails_to_start_stops_all_with_code_3(
    start_parent: Callable[[], Parent], tmp_path: Path
) -> None:
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "fail-once").touch()  # one of the two workers fails

    parent = start_parent()

    assert parent.exit_code() == STARTUP_FAILURE, parent.output()
    output = parent.output()
    failed = [pid for pid in parent.started() if f"a worker (pid {pid}) exited" in output]
    assert len(failed) == 1, output
    assert "exited with code 3 before it was serving" in output
    assert "the other workers were stopped" in output
    assert all(gone(pid) for pid in parent.started())


def test_a_dead_worker_is_replaced_sighup_replaces_all_sigterm_stops_with_0(parent: Parent) -> None:
    first = parent.started()

    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    parent.wait_until(lambda: len(parent.started()) == 3, "a replacement started")
    parent.wait_until(lambda: parent.answer() is not None, "answering after the death")
    current = parent.started() - {victim}

    parent.process.send_signal(signal.SIGHUP)
    parent.wait_until(lambda: len(parent.started()) == 5, "two replacements started")
    parent.wait_until(lambda: all(gone(pid) for pid in current), "the old workers retired")
    assert parent.answer() not in current

    parent.process.send_signal(signal.SIGTERM)
    assert parent.exit_code() == 0, parent.output()
    assert all(gone(pid) for pid in parent.started())
    assert "Traceback" not in parent.output()


def test_the_connection_guard_closes_half_sent_headers_in_the_workers(parent: Parent) -> None:
    """The ``http=`` protocol class reaches the worker processes: stock uvicorn would keep a
    connection with half its headers open."""
    for _ in range(4):  # the kernel hands each connection to either worker
        with socket.create_connection(("127.0.0.1", parent.port), timeout=LIMIT_S) as half:
            half.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            assert half.recv(100) == b""  # closed without an answer at the header limit


def test_a_replacement_that_fails_to_start_stops_all_with_code_3(parent: Parent) -> None:
    first = parent.started()

    (parent.directory / "fail-always").touch()  # the app no longer starts
    os.kill(min(first), signal.SIGKILL)

    assert parent.exit_code() == STARTUP_FAILURE, parent.output()
    assert "a replacement worker (pid" in parent.output()
    assert all(gone(pid) for pid in parent.started())


def test_a_sighup_whose_replacements_cannot_start_leaves_the_old_workers_serving(
    parent: Parent,
) -> None:
    first = parent.started()

    (parent.directory / "fail-always").touch()  # the app no longer starts
    parent.process.send_signal(signal.SIGHUP)
    parent.wait_until(lambda: "restart aborted" in parent.output(), "the restart aborted")

    assert not any(gone(pid) for pid in first)
    assert parent.answer() in first
    parent.process.send_signal(signal.SIGTERM)
    assert parent.exit_code() == 0, parent.output()


def test_sigterm_lets_a_response_in_flight_end_before_the_workers_stop(parent: Parent) -> None:
    release = threading.Event()

    def body() -> Iterator[bytes]:  # the response ends once the body has
        yield b"first part"
        release.wait(LIMIT_S)
        yield b"last part"

    bodies: list[str] = []
    request = threading.Thread(
        target=lambda: bodies.append(
            httpx.post(f"http://127.0.0.1:{parent.port}/held", content=body(), timeout=LIMIT_S).text
        )
    )
    request.start()
    try:
        parent.wait_until(lambda: (parent.directory / "held").exists(), "the response held")
        parent.process.send_signal(signal.SIGTERM)
        # uvicorn's graceful shutdown has begun and waits for the held connection.
        parent.wait_until(
            lambda: "Waiting for connections to close" in parent.output(), "the worker draining"
        )
    finally:
        release.set()
    request.join(LIMIT_S)

    assert bodies and bodies[0].startswith("held ") and bodies[0][5:].isdigit(), bodies
    assert parent.exit_code() == 0, parent.output()
    assert all(gone(pid) for pid in parent.started())
