"""What the request bodies of every route share, and the body size limit.

The field types (``Text``, ``Filters``, ``TopK``, ``JsonInt``...) and patterns
(``CONTEXT_ID_PATTERN``, ``QUERY_PATTERN``) that the stream route's body
(``rag_service/streaming/request_body.py``), the OpenAI facade's and admin's are made of. Types are
strict: ``"yes"`` is not a bool and ``"5"`` is not an int.

Every text a client sends is a ``SafeStr`` (``rag_service/safe_text.py``): a NUL character or a
lone surrogate (valid JSON, but no text) is a 400 naming the field, not a failure deep inside.
The JSON schema says so with a pattern (``TextPattern``, ``api/openapi.py``), and the query's
pattern also says that it needs a character other than whitespace: ``QUERY_PATTERN`` is the
very regex the stream route checks the query with.

The bodies that FastAPI does not parse (the OpenAI facade's, admin's) are read with
``read_limited_body`` and validated with ``validate_body``, which raise our own errors likewise.

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
from typing import Annotated, Any, TypeVar

from annotated_types import Ge, Le
from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from pydantic import (
    BaseModel,
    BeforeValidator,
    StringConstraints,
    ValidationError,
)
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive

from rag_service.api.errors import invalid_input
from rag_service.api.openapi import TextKeys, TextPattern
from rag_service.errors import InvalidInput, PayloadTooLarge
from rag_service.safe_text import SafeStr

CONTEXT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
MAX_FILTERS = 16
MAX_TOP_K = 50

# What ``str.strip()`` removes (every character for which ``str.isspace()`` is true), spelt out
# so that every regex engine reads the class alike (``\s`` differs between Python and Rust).
WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# No NUL, and at least one character that is not whitespace.
QUERY_PATTERN = rf"^[^\x00]*[^\x00{WHITESPACE}][^\x00]*$"

_CONTEXT_ID = re.compile(CONTEXT_ID_PATTERN)
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


def body_limited_router(tag: str, max_bytes: Callable[[Request], int]) -> APIRouter:
    """A router of routes that take a JSON body of at most ``max_bytes(request)`` bytes
    (``body_limited_route``). Clients that send no Content-Type still work: the body is checked
    as JSON all the same, and such clients (the SDKs' raw modes, curl) were accepted before the
    framework started refusing them."""
    return APIRouter(
        tags=[tag], route_class=body_limited_route(max_bytes), strict_content_type=False
    )


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
