"""The markdown of the concurrency benchmark's results (``bench.concurrency``) for the docs."""

from __future__ import annotations

from typing import Any

ROUTE_LABELS = {"rag": "`/rag/stream`", "v1": "`/v1/chat/completions`"}


def render_markdown(
    levels: list[dict[str, Any]],
    goals: dict[str, bool | None],
    notes: list[str],
    *,
    goal_streams: int,
) -> str:
    """The table of ``levels`` (``bench.concurrency.run_level``'s reports), goals and notes."""
    lines = [
        "| route | streams | completed | added inter-token latency p50 / p99 / max (ms) "
        "| p99 in plateau (ms) | TTFT p50 / p99 (ms) | service loop lag p99 / max (ms) "
        "| service RSS idle → plateau (MB) | KB per stream "
        "| CPU cores service / upstream / client | service CPU µs per delta |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lvl in levels:
        gap, plateau = lvl["added_gap_all"], lvl["added_gap_plateau"]
        cores = lvl["cores"]
        lag = lvl.get("service_stats", {}).get("loop_lag", {})
        ttft = lvl["ttft"]
        lines.append(
            f"| {_label(lvl)} | {lvl['streams']:,} "
            f"| {_completed(lvl)} "
            f"| {gap.get('median_ms', '-')} / {gap.get('p99_ms', '-')} / {gap.get('max_ms', '-')} "
            f"| {plateau.get('p99_ms', '-')} | {ttft.get('median_ms', '-')} / {ttft.get('p99_ms', '-')} "
            f"| {lag.get('p99_ms', '-')} / {lag.get('max_ms', '-')} "
            f"| {lvl['rss_idle_mb']} → {lvl['rss_plateau_mb']} | {_kb(lvl)} "
            f"| {cores['service']} / {cores['upstream']} / {cores['client']} "
            f"| {lvl['service_us_per_delta']} |"
        )
    for lvl in levels:
        if lvl["clearly_failed"]:
            lines.append("")
            lines.append(f"{lvl['route']} at {lvl['streams']:,} streams: {_failure_text(lvl)}.")
    lines += ["", f"Goals at {goal_streams:,} streams: {_goal_text(goals)}", ""]
    lines.append(
        "Memory per stream is reported, with no goal: (median service VmRSS over the plateau − "
        "idle VmRSS) / streams."
    )
    lines.append("")
    lines += [f"- {note}" for note in notes]
    loads = ", ".join(
        f"{_name(lvl)}: {lvl['load_avg_1m'][0]} → {lvl['load_avg_1m'][1]}" for lvl in levels
    )
    lines.append(f"- 1-minute load average at each level's start → end: {loads}.")
    upstream = ", ".join(f"{_name(lvl)}: {lvl['upstream_us_per_delta']}" for lvl in levels)
    lines.append(f"- upstream CPU µs per delta delivered (whole run): {upstream}.")
    lines.append(
        "- (after a 503): streams the service first refused because its event loop was behind "
        "(load shedding, docs/streaming.md), retried by the client after `Retry-After`; their "
        "TTFT counts from the first attempt."
    )
    lines.append(
        "- (est.): a level without a plateau (not every stream open at once) has no real "
        "per-stream figure; shown is (peak RSS - idle) / most streams open at once."
    )
    return "\n".join(lines)


def _name(level: dict[str, Any]) -> str:
    workers = f" x{level['workers']}" if level.get("workers") else ""
    return f"{level['route']} {level['streams']:,}{workers}"


def _label(level: dict[str, Any]) -> str:
    """The route, and with ``--workers`` the service's worker processes."""
    route = ROUTE_LABELS.get(level["route"], level["route"])
    workers = level.get("workers")
    return f"{route}, {workers} worker{'s' if workers > 1 else ''}" if workers else route


def _completed(level: dict[str, Any]) -> str:
    refused = level.get("streams_refused", 0)
    after = f" ({refused:,} after a 503)" if refused else ""
    return f"{level['completed']:,}{after}"


def _kb(level: dict[str, Any]) -> str:
    return str(level["kb_per_stream"]) + ("" if level["plateau"] else " (est.)")


def _failure_text(level: dict[str, Any]) -> str:
    if level["stopped_early"]:
        return f"stopped early, {level['stopped_early']}; {level['completed']:,} completed"
    lost = level["streams"] - level["completed"]
    if lost:
        return f"{lost:,} streams did not complete ({level['outcomes']})"
    return "p99 added latency above 1 s"


def _goal_text(goals: dict[str, bool | None]) -> str:
    verdicts = {True: "met", False: "MISSED", None: "not measured (no level of that size)"}
    return ", ".join(f"{name} {verdicts[met]}" for name, met in goals.items())


def run_notes(
    connect_delay_ms: float,
    inter_token_ms: float,
    ramp_rate: float,
    admission_allowance_s: float,
    contexts: int,
) -> list[str]:
    """The notes under the table: how the run was made."""
    notes = [
        "the load client, the upstream and the service (and the proxy, when on) share the "
        "machine's 2 cores: they compete for CPU, so the CPU column shows who used what.",
        f"upstream (`bench/token_upstream.py`): first token after {inter_token_ms:g} ms (up "
        f"to 1 ms later), then 1 token per {inter_token_ms:g} ms per stream, from one 1 ms "
        "ticker for all streams over keep-alive connections, the chunked terminator 2 ms after "
        f"`[DONE]` in a write of its own; streams opened at {ramp_rate:g}/s; answers long "
        "enough that every stream of a level is open at once for the plateau, even if the last "
        f"ones waited up to {admission_allowance_s:g} s to be admitted.",
        f"every measured stream is served from the freshness cache (state `fresh`, {contexts} "
        "contextIds each asked once before): retrieval cost is not measured here.",
        "`/v1/chat/completions` is read as the `openai` SDK would (`data:` chunks, text in "
        "`delta.content`, `[DONE]`); `/rag/stream` as native events.",
        "RAG_UPSTREAM__MAX_CONNECTIONS is set to streams + 110 per level, so the upstream pool "
        "never makes a stream wait.",
        "service: `server_config` of `rag-service serve` (uvicorn, uvloop + httptools), access "
        "log off (rag-service serve has it on).",
    ]
    if connect_delay_ms:
        notes.append(
            f"every new upstream connection of the service cost {connect_delay_ms:g} ms (the "
            "delaying proxy, `bench/connect_delay_proxy.py`)."
        )
    return notes
