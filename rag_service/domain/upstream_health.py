"""What the service knows of its upstream model: for ``/readyz``, and the breaker states the
replicas share."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

BreakerStateName = Literal["closed", "open", "half_open"]


class BreakerState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


@dataclass(frozen=True)
class BreakerNews:
    """A breaker transition one replica shares: ``open`` for ``remaining_s`` more (of a period
    of ``open_for_s``), or ``closed``."""

    upstream: str  # ``upstream_key`` of the upstream's base URL
    state: BreakerState  # open or closed
    origin: str  # the replica that posted it
    remaining_s: float = 0.0
    open_for_s: float = 0.0


@dataclass(frozen=True)
class UpstreamHealth:
    """What the upstream client knows of its upstream right now, for ``/readyz``."""

    breaker: BreakerStateName
    # In words, the configuration problem (untrusted certificate, proxy refusal) that made the
    # last attempt fail; cleared once the upstream streams an answer again.
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.breaker != "open" and self.problem is None


@dataclass(frozen=True)
class UpstreamProbe:
    """The outcome of one real request to the upstream, for ``/readyz``."""

    ok: bool  # the server answered and takes our key
    detail: str  # in words: how it answered, or why not (never a stack trace)
    model_listed: bool | None = None  # None: the server lists no models
