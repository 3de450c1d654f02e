"""The parent of ``rag-service serve --workers N``: N processes of stock ``uvicorn.Server`` on one
listening socket, supervised so that a worker that cannot start stops the command with a
failure status.

The parent does what uvicorn documents for running its server under another process manager:
it binds the socket (``uvicorn.Config.bind_socket``) and each worker, a fresh interpreter
(multiprocessing's spawn), runs ``uvicorn.Server(config).run(sockets=[sock])``. Each worker
reports once, over a pipe, that its server has started (its app's lifespan start-up done). The
parent waits on those pipes, the workers' process sentinels and its signals (through
``signal.set_wakeup_fd``), never on a timer:

- a worker that exits before it has started stops all the others and ``run`` returns a
  ``WorkerFailure`` (the CLI exits with uvicorn's start-up failure code, 3);
- a worker that dies after it started is replaced at once (as uvicorn and gunicorn do); a
  replacement that cannot start is a start-up failure as above: the app no longer starts;
- ``SIGHUP`` replaces the workers one at a time, each old one retired only once its
  replacement serves (a replacement that cannot start leaves the old one serving);
- ``SIGTERM`` / ``SIGINT`` stop all: each worker finishes its streams within uvicorn's
  graceful-shutdown time, and one that outlives that by ``STOP_GRACE_S`` is killed.

Why not a library (issue #15; measured on loopback with the service's own app and
tests/worker_pool_app.py's, table and figures in docs/deployment.md, "Why the pool is ours"):

- uvicorn 0.55 ``uvicorn.run(app, workers=N)``: the parent stops when a worker fails to start
  (exit code 3) or its replacement does, then returns normally: the command exits 0.
  ``uvicorn.supervisors.Multiprocess`` run directly knows more, but says so only through its
  undocumented ``processes`` list; and its ``SIGHUP`` waits for a new worker at most
  ``timeout_worker_healthcheck`` (5 s, also the liveness-ping limit): the service's workers
  take 20-60 s to start here, so the restart is aborted and nothing is replaced. Raised past
  that, a SIGTERM during the restart waits until the whole restart has ended (the supervisor
  handles signals between restarts, and waits for each retired worker without a time limit;
  observed: not stopped within 60 s).
- gunicorn 27.0 with uvicorn-worker 0.4 (``UvicornWorker`` subclassed with ``CONFIG_KWARGS``,
  run through ``gunicorn.app.base.BaseApplication``): exit 3 on a failed start, replacement,
  graceful SIGTERM and our ``http=`` guard all hold, but its ``SIGHUP`` forks N new workers
  and stops the old ones at once, before the new ones serve: nothing serves during a whole
  start-up (observed: streams' first token ~20 s late, or 50 of 100 streams failed), and when
  the new workers cannot start the whole service stops (exit 3) instead of serving on.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Literal

import uvicorn
from uvicorn.config import STARTUP_FAILURE

log = logging.getLogger("uvicorn.error")  # the parent's lines go with uvicorn's own

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A worker still running this long after its graceful-shutdown time is killed.
STOP_GRACE_S = 30.0
_STARTED = b"started"
# first: started with the pool; replacement: for a worker that died; restart: SIGHUP's.
Role = Literal["first", "replacement", "restart"]


@dataclass(frozen=True)
class WorkerFailure:
    """A worker that exited before it was serving (its log lines above say why)."""

    pid: int | None
    exit_code: int | None
    replacement: bool

    def __str__(self) -> str:
        which = "a replacement worker" if self.replacement else "a worker"
        return (
            f"{which} (pid {self.pid}) exited with code {self.exit_code} before it was serving; "
            "the other workers were stopped (the worker's log lines above say why)"
        )


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    reports: Connection  # the parent's end of the worker's pipe
    role: Role
    retires: _Worker | None = None  # a SIGHUP restart's: the worker it takes over from
    started: bool = False


@dataclass
class WorkerPool:
    """``count`` workers serving ``config`` (loadable in a fresh interpreter: an import string
    or factory) on ``sockets``; ``run`` blocks until they stop."""

    config: uvicorn.Config
    sockets: list[socket.socket]
    count: int
    _workers: list[_Worker] = field(default_factory=list)
    _retiring: list[_Worker] = field(default_factory=list)  # terminated, not yet exited
    _to_restart: list[_Worker] = field(default_factory=list)  # SIGHUP: still to be replaced
    _stopping: bool = False

    def run(self) -> WorkerFailure | None:
        """Serve until a stop signal (None) or a worker that fails to start (the failure)."""
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        failure: WorkerFailure | None = None
        with _signals_written_to(wake_write):
            log.info("Started parent process [%d]", os.getpid())
            try:
                self._workers = [self._spawn("first") for _ in range(self.count)]
                while failure is None and not self._stopping:
                    wait([*self._waitables(), wake_read])
                    failure = self._handle_events(_received_signals(wake_read))
            finally:
                self._stop_all()
                os.close(wake_read)
                os.close(wake_write)
            log.info("Stopping parent process [%d]", os.getpid())
        return failure

    def _waitables(self) -> list[Connection | int]:
        waitables: list[Connection | int] = [w.process.sentinel for w in self._all()]
        return waitables + [w.reports for w in self._workers if not w.started]

    def _all(self) -> list[_Worker]:
        return self._workers + self._retiring

    def _spawn(self, role: Role, retires: _Worker | None = None) -> _Worker:
        reports, child_end = multiprocessing.Pipe(duplex=False)
        process = _SPAWN.Process(target=serve_worker, args=(self.config, self.sockets, child_end))
        process.start()
        child_end.close()  # the child's copy alone: its exit ends the pipe
        return _Worker(process, reports, role, retires)

    def _handle_events(self, signals: list[int]) -> WorkerFailure | None:
        for sig in signals:
            if sig in STOP_SIGNALS:
                log.info("Received %s, stopping the workers", signal.Signals(sig).name)
                self._stopping = True
                return None
            if sig == signal.SIGHUP:
                self._restart_all()
        for worker in list(self._workers):
            if not worker.started and worker.reports.poll():
                self._note_started(worker)
            if worker.process.is_alive():
                continue
            worker.process.join()
            self._workers.remove(worker)
            failure = self._worker_exited(worker)
            if failure is not None:
                return failure
        for old in list(self._retiring):
            if not old.process.is_alive():
                old.process.join()
                old.reports.close()
                self._retiring.remove(old)
        return None

    def _note_started(self, worker: _Worker) -> None:
        try:
            worker.started = worker.reports.recv_bytes() == _STARTED
        except EOFError:  # it exited first: handled as an exit
            return
        if worker.role == "restart":
            if worker.retires is not None:
                self._retire(worker.retires)
                worker.retires = None
            self._restart_next()

    def _worker_exited(self, worker: _Worker) -> WorkerFailure | None:
        code, pid = worker.process.exitcode, worker.process.pid
        worker.reports.close()
        if worker.started:
            log.warning("Worker [%s] died (exit code %s)", pid, code)
            successors = [w for w in self._workers if w.retires is worker]
            for successor in successors:  # a SIGHUP replacement on its way takes its place
                successor.retires = None
            if not successors:
                log.info("Starting a replacement for worker [%s]", pid)
                self._workers.append(self._spawn("replacement"))
            return None
        if worker.role == "restart":  # the worker it was to replace serves on
            log.error("Worker [%s] failed to start (exit code %s): restart aborted", pid, code)
            self._to_restart.clear()
            return None
        log.error("Worker [%s] failed to start (exit code %s)", pid, code)
        return WorkerFailure(pid, code, replacement=worker.role == "replacement")

    def _restart_all(self) -> None:
        if self._to_restart or any(w.role == "restart" and w.retires for w in self._workers):
            log.info("Received SIGHUP during a restart: ignored")
            return
        log.info("Received SIGHUP, replacing the workers one at a time")
        self._to_restart = [w for w in self._workers if w.started]
        self._restart_next()

    def _restart_next(self) -> None:
        while self._to_restart:
            old = self._to_restart.pop(0)
            if old in self._workers:  # not died meanwhile
                self._workers.append(self._spawn("restart", retires=old))
                return

    def _retire(self, worker: _Worker) -> None:
        if worker in self._workers:
            self._workers.remove(worker)
            worker.process.terminate()  # SIGTERM: it finishes its streams
            self._retiring.append(worker)

    def _stop_all(self) -> None:
        for worker in self._all():
            if worker.process.is_alive():
                worker.process.terminate()  # SIGTERM: uvicorn's graceful shutdown
        limit_s = (self.config.timeout_graceful_shutdown or 0) + STOP_GRACE_S
        for worker in self._all():
            worker.process.join(limit_s)
            if worker.process.is_alive():
                log.error("Worker [%s] did not stop; killing it", worker.process.pid)
                worker.process.kill()
                worker.process.join()
            worker.reports.close()
        self._workers, self._retiring = [], []


_SPAWN = multiprocessing.get_context("spawn")


@contextmanager
def _signals_written_to(wake_write: int) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP each written to ``wake_write`` as a byte, their number, by
    ``signal.set_wakeup_fd`` (it writes for signals that have a Python handler, so each gets
    one that does nothing more)."""
    watched = (*STOP_SIGNALS, signal.SIGHUP)
    previous = {sig: signal.signal(sig, _noted) for sig in watched}
    previous_fd = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for sig, old in previous.items():
            signal.signal(sig, old)


def _noted(sig: int, frame: FrameType | None) -> None:
    """The signal's number is in the wake-up pipe already (``_signals_written_to``)."""


def _received_signals(wake_read: int) -> list[int]:
    """The signals written to the wake-up pipe since the last call, oldest first."""
    try:
        return list(os.read(wake_read, 512))
    except BlockingIOError:  # woken by a worker, not a signal
        return []


def serve_worker(config: uvicorn.Config, sockets: list[socket.socket], report: Connection) -> None:
    """A worker process: uvicorn's server on the parent's sockets; ``report`` is told once the
    server has started. Exits with uvicorn's start-up failure code when it never did."""
    config.configure_logging()  # a fresh interpreter: uvicorn's and the service's loggers
    server = _ReportingServer(config, report)
    server.run(sockets=sockets)
    if not server.started:
        sys.exit(STARTUP_FAILURE)


class _ReportingServer(uvicorn.Server):
    """``uvicorn.Server`` that tells the parent when its start-up (the app's lifespan start-up,
    then listening on the sockets) is done."""

    def __init__(self, config: uvicorn.Config, report: Connection) -> None:
        super().__init__(config)
        self._report = report

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._report.send_bytes(_STARTED)
