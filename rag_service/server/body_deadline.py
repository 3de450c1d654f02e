"""A time limit for request bodies, which uvicorn does not have: ``BodyDeadline``.

uvicorn hands the app a body as it arrives and waits for the rest as long as the client likes,
so a body sent a byte at a time holds its connection for ever. ``BodyDeadline`` wraps the app's
``receive`` while the body is incomplete: each wait for the next part ends at the earlier of

- ``timeout_s`` after the wait began (a pause), and
- ``timeout_s + received / min_rate`` after the request reached the app (too slow on average:
  a trickle of small parts, each in time, still has to keep up ``min_rate`` bytes/s),

and past it ``receive`` raises ``RequestTimeout``, which the app answers like any of our errors:
408 with the JSON error and ``Connection: close`` (``rag_service/api/errors.py``).

Once the body is complete ``receive`` is passed through untimed: what a streaming response
waits for then is the client's disconnect, which may rightly take as long as the stream. A
request without a body (no Content-Length, or 0, and not chunked) gets the server's ``receive``
itself.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from rag_service.errors import RequestTimeout

Receive = Any  # the ASGI receive callable; the app is typed by the server, not by us


def has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-length":
            return value.strip() != b"0"
        if name == b"transfer-encoding":
            return True
    return False


class BodyDeadline:
    """ASGI middleware: a request body that pauses longer than ``timeout_s``, or falls below
    ``min_rate`` bytes/s after the first ``timeout_s``, ends in ``RequestTimeout`` (408)."""

    def __init__(self, app: Any, *, timeout_s: float, min_rate: float) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.min_rate = min_rate

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Any) -> None:
        if scope["type"] != "http" or not has_body(scope["headers"]):
            await self.app(scope, receive, send)
            return
        await self.app(scope, self._timed(receive), send)

    def _timed(self, receive: Receive) -> Receive:
        loop = asyncio.get_running_loop()
        timeout_s, min_rate = self.timeout_s, self.min_rate
        started = loop.time()
        received = 0
        complete = False

        async def receive_in_time() -> dict[str, Any]:
            nonlocal received, complete
            if complete:
                message: dict[str, Any] = await receive()
                return message
            now = loop.time()
            by_rate = started + timeout_s + received / min_rate if min_rate else math.inf
            try:
                async with asyncio.timeout_at(min(now + timeout_s, by_rate)):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"the request body arrived too slowly ({received} bytes in "
                    f"{loop.time() - started:.1f} s; at most {timeout_s:g} s without data, "
                    f"at least {min_rate:g} bytes/s after the first {timeout_s:g} s)"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
            else:
                complete = True  # http.disconnect: there is no more body to wait for
            return message

        return receive_in_time
