"""The benches' loopback upstream: thousands of paced token streams, little CPU, a real ending.

    async with TokenUpstream(words=60, first_token_s=0.2, inter_token_s=0.2) as upstream:
        ...  # POST {upstream.base_url}/chat/completions with "stream": true

It behaves like a real OpenAI-compatible server where the benches depend on it:

- HTTP/1.1 via httptools as an ``asyncio.Protocol``: keep-alive, ``Content-Length`` bodies,
  pipelined requests answered in order, ``Connection: close`` honoured. Malformed HTTP gets a 400
  and the connection closes. ``accepted_connections`` counts every connection it accepted.
- ``POST /v1/chat/completions`` with ``"stream": true``: ``text/event-stream`` in chunked transfer
  coding, OpenAI ``chat.completion.chunk`` events (role, one per word, ``finish_reason`` stop,
  usage when ``stream_options.include_usage``) and ``data: [DONE]``. The text is
  ``bench.answer_prose.continuation_pieces(body, words)``: prose that, like a real answer and
  unlike the fault upstream's 18-word draws, never repeats itself, so the service's repetition
  stop holds nothing back; the benches check every text against it. An assistant prefix to
  continue gets the rest of the answer. Other bodies: 400; ``GET /v1/models``: a model list;
  else 404.
- **The chunked terminator comes on its own**, ``terminator_delay_s`` (default 2 ms) after
  ``data: [DONE]``, in a separate write. A server behind TLS ends its body like that: the last
  TLS record arrives in a read of its own. A client that stops reading at ``[DONE]`` leaves the
  body unfinished and cannot reuse the connection; writing both together (as this server once
  did) hid exactly that bug. The next pipelined answer starts after the terminator.
- Pacing: one ticker for all streams. Time is cut into ``tick_s`` slots; a stream's first token
  is due in the first slot at least ``first_token_s`` after its request, then one every
  ``inter_token_s``. Streams sit in a ring of ``inter_token_s / tick_s`` buckets (a stream stays
  in its bucket for its whole answer), and each tick writes the next token of every due stream of
  the buckets whose slots have passed. Gaps between a stream's tokens are whole periods; only the
  first token is up to one tick late. The ticker runs only while a stream is open.

Why not ``FaultUpstream`` (tests/fixture_servers): it spends about 46 µs of CPU per token (a
coroutine per connection, a timer and a ``drain()`` per token, the chunk JSON encoded per token).
At 5,000 streams of 5 tokens/s that is more than one of the machine's two cores. Here a token
costs one ``transport.write`` of bytes encoded once per distinct piece (``bench.token_frames``).
Measured alone (raw-socket clients) at 5,000 streams of 100 tokens: 4 µs user + 5 µs system CPU
per token, 0.22 cores in all; at 1,000 streams 7 + 8 µs. On this VM every loop wakeup costs
30-40 µs of CPU, so the 1 ms ticker adds about 4 % of a core while streams are open.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

import httptools

from bench.answer_prose import answer_text, continuation_pieces
from bench.token_frames import (
    DONE,
    OPENING,
    STOP,
    STREAM_HEAD,
    TERMINATOR,
    content_frame,
    error_payload,
    plain_response,
    usage_frame,
)
from tests.fixture_servers.async_server import LoopbackServer
from tests.fixture_servers.fault_connection import json_object

LOOPBACK = "127.0.0.1"
CHAT_PATH = b"/v1/chat/completions"
MODELS_PATH = b"/v1/models"
MAX_BODY_BYTES = 1 << 20
LISTEN_BACKLOG = 8192  # thousands of service connections open within seconds
DEFAULT_TICK_S = 0.001  # libuv timers have millisecond resolution anyway
_SLOT_EPSILON = 1e-3  # of a slot: loop.time() arithmetic must not land a hair before a boundary
DEFAULT_TERMINATOR_DELAY_S = 0.002  # between `data: [DONE]` and the chunked terminator


# -- streams and the ticker -------------------------------------------------------------------


class _Stream:
    """One answer being written: its pre-encoded frames and where it stands."""

    __slots__ = ("connection", "due_slot", "frames", "next_frame", "over")

    def __init__(self, connection: _Connection, frames: list[bytes], due_slot: int) -> None:
        self.connection = connection
        self.frames = frames  # the text frames; the last one carries the closing events too
        self.next_frame = 0
        self.due_slot = due_slot
        self.over = False


class _Ticker:
    """Writes every due token of every stream, one timer for all of them (module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tick_s: float, inter_token_s: float):
        self._loop = loop
        self._tick_s = tick_s
        self._period = max(1, round(inter_token_s / tick_s))
        self._ring: list[list[_Stream]] = [[] for _ in range(self._period)]
        self._origin = loop.time()
        self._done_slot = self._slot_now()  # every slot up to this one has been written
        self._timer: asyncio.TimerHandle | None = None
        self.active = 0
        self.tokens = 0

    def add(self, connection: _Connection, frames: list[bytes], delay_s: float) -> _Stream:
        due = math.ceil((self._loop.time() - self._origin + delay_s) / self._tick_s - _SLOT_EPSILON)
        stream = _Stream(connection, frames, max(due, self._slot_now() + 1))
        self._ring[stream.due_slot % self._period].append(stream)
        self.active += 1
        if self._timer is None:
            self._done_slot = self._slot_now()
            self._schedule()
        return stream

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _slot_now(self) -> int:
        return math.floor((self._loop.time() - self._origin) / self._tick_s + _SLOT_EPSILON)

    def _schedule(self) -> None:
        when = self._origin + (self._done_slot + 1) * self._tick_s
        self._timer = self._loop.call_at(when, self._tick)

    def _tick(self) -> None:
        now = self._slot_now()
        # A late loop catches up, but a stream gets at most one token per ring pass.
        for slot in range(max(self._done_slot + 1, now - self._period + 1), now + 1):
            self._write_due(self._ring[slot % self._period], slot)
        self._done_slot = max(self._done_slot, now)
        self._timer = None
        if self.active:
            self._schedule()

    def _write_due(self, bucket: list[_Stream], slot: int) -> None:
        ended = False
        for stream in bucket:
            if stream.over or stream.due_slot > slot:
                ended = ended or stream.over
                continue
            frame = stream.frames[stream.next_frame]
            stream.next_frame += 1
            stream.due_slot = slot + self._period
            self.tokens += 1
            if stream.next_frame == len(stream.frames):
                stream.over = ended = True
                stream.connection.finish(frame)
            else:
                stream.connection.write(frame)
        if ended:
            bucket[:] = [stream for stream in bucket if not stream.over]
            self.active = sum(len(b) for b in self._ring)


# -- connections ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    method: bytes
    path: bytes
    body: bytes | None  # None: over MAX_BODY_BYTES
    keep_alive: bool


class _Connection(asyncio.Protocol):
    """One client connection: parses requests (httptools), answers them one after another."""

    def __init__(self, server: TokenUpstream) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._body_size = 0
        self._queue: deque[_Request] = deque()
        self._stream: _Stream | None = None
        self._ending: asyncio.TimerHandle | None = None  # the terminator, due after [DONE]
        self._keep_alive = True

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but they implement it.
        self._transport = cast(asyncio.Transport, transport)
        self._server.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._stream is not None:
            self._stream.over = True
        if self._ending is not None:
            self._ending.cancel()
        self._server.connection_closed(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reply(400, error_payload("upgrades are not supported", 400), keep_alive=False)
        except httptools.HttpParserError:
            self._reply(400, error_payload("malformed HTTP request", 400), keep_alive=False)

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url, self._body, self._body_size = b"", [], 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size <= MAX_BODY_BYTES:
            self._body.append(body)

    def on_message_complete(self) -> None:
        path = self._url.partition(b"?")[0]
        body = None if self._body_size > MAX_BODY_BYTES else b"".join(self._body)
        self._queue.append(
            _Request(self._parser.get_method(), path, body, self._parser.should_keep_alive())
        )
        if self._stream is None and self._ending is None:
            self._answer_next()

    # answering

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def finish(self, last: bytes) -> None:
        """Called by the ticker with an answer's last events, ``[DONE]`` included."""
        self.write(last)
        self._stream = None
        delay = self._server.terminator_delay_s
        self._ending = asyncio.get_running_loop().call_later(delay, self._end_body)

    def _end_body(self) -> None:
        """The chunked terminator, in a write of its own (module docstring)."""
        self._ending = None
        self.write(TERMINATOR)
        if not self._keep_alive:
            self._close()
        else:
            self._answer_next()

    def _answer_next(self) -> None:
        while self._queue and self._stream is None and self._transport is not None:
            request = self._queue.popleft()
            self._keep_alive = request.keep_alive
            if request.body is None:
                self._reply(413, error_payload("request body too large", 413), keep_alive=False)
            elif request.method == b"POST" and request.path == CHAT_PATH:
                self._chat(request)
            elif request.method == b"GET" and request.path == MODELS_PATH:
                models = {"object": "list", "data": [{"id": "bench-token", "object": "model"}]}
                self._reply(200, models, keep_alive=request.keep_alive)
            else:
                self._reply(404, error_payload("no such route", 404), keep_alive=request.keep_alive)

    def _chat(self, request: _Request) -> None:
        body = json_object(request.body or b"")
        if body is None or not isinstance(body.get("messages"), list):
            self._reply(400, error_payload("body must be a JSON object with messages", 400),
                        keep_alive=request.keep_alive)  # fmt: skip
            return
        if body.get("stream") is not True:
            self._reply(
                400, error_payload("only streamed completions", 400), keep_alive=request.keep_alive
            )
            return
        head = STREAM_HEAD + (b"\r\n" if request.keep_alive else b"Connection: close\r\n\r\n")
        self.write(head + OPENING)
        self._stream = self._server.start_answer(self, body)

    def _reply(self, status: int, payload: Any, *, keep_alive: bool) -> None:
        self.write(plain_response(status, payload, keep_alive=keep_alive))
        if not keep_alive:
            self._close()

    def _close(self) -> None:
        self._queue.clear()
        if self._transport is not None:
            self._transport.close()


# -- the server -------------------------------------------------------------------------------


class TokenUpstream(LoopbackServer):
    """The server; an async context manager. See the module docstring."""

    def __init__(
        self,
        *,
        words: int,
        first_token_s: float,
        inter_token_s: float,
        tick_s: float = DEFAULT_TICK_S,
        terminator_delay_s: float = DEFAULT_TERMINATOR_DELAY_S,
        host: str = LOOPBACK,
        port: int = 0,
    ) -> None:
        super().__init__()
        self.words = words  # tokens per answer
        self.first_token_s = first_token_s
        self.terminator_delay_s = terminator_delay_s
        self.chat_requests = 0
        self.accepted_connections = 0
        self.max_open_connections = 0
        self._connections: set[_Connection] = set()
        self._inter_token_s = inter_token_s
        self._tick_s = tick_s
        self._host = host
        self._port = port
        self._frames: dict[str, bytes] = {}
        self._ticker: _Ticker | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}/v1"

    @property
    def tokens_sent(self) -> int:
        return 0 if self._ticker is None else self._ticker.tokens

    def answer_text(self, messages: list[dict[str, Any]]) -> str:
        """The complete answer a request with ``messages`` gets."""
        return answer_text(messages, self.words)

    async def _listen(self) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        self._ticker = _Ticker(loop, self._tick_s, self._inter_token_s)
        return await loop.create_server(
            lambda: _Connection(self), self._host, self._port, backlog=LISTEN_BACKLOG
        )

    async def _end_connections(self) -> None:
        if self._ticker is not None:
            self._ticker.close()
        for connection in list(self._connections):
            connection.abort()

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def connection_opened(self, connection: _Connection) -> None:
        self.accepted_connections += 1
        self._connections.add(connection)
        self.max_open_connections = max(self.max_open_connections, len(self._connections))

    def connection_closed(self, connection: _Connection) -> None:
        self._connections.discard(connection)

    def start_answer(self, connection: _Connection, body: dict[str, Any]) -> _Stream:
        """Queue the answer to ``body`` on the ticker; the opening event is already written."""
        assert self._ticker is not None
        self.chat_requests += 1
        frames = [self._frame(piece) for piece in continuation_pieces(body, self.words)]
        options = body.get("stream_options")
        closing = STOP
        if isinstance(options, dict) and options.get("include_usage"):
            closing += usage_frame(len(frames))
        closing += DONE
        frames = [*frames[:-1], frames[-1] + closing] if frames else [closing]
        return self._ticker.add(connection, frames, self.first_token_s)

    def _frame(self, piece: str) -> bytes:
        frame = self._frames.get(piece)
        if frame is None:
            frame = self._frames[piece] = content_frame(piece)
        return frame
