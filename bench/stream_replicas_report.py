"""The tables of ``bench.stream_replicas`` (``StreamReplicasResult.markdown``), from its data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class StreamReplicasResult:
    data: dict[str, Any]

    @property
    def markdown(self) -> str:
        shape, gen, mem, res = (self.data[k] for k in ("shape", "generating", "memory", "resume"))
        durable = sum(1 for row in gen if row["durable"])
        default_tick = next(
            row["flush_ms"] for row in gen if row["flush_ms"] and not row["durable"]
        )
        passes = (
            "one run per mode"
            if shape["passes"] == 1
            else f"{shape['passes']} runs per mode in turn"
        )
        lines = [
            f"Generating side: {shape['streams']} streams x {shape['tokens']} deltas at "
            f"{shape['rate']:g} tokens/s each, one reader per stream, {passes}; without Redis, "
            f"copied to Redis with durable delivery at {durable} flush ticks, and without it at "
            f"{default_tick:g} ms (the default tick). Delay from a delta's append to its "
            "reader reading it, for all deltas and for each stream's first (it comes "
            f"{self.data['first_token_s'] * 1000:g} ms after the stream's `meta`)"
            + ("; the service's CPU of each run in brackets:" if shape["passes"] > 1 else ":"),
            "",
            "| mode | delta p50 ms | delta p99 ms | first delta p50 ms | first delta p99 ms "
            "| service CPU µs/delta | redis-server CPU µs/delta | Redis calls/delta "
            "| round trips/s | script ms/flush |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in gen:
            delta, first = row["delta_to_reader"], row["first_delta_to_reader"]
            lines.append(
                f"| {row['mode']} | {delta['median_ms']} | {delta['p99_ms']} "
                f"| {first['median_ms']} | {first['p99_ms']} "
                f"| {service_cpu(row)} | {row['redis_cpu_us_per_delta']} "
                f"| {row['redis_calls_per_delta']} | {row.get('round_trips_per_s', '-')} "
                f"| {row.get('script_ms_per_flush', '-')} |"
            )
        ping, load = self.data["ping"], self.data["load_average"]
        lines += [
            "",
            "Script ms/flush: redis-server's time in one flush's script call (mean), during "
            "which it answers no other command.",
            "",
            f"A PING round trip to this redis-server, before the runs: {ping['median_ms']} ms "
            f"(median; p99 {ping['p99_ms']} ms). Load average (1 min) of the machine's "
            f"{self.data['cpus']} CPUs: {load['before']:.1f} before the runs, "
            f"{load['after']:.1f} after.",
            "",
            f"One answer in Redis ({mem['tokens']} deltas, meta with 5 sources, done; its "
            f"request, a {mem['system_message_chars']:,}-character system message and the "
            f"question, is {mem['request_chars']:,} characters of JSON): events key "
            f"{mem['events_key_bytes']:,} B; record {mem['running_record_key_bytes']:,} B "
            f"while it runs (with the request, for a take-over), "
            f"{mem['record_key_bytes']:,} B once ended; "
            f"{mem['running_stream_bytes']:,} B per running stream, "
            f"{mem['stream_bytes']:,} B per ended one (its replay buffer in the process: "
            f"{mem['replay_buffer_bytes']:,} B).",
            "",
            f"Resume from the middle of a finished {shape['tokens']}-delta stream, request "
            f"to first replayed event ({res['resumes']} streams):",
            "",
            "| served by | median ms | p90 ms |",
            "|---|---:|---:|",
            f"| the generating replica | {res['same_replica_median_ms']} "
            f"| {res['same_replica_p90_ms']} |",
            f"| another replica (copy made from Redis) | {res['other_replica_median_ms']} "
            f"| {res['other_replica_p90_ms']} |",
        ]
        return "\n".join(lines)


def service_cpu(row: dict[str, Any]) -> str:
    """The service's CPU per delta, and each pass's when there were several: how much the
    figure moves from run to run on a shared machine."""
    passes = row["service_cpu_us_per_delta_passes"]
    each = f" ({' / '.join(map(str, passes))})" if len(passes) > 1 else ""
    return f"{row['service_cpu_us_per_delta']}{each}"
