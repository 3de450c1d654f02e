"""Request bodies of the streaming endpoint, and what is checked beyond their types.

``StreamRequestBody`` is the one model of ``POST /rag/stream``: FastAPI parses and validates the
body with it and documents it in ``/openapi.json``; its validation errors become our JSON error
shape (400, with the fields) in ``api/errors.py``. Types are strict: ``"yes"`` is not a bool and
``"5"`` is not an int. Unknown fields are allowed (the contract lets clients send extra fields).
What depends on settings or on two places at once (the query's configured length, the context id
from the query string or the body) is checked by ``answer_request``.

Every text a client sends is a ``SafeStr`` (``rag_service/safe_text.py``): a NUL character or a
lone surrogate (valid JSON, but no text) is a 400 naming the field, not a failure deep inside.
The JSON schema says so with a pattern (``TextPattern``, ``api/openapi.py``), and the query's
pattern also says that it needs a character other than whitespace: ``QUERY_PATTERN`` is the
very regex ``answer_request`` checks the query with.

The other bodies of the API (the OpenAI facade's, admin's) are read with ``read_limited_body``
and validated with ``validate_body``, which raise our own errors likewise.

**The body size limit.** ``POST /rag/stream`` and ``POST /v1/chat/completions`` take a JSON body
of at most ``RAG_STREAM__MAX_BODY_BYTES``. The limit must hold before anything parses the body,
for a body announced by ``Content-Length`` and for a chunked one (cut off as soon as it passes
the limit, never buffered whole), and the refusal must be our JSON error shape (413). FastAPI's
own ``max_body_size`` answers an oversized ``Content-Length`` with a plain-text 413, and turns an
error raised while it reads a body into a 400. So these routes use the extension point FastAPI
documents for this ("Custom Request and APIRoute class"): ``body_limited_route`` makes an
``APIRoute`` whose handler reads the body itself, up to the limit, and hands the endpoint a
``Request`` that gives back those very bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterable, Callable, Coroutine
from typing import Annotated, Any, Literal, TypeVar

from annotated_types import Ge, Le
from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive

from rag_service.api.errors import invalid_input
from rag_service.api.openapi import TextKeys, TextPattern
from rag_service.domain import ChatMessage, MetadataValue
from rag_service.errors import InvalidInput, PayloadTooLarge
from rag_service.safe_text import SafeStr
from rag_service.streaming.answer import AnswerRequest

CONTEXT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
MAX_MESSAGES = 50
MAX_MESSAGE_CHARS = 16_000
MAX_FILTERS = 16
MAX_TOP_K = 50

# What ``str.strip()`` removes (every character for which ``str.isspace()`` is true), spelt out
# so that every regex engine reads the class alike (``\s`` differs between Python and Rust).
WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# No NUL, and at least one character that is not whitespace.
QUERY_PATTERN = rf"^[^\x00]*[^\x00{WHITESPACE}][^\x00]*$"

_CONTEXT_ID = re.compile(CONTEXT_ID_PATTERN)
_QUERY = re.compile(QUERY_PATTERN)
Text = Annotated[SafeStr, TextPattern()]
"""A client's text: no NUL, no lone surrogate (400), documented as a pattern."""
FilterKey = Annotated[SafeStr, StringConstraints(min_length=1, max_length=64)]
FilterValue = Annotated[Text, StringConstraints(max_length=256)] | int | float | bool
Filters = Annotated[dict[FilterKey, FilterValue], TextKeys()]


def _integral_float_as_int(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# An integer as JSON (and JSON Schema) means it: ``3.0`` is the integer 3; ``3.5`` and ``"3"``
# are not integers (strict otherwise). Bounds go before the validator, so that the JSON schema
# shows them as minimum/maximum.
_AS_INT = BeforeValidator(_integral_float_as_int)
JsonInt = Annotated[int, _AS_INT]
PositiveInt = Annotated[int, Ge(1), _AS_INT]
TopK = Annotated[int, Ge(1), Le(MAX_TOP_K), _AS_INT]


BodyModel = TypeVar("BodyModel", bound=BaseModel)


class TurnBody(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["user", "assistant", "system"]
    content: Text = Field(max_length=MAX_MESSAGE_CHARS)


class StreamRequestBody(BaseModel):
    """``POST /rag/stream`` body. ``query`` is checked against the configured length later."""

    model_config = ConfigDict(extra="allow", strict=True)

    query: Annotated[SafeStr, TextPattern(QUERY_PATTERN)] = Field(
        min_length=1,
        description="The question: at most `max_query_chars` characters, at least one of them "
        "not whitespace; surrounding whitespace is stripped.",
    )
    messages: list[TurnBody] = Field(
        default_factory=list,
        max_length=MAX_MESSAGES,
        description="Earlier turns of the conversation; system turns are ignored.",
    )
    filters: Filters | None = Field(
        None, max_length=MAX_FILTERS, description="Metadata equality filters."
    )
    refresh: bool = Field(False, description="Skip the freshness cache.")
    top_k: TopK | None = Field(None, description="Passages to retrieve.")
    context_id: str | None = Field(
        None,
        pattern=CONTEXT_ID_PATTERN,
        description="The context id when the query parameter `context` is absent (one of the "
        "two is required).",
    )


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


def check_content_length(content_length: str | None, max_bytes: int) -> None:
    """Refuse a body by its Content-Length header before reading any of it."""
    if content_length is not None:
        if not content_length.strip().isdigit():
            raise InvalidInput("Content-Length is not a number")
        if int(content_length) > max_bytes:
            raise PayloadTooLarge(f"the request body is larger than {max_bytes} bytes")


def answer_request(
    body: StreamRequestBody, *, context_param: str | None, max_query_chars: int
) -> AnswerRequest:
    """The answer a validated ``POST /rag/stream`` body and its ``context`` parameter ask for."""
    # The length as sent (what the schema's maxLength means), the emptiness after stripping.
    if len(body.query) > max_query_chars:
        raise InvalidInput(
            f"query is longer than {max_query_chars} characters", details={"field": "query"}
        )
    if _QUERY.search(body.query) is None:
        raise InvalidInput("query must not be empty", details={"field": "query"})
    query = body.query.strip()
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
        # Located in the body, as FastAPI locates the errors of a route's body parameter.
        problems = [
            {**problem, "loc": ("body", *problem["loc"])}
            for problem in error.errors(include_url=False, include_input=False)
        ]
        raise invalid_input("request body", problems) from None


RouteHandler = Callable[[Request], Coroutine[Any, Any, Response]]


def body_limited_route(max_bytes: Callable[[Request], int]) -> type[APIRoute]:
    """An ``APIRoute`` class (``APIRouter(route_class=...)``) whose requests may carry a body of
    at most ``max_bytes(request)`` bytes."""

    class BodyLimitedRoute(APIRoute):
        def get_route_handler(self) -> RouteHandler:
            handle = super().get_route_handler()

            async def handle_limited(request: Request) -> Response:
                try:
                    body = await read_limited_body(
                        request.stream(),
                        request.headers.get("content-length"),
                        max_bytes(request),
                    )
                except ClientDisconnect:
                    raise InvalidInput("the client left before sending the whole body") from None
                return await handle(Request(request.scope, replaying(body, request.receive)))

            return handle_limited

    return BodyLimitedRoute


def replaying(body: bytes, receive: Receive) -> Receive:
    """``receive`` that first gives ``body`` whole, then whatever the server says next."""
    pending: Message | None = {"type": "http.request", "body": body, "more_body": False}

    async def receive_replayed() -> Message:
        nonlocal pending
        if pending is not None:
            message, pending = pending, None
            return message
        return await receive()

    return receive_replayed
