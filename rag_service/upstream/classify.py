"""Translate what the upstream did (aiohttp failures, HTTP statuses, headers) into our errors.

Retryable: connection failures, timeouts, 408/409/429/5xx and cut streams. Other statuses fail at
once with the upstream's own message. An ``x-should-retry: true|false`` header (OpenAI's and
Stainless SDKs' convention) overrides the status-based decision either way. What cannot work as
configured - an untrusted certificate, a certificate for another host, a proxy that refuses us -
is an ``UpstreamConfigurationError``: another attempt would fail the same way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from http import HTTPStatus

import aiohttp

from rag_service.errors import (
    ConfigurationError,
    UpstreamConfigurationError,
    UpstreamError,
    UpstreamRejected,
    UpstreamRetryable,
    UpstreamStalled,
)
from rag_service.retry_after import finite_number, retry_after_seconds
from rag_service.upstream.proxy import UpstreamProxy

MAX_MESSAGE_CHARS = 300
RETRYABLE_STATUSES = frozenset({408, 409, 429})
PROXY_AUTHENTICATION_REQUIRED = 407
# TLS handshake failures that say the two ends cannot agree, whatever the moment: typically
# https:// aimed at a plain-HTTP port (WRONG_VERSION_NUMBER), or a server too old or too new.
DETERMINISTIC_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION"}
)
HOST_MISMATCH_CODES = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH


def transport_error(
    exc: aiohttp.ClientError | asyncio.TimeoutError,
    *,
    response_started: bool,
    proxy: UpstreamProxy | None = None,
) -> UpstreamError | ConfigurationError:
    """An aiohttp failure as ours; ``response_started``: the status line had arrived."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return _certificate_error(exc)
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return _proxy_refusal(exc, proxy)
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return UpstreamRetryable(
            f"cannot connect to the proxy {_proxy_named(proxy)} ({_os_detail(exc)})",
            reason="connect_error",
        )
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        reason = getattr(exc.os_error, "reason", None)
        if reason in DETERMINISTIC_TLS_REASONS:
            return UpstreamConfigurationError(
                f"no TLS connection to the upstream {exc.host}:{exc.port} is possible ({reason}); "
                "is RAG_UPSTREAM__BASE_URL's scheme (http/https) the one its port speaks?"
            )
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamRetryable(
            "no upstream connection within the connect timeout", reason="timeout"
        )
    if isinstance(exc, asyncio.TimeoutError):  # SocketTimeoutError: sock_read between two reads
        if response_started:
            return UpstreamStalled(
                "upstream stream stalled: no bytes within the read timeout", reason="stalled"
            )
        return UpstreamRetryable(
            "upstream sent no answer within the read timeout", reason="timeout"
        )
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return UpstreamRetryable(
            f"cannot resolve the upstream host {exc.host} ({_os_detail(exc)})",
            reason="connect_error",
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamRetryable(
            f"cannot connect to the upstream {exc.host}:{exc.port} ({_os_detail(exc)})",
            reason="connect_error",
        )
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return ConfigurationError(f"the upstream request cannot be sent ({_detail(exc)})")
    if response_started:
        return UpstreamRetryable(f"upstream stream was cut ({_detail(exc)})", reason="stream_cut")
    return UpstreamRetryable(
        f"upstream connection lost before an answer ({_detail(exc)})", reason="connection_lost"
    )


def _certificate_error(exc: aiohttp.ClientConnectorCertificateError) -> UpstreamConfigurationError:
    error = exc.certificate_error
    what = getattr(error, "verify_message", None) or str(error)
    if getattr(error, "verify_code", None) in HOST_MISMATCH_CODES:
        hint = "RAG_UPSTREAM__BASE_URL must name a host the certificate is issued for"
    else:
        hint = "trust its CA with RAG_UPSTREAM__CA_BUNDLE if it is a private one"
    return UpstreamConfigurationError(
        f"the TLS certificate of {exc.host}:{exc.port} is not accepted: {what}; {hint}"
    )


def _proxy_refusal(
    exc: aiohttp.ClientHttpProxyError, proxy: UpstreamProxy | None
) -> UpstreamError | UpstreamConfigurationError:
    answer = f"{exc.status} {exc.message}".strip()
    if 400 <= exc.status < 500:  # denied, or credentials missing or wrong: ours to fix
        return UpstreamConfigurationError(
            f"the proxy {_proxy_named(proxy)} refused to connect to the upstream ({answer})"
        )
    return UpstreamRetryable(  # 502/503/504: the proxy could not reach the upstream this time
        f"the proxy {_proxy_named(proxy)} could not reach the upstream ({answer})",
        reason="connect_error",
        status=exc.status,
    )


def _proxy_named(proxy: UpstreamProxy | None) -> str:
    return "(unknown)" if proxy is None else f"{proxy.shown} from {proxy.source}"


def _os_detail(exc: aiohttp.ClientConnectorError) -> str:
    error = exc.os_error
    return error.strerror or str(error) or type(error).__name__


def _detail(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def status_error(
    status: int, headers: Mapping[str, str], body: bytes, *, now: float, secret: str = ""
) -> UpstreamError | UpstreamConfigurationError:
    """The error for a non-200 answer; ``now`` is wall-clock time for HTTP-date Retry-After."""
    message = redact(upstream_message(body) or reason_phrase(status), secret)
    if status == PROXY_AUTHENTICATION_REQUIRED:  # from the proxy in front of a plain-HTTP upstream
        return UpstreamConfigurationError(
            f"the proxy refused the request ({status} {reason_phrase(status)}): {message}"
        )
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
    milliseconds = finite_number(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return max(0.0, milliseconds / 1000)
    return retry_after_seconds(headers.get("retry-after"), now=now)


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


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"status {status}"


def truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact(text: str, secret: str) -> str:
    """Upstreams sometimes echo the key they rejected; it must not reach logs or clients."""
    return text.replace(secret, "***") if secret else text
