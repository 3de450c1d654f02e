"""The per-process metrics port of fleet mode: prometheus_client's own HTTP server, in a thread,
serving the app's registry as the event loop collects it (``metrics_port_server``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# A scrape of the metrics port waits this long for the event loop to gather the figures.
SCRAPE_TIMEOUT_S = 10.0


class _OnLoopCollector(Collector):
    """Collects ``registry`` on the event loop ``loop``: the metrics port's server thread asks
    here, and the live objects the collectors read are only ever touched by the loop."""

    def __init__(self, registry: CollectorRegistry, loop: asyncio.AbstractEventLoop) -> None:
        self._registry = registry
        self._loop = loop

    def collect(self) -> Iterator[Metric]:
        async def gather() -> list[Metric]:
            return list(self._registry.collect())

        future = asyncio.run_coroutine_threadsafe(gather(), self._loop)
        yield from future.result(SCRAPE_TIMEOUT_S)


@contextmanager
def metrics_port_server(
    registry: CollectorRegistry, host: str, first_port: int, ports: int
) -> Iterator[int | None]:
    """Serve ``registry`` (collected on the running loop) on the first free port of
    ``first_port .. first_port + ports - 1`` while the block runs; yields the port taken, or
    None (logged) when all are in use. prometheus_client's own server, in a thread."""
    loop = asyncio.get_running_loop()
    on_loop = CollectorRegistry(auto_describe=False)
    on_loop.register(_OnLoopCollector(registry, loop))
    for port in range(first_port, first_port + ports):
        try:
            server, thread = start_http_server(port, addr=host, registry=on_loop)
        except OSError:  # taken (by another worker)
            continue
        log.info("metrics of this process on %s:%d/metrics", host, port)
        try:
            yield port
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
        return
    log.warning(
        "no free metrics port in %d..%d: this process's metrics only on the service port",
        first_port,
        first_port + ports - 1,
    )
    yield None
