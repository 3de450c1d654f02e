"""What the service knows of its upstream model, for ``/readyz``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BreakerStateName = Literal["closed", "open", "half_open"]


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
