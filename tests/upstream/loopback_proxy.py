"""A real HTTP proxy (CONNECT tunnels and plain forwarding) on loopback: ``pproxy``, in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pproxy


@dataclass
class LoopbackProxy:
    url: str
    log: list[str]  # one line per connection the proxy forwarded ("http <client> -> host:port")

    def forwarded_to(self, port: int) -> list[str]:
        return [line for line in self.log if line.endswith(f"-> localhost:{port}")]


@asynccontextmanager
async def running_proxy(credentials: str | None = None) -> AsyncIterator[LoopbackProxy]:
    log: list[str] = []
    server = pproxy.Server("http://127.0.0.1:0" + (f"#{credentials}" if credentials else ""))
    # authtime -1: pproxy would otherwise remember an authenticated client IP for 30 days
    handler = await server.start_server({"rserver": [], "verbose": log.append, "authtime": -1})
    try:
        yield LoopbackProxy(f"http://127.0.0.1:{handler.sockets[0].getsockname()[1]}", log)
    finally:
        handler.close()
        await handler.wait_closed()
