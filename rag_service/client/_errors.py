"""The exceptions of ``rag_service.client``: one tree under ``RagClientError``.

RagClientError
├── RequestRefused        the service answered an HTTP error (a JSON error body)
│   ├── BadRequest        400, 413: fix the request, retrying will not help
│   ├── Unauthorized      401: missing or wrong client key
│   ├── Forbidden         403: the stream belongs to another client key
│   ├── StreamNotFound    404: unknown or expired stream (or its events are gone)
│   ├── RateLimited       429, still refused when the attempts ran out
│   └── ServiceUnavailable 5xx, still refused when the attempts ran out
├── StreamFailed          the stream ended with an ``error`` event
├── ConnectionFailed      the connection could not be (re)established in the attempts allowed
├── DeadlineExceeded      the overall deadline passed (also a ``TimeoutError``)
└── ProtocolError         the bytes were not the service's stream (bad JSON, a gap in ids)
"""

from __future__ import annotations

import json
from typing import Any

from rag_service.retry_after import retry_after_seconds

__all__ = [
    "BadRequest",
    "ConnectionFailed",
    "DeadlineExceeded",
    "Forbidden",
    "ProtocolError",
    "RagClientError",
    "RateLimited",
    "RequestRefused",
    "ServiceUnavailable",
    "StreamFailed",
    "StreamNotFound",
    "Unauthorized",
    "refusal",
]


class RagClientError(Exception):
    """Base of every error this client raises."""


class _ReportedError(RagClientError):
    """An error the service reported in its own words, as an error answer or an ``error``
    event: ``code``, ``message``, and whether (``retryable``, the service's own judgement) and
    when (``retry_after_s``) another try may succeed."""

    def __init__(
        self, summary: str, code: str, message: str, retryable: bool, retry_after_s: float | None
    ) -> None:
        super().__init__(summary)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class RequestRefused(_ReportedError):
    """An HTTP error answer, with the service's JSON error fields (``retry_after_s`` is its
    ``Retry-After``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        retry_after_s: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}", code, message, retryable, retry_after_s)
        self.status = status
        self.details = details or {}


class BadRequest(RequestRefused):
    """400 or 413: the request itself is wrong (a bad context id, a too long question)."""


class Unauthorized(RequestRefused):
    """401: the client key is missing or wrong."""


class Forbidden(RequestRefused):
    """403: the stream was created with another client key."""


class StreamNotFound(RequestRefused):
    """404: the stream is unknown, expired, or the events after ``Last-Event-ID`` are gone."""


class RateLimited(RequestRefused):
    """429: this client key is past its limits, and the attempts to wait it out ran out."""


class ServiceUnavailable(RequestRefused):
    """5xx: overloaded, shutting down, or the upstream's circuit is open, after all attempts."""


class StreamFailed(_ReportedError):
    """The stream ended with an ``error`` event; ``text`` is what arrived before it."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        retry_after_s: float | None = None,
        text: str = "",
    ) -> None:
        super().__init__(f"{code}: {message}", code, message, retryable, retry_after_s)
        self.text = text


class ConnectionFailed(RagClientError):
    """The service could not be reached, or a dropped stream could not be resumed, within the
    allowed attempts; ``attempts`` is how many were made."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class DeadlineExceeded(RagClientError, TimeoutError):
    """The overall deadline of one answer (``RetryPolicy.deadline_s``) passed."""


class ProtocolError(RagClientError):
    """The response was not a stream of this service (bad JSON, a gap in the event ids)."""


_REFUSALS: dict[int, type[RequestRefused]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: StreamNotFound,
    413: BadRequest,
    429: RateLimited,
}


def refusal(status: int, body: bytes, retry_after: str | None) -> RequestRefused:
    """The exception for an error answer: its JSON error shape read, anything else tolerated
    (a proxy in front may answer in HTML)."""
    error: dict[str, Any] = {}
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        error = parsed["error"]
    message = error.get("message")
    if not isinstance(message, str):
        message = body.decode(errors="replace").strip()[:200] or f"HTTP {status}"
    code = error.get("code")
    retryable = error.get("retryable")
    details = error.get("details")
    kind = _REFUSALS.get(status, ServiceUnavailable if status >= 500 else RequestRefused)
    return kind(
        status,
        code if isinstance(code, str) else f"http_{status}",
        message,
        # Without the service's word, only overload statuses are worth another try.
        retryable=retryable if isinstance(retryable, bool) else status in (429, 502, 503, 504),
        retry_after_s=retry_after_seconds(retry_after),
        details=details if isinstance(details, dict) else None,
    )
