"""The facade's pure parts: reading native events, forwarded params, error statuses."""

from __future__ import annotations

from typing import Any

import pytest

from rag_service.api.openai_routes import error_payload_response, status_for_code
from rag_service.api.openai_schemas import ChatCompletionBody, upstream_params
from rag_service.api.openai_stream import ChunkEncoder, NativeEvent, parse_native
from rag_service.errors import (
    CircuitOpen,
    RagServiceError,
    RetriesExhausted,
    UpstreamRejected,
    UpstreamStalled,
)
from rag_service.settings import ContinuationStrategy, UpstreamSettings
from rag_service.streaming.replay_buffer import ReplayBuffer

STREAM_ID = "AbCdEfGhIjKlMnOpQrStUv"


def test_native_events_parse_back_exactly_including_awkward_text() -> None:
    buffer = ReplayBuffer(STREAM_ID, capacity=64)
    buffer.append_event("meta", {"stream_id": STREAM_ID, "context": {"state": "fresh"}})
    awkward = 'line one\n\nline two: "quoted" data: id: 😀\r'
    buffer.append_delta(awkward)
    buffer.append_event("done", {"finish_reason": "length", "usage": None})
    chunk, last = buffer.read(0, 10)
    assert last == 3
    assert parse_native(chunk) == [
        NativeEvent(1, "meta", {"stream_id": STREAM_ID, "context": {"state": "fresh"}}),
        NativeEvent(2, "delta", {"text": awkward}),
        NativeEvent(3, "done", {"finish_reason": "length", "usage": None}),
    ]


def test_an_unknown_finish_reason_reads_as_stop_and_length_is_kept() -> None:
    encoder = ChunkEncoder(stream_id=STREAM_ID, model="m", created=1, include_usage=False)
    length = encoder.encode(NativeEvent(9, "done", {"finish_reason": "length"}))
    odd = encoder.encode(NativeEvent(9, "done", {"finish_reason": "eos_token"}))
    assert b'"finish_reason":"length"' in length
    assert b'"finish_reason":"stop"' in odd
    assert length.endswith(b"id: %s:9\ndata: [DONE]\n\n" % STREAM_ID.encode())


def body(**fields: Any) -> ChatCompletionBody:
    return ChatCompletionBody.model_validate({"messages": [], **fields})


def test_sampling_fields_are_forwarded_only_when_continuation_does_not_replay() -> None:
    fields = {"temperature": 0.7, "top_p": 0.9, "seed": 3, "max_tokens": 100}
    replay = UpstreamSettings()
    prefix = UpstreamSettings(continuation=ContinuationStrategy.prefix)
    assert upstream_params(body(**fields), replay) == {"max_tokens": 100}
    assert upstream_params(body(**fields), prefix) == fields


def test_max_tokens_passes_through_when_no_limit_is_configured() -> None:
    unlimited = UpstreamSettings(params={"temperature": 0})
    assert upstream_params(body(max_completion_tokens=5000), unlimited) == {"max_tokens": 5000}
    assert upstream_params(body(), unlimited) == {}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UpstreamRejected("no", status=400), 502),
        (UpstreamStalled("quiet", reason="stalled"), 502),
        (RetriesExhausted("gave up"), 503),
        (CircuitOpen("open"), 503),
        (RagServiceError("the answer failed unexpectedly"), 500),
    ],
)
def test_an_error_payload_gets_its_error_class_status(error: RagServiceError, status: int) -> None:
    assert status_for_code(error.to_payload()["code"]) == status


def test_an_error_payload_of_unknown_code_is_a_bad_gateway_with_retry_after() -> None:
    response = error_payload_response({"code": "mystery", "message": "?", "retry_after_s": 0.2})
    assert response.status_code == 502
    assert response.headers["retry-after"] == "1"
    assert response.body == b'{"error":{"code":"mystery","message":"?","retry_after_s":0.2}}'
