"""A small app for the worker-pool tests (tests/test_worker_pool.py), run by ``run_workers`` as
``rag-service serve --workers N`` runs the service: ``python -m tests.worker_pool_app DIR``.

Each worker's start-up writes its pid to ``DIR/started/<pid>`` and then fails if it removes the
file ``DIR/fail-once`` (one worker only: the removal is atomic) or finds ``DIR/fail-always``; a
request answers the worker's pid. ``/held`` is a response held open: its first part goes out at
once and ``DIR/held`` is written, its last part (the pid) once the request's body has ended (the
test sends it in two parts), so a test can stop the workers while a response is in flight. The
command exits as ``serve`` does: 3 with the failure on stderr when a worker failed to start, 0
after a stop by signal.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from rag_service.server import logging_config, run_workers
from rag_service.settings import Settings

DIRECTORY_VARIABLE = "WORKER_POOL_TEST_DIR"
STARTUP_FAILURE = 3
# Long enough for a test on a loaded machine to release a held response during the shutdown.
GRACEFUL_SHUTDOWN_S = 60


def app() -> Any:
    """The factory each worker calls."""
    directory = Path(os.environ[DIRECTORY_VARIABLE])

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
                (directory / "started" / str(os.getpid())).touch()
                if _fails(directory):
                    await send({"type": "lifespan.startup.failed", "message": "told to fail"})
                    return
                await send({"type": "lifespan.startup.complete"})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if scope["path"] == "/held":
            await send({"type": "http.response.body", "body": b"held ", "more_body": True})
            (directory / "held").touch()
            while (await receive()).get("more_body", False):
                pass  # the test sends the rest of the request's body when it is ready
        await send({"type": "http.response.body", "body": str(os.getpid()).encode()})

    return asgi


def _fails(directory: Path) -> bool:
    try:
        (directory / "fail-once").unlink()
        return True
    except FileNotFoundError:
        return (directory / "fail-always").exists()


def main() -> None:
    directory = Path(sys.argv[1])
    (directory / "started").mkdir(parents=True, exist_ok=True)
    os.environ[DIRECTORY_VARIABLE] = str(directory)
    failure = run_workers(
        Settings(),
        app="tests.worker_pool_app:app",
        log_level="info",
        log_config=logging_config("info"),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    if failure is not None:
        print(f"failed to start: {failure}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
