"""A real uvicorn serving an app on a free loopback port, inside the test's event loop.

It runs the service's own server configuration (``server_config``: stock uvicorn on httptools,
with the connection hygiene of ``settings.server``), so every live-server test exercises what
``rag-service serve`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from rag_service.server import server_config
from rag_service.settings import Settings

SERVER_START_TIMEOUT_S = 5.0


@contextlib.asynccontextmanager
async def running_server(
    app: Any, settings: Settings | None = None, **options: Any
) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    """uvicorn serving the ASGI ``app`` (no lifespan) for the block, under ``settings.server``
    (default: the defaults) and uvicorn ``options``; yields it and its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = server_config(
        app,
        settings or Settings(),
        lifespan="off",
        log_level="warning",
        timeout_graceful_shutdown=2,
        **options,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(SERVER_START_TIMEOUT_S):
            # uvicorn offers no event for "listening"; a bounded poll of its flag is all there is.
            while not server.started:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        yield server, sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        sock.close()


@contextlib.asynccontextmanager
async def live_server(app: Any, settings: Settings | None = None) -> AsyncIterator[str]:
    """A real uvicorn on a free loopback port for the duration of the block; yields its URL."""
    async with running_server(app, settings) as (_, port):
        yield f"http://127.0.0.1:{port}"
