"""The floor of the TTFT benchmark: the least a FastAPI service can do between client and upstream.

    app = relay_app("http://127.0.0.1:8088/v1")   # served by uvicorn in a child process:
    # python -m bench.stream_children relay --upstream http://127.0.0.1:8088/v1

``POST /v1/chat/completions`` forwards the request body to ``{upstream}/chat/completions`` with
one ``httpx.AsyncClient`` (keep-alive, made in the app's lifespan) and streams the upstream's
response bytes back as they come (``StreamingResponse`` of ``aiter_raw``), with the upstream's
status and content type. No parsing, no retries, no prompt: whatever the service adds beyond
this is the price of what it does. The upstream response is read to its end, so its connection
goes back to the pool; on a failure of the upstream, the relay answers 502 in the service's
error shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

MAX_CONNECTIONS = 1000


def relay_app(upstream_base_url: str, *, connect_timeout_s: float = 10.0) -> FastAPI:
    """The relay towards ``upstream_base_url`` (an OpenAI-compatible ``.../v1``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limits = httpx.Limits(
            max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
        )
        async with httpx.AsyncClient(
            base_url=upstream_base_url.rstrip("/"),
            limits=limits,
            timeout=httpx.Timeout(60.0, connect=connect_timeout_s),
            trust_env=False,  # loopback only: no proxy from the environment
        ) as client:
            app.state.upstream = client
            yield

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.post("/v1/chat/completions")
    async def relay(request: Request) -> Response:
        client: httpx.AsyncClient = request.app.state.upstream
        outgoing = client.build_request(
            "POST",
            "/chat/completions",
            content=await request.body(),
            headers={"Content-Type": "application/json"},
        )
        try:
            upstream = await client.send(outgoing, stream=True)
        except httpx.HTTPError as error:
            payload = {"code": "upstream_unavailable", "message": str(error), "retryable": True}
            return JSONResponse({"error": payload}, status_code=502)
        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type"),
            background=BackgroundTask(upstream.aclose),
        )

    return app
