"""The HTTP server the service runs under: stock uvicorn, configured in one place.

``server_config`` builds the ``uvicorn.Config`` that ``rag-service serve``, the benchmarks and
the live-server tests all run, so every one of them exercises the same server. It picks uvloop
and httptools when they are installed (``uvicorn[standard]`` brings both): the streams' tokens
go out through httptools' C parser and uvloop's transports, which cost a fraction of the
pure-Python h11 protocol and asyncio's default loop. Nothing of uvicorn is replaced or patched:
the service relies only on its ASGI interface (see docs/streaming.md, "How a response writes").
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any

import uvicorn


def _installed(module: str) -> bool:
    return find_spec(module) is not None


def server_config(app: Any, **options: Any) -> uvicorn.Config:
    """The ``uvicorn.Config`` for serving ``app``: ``options`` as ``uvicorn.Config`` takes them,
    with uvloop and httptools when installed (an explicit ``loop``/``http`` option wins)."""
    defaults: dict[str, Any] = {
        "loop": "uvloop" if _installed("uvloop") else "asyncio",
        "http": "httptools" if _installed("httptools") else "h11",
    }
    return uvicorn.Config(app, **(defaults | options))
