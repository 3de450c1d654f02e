"""Translate what the upstream did (transport failures, HTTP statuses, headers) into our errors.

Retryable: connection failures, timeouts, 408/409/429/5xx and cut streams. Other statuses fail at
once with the upstream's own message. An ``x-should-retry: true|false`` header (OpenAI's and
Stainless SDKs' convention) overrides the status-based decision either way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

import httpx

from rag_service.errors import (
    ConfigurationError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRejected,
    UpstreamRetryable,
    UpstreamStalled,
)

MAX_MESSAGE_CHARS = 300
RETRYABLE_STATUSES = frozenset({408, 409, 429})


def transport_error(
    exc: httpx.RequestError, *, response_started: bool
) -> UpstreamError | ConfigurationError:
    """An httpx failure as ours; ``response_started``: the status line had arrived."""
    detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
        return ConfigurationError(f"the upstream request cannot be sent ({detail})")
    if isinstance(exc, httpx.DecodingError):
        return UpstreamProtocolError(f"upstream body could not be decoded ({detail})")
    if isinstance(exc, httpx.ReadTimeout) and response_started:
        return UpstreamStalled(
            "upstream stream stalled: no bytes within the read timeout", reason="stalled"
        )
    if isinstance(exc, httpx.PoolTimeout):
        return UpstreamRetryable(
            f"no free upstream connection in time ({detail})", reason="pool_timeout"
        )
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamRetryable(f"upstream timed out ({detail})", reason="timeout")
    if isinstance(exc, httpx.ConnectError):
        return UpstreamRetryable(
            f"cannot connect to the upstream ({detail})", reason="connect_error"
        )
    if response_started:
        return UpstreamRetryable(f"upstream stream was cut ({detail})", reason="stream_cut")
    return UpstreamRetryable(
        f"upstream connection lost before an answer ({detail})", reason="connection_lost"
    )


def status_error(
    status: int, headers: Mapping[str, str], body: bytes, *, now: float, secret: str = ""
) -> UpstreamError:
    """The error for a non-200 answer; ``now`` is wall-clock time for HTTP-date Retry-After."""
    message = redact(upstream_message(body) or httpx.codes.get_reason_phrase(status), secret)
    retryable = status in RETRYABLE_STATUSES or status >= 500
    override = headers.get("x-should-retry", "").strip().lower()
    if override in ("true", "false"):
        retryable = override == "true"
    if retryable:
        return UpstreamRetryable(
            f"upstream answered {status}: {message}",
            reason=f"status_{status}",
            status=status,
            retry_after_s=parse_retry_after(headers, now=now),
        )
    return UpstreamRejected(f"upstream rejected the request ({status}): {message}", status=status)


def parse_retry_after(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    milliseconds = _finite_float(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return max(0.0, milliseconds / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _finite_float(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT by definition
        return None
    return max(0.0, when.timestamp() - now)


def upstream_message(body: bytes) -> str:
    """The human message of an error body: OpenAI's ``{"error": {"message"}}`` or the text."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        parsed: object = json.loads(text)
    except ValueError:
        return truncate(text)
    return truncate(message_of(parsed) or text)


def message_of(parsed: object) -> str | None:
    """The message inside an OpenAI-style error object, if there is one."""
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error", parsed)
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        for key in ("message", "detail", "msg"):
            value = error.get(key)
            if isinstance(value, str) and value:
                return value
    detail = parsed.get("detail")
    return detail if isinstance(detail, str) else None


def truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact(text: str, secret: str) -> str:
    """Upstreams sometimes echo the key they rejected; it must not reach logs or clients."""
    return text.replace(secret, "***") if secret else text


def _finite_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None
