"""What the SSE load client records per stream, and the report it makes of a whole level.

A stream counts as completed only when it ended with ``done``, its event ids counted up from 1
without a gap, and its text is a whole answer of the token upstream: exactly ``words``
words of its phrases (``bench.answer_prose.is_whole_answer``), and the same text as every other
stream of its contextId (one context, one
prompt, one deterministic answer).

The *added inter-token latency* of a stream is each gap between two consecutive ``delta``
events as the client saw them, minus the upstream's inter-token delay. The *plateau* is the time
when every stream was open at once: from the last stream's first delta to the first stream's
``done``.
"""

from __future__ import annotations

import itertools
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.answer_prose import is_whole_answer
from bench.latency_stats import summarise_ms


@dataclass(slots=True)
class StreamRecord:
    index: int
    context_id: str
    started_at: float | None = None  # before connecting (the first attempt, if refused)
    opened_at: float | None = None  # before connecting (the last attempt)
    status: int | None = None
    state: str | None = None  # meta.context.state
    outcome: str | None = None  # done, error:<code>, http_<status>, connection_lost, deadline, ...
    meta_at: float | None = None
    done_at: float | None = None
    ended_at: float | None = None
    delta_times: array[float] = field(default_factory=lambda: array("d"))
    parts: list[str] = field(default_factory=list)
    last_seq: int = 0
    seq_gaps: int = 0
    refusals: int = 0  # 503s answered with Retry-After (the service shedding load), retried
    retry_after_s: float = 0.0  # the last refusal's Retry-After

    def note_seq(self, seq: int) -> None:
        if seq != self.last_seq + 1:
            self.seq_gaps += 1
        self.last_seq = seq

    @property
    def text(self) -> str:
        return "".join(self.parts)


def consensus_texts(records: list[StreamRecord]) -> dict[str, str]:
    """The most common completed text per contextId."""
    texts: dict[str, Counter[str]] = {}
    for record in records:
        if record.outcome == "done":
            texts.setdefault(record.context_id, Counter())[record.text] += 1
    return {context: counts.most_common(1)[0][0] for context, counts in texts.items()}


def completed_streams(records: list[StreamRecord], words: int) -> tuple[int, int]:
    """(streams completed with the exact answer, streams that ended ``done`` with a wrong one)."""
    agreed = consensus_texts(records)
    good = wrong = 0
    for record in records:
        if record.outcome != "done":
            continue
        text = record.text
        if (
            record.seq_gaps == 0
            and is_whole_answer(text, words)
            and text == agreed[record.context_id]
        ):
            good += 1
        else:
            wrong += 1
    return good, wrong


def plateau_window(records: list[StreamRecord]) -> tuple[float, float] | None:
    """From the last stream's first delta to the first stream's done; None if they overlap."""
    firsts = [r.delta_times[0] for r in records if r.delta_times]
    dones = [r.done_at for r in records if r.done_at is not None]
    if not firsts or not dones or len(firsts) < len(records):
        return None
    start, end = max(firsts), min(dones)
    return (start, end) if end > start else None


def added_gaps(
    records: list[StreamRecord], inter_token_s: float, window: tuple[float, float] | None = None
) -> list[float]:
    gaps = []
    for record in records:
        times = record.delta_times
        for before, after in itertools.pairwise(times):
            if window is None or window[0] <= after <= window[1]:
                gaps.append(after - before - inter_token_s)
    return gaps


def peak_open(records: list[StreamRecord]) -> int:
    """The most streams the client had open at one instant."""
    edges = []
    for record in records:
        if record.opened_at is not None:
            edges.append((record.opened_at, 1))
            edges.append((record.ended_at or float("inf"), -1))
    edges.sort()
    open_now = peak = 0
    for _, change in edges:
        open_now += change
        peak = max(peak, open_now)
    return peak


def build_report(
    records: list[StreamRecord],
    *,
    words: int,
    inter_token_s: float,
    ramp_started: float,
    ramp_s: float,
) -> dict[str, Any]:
    good, wrong = completed_streams(records, words)
    window = plateau_window(records)
    return {
        "streams": len(records),
        "started": sum(1 for r in records if r.started_at is not None),
        "completed": good,
        "wrong_text": wrong,
        "outcomes": dict(Counter(r.outcome or "not_started" for r in records)),
        "states": dict(Counter(r.state or "none" for r in records)),
        "peak_open": peak_open(records),
        "deltas": sum(len(r.delta_times) for r in records),
        "ramp_started": ramp_started,
        "ramp_s": round(ramp_s, 2),
        "plateau": None if window is None else {"start": window[0], "end": window[1]},
        "plateau_s": None if window is None else round(window[1] - window[0], 2),
        "added_gap_all": summarise_ms(added_gaps(records, inter_token_s)),
        "added_gap_plateau": summarise_ms(added_gaps(records, inter_token_s, window))
        if window
        else {"count": 0},
        "ttft": summarise_ms(
            r.delta_times[0] - r.started_at
            for r in records
            if r.delta_times and r.started_at is not None
        ),
        "refusals": sum(r.refusals for r in records),
        "streams_refused": sum(1 for r in records if r.refusals),
        "time_to_meta": summarise_ms(
            r.meta_at - r.started_at
            for r in records
            if r.meta_at is not None and r.started_at is not None
        ),
    }
