"""The HTTP server the service runs under: uvicorn, with a leaner per-connection protocol.

Thousands of SSE streams are open at once, each on its own connection, and uvicorn's httptools
protocol gives every connection three objects that stay empty for a stream's whole life: two
``asyncio.Event``\\ s (the request cycle's ``message_event`` and the flow control's writability
event), each with a waiter ``deque`` of 760 bytes, and the queue of pipelined requests, another
``deque``. Together about 2.4 KB of a stream's ~21 KB (docs/streaming.md, "Memory per stream").

``LeanHttpToolsProtocol`` is uvicorn's ``HttpToolsProtocol`` with those three swapped, right
after uvicorn makes them, for a ``LazyEvent`` (its waiter list is made at the first wait and
dropped after the last) and a ``_Pipeline`` (a list with ``appendleft``). Parsing, flow control,
timeouts and the ASGI cycle are uvicorn's own. ``server_config`` is the one place that builds
the server's ``uvicorn.Config``: ``rag-service serve``, the benchmarks and the live-server tests
all run the same protocol. ``tests/test_http_server.py`` fails if a uvicorn release renames
what is swapped (no ``asyncio.Event`` may be left on a connection).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Literal, TypeVar, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_T = TypeVar("_T")


class LazyEvent:
    """``asyncio.Event`` as uvicorn uses it (``is_set``, ``set``, ``clear``, ``wait``), in 56
    bytes while nobody waits: the waiter list exists only while a ``wait`` is pending."""

    __slots__ = ("_is_set", "_waiters")

    def __init__(self, *, is_set: bool = False) -> None:
        self._is_set = is_set
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._is_set

    def set(self) -> None:
        if self._is_set:
            return
        self._is_set = True
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._is_set = False

    async def wait(self) -> Literal[True]:
        if self._is_set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            waiters.remove(waiter)
            if not waiters and self._waiters is waiters:
                self._waiters = None


class _Pipeline(list[_T]):
    """The pipelined-request queue as uvicorn uses it (``appendleft``, ``pop``, truth): an
    empty list is 56 bytes, an empty ``deque`` 760, and a queue rarely holds anything."""

    __slots__ = ()

    def appendleft(self, item: _T) -> None:
        self.insert(0, item)


class LeanHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol without the per-connection objects that wait empty.

    Each swap happens only where uvicorn's attribute is what this class expects (an empty
    ``deque``, an ``asyncio.Event`` nobody waits on), so a uvicorn release that changes them
    costs memory, not correctness (and fails ``tests/test_http_server.py``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pipeline = getattr(self, "pipeline", None)
        if isinstance(pipeline, deque) and not pipeline:
            self.pipeline = cast(deque[Any], _Pipeline())

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _swap_idle_event(self.flow, "_is_writable_event")

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        # A new cycle, made just now, whose task has not run yet: nobody can wait on its event.
        # (An upgrade makes none, and the previous cycle's event may have waiters.)
        if self.cycle is not previous and self.cycle is not None:
            _swap_idle_event(self.cycle, "message_event")


def _swap_idle_event(owner: object, name: str) -> None:
    """Replace ``owner.<name>``, an ``asyncio.Event`` nobody waits on, with a ``LazyEvent`` in
    the same state (uvicorn's attributes are typed ``asyncio.Event``: the cast says that
    ``LazyEvent`` has the part of it uvicorn uses)."""
    event = getattr(owner, name, None)
    if isinstance(event, asyncio.Event) and not getattr(event, "_waiters", None):
        setattr(owner, name, cast(asyncio.Event, LazyEvent(is_set=event.is_set())))


def server_config(app: Any, **options: Any) -> uvicorn.Config:
    """The ``uvicorn.Config`` for serving ``app``: ``options`` as uvicorn takes them, with the
    lean httptools protocol."""
    return uvicorn.Config(app, http=LeanHttpToolsProtocol, **options)
