"""How a catalog publish reaches every process of a deployment at once (fleet mode, issue #14).

``CatalogVersionWatch`` knows the live catalog version from its own background checks of the
store; a channel adds the fast path: the process that publishes a version announces it, and every
process listening adopts it on the message instead of at its next check. The checks stay as the
safety net (a message lost while the channel was down, a publisher that could not announce).

The channel is a port (``rag_service.ports.CatalogVersionChannel``).
``InProcessCatalogChannel`` is the default (one process: its own publishes are all there is);
``RedisCatalogChannel`` (rag_service/adapters/redis_catalog_channel.py) spans processes.
"""

from __future__ import annotations

from rag_service.ports import ResyncListener, VersionListener


class InProcessCatalogChannel:
    """The channel of a single process: announcements reach the listeners of this object only,
    at once (today's behaviour: the publishing process adopts its own version directly)."""

    degraded = False

    def __init__(self) -> None:
        self._listeners: list[VersionListener] = []

    async def start(self, on_version: VersionListener, on_resync: ResyncListener) -> None:
        self._listeners.append(on_version)

    async def announce(self, version: int) -> None:
        for listener in list(self._listeners):
            listener(version)

    async def aclose(self) -> None:
        self._listeners.clear()
