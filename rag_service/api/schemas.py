"""Request bodies of the streaming endpoint, and their validation into ``AnswerRequest``.

The body is read and validated here rather than by FastAPI's body parameters so that the size
limit applies before parsing and every failure raises one of our own errors (JSON error shape,
400/413) instead of FastAPI's ``{"detail": ...}``. Types are strict: ``"yes"`` is not a bool and
``"5"`` is not an int. Unknown fields are allowed (the contract lets clients send extra fields).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from rag_service.errors import InvalidInput, PayloadTooLarge
from rag_service.ports import MetadataValue
from rag_service.streaming.answer import AnswerRequest
from rag_service.upstream_events import ChatMessage

CONTEXT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
MAX_MESSAGES = 50
MAX_MESSAGE_CHARS = 16_000
MAX_FILTERS = 16
MAX_TOP_K = 50

_CONTEXT_ID = re.compile(CONTEXT_ID_PATTERN)
FilterKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
FilterValue = Annotated[str, StringConstraints(max_length=256)] | int | float | bool


BodyModel = TypeVar("BodyModel", bound=BaseModel)


class TurnBody(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["user", "assistant", "system"]
    content: str = Field(max_length=MAX_MESSAGE_CHARS)


class StreamRequestBody(BaseModel):
    """``POST /rag/stream`` body. ``query`` is checked against the configured length later."""

    model_config = ConfigDict(extra="allow", strict=True)

    query: str
    messages: list[TurnBody] = Field(default_factory=list, max_length=MAX_MESSAGES)
    filters: dict[FilterKey, FilterValue] | None = Field(None, max_length=MAX_FILTERS)
    refresh: bool = False
    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K)
    context_id: str | None = None


async def read_limited_body(
    chunks: AsyncIterable[bytes], content_length: str | None, max_bytes: int
) -> bytes:
    """The request body, refusing more than ``max_bytes`` by header and by what actually arrives.

    ``chunks`` is ``Request.stream()``; a body without (or with a lying) Content-Length is cut
    off as soon as it passes the limit, so an oversized upload is never held in memory.
    """
    check_content_length(content_length, max_bytes)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"the request body is larger than {max_bytes} bytes")
    return bytes(body)


async def receive_limited_body(
    receive: Receive, content_length: str | None, max_bytes: int
) -> bytes:
    """``read_limited_body`` of ``Request(scope, receive).stream()``, reading the ASGI messages
    itself: the stream route sets up hundreds of streams a second, and the async generator
    behind ``Request.stream()`` is a good part of reading a small body.

    Like ``Request.stream()`` it raises Starlette's ``ClientDisconnect`` when the client leaves.
    """
    check_content_length(content_length, max_bytes)
    body = bytearray()
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            body += message.get("body", b"")
            if len(body) > max_bytes:
                raise PayloadTooLarge(f"the request body is larger than {max_bytes} bytes")
            if not message.get("more_body", False):
                return bytes(body)
        elif kind == "http.disconnect":
            raise ClientDisconnect()


def check_content_length(content_length: str | None, max_bytes: int) -> None:
    """Refuse a body by its Content-Length header before reading any of it."""
    if content_length is not None:
        if not content_length.strip().isdigit():
            raise InvalidInput("Content-Length is not a number")
        if int(content_length) > max_bytes:
            raise PayloadTooLarge(f"the request body is larger than {max_bytes} bytes")


def parse_stream_request(
    raw: bytes, *, context_param: str | None, max_query_chars: int
) -> AnswerRequest:
    """Validate a ``POST /rag/stream`` body and the ``context`` query parameter."""
    body = _validated_body(json_object(raw))
    query = body.query.strip()
    if not query:
        raise InvalidInput("query must not be empty", details={"field": "query"})
    if len(query) > max_query_chars:
        raise InvalidInput(
            f"query is longer than {max_query_chars} characters", details={"field": "query"}
        )
    filters: dict[str, MetadataValue] | None = dict(body.filters) if body.filters else None
    return AnswerRequest(
        context_id=choose_context_id(context_param, body.context_id),
        query=query,
        history=tuple(ChatMessage(role=m.role, content=m.content) for m in body.messages),
        filters=filters,
        top_k=body.top_k,
        refresh=body.refresh,
    )


def choose_context_id(query_param: str | None, body_field: str | None) -> str:
    """The query parameter wins over the body field; one of them is required."""
    value = query_param if query_param is not None else body_field
    if value is None:
        raise InvalidInput(
            "a context id is required: ?context=<contextId> or body field context_id",
            details={"field": "context"},
        )
    if _CONTEXT_ID.fullmatch(value) is None:
        raise InvalidInput(
            "contextId must be 1-128 characters of A-Z a-z 0-9 . _ : -",
            details={"field": "context"},
        )
    return value


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInput(f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidInput("the body's JSON is nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object")
    return data


def validate_body(model: type[BodyModel], data: Any) -> BodyModel:
    """``data`` as ``model``, or ``InvalidInput`` listing each field and problem (no input echo)."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = [
            {"field": ".".join(str(part) for part in problem["loc"]), "problem": problem["msg"]}
            for problem in error.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
        raise InvalidInput(
            f"invalid request body: {summary}", details={"errors": problems}
        ) from None


def _validated_body(data: dict[str, Any]) -> StreamRequestBody:
    return validate_body(StreamRequestBody, data)
