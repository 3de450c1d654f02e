"""``rag-service ask``: one answer on the terminal through ``rag_service.client``.

The answer's text goes to stdout exactly as streamed (a pipe gets exactly the answer). A status
line goes to stderr: connected, the context's state and sources, the service retrying its
upstream, the client reconnecting (attempt n of m, next try in s), and the failure if any. On a
terminal the status line is rewritten in place until the text starts; after that a status goes
on a line of its own. Exit status: 0 answered, 1 failed (unreachable, failed mid-answer,
deadline), 2 refused with a 4xx (a wrong key, a bad request, rate limited), 130 interrupted
(Ctrl-C).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TextIO

from rag_service.client import (
    Connected,
    ConnectionFailed,
    DeadlineExceeded,
    Delta,
    Done,
    Error,
    Meta,
    ProtocolError,
    RagClient,
    Reconnecting,
    RequestRefused,
    Resumed,
    Retry,
    RetryPolicy,
    StreamEvent,
)

EXIT_ANSWERED, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2
EXIT_INTERRUPTED = 130  # what a shell reports for a SIGINT
_CLEAR_LINE = "\r\x1b[K"
_MAX_SOURCES_SHOWN = 3


class StatusLine:
    """The status on ``err``, kept apart from the answer's text on ``out``."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self._out = out
        self._err = err
        self._live = err.isatty()
        self._shown = False  # a status is on the terminal's current line, to be rewritten
        self._text_open = False  # the answer's text has started and its line is not ended

    def text(self, piece: str) -> None:
        if self._shown:
            self._err.write(_CLEAR_LINE)
            self._err.flush()
            self._shown = False
        self._out.write(piece)
        self._out.flush()
        self._text_open = not piece.endswith("\n")

    def show(self, message: str) -> None:
        if self._text_open and self._live and self._out.isatty():
            self._err.write("\n")  # the terminal's line holds text: the status goes below it
            self._text_open = False
        if self._live and not self._text_open:
            self._err.write(f"{_CLEAR_LINE}[{message}]")
            self._shown = True
        else:
            self._err.write(f"[{message}]\n")
        self._err.flush()

    def end(self) -> None:
        if self._text_open:
            self._out.write("\n")
            self._out.flush()
        if self._shown:
            self._err.write("\n")
            self._err.flush()


def describe(event: StreamEvent, verbose: bool) -> str | None:
    """The status for ``event`` (``None``: nothing to show)."""
    if isinstance(event, Connected):
        if event.resumed:
            return f"connected: resumed stream {event.stream_id}"
        return "connected"
    if isinstance(event, Meta):
        sources = ", ".join(
            f"{s.title} ({s.score:.2f})" for s in event.sources[:_MAX_SOURCES_SHOWN]
        )
        more = len(event.sources) - _MAX_SOURCES_SHOWN
        listed = sources + (f" and {more} more" if more > 0 else "") if sources else "none"
        return f"context {event.state} (catalog v{event.catalog_version}); sources: {listed}"
    if isinstance(event, Reconnecting):
        cause = f"refused {event.reason}" if event.status is not None else event.reason
        return (
            f"reconnecting (attempt {event.attempt} of {event.max_attempts}), "
            f"next try in {event.delay_s:.1f} s: {cause}"
        )
    if isinstance(event, Retry):
        of = f" of {event.max_attempts}" if event.max_attempts else ""
        why = f", {event.reason}" if event.reason else ""
        return f"upstream retrying (attempt {event.attempt}{of}{why})"
    if isinstance(event, Resumed):
        return f"upstream resumed (attempt {event.attempt})"
    if isinstance(event, Done) and verbose:
        return "done: " + json.dumps({k: v for k, v in asdict(event).items() if v is not None})
    if isinstance(event, Error):
        hint = "retrying may help" if event.retryable else "retrying will not help"
        return f"error {event.code}: {event.message} ({hint})"
    return None


def run_ask(
    question: str,
    *,
    context: str,
    url: str,
    api_key: str | None,
    policy: RetryPolicy,
    verbose: bool,
    out: TextIO,
    err: TextIO,
) -> int:
    """Stream the answer to ``question``; the exit status (see the module docstring)."""
    status = StatusLine(out, err)
    try:
        with (
            RagClient(url, api_key=api_key, policy=policy) as client,
            client.stream(question, context=context) as stream,
        ):
            for event in stream:
                if isinstance(event, Delta):
                    status.text(event.text)
                    continue
                message = describe(event, verbose)
                if message is not None:
                    status.show(message)
            outcome = stream.progress
    except RequestRefused as refused:
        status.show(f"refused: {refused}")
        status.end()
        return EXIT_REFUSED if refused.status < 500 else EXIT_FAILED
    except ConnectionFailed as failed:
        status.show(f"failed: {failed} (is the service running at {url}?)")
        status.end()
        return EXIT_FAILED
    except (DeadlineExceeded, ProtocolError) as failed:
        status.show(f"failed: {failed}")
        status.end()
        return EXIT_FAILED
    except KeyboardInterrupt:  # the response was closed on the way out
        status.show("interrupted")
        status.end()
        return EXIT_INTERRUPTED
    status.end()
    return EXIT_ANSWERED if outcome.done is not None else EXIT_FAILED
