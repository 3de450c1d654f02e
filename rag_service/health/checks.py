"""Readiness checks of the service's dependencies, for ``GET /readyz``.

Each check answers ``{"ok": bool, ...details}``. The upstream's check makes a real request
(``ChatUpstream.probe``), so its outcome is kept for ``UPSTREAM_PROBE_TTL_S``: a load balancer
asking every second, on every replica, costs the upstream one request per replica per TTL, and
concurrent ``/readyz`` calls share one probe in flight.

``SharedStateCheck`` reports the components that keep their state in Redis (fleet mode, issue
#14) and which of them run on this process's own state because Redis failed them. It is a
report, not a requirement: every replica shares the one Redis, so a Redis outage that made
replicas unready would take the whole fleet out of its load balancer, when the point of the
local fallback is to keep serving.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rag_service.domain import UpstreamProbe
from rag_service.ports import ChatUpstream, Embedder, PassageSearch

UPSTREAM_PROBE_TTL_S = 5.0

ReadinessCheck = Callable[[], Awaitable[dict[str, Any]]]
"""Returns ``{"ok": bool, ...details}``; a check that raises or times out counts as not ok."""


def store_check(store: PassageSearch) -> ReadinessCheck:
    async def check() -> dict[str, Any]:
        info = await asyncio.to_thread(store.catalog_info)
        return {
            "ok": True,
            "catalog_version": info.version,
            "documents": info.document_count,
            "embedding_model": info.embedding_model,
        }

    return check


def embedder_check(embedder: Embedder) -> ReadinessCheck:
    async def check() -> dict[str, Any]:
        vectors = await asyncio.to_thread(embedder.embed, ["ready?"])
        return {"ok": len(vectors) == 1, "model": embedder.model_name}

    return check


class UpstreamCheck:
    """The upstream's readiness: a real probe, at most one per ``ttl_s``, plus the breaker and
    the last configuration problem the client met (both reported in words)."""

    def __init__(
        self,
        upstream: ChatUpstream,
        *,
        ttl_s: float = UPSTREAM_PROBE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._upstream = upstream
        self._ttl_s = ttl_s
        self._clock = clock
        self._last: tuple[float, UpstreamProbe] | None = None
        self._running: asyncio.Task[UpstreamProbe] | None = None

    async def __call__(self) -> dict[str, Any]:
        probe = await self._probe()
        health = self._upstream.health()
        body: dict[str, Any] = {"ok": probe.ok, "breaker": health.breaker, "probe": probe.detail}
        if probe.model_listed is not None:
            body["model_listed"] = probe.model_listed
        if health.problem is not None:  # what made the last answer fail, e.g. an untrusted cert
            body["ok"] = False
            body["error"] = health.problem
        elif not probe.ok:
            body["error"] = probe.detail
        return body

    async def _probe(self) -> UpstreamProbe:
        if self._last is not None and self._clock() - self._last[0] < self._ttl_s:
            return self._last[1]
        if self._running is None:
            self._running = asyncio.get_running_loop().create_task(self._probe_once())
        # shield: a /readyz caller that gives up must not cancel the probe the others await
        return await asyncio.shield(self._running)

    async def _probe_once(self) -> UpstreamProbe:
        try:
            probe = await self._upstream.probe()
        finally:
            self._running = None
        self._last = (self._clock(), probe)
        return probe


@dataclass(frozen=True)
class SharedStateComponent:
    """A component whose state is in Redis and which falls back to this process's own state
    while Redis fails it (the ``FallbackKeyLimiter`` pattern). ``degraded``: on local state
    now; ``fallbacks``: operations served locally so far (a counter)."""

    name: str
    degraded: Callable[[], bool]
    fallbacks: Callable[[], int]


class SharedStateCheck:
    """``/readyz``'s ``shared_state``: Redis answering a ``PING`` (within ``timeout_s``) and the
    components on local state. ``ok`` is false while Redis does not answer or a component is
    degraded. A component leaves ``degraded`` at its own next use of Redis once it answers,
    so for a moment after a restart ``redis`` may say ``answers`` while a component still
    says ``degraded``."""

    def __init__(
        self,
        components: Sequence[SharedStateComponent],
        ping: Callable[[], Awaitable[Any]],
        *,
        timeout_s: float,
    ) -> None:
        self._components = components
        self._ping = ping
        self._timeout_s = timeout_s

    async def __call__(self) -> dict[str, Any]:
        redis = await self._redis_state()
        degraded = [part.name for part in self._components if part.degraded()]
        body: dict[str, Any] = {
            "ok": redis == "answers" and not degraded,
            "redis": redis,
            "degraded": degraded,
            "fallbacks": {part.name: part.fallbacks() for part in self._components},
        }
        if degraded:
            body["error"] = (
                f"{', '.join(degraded)} on this process's own state, not shared with the other "
                "replicas, until Redis answers again (serving goes on)"
            )
        elif redis != "answers":
            body["error"] = f"Redis {redis}"
        return body

    async def _redis_state(self) -> str:
        try:
            await asyncio.wait_for(self._ping(), self._timeout_s)
        except TimeoutError:
            return f"unavailable (no answer within {self._timeout_s:g} s)"
        except Exception as error:  # whatever the client raises, the URL stays out of it
            return f"unavailable ({type(error).__name__})"
        return "answers"
