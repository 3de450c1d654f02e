"""One child process of the tests with its output in a log file: started, waited for (a
condition polled with a generous limit, failing early with the log's tail when the process
exits), stopped or killed, and started again with the same command, environment and port."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

STOP_LIMIT_S = 60.0
POLL_S = 0.2
LOG_TAIL_CHARS = 4000


@dataclass
class ManagedProcess:
    """One child process with its output in ``log_path``; ``start`` again after ``stop`` or
    ``kill`` reuses the same command, environment and port."""

    name: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.cwd.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._log.write(f"--- {self.name}: {' '.join(self.command)}\n".encode())
        self._log.flush()
        # A session of its own: a process that has to be killed takes its children (workers)
        # with it, and a Ctrl-C in the terminal goes to pytest alone.
        self.process = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, limit_s: float = STOP_LIMIT_S) -> int | None:
        """SIGTERM and wait (SIGKILL past ``limit_s``); the exit code, None if not running."""
        return self._end(signal.SIGTERM, limit_s)

    def kill(self) -> int | None:
        """SIGKILL: the process dies at once, as a crashed or OOM-killed replica does (its own
        children, if any, are left to notice)."""
        return self._end(signal.SIGKILL, STOP_LIMIT_S)

    def wait_until(self, condition: Callable[[], bool], what: str, limit_s: float) -> None:
        """Poll ``condition`` until true; fail with the log's tail past ``limit_s`` or when the
        process exits."""
        deadline = time.monotonic() + limit_s
        while not condition():
            if self.process is None or self.process.poll() is not None:
                pytest.fail(f"{self.name} exited before {what}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name}: not {what} within {limit_s:g} s:\n{self.log_tail()}")
            time.sleep(POLL_S)

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_text(errors="replace")[-chars:]

    def _end(self, signum: signal.Signals, limit_s: float) -> int | None:
        process, self.process = self.process, None
        code = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signum)
            try:
                code = process.wait(timeout=limit_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the process and what it started
                code = process.wait(timeout=limit_s)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code
