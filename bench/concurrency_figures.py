"""Figures of one concurrency-benchmark level (``bench.concurrency``): memory and CPU per stream
from the service's samples, and the level's verdict."""

from __future__ import annotations

import statistics
from typing import Any

from bench.service_process import ProcessSampler


def memory_figures(
    report: dict[str, Any],
    sampler: ProcessSampler,
    idle_kb: float,
    streams: int,
    inter_token_ms: float,
) -> dict[str, Any]:
    """Memory per stream over the plateau; without one (a failed level), at the RSS peak and per
    stream the client had open at most, which is only an estimate."""
    window = report.get("plateau")
    during = sampler.rss_between(window["start"], window["end"]) if window else []
    peak_kb = max(rss for _, rss, _ in sampler.samples)
    if during:
        plateau_kb, held, measured = statistics.median(during), streams, "plateau median"
    else:
        held = max(1, report["peak_open"])
        plateau_kb, measured = peak_kb, f"peak RSS / {held} streams open at most (no plateau)"
    cores = sampler.cores_between(window["start"], window["end"]) if window else None
    return {
        "rss_idle_mb": round(idle_kb / 1024, 1),
        "rss_plateau_mb": round(plateau_kb / 1024, 1),
        "rss_peak_mb": round(peak_kb / 1024, 1),
        "rss_measured_at": measured,
        "kb_per_stream": round((plateau_kb - idle_kb) / held, 2),
        "service_cores_plateau": None if cores is None else round(cores, 2),
        # CPU per delivered token while every stream was open (one token per inter_token_ms).
        "service_us_per_token_plateau": None
        if cores is None
        else round(cores / (streams * 1000 / inter_token_ms) * 1e6, 1),
    }


def judge(
    level: dict[str, Any], streams: int, words: int, goal_p99_ms: float, failed_p99_ms: float
) -> dict[str, Any]:
    """``level`` with its verdicts: all completed, the latency goal met, clearly failed."""
    p99 = level["added_gap_all"].get("p99_ms")
    level["words"] = words
    level["all_completed"] = level["completed"] == streams
    level["latency_met"] = level["all_completed"] and p99 is not None and p99 <= goal_p99_ms
    level["clearly_failed"] = (
        bool(level["stopped_early"])
        or not level["all_completed"]
        or p99 is None
        or p99 > failed_p99_ms
    )
    return level
