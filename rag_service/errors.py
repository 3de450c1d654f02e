"""The one exception hierarchy of rag_service.

Adapters translate library exceptions (aiohttp, httpx, chromadb, sentence-transformers, OS
errors) into these at the boundary, so services and the HTTP layer never see a foreign exception
type. Each class carries the stable ``code`` used in the JSON error shape and in SSE ``error``
events, the HTTP status it maps to before a stream has started, and whether a client may retry.

    RagServiceError
    ├── InvalidInput                 400  bad request data (query, contextId, filters, ...)
    │   └── CatalogFormatError       400  a malformed catalog file or line (names file and line)
    ├── Unauthorized                 401
    ├── Forbidden                    403
    ├── NotFound                     404  unknown/expired stream, unknown ingest job
    ├── StreamCancelled              (409) a stream cancelled by its client: SSE `error` only
    ├── RequestTimeout               408  a request body arrived too slowly (connection closed)
    ├── PayloadTooLarge              413
    ├── Conflict                     409
    │   ├── IngestInProgress         409  another ingest holds the catalog lock
    │   ├── StoreInUse               409  another process owns the embedded store
    │   └── DeletionNotConfirmed     409  a sync would delete too much of the live catalog
    ├── RateLimited                  429  (retry_after_s)
    ├── ServiceUnavailable           503  (retry_after_s)
    │   ├── CircuitOpen              503  the upstream breaker is open; fail fast
    │   ├── VectorStoreUnavailable   503  Chroma unreachable or failing
    │   ├── EmbedderUnavailable      503  the embedding model cannot be loaded or run
    │   └── StateStoreUnavailable    503  the shared state store (Redis) unreachable or failing
    ├── UpstreamError                502  the upstream LLM failed
    │   ├── UpstreamRetryable        502  a failure worth retrying (connect, timeout, 429/5xx, cut)
    │   │   └── UpstreamStalled      502  no bytes for the idle-read timeout
    │   ├── UpstreamRejected         502  a non-retryable 4xx (bad key, bad request)
    │   ├── UpstreamProtocolError    502  not SSE, malformed JSON, an upstream `error` payload
    │   ├── RetriesExhausted         503  attempts, deadline or retry budget used up
    │   └── ContinuationMismatch     502  replayed text differed from what was already delivered
    └── ConfigurationError           500  settings that cannot work (raised at start-up)
        └── UpstreamConfigurationError 502  the upstream cannot be reached as configured
                                             (TLS trust, hostname, proxy refusal); not retried
"""

from __future__ import annotations

from typing import Any, ClassVar


class RagServiceError(Exception):
    """Base of every error rag_service raises on purpose."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.details = details or {}

    def to_payload(self) -> dict[str, Any]:
        """The body of the JSON error shape and of SSE `error` events."""
        payload: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
        }
        if self.retry_after_s is not None:
            payload["retry_after_s"] = round(self.retry_after_s, 3)
        if self.details:
            payload["details"] = self.details
        return payload


class InvalidInput(RagServiceError):
    code = "invalid_request"
    http_status = 400


class CatalogFormatError(InvalidInput):
    """A catalog file or line cannot be read; ``file`` and ``line`` say where."""

    code = "invalid_catalog"

    def __init__(self, message: str, *, file: str, line: int | None = None) -> None:
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {message}", details={"file": file, "line": line})
        self.file = file
        self.line = line
        self.reason = message


class Unauthorized(RagServiceError):
    code = "unauthorized"
    http_status = 401


class Forbidden(RagServiceError):
    code = "forbidden"
    http_status = 403


class NotFound(RagServiceError):
    code = "not_found"
    http_status = 404


class StreamCancelled(RagServiceError):
    """The stream's client cancelled its generation (``DELETE /rag/stream/{stream_id}``).

    Only ever the ``error`` event that ends the cancelled stream, never an HTTP answer (the
    cancel itself answers 200); its status is the one it would have. Not retryable: the client
    asked for the end, and asking the same question again is a new stream.
    """

    code = "cancelled"
    http_status = 409


class RequestTimeout(RagServiceError):
    """The client sent its request body too slowly (``ServerSettings``: body time limit and
    minimum rate). The connection is closed after the answer: the rest of that body may still
    be on its way, and only a new connection starts clean."""

    code = "request_timeout"
    http_status = 408
    retryable = True


class PayloadTooLarge(RagServiceError):
    code = "payload_too_large"
    http_status = 413


class Conflict(RagServiceError):
    code = "conflict"
    http_status = 409


class IngestInProgress(Conflict):
    code = "ingest_in_progress"
    retryable = True


class StoreInUse(Conflict):
    code = "store_in_use"


class DeletionNotConfirmed(Conflict):
    """A sync would delete more than the configured share of the live catalog and was not
    confirmed; ``details`` holds the counts. The same request with confirmation goes through."""

    code = "confirmation_required"


class RateLimited(RagServiceError):
    code = "rate_limited"
    http_status = 429
    retryable = True


class ServiceUnavailable(RagServiceError):
    code = "unavailable"
    http_status = 503
    retryable = True


class CircuitOpen(ServiceUnavailable):
    code = "upstream_circuit_open"


class VectorStoreUnavailable(ServiceUnavailable):
    code = "vector_store_unavailable"


class EmbedderUnavailable(ServiceUnavailable):
    code = "embedder_unavailable"


class StateStoreUnavailable(ServiceUnavailable):
    """Redis, the state shared by processes (``RedisSettings``), cannot be reached or fails.
    Its users fall back to local state where they can (per-key limits: ``FallbackKeyLimiter``),
    so this reaches a client only where shared state cannot be done without."""

    code = "state_store_unavailable"


class UpstreamError(RagServiceError):
    code = "upstream_error"
    http_status = 502


class UpstreamRetryable(UpstreamError):
    """A failure worth another attempt; ``reason`` is a short machine-readable cause."""

    code = "upstream_unavailable"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.reason = reason
        self.status = status


class UpstreamStalled(UpstreamRetryable):
    code = "upstream_stalled"


class UpstreamRejected(UpstreamError):
    code = "upstream_rejected"

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message, details={"status": status})
        self.status = status


class UpstreamProtocolError(UpstreamError):
    code = "upstream_protocol_error"


class RetriesExhausted(UpstreamError):
    code = "upstream_retries_exhausted"
    http_status = 503
    retryable = True


class ContinuationMismatch(UpstreamError):
    code = "upstream_continuation_mismatch"


class ConfigurationError(RagServiceError):
    code = "configuration_error"


class UpstreamConfigurationError(ConfigurationError):
    """Our way to the upstream is misconfigured: its certificate is not trusted or names another
    host, or the proxy refuses us. Another attempt would fail the same way, so it is neither
    retried nor held against the upstream's circuit breaker; 502 because the service is the
    gateway that cannot reach its upstream."""

    code = "upstream_configuration_error"
    http_status = 502
