"""The lifecycle the loopback servers of the tests and benchmarks share.

    class EchoServer(LoopbackServer):
        async def _listen(self) -> asyncio.Server:
            return await asyncio.start_server(self._echo, "127.0.0.1", 0)

        async def _end_connections(self) -> None:
            ...  # abort or cancel what is still open

    async with EchoServer() as server:
        ...  # connect to server.port

``start()`` listens (``port`` is the port it got); ``stop()`` stops listening first, so that no
connection arrives while the open ones are ended, then has the subclass end those, then waits for
the listener to close (Python 3.12 and later wait there for every connection to end). ``stop()``
does nothing on a server that is not running. Only the lifecycle lives here: each server's
connections, and so its hot path, stay its own.

``StopOnExit`` is the part a resource that starts elsewhere shares (a child process that a
classmethod starts): ``async with`` only stops it. ``LoopTask`` is the same start/stop for a
coroutine that runs until it is stopped (the benchmarks' samplers).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Self


class StopOnExit:
    """``async with`` awaits ``stop()`` on the way out; entering starts nothing."""

    async def stop(self) -> object:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class LoopbackServer(StopOnExit, ABC):
    """An ``asyncio.Server`` with ``start``/``stop``, its ``port``, and ``async with``."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None

    @abstractmethod
    async def _listen(self) -> asyncio.Server:
        """Create the listening server (``start_server``, ``create_server``)."""

    async def _end_connections(self) -> None:
        """End the connections still open; called by ``stop()`` once listening has stopped."""

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await self._listen()

    async def stop(self) -> None:
        server = self._server
        if server is None:
            return
        server.close()
        await self._end_connections()
        await server.wait_closed()
        self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self


class LoopTask(ABC):
    """``_run()`` as a task on the running loop, from ``start()`` until ``stop()`` cancels it."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def _run(self) -> None:
        """Runs until cancelled."""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
