"""The HTTP server the service runs under: stock uvicorn, configured in one place.

``server_config`` builds the ``uvicorn.Config`` that ``rag-service serve``, the benchmarks and
the live-server tests all run, so every one of them exercises the same server. It picks uvloop
and httptools when they are installed (``uvicorn[standard]`` brings both): the streams' tokens
go out through httptools' C parser and uvloop's transports, which cost a fraction of the
pure-Python h11 protocol and asyncio's default loop. Nothing of uvicorn is replaced or patched:
the service relies only on its ASGI interface and its ``http=<protocol class>`` option (see
docs/streaming.md, "How a response writes").

Connection hygiene (``settings.server``, docs/deployment.md) is wired here, in three layers:

- uvicorn itself: the idle keep-alive limit (``timeout_keep_alive``);
- ``ConnectionGuard`` around uvicorn's HTTP protocol: the header time limit and the cap on open
  connections (``rag_service/server/connection_guard.py``);
- ``BodyDeadline``, ASGI: the body time limit and minimum rate
  (``rag_service/server/body_deadline.py``).
"""

from __future__ import annotations

import copy
from importlib.util import find_spec
from typing import Any

import uvicorn
from uvicorn.config import HTTP_PROTOCOLS, LOGGING_CONFIG
from uvicorn.importer import import_from_string

from rag_service.server.body_deadline import BodyDeadline
from rag_service.server.connection_guard import ConnectionGuard, ConnectionLink
from rag_service.server.open_files import fit_open_file_limit
from rag_service.settings import Settings

# Options that would undo the guard, which server_config therefore sets itself:
# - ws: a WebSocket upgrade hands the transport to another protocol, past the guard's count
#   (the service has no WebSocket route);
# - reset_contextvars: starts each request's task in an empty context, where ConnectionLink
#   cannot find its connection (and the header timer would cut long streams);
# - timeout_keep_alive: comes from settings.server.keepalive_s.
OWNED_OPTIONS = frozenset({"ws", "reset_contextvars", "timeout_keep_alive"})


def _installed(module: str) -> bool:
    return find_spec(module) is not None


def server_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """The ``uvicorn.Config`` for serving ``app`` with ``settings.server``'s address and limits:
    ``options`` as ``uvicorn.Config`` takes them (an explicit ``host``, ``port``, ``loop`` or
    ``http`` wins), with uvloop and httptools when installed. Raises the soft open-file limit
    to fit the connection caps (``fit_open_file_limit``)."""
    owned = OWNED_OPTIONS & options.keys()
    if owned:
        raise ValueError(f"server_config sets {', '.join(sorted(owned))} itself")
    server = settings.server
    http = options.pop("http", "httptools" if _installed("httptools") else "h11")
    # The protocol uvicorn would have run for ``http``, looked up as uvicorn.Config.load does.
    inner = import_from_string(HTTP_PROTOCOLS.get(http, http)) if isinstance(http, str) else http
    guard = ConnectionGuard(
        inner, header_timeout_s=server.header_timeout_s, max_connections=server.max_connections
    )
    fit_open_file_limit(server.max_connections, settings.upstream.max_connections)
    defaults: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "loop": "uvloop" if _installed("uvloop") else "asyncio",
    }
    guarded_app = ConnectionLink(
        BodyDeadline(app, timeout_s=server.body_timeout_s, min_rate=server.body_min_rate_bytes_s)
    )
    return uvicorn.Config(
        guarded_app,
        http=guard.protocol_class,
        ws="none",
        reset_contextvars=False,
        timeout_keep_alive=server.keepalive_s,
        **(defaults | options),
    )


def logging_config(level: str) -> dict[str, Any]:
    """uvicorn's logging configuration, plus the service's own ``rag_service`` loggers on the
    same handler and format, so that ``rag-service serve`` prints the start-up summary and the
    service's warnings the way it prints uvicorn's lines. Only for ``serve``: tests keep their
    records flowing to the root logger."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["rag_service"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config
