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
  connections (``connection_guard.py`` in this package);
- ``BodyDeadline``, ASGI: the body time limit and minimum rate (``body_deadline.py`` in this
  package).

``run_workers`` serves with N worker processes (``rag-service serve --workers N``): the parent
binds the port (``uvicorn.Config.bind_socket``) and supervises ``uvicorn.Server`` processes on
it (``worker_pool.py`` in this package: a worker that cannot start stops the command with a
failure status, one that dies later is replaced, SIGHUP replaces them one by one); each
worker, a fresh interpreter, builds its app with ``worker_app`` from the environment the parent
prepared. The configuration is pickled into each worker, so the guard goes there as
``WorkerConnectionGuard``, which is rebuilt on arrival: every worker counts and limits its own
connections, as a single process does.
"""

from __future__ import annotations

import asyncio
import copy
import os
from importlib.util import find_spec
from typing import Any, cast

import uvicorn
from uvicorn.config import HTTP_PROTOCOLS, LOGGING_CONFIG
from uvicorn.importer import import_from_string

from rag_service.server.body_deadline import BodyDeadline
from rag_service.server.connection_guard import ConnectionGuard, ConnectionLink
from rag_service.server.open_files import fit_open_file_limit
from rag_service.server.worker_pool import WorkerFailure, WorkerPool
from rag_service.settings import ServerSettings, Settings

# Options that would undo the guard, which server_config therefore sets itself:
# - ws: a WebSocket upgrade hands the transport to another protocol, past the guard's count
#   (the service has no WebSocket route);
# - reset_contextvars: starts each request's task in an empty context, where ConnectionLink
#   cannot find its connection (and the header timer would cut long streams);
# - timeout_keep_alive: comes from settings.server.keepalive_s.
OWNED_OPTIONS = frozenset({"ws", "reset_contextvars", "timeout_keep_alive"})
# The worker factory uvicorn imports in each worker process.
WORKER_APP = "rag_service.server.uvicorn_config:worker_app"


def _installed(module: str) -> bool:
    return find_spec(module) is not None


def server_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """The ``uvicorn.Config`` for serving ``app`` with ``settings.server``'s address and limits:
    ``options`` as ``uvicorn.Config`` takes them (an explicit ``host``, ``port``, ``loop`` or
    ``http`` wins), with uvloop and httptools when installed. Raises the soft open-file limit
    to fit the connection caps (``fit_open_file_limit``)."""
    inner, merged = _server_options(settings, options)
    server = settings.server
    guard = ConnectionGuard(
        inner, header_timeout_s=server.header_timeout_s, max_connections=server.max_connections
    )
    return uvicorn.Config(guarded_app(app, server), http=guard.protocol_class, **merged)


def guarded_app(app: Any, server: ServerSettings) -> Any:
    """``app`` inside the ASGI layers of connection hygiene (body deadline, connection link)."""
    return ConnectionLink(
        BodyDeadline(app, timeout_s=server.body_timeout_s, min_rate=server.body_min_rate_bytes_s)
    )


def _server_options(
    settings: Settings, options: dict[str, Any]
) -> tuple[type[asyncio.Protocol], dict[str, Any]]:
    """The HTTP protocol class to guard, and uvicorn's options but ``http`` for
    ``settings.server`` merged with ``options``; raises the open-file limit."""
    owned = OWNED_OPTIONS & options.keys()
    if owned:
        raise ValueError(f"server_config sets {', '.join(sorted(owned))} itself")
    server = settings.server
    options = dict(options)
    http = options.pop("http", "httptools" if _installed("httptools") else "h11")
    # The protocol uvicorn would have run for ``http``, looked up as uvicorn.Config.load does.
    inner = import_from_string(HTTP_PROTOCOLS.get(http, http)) if isinstance(http, str) else http
    fit_open_file_limit(server.max_connections, settings.upstream.max_connections)
    defaults: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "loop": "uvloop" if _installed("uvloop") else "asyncio",
    }
    fixed = {"ws": "none", "reset_contextvars": False, "timeout_keep_alive": server.keepalive_s}
    return inner, defaults | options | fixed


class WorkerConnectionGuard:
    """``http=`` for uvicorn's worker processes: a protocol factory, as uvicorn uses its
    ``http`` option (called with the connection's keyword arguments). Pickled into each worker,
    it arrives as a new guard (``__reduce__``), so each process counts its own connections."""

    def __init__(
        self, inner: type[asyncio.Protocol], header_timeout_s: float, max_connections: int
    ) -> None:
        self._limits = (inner, header_timeout_s, max_connections)
        self.guard = ConnectionGuard(
            inner, header_timeout_s=header_timeout_s, max_connections=max_connections
        )

    def __call__(self, **uvicorn_arguments: Any) -> asyncio.Protocol:
        return self.guard.protocol_class(**uvicorn_arguments)

    def __reduce__(self) -> tuple[type[WorkerConnectionGuard], tuple[Any, ...]]:
        return (WorkerConnectionGuard, self._limits)


def run_workers(settings: Settings, app: str = WORKER_APP, **options: Any) -> WorkerFailure | None:
    """Serve ``app`` (an app factory's import string) with ``settings.server.workers``
    processes on one port until a signal stops the parent (None), or until a worker fails to
    start (the failure; the others are stopped). The workers read their settings from the
    environment: ``settings.server``'s address and worker count are put there first (the CLI's
    overrides included). A port that cannot be bound exits with uvicorn's start-up failure
    code, as a single process does."""
    server = settings.server
    os.environ["RAG_SERVER__HOST"] = server.host
    os.environ["RAG_SERVER__PORT"] = str(server.port)
    os.environ["RAG_SERVER__WORKERS"] = str(server.workers)
    inner, merged = _server_options(settings, options)
    guard = WorkerConnectionGuard(inner, server.header_timeout_s, server.max_connections)
    config = uvicorn.Config(
        app,
        factory=True,
        workers=server.workers,
        # uvicorn calls ``http`` as a protocol factory; a class is only its usual kind.
        http=cast(type[asyncio.Protocol], guard),
        **merged,
    )
    listening = config.bind_socket()
    try:
        return WorkerPool(config, [listening], server.workers).run()
    finally:
        listening.close()


def worker_app() -> Any:
    """The app of one worker process (uvicorn's factory): settings from the environment, the
    service from ``create_app``, inside the ASGI layers of ``server_config``."""
    from rag_service.app import create_app
    from rag_service.server.process_tuning import serving_gc

    settings = Settings()
    return guarded_app(create_app(settings, process_tuning=serving_gc), settings.server)


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
