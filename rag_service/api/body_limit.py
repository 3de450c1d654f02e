"""The request body size limit of the answer routes, applied before FastAPI parses a body.

``POST /rag/stream`` and ``POST /v1/chat/completions`` take a JSON body of at most
``RAG_STREAM__MAX_BODY_BYTES``. The limit must hold before anything parses the body, for a body
announced by ``Content-Length`` and for a chunked one (cut off as soon as it passes the limit,
never buffered whole), and the refusal must be our JSON error shape (413).

FastAPI's own ``max_body_size`` answers an oversized ``Content-Length`` with a plain-text 413,
and turns an error raised while it reads the body into a 400. So the routes use the extension
point FastAPI documents for this ("Custom Request and APIRoute class"): an ``APIRoute`` whose
handler reads the body itself, up to the limit, and hands the endpoint a ``Request`` that gives
back those very bytes. A refusal is raised as ``PayloadTooLarge`` and mapped like every error.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive

from rag_service.api.schemas import read_limited_body
from rag_service.errors import InvalidInput

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
