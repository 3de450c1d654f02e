"""Smoke test of ``bench.stream_replicas`` with tiny numbers: it runs on its own redis-server,
measures every mode, and reports what it claims. Structure and counts only, never timings."""

from __future__ import annotations

import json

from bench.stream_replicas import DEFAULT_FLUSH_MS, FLUSH_TICKS_MS, Shape, modes, run
from bench.stream_replicas_setup import chat_request
from rag_service.adapters.redis_stream_store import request_json
from rag_service.retrieval.prompt import CONTEXT_CLOSE, CONTEXT_OPEN
from rag_service.settings import RetrievalSettings

TINY = Shape(streams=4, tokens=12, rate=100.0, resumes=3, arrival_s=0.05, passes=2)


def test_the_request_is_the_service_s_prompt_at_the_default_context_budget() -> None:
    system, question = chat_request().messages
    assert (system.role, question.role) == ("system", "user")
    # The instructions name the delimiters too: the block is between the last two.
    context = system.content.rsplit(CONTEXT_OPEN, 1)[1].rsplit(CONTEXT_CLOSE, 1)[0].strip()
    budget = RetrievalSettings().context_char_budget
    assert budget * 0.8 < len(context) <= budget  # nearly filled, as by real passages


def test_stream_replicas_bench_measures_every_mode_memory_and_resumes() -> None:
    result = run(shape=TINY)

    data = json.loads(json.dumps(result.data))
    rows = data["generating"]
    assert [row["mode"] for row in rows] == [mode.label for mode in modes()]
    assert [row["flush_ms"] for row in rows] == [None, *FLUSH_TICKS_MS, DEFAULT_FLUSH_MS]
    assert [row["durable"] for row in rows] == [False, True, True, True, True, False]
    deltas = TINY.passes * TINY.streams * TINY.tokens
    for row in rows:
        assert (row["passes"], row["deltas"]) == (TINY.passes, deltas)
        assert row["delta_to_reader"]["count"] == deltas
        assert row["first_delta_to_reader"]["count"] == TINY.passes * TINY.streams
        assert row["meta_to_reader"]["count"] == TINY.passes * TINY.streams
        assert len(row["service_cpu_us_per_delta_passes"]) == TINY.passes
        assert row["delta_to_reader"]["median_ms"] <= row["delta_to_reader"]["p99_ms"]
        assert ("round_trips_per_s" in row) is (row["flush_ms"] is not None)
    for row in rows[1:]:
        assert row["round_trips_per_s"] > 0
        assert row["redis_calls_per_delta"] > 1  # an XADD per delta, plus the records
        assert row["script_ms_per_flush"] > 0

    memory = data["memory"]
    assert memory["request_chars"] == len(request_json(chat_request()))
    assert memory["running_record_key_bytes"] > memory["request_chars"]  # kept while it runs
    assert memory["record_key_bytes"] < memory["request_chars"]  # dropped at the end
    assert memory["stream_bytes"] == memory["events_key_bytes"] + memory["record_key_bytes"]
    assert data["resume"]["resumes"] == TINY.resumes
    assert data["ping"]["count"] > 0

    table = result.markdown.splitlines()
    header = table.index(next(line for line in table if line.startswith("| mode |")))
    assert [line.split(" | ")[0] for line in table[header + 2 : header + 2 + len(rows)]] == [
        f"| {row['mode']}" for row in rows
    ]
    assert any(line.startswith("| another replica (copy made from Redis) |") for line in table)
