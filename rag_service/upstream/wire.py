"""One attempt on the wire: POST the request through aiohttp, check the answer, turn its SSE into
chunks, and read the body to its end so that the connection goes back to the pool.

One ``aiohttp.ClientSession`` per endpoint (one client per process), made inside the running loop
at the first request, over a ``TCPConnector`` of at most ``max_connections`` keep-alive
connections. Each body piece that aiohttp's ``StreamReader`` hands over (``readany``: whatever
arrived, no line splitting) goes through our SSE parser and the chunk's JSON straight to the
attempt's consumer, in the attempt's own frame.

After ``[DONE]`` the rest of the body - over TLS the chunked terminator usually arrives in a read
of its own - is read to its end, bounded in time and bytes, so that aiohttp hands the connection
back to its pool instead of closing it. The consumer hears that the answer is complete once that
is done (or after a short grace), so that a client asking again at once finds the connection idle.

Everything aiohttp raises is translated here (see ``classify``); callers only see our errors.
Malformed JSON in a complete data event is an ``UpstreamProtocolError`` and is not retried: with
deterministic decoding the upstream would most likely send the same bytes again. A data line cut
off by a lost connection never forms a complete event (an event needs its blank line), so that
case surfaces as a cut stream and is retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import aiohttp
from yarl import URL

from rag_service import __version__
from rag_service.errors import ConfigurationError, UpstreamProtocolError, UpstreamRetryable
from rag_service.settings import UpstreamSettings
from rag_service.upstream.chunks import AnswerConsumer, ChunkReader
from rag_service.upstream.classify import (
    status_error,
    transport_error,
    truncate,
)
from rag_service.upstream.proxy import UpstreamProxy, choose_proxy
from rag_service.upstream.tls import upstream_ssl_context, warn_if_unverified

MAX_ERROR_BODY_BYTES = 16 * 1024
# A hosted API may list hundreds of models; what is past this is not needed to find ours.
MAX_MODELS_BODY_BYTES = 1024 * 1024
USER_AGENT = f"rag-service/{__version__}"
# What may follow [DONE] before the body ends (the chunked terminator, a trailer, a stray
# comment): beyond these bounds the connection is closed rather than kept.
DRAIN_MAX_BYTES = 64 * 1024
DRAIN_MAX_S = 2.0
# A healthy server's terminator follows [DONE] within a millisecond or two. The answer is reported
# complete once it came, or after this grace: delivering it at [DONE] let the service's client ask
# again before the connection was back in the pool, and a second connection was opened.
DONE_GRACE_S = 0.05
# No Accept-Encoding: a token stream gains nothing from compression, and each chunk would cost a
# decompressor call. aiohttp still decodes a server that compresses anyway.
SKIPPED_AUTO_HEADERS = ("Accept-Encoding",)
log = logging.getLogger("rag_service.upstream")


class _Sending:
    """Per request, for the trace hook: was the request sent on a pooled connection?"""

    __slots__ = ("reused",)

    def __init__(self) -> None:
        self.reused = False


class CompletionsEndpoint:
    """``POST {base_url}/chat/completions``, with what is the same for every request (URL,
    headers, proxy, TLS context, timeouts) prepared once, when the client is built."""

    def __init__(
        self, settings: UpstreamSettings, *, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.secret = settings.api_key.get_secret_value()
        self._settings = settings
        self._url = _completions_url(settings.base_url)
        self.models_url = URL(settings.base_url.rstrip("/") + "/models")  # checked just above
        self.proxy: UpstreamProxy | None = choose_proxy(settings, self._url)
        self._proxy_url = self.proxy.url if self.proxy is not None else None
        if self.proxy is not None:
            log.info(
                "upstream requests go through the proxy %s (from %s)",
                self.proxy.shown,
                self.proxy.source,
            )
        warn_if_unverified(settings)
        tls_needed = self._url.scheme == "https" or (
            self._proxy_url is not None and self._proxy_url.scheme == "https"
        )
        self._ssl: ssl.SSLContext | bool = upstream_ssl_context(settings) if tls_needed else True
        headers = {
            "User-Agent": USER_AGENT,
            "Accept": "text/event-stream",
            "Content-Type": "application/json",
            **settings.extra_headers,
        }
        if self.secret:
            headers["Authorization"] = f"Bearer {self.secret}"
        self._headers = headers
        # sock_read: the longest gap between two reads, i.e. a stall (and, before the head, an
        # upstream that does not answer). The wait for a free connection is ours (_slots):
        # aiohttp's `connect` timeout cannot tell a full pool from an unreachable upstream.
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None,
            sock_connect=settings.connect_timeout_s,
            sock_read=settings.read_timeout_s,
        )
        self._drain_s = min(settings.read_timeout_s, DRAIN_MAX_S)
        self._grace_s = min(self._drain_s, DONE_GRACE_S)
        self._slots = asyncio.Semaphore(settings.max_connections)
        self._session = session
        self._owns_session = session is None

    async def stream(self, body: Mapping[str, Any], consumer: AnswerConsumer) -> None:
        """Stream one completion into ``consumer``; raise our error on failure.

        Returns once the rest of the body after ``[DONE]`` has been drained (the consumer heard
        ``end()`` before that) or the connection closed. Cancelling it closes the response.
        """
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        del body
        await self._take_slot()
        try:
            response = await self._send(data)
            del data  # answered: the prompt need not stay alive as long as the stream
            try:
                settled = await self._read(response, consumer)
            except BaseException:
                response.close()
                raise
            if settled:
                response.release()  # the body was read to its end: the connection is reused
            else:
                response.close()
        finally:
            self._slots.release()

    async def get_models(self, timeout_s: float) -> tuple[int, bytes]:
        """``GET {base_url}/models`` through the same pool, proxy and TLS as the answers: the
        status and up to ``MAX_MODELS_BODY_BYTES`` of the body; raises our transport errors."""
        headers = {**self._headers, "Accept": "application/json"}
        del headers["Content-Type"]
        try:
            async with self._open_session().get(
                self.models_url,
                headers=headers,
                skip_auto_headers=SKIPPED_AUTO_HEADERS,
                allow_redirects=False,
                proxy=self._proxy_url,
                ssl=self._ssl,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                return response.status, await _read_bounded(response.content, MAX_MODELS_BODY_BYTES)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc, response_started=False, proxy=self.proxy) from exc

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def _take_slot(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns at once, no timer
            return
        try:
            async with asyncio.timeout(self._settings.connect_timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise UpstreamRetryable(
                f"no free upstream connection within {self._settings.connect_timeout_s:g} s "
                f"(all {self._settings.max_connections} in use)",
                reason="pool_timeout",
            ) from None

    def _open_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None:
            reuse = aiohttp.TraceConfig()
            reuse.on_connection_reuseconn.append(_note_reuse)
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._settings.max_connections,
                    limit_per_host=0,
                    keepalive_timeout=self._settings.keepalive_s,
                ),
                cookie_jar=aiohttp.DummyCookieJar(),  # an API upstream: no state between requests
                trust_env=False,  # the proxy is chosen once, by choose_proxy
                trace_configs=[reuse],
            )
            self._session = session
        return session

    async def _send(self, data: bytes) -> aiohttp.ClientResponse:
        """The checked head of the answer to ``data``."""
        session = self._open_session()
        sending = _Sending()
        try:
            try:
                response = await self._post(session, data, sending)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if not sending.reused or isinstance(exc, aiohttp.ClientConnectorError):
                    raise
                # The keep-alive race: the server closed the pooled connection as we reused it,
                # before a byte of an answer. Once more, at once, on another connection.
                response = await self._post(session, data, _Sending())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc, response_started=False, proxy=self.proxy) from exc
        try:
            await self._check(response)
        except BaseException:
            response.release()  # an error body read to its end keeps the connection
            raise
        return response

    async def _post(
        self, session: aiohttp.ClientSession, data: bytes, sending: _Sending
    ) -> aiohttp.ClientResponse:
        return await session.post(
            self._url,
            data=data,
            headers=self._headers,
            skip_auto_headers=SKIPPED_AUTO_HEADERS,
            allow_redirects=False,
            proxy=self._proxy_url,
            ssl=self._ssl,
            timeout=self._timeout,
            trace_request_ctx=sending,
        )

    async def _check(self, response: aiohttp.ClientResponse) -> None:
        if response.status != 200:
            body = await _read_bounded(response.content, MAX_ERROR_BODY_BYTES)
            raise status_error(
                response.status, response.headers, body, now=time.time(), secret=self.secret
            )
        content_type = response.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != "text/event-stream":
            raise UpstreamProtocolError(
                f"upstream answered 200 with content type {truncate(content_type, 80)!r}, "
                "not text/event-stream"
            )

    async def _read(self, response: aiohttp.ClientResponse, consumer: AnswerConsumer) -> bool:
        """Parse the body into ``consumer``; True when the body was read to its end."""
        content = response.content
        reader = ChunkReader(consumer, self.secret)
        try:
            while data := await content.readany():
                if reader(data):
                    break
        except (aiohttp.ClientError, TimeoutError) as exc:
            if not reader.finished:  # all but [DONE] arrived: nothing is lost, else retry
                raise transport_error(exc, response_started=True, proxy=self.proxy) from exc
            consumer.end()
            return False
        if not (reader.done or reader.finished):
            raise UpstreamRetryable("upstream stream ended before [DONE]", reason="stream_cut")
        if not reader.done:  # the body ended after a finish_reason: nothing left to read
            consumer.end()
            return True
        tail = _Tail(content)
        ended = await tail.read(self._grace_s)
        consumer.end()
        if ended is None:  # a late terminator: read on, within the bounds, after the answer
            ended = await tail.read(self._drain_s - self._grace_s)
        return bool(ended)


def _completions_url(base_url: str) -> URL:
    try:
        url = URL(base_url.rstrip("/") + "/chat/completions")
    except ValueError:
        url = URL()
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"RAG_UPSTREAM__BASE_URL must be an http:// or https:// URL, not {base_url!r}"
        )
    return url


async def _note_reuse(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceConnectionReuseconnParams,
) -> None:
    sending = context.trace_request_ctx
    if isinstance(sending, _Sending):
        sending.reused = True


async def _read_bounded(content: aiohttp.StreamReader, limit: int) -> bytes:
    """At most ``limit`` bytes of a body that is not a stream (an error, the model list)."""
    collected = bytearray()
    try:
        while len(collected) < limit and (piece := await content.readany()):
            collected += piece
    except (aiohttp.ClientError, TimeoutError):
        pass  # the status already says what happened; a half-read message is still useful
    return bytes(collected[:limit])


class _Tail:
    """What follows ``[DONE]``, read towards the body's end in one or more timed steps."""

    __slots__ = ("_content", "_left")

    def __init__(self, content: aiohttp.StreamReader) -> None:
        self._content = content
        self._left = DRAIN_MAX_BYTES

    async def read(self, seconds: float) -> bool | None:
        """True: the body ended; False: too many bytes or a failure (close the connection);
        None: it goes on after ``seconds`` (nothing is lost: a cancelled read leaves the bytes
        in the reader)."""
        content = self._content
        if content.at_eof():
            return True  # the usual case: the terminator came with [DONE]
        try:
            async with asyncio.timeout(seconds):
                while data := await content.readany():
                    self._left -= len(data)
                    if self._left < 0:
                        return False
        except aiohttp.ClientError:  # includes sock_read's SocketTimeoutError
            return False
        except TimeoutError:
            return None
        return True
