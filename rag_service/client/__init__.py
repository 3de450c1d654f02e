"""The Python client of rag_service: answers streamed as typed events, resumed across dropped
connections without losing or repeating a character (docs/client.md).

    from rag_service.client import AsyncRagClient, Delta

    async with AsyncRagClient("http://127.0.0.1:8000", api_key=key) as client:
        async for event in client.stream("Do you ship to Austria?", context="conv-1"):
            if isinstance(event, Delta):
                print(event.text, end="", flush=True)

``RagClient`` is the same API, blocking. Everything public is listed in ``__all__``; the
modules starting with ``_`` are not part of the API.
"""

from rag_service.client._async import AsyncAnswerStream, AsyncRagClient
from rag_service.client._errors import (
    BadRequest,
    ConnectionFailed,
    DeadlineExceeded,
    Forbidden,
    ProtocolError,
    RagClientError,
    RateLimited,
    RequestRefused,
    ServiceUnavailable,
    StreamFailed,
    StreamNotFound,
    Unauthorized,
)
from rag_service.client._events import (
    Connected,
    Delta,
    Done,
    Error,
    Meta,
    Reconnecting,
    Resumed,
    Retry,
    ServiceEvent,
    Source,
    StreamEvent,
)
from rag_service.client._policy import RetryPolicy
from rag_service.client._requests import Answer
from rag_service.client._resume import Resumption
from rag_service.client._sync import AnswerStream, RagClient

__all__ = [
    "Answer",
    "AnswerStream",
    "AsyncAnswerStream",
    "AsyncRagClient",
    "BadRequest",
    "Connected",
    "ConnectionFailed",
    "DeadlineExceeded",
    "Delta",
    "Done",
    "Error",
    "Forbidden",
    "Meta",
    "ProtocolError",
    "RagClient",
    "RagClientError",
    "RateLimited",
    "Reconnecting",
    "RequestRefused",
    "Resumed",
    "Resumption",
    "Retry",
    "RetryPolicy",
    "ServiceEvent",
    "ServiceUnavailable",
    "Source",
    "StreamEvent",
    "StreamFailed",
    "StreamNotFound",
    "Unauthorized",
]
