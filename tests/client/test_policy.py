"""The backoff and attempt rules of ``RetryPolicy`` and ``Resumption``, without I/O."""

from __future__ import annotations

import random

import httpx
import pytest

from rag_service.client import (
    ConnectionFailed,
    DeadlineExceeded,
    Delta,
    ProtocolError,
    RateLimited,
    Resumption,
    RetryPolicy,
    ServiceEvent,
    Unauthorized,
)
from rag_service.client._requests import question_opening


def progress(policy: RetryPolicy) -> Resumption:
    opening = question_opening(
        "q", context="c", messages=None, filters=None, refresh=None, top_k=None
    )
    return Resumption(opening, policy, random.Random(7), headers={}, now=0.0)


def read(resumption: Resumption, chunk: bytes) -> list[ServiceEvent]:
    return [resumption.deliver(item) for item in resumption.feed(chunk)]


def test_an_event_counts_as_seen_only_once_delivered() -> None:
    resumption = progress(RetryPolicy())
    resumption.next_request(0.0)
    meta = b'id: s:1\nevent: meta\ndata: {"stream_id": "s", "context_id": "c"}\n\n'
    deltas = b'id: s:2\nevent: delta\ndata: {"text": "a"}\n\n'
    deltas += b'id: s:3\nevent: delta\ndata: {"text": "b"}\n\n'
    first, *rest = resumption.feed(meta + deltas)
    resumption.deliver(first)
    resumption.deliver(rest[0])  # the reader stops here: "b" was read, never delivered
    assert resumption.last_event_id == "s:2"
    assert resumption.text == "a"
    assert resumption.next_request(1.0).headers["Last-Event-ID"] == "s:2"
    assert [e.text for e in read(resumption, deltas) if isinstance(e, Delta)] == ["b"]


def test_full_jitter_between_the_floor_and_the_capped_ceiling() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        delays = [policy.delay_s(attempt, 0.0, rng) for _ in range(500)]
        assert 0.0 <= min(delays) < ceiling * 0.1 and ceiling * 0.9 < max(delays) <= ceiling
    # The server's hint is a floor, also above the ceiling.
    assert all(0.3 <= policy.delay_s(1, 0.3, rng) <= 0.5 for _ in range(100))
    assert policy.delay_s(1, 7.0, rng) == 7.0


def test_attempts_count_up_to_the_maximum_then_fail() -> None:
    resumption = progress(RetryPolicy(max_attempts=2, base_delay_s=0.01))
    resumption.next_request(0.0)
    assert resumption.lost("cut", 0.0).attempt == 1
    resumption.next_request(0.1)
    assert resumption.lost("cut", 0.1).attempt == 2
    resumption.next_request(0.2)
    with pytest.raises(ConnectionFailed, match="could not reach the service after 2 retries"):
        resumption.lost("cut", 0.2)


def test_news_resets_the_attempt_count() -> None:
    resumption = progress(RetryPolicy(max_attempts=1, base_delay_s=0.01))
    for now in (0.0, 1.0, 2.0):
        resumption.next_request(now)
        read(resumption, b'id: s:%d\nevent: delta\ndata: {"text": "x"}\n\n' % (now + 1))
        assert resumption.lost("cut", now).attempt == 1
    assert resumption.text == "xxx"


def test_a_wait_past_the_deadline_is_not_started() -> None:
    resumption = progress(RetryPolicy(deadline_s=10.0, base_delay_s=5.0, max_delay_s=5.0))
    resumption.next_request(0.0)
    resumption.retry_hint_s = 4.0  # the floor: the wait ends at 9-10 s at the earliest
    with pytest.raises(DeadlineExceeded, match="after the deadline of 10 s"):
        resumption.lost("cut", 6.0)


def test_only_retryable_refusals_are_retried() -> None:
    resumption = progress(RetryPolicy(max_attempts=0))
    resumption.next_request(0.0)
    with pytest.raises(Unauthorized):
        resumption.refused(401, b'{"error": {"code": "unauthorized", "message": "no"}}', {}, 0.0)
    body = b'{"error": {"code": "rate_limited", "message": "slow", "retryable": true}}'
    with pytest.raises(RateLimited):  # retryable, but no attempts are allowed
        resumption.refused(429, body, {"retry-after": "2"}, 0.0)
    patient = progress(RetryPolicy(max_attempts=3))
    patient.next_request(0.0)
    notice = patient.refused(429, body, {"retry-after": "2"}, 0.0)
    assert notice.status == 429 and notice.delay_s >= 2.0


def test_a_repeated_event_is_not_delivered_twice_and_a_gap_is_an_error() -> None:
    resumption = progress(RetryPolicy())
    resumption.next_request(0.0)
    meta = b'id: s:1\nevent: meta\ndata: {"stream_id": "s", "context_id": "c"}\n\n'
    delta = b'id: s:2\nevent: delta\ndata: {"text": "a"}\n\n'
    assert len(read(resumption, meta + delta)) == 2
    resumption.next_request(1.0)  # a resume that (wrongly) starts one event early
    assert read(resumption, delta) == []
    assert resumption.text == "a"
    with pytest.raises(ProtocolError, match="events are missing"):
        read(resumption, b'id: s:4\nevent: delta\ndata: {"text": "c"}\n\n')


def test_bytes_that_arrive_after_the_deadline_are_not_read() -> None:
    resumption = progress(RetryPolicy(deadline_s=10.0))
    resumption.next_request(0.0)
    meta = b'id: s:1\nevent: meta\ndata: {"stream_id": "s", "context_id": "c"}\n\n'
    assert len(list(resumption.received(meta, 9.9))) == 1
    with pytest.raises(DeadlineExceeded, match="no answer within the deadline of 10 s"):
        list(resumption.received(b'id: s:2\nevent: delta\ndata: {"text": "a"}\n\n', 10.0))
    assert resumption.text == "" and resumption.last_event_id == "s:1"


def test_a_response_that_ends_or_fails_is_retried_only_while_the_answer_is_unfinished() -> None:
    resumption = progress(RetryPolicy(base_delay_s=0.01))
    resumption.next_request(0.0)
    meta = b'id: s:1\nevent: meta\ndata: {"stream_id": "s", "context_id": "c"}\n\n'
    list(resumption.received(meta, 0.0))
    cut = resumption.ended(0.1)
    assert cut is not None and cut.reason == "the connection closed mid-answer"
    resumption.next_request(0.2)
    failed = resumption.failed(httpx.ReadError("reset by peer"), 0.2)
    assert failed is not None and failed.reason == "ReadError: reset by peer"
    resumption.next_request(0.3)
    list(resumption.received(b'id: s:2\nevent: done\ndata: {"finish_reason": "stop"}\n\n', 0.3))
    assert resumption.ended(0.4) is None
    assert resumption.failed(httpx.ReadError(""), 0.4) is None  # only the framing after it
    assert resumption.reconnects == 2
