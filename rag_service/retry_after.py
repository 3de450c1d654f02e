"""``Retry-After``: how long a server asks its client to wait, in seconds.

The one reading of the header for the Python code: the upstream client reads the LLM's
(``rag_service.upstream.classify``, beside OpenAI's ``retry-after-ms``), and ``rag_service.client``
the service's own. It lives outside both packages, as the SSE parser does, so that the client
library does not load the service's upstream stack to read a header.
"""

from __future__ import annotations

import math
from email.utils import parsedate_to_datetime

__all__ = ["finite_number", "retry_after_seconds"]


def finite_number(value: str | None) -> float | None:
    """``value`` as a finite number; None when absent, not a number, NaN or infinite."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds (a negative delay is no wait),
    or, given ``now`` (wall-clock seconds), an HTTP date. None when absent or unreadable."""
    seconds = finite_number(value)
    if seconds is not None:
        return max(0.0, seconds)
    if value is None or now is None:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT by definition
        return None
    return max(0.0, when.timestamp() - now)
