"""A resuming SSE client for ``rag-service ask``: what a well-behaved client of this API does.

It streams ``POST /rag/stream``; when the connection drops mid-answer it reconnects to
``GET /rag/stream/{id}`` with ``Last-Event-ID`` after a full-jitter backoff seeded by the
server's ``retry:`` hint, so the printed answer has no gaps and no repeats. Before a stream has
started, 429/503 are retried after the server's ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from rag_service.upstream.sse import SSEParser

Printer = Callable[[str, dict[str, Any]], None]
"""Called as ``printer(event_name, data)`` for every event, plus ``reconnect`` notices."""


@dataclass
class AskResult:
    text: str = ""
    stream_id: str | None = None
    last_event_id: str | None = None
    reconnects: int = 0
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    events: list[str] = field(default_factory=list)


@dataclass
class AskClient:
    base_url: str
    api_key: str | None = None
    max_reconnects: int = 8
    rng: random.Random = field(default_factory=random.Random)
    timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(10.0, read=60.0))

    async def ask(self, question: str, context_id: str, printer: Printer) -> AskResult:
        result = AskResult()
        retry_ms = 1000
        async with httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout) as http:
            attempt = 0
            while result.done is None and result.error is None:
                try:
                    retry_ms = await self._read(http, question, context_id, result, printer)
                except (httpx.TransportError, _Unfinished) as error:
                    if result.stream_id is None or attempt >= self.max_reconnects:
                        raise ConnectionError(f"stream lost: {error}") from error
                    attempt += 1
                    result.reconnects += 1
                    delay = self.rng.uniform(0, retry_ms / 1000 * 2 ** min(attempt - 1, 5))
                    printer("reconnect", {"attempt": attempt, "delay_ms": round(delay * 1000)})
                    await asyncio.sleep(delay)
        return result

    async def _read(
        self,
        http: httpx.AsyncClient,
        question: str,
        context_id: str,
        result: AskResult,
        printer: Printer,
    ) -> int:
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if result.stream_id is None:
            request = http.build_request(
                "POST",
                "/rag/stream",
                params={"context": context_id},
                json={"query": question},
                headers=headers,
            )
        else:
            headers["Last-Event-ID"] = result.last_event_id or ""
            request = http.build_request("GET", f"/rag/stream/{result.stream_id}", headers=headers)
        response = await http.send(request, stream=True)
        try:
            await _raise_for_status(response)
            return await self._consume(response, result, printer)
        finally:
            await response.aclose()

    async def _consume(self, response: httpx.Response, result: AskResult, printer: Printer) -> int:
        parser = SSEParser()
        retry_ms = 1000
        async for chunk in response.aiter_bytes():
            for event in parser.feed(chunk):
                retry_ms = event.retry_ms or retry_ms
                if event.event == "message" and not event.data:
                    continue
                data = json.loads(event.data)
                result.last_event_id = event.id or result.last_event_id
                result.events.append(event.event)
                if event.event == "meta":
                    result.stream_id = data["stream_id"]
                elif event.event == "delta":
                    result.text += data["text"]
                elif event.event == "done":
                    result.done = data
                elif event.event == "error":
                    result.error = data
                printer(event.event, data)
                if result.done is not None or result.error is not None:
                    return retry_ms
        raise _Unfinished("the connection closed before the answer ended")


class _Unfinished(Exception):
    pass


class RequestRefused(Exception):
    def __init__(self, status: int, body: dict[str, Any], retry_after_s: float | None) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"{status} {error.get('code', '')}: {error.get('message', body)}")
        self.status = status
        self.retry_after_s = retry_after_s


async def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code == 200:
        return
    raw = await response.aread()
    try:
        body = json.loads(raw)
    except ValueError:
        body = {"error": {"message": raw.decode(errors="replace")[:200]}}
    retry_after = response.headers.get("retry-after")
    seconds = float(retry_after) if retry_after and retry_after.isdigit() else None
    raise RequestRefused(response.status_code, body, seconds)
