"""The facade's pure parts: encoding a session's events as chunks, forwarded params, error statuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rag_service.domain import NamedEvent
from rag_service.errors import (
    CircuitOpen,
    RagServiceError,
    RetriesExhausted,
    UpstreamRejected,
    UpstreamStalled,
)
from rag_service.openai.router import error_payload_response, status_for_code
from rag_service.openai.schemas import ChatCompletionBody, upstream_params
from rag_service.openai.stream import ChunkEncoder
from rag_service.settings import ContinuationStrategy, UpstreamSettings
from rag_service.streaming.replay_buffer import ReplayBuffer
from rag_service.streaming.sse_format import to_json
from tests.streaming.sse_spec import parse_sse

STREAM_ID = "AbCdEfGhIjKlMnOpQrStUv"
AWKWARD = 'line one\n\nline two: "quoted" data: id: 😀\r %s %d %% \\'


def encoder(model: str = "m", include_usage: bool = False) -> ChunkEncoder:
    return ChunkEncoder(stream_id=STREAM_ID, model=model, created=1, include_usage=include_usage)


def chunk_json(model: str, content: str) -> bytes:
    """A content chunk as ``json``/``to_json`` would write its object."""
    return to_json(
        {
            "id": f"chatcmpl-{STREAM_ID}",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": content},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
        }
    )


@pytest.mark.parametrize("model", ["m", 'a "quoted" %s model', "modèle-%d"])
def test_a_delta_chunk_is_the_chunk_objects_json_byte_for_byte(model: str) -> None:
    """The template with the literal spliced in equals serialising the whole chunk."""
    buffer = ReplayBuffer(capacity=64)
    buffer.append_event("meta", {"stream_id": STREAM_ID})
    buffer.append_delta(AWKWARD)
    [delta] = buffer.read_events(1, 1)

    encoded = encoder(model).encode([delta])

    assert encoded == b"id: %s:2\ndata: %s\n\n" % (STREAM_ID.encode(), chunk_json(model, AWKWARD))
    assert json.loads(encoded.split(b"data: ", 1)[1])["choices"][0]["delta"]["content"] == AWKWARD


def test_a_batch_encodes_as_its_events_one_after_the_other() -> None:
    buffer = ReplayBuffer(capacity=64)
    buffer.append_event("meta", {"stream_id": STREAM_ID, "context": {"state": "fresh"}})
    buffer.append_delta("Hello")
    buffer.append_event("retry", {"attempt": 2})
    buffer.append_delta(" world")
    buffer.append_event("done", {"finish_reason": "length", "usage": None})
    events = buffer.read_events(0, 10)
    chunks = encoder()

    assert chunks.encode(events) == b"".join(chunks.encode([event]) for event in events)
    assert b": retry attempt=2\n" in chunks.encode(events)


def test_an_unknown_finish_reason_reads_as_stop_and_length_is_kept() -> None:
    chunks = encoder()
    length = chunks.encode([NamedEvent(9, "done", b'{"finish_reason":"length"}')])
    odd = chunks.encode([NamedEvent(9, "done", b'{"finish_reason":"eos_token"}')])
    assert b'"finish_reason":"length"' in length
    assert b'"finish_reason":"stop"' in odd
    assert length.endswith(b"id: %s:9\ndata: [DONE]\n\n" % STREAM_ID.encode())


def test_the_meta_event_becomes_the_first_chunk_with_the_rag_field() -> None:
    meta = to_json(
        {
            "stream_id": STREAM_ID,
            "context_id": "c",
            "context": {"state": "fresh", "age_s": 1.5, "catalog_version": 3, "sources": []},
        }
    )
    [event] = parse_sse(encoder().encode([NamedEvent(1, "meta", meta)])).events
    first = event.json()

    assert event.last_event_id == f"{STREAM_ID}:1"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["rag"] == {
        "stream_id": STREAM_ID,
        "context_id": "c",
        "state": "fresh",
        "age_s": 1.5,
        "catalog_version": 3,
        "sources": [],
    }


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
