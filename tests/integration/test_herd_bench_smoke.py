"""The herd benchmark end to end with tiny numbers: structure, and that our client holds back."""

from __future__ import annotations

import pytest

from bench.herd import render_table, run_herd

pytestmark = pytest.mark.slow

STREAMS = 20
# Long enough for the fixed-interval client to retry at least twice inside the outage.
OUTAGE_S = 2.5


async def test_quick_herd_run_reports_every_strategy_and_ours_sends_fewer_outage_requests() -> None:
    result = await run_herd(STREAMS, OUTAGE_S, settle_s=20.0, strategies=("ours", "fixed"))

    runs = {run["strategy"]: run for run in result["runs"]}
    assert set(runs) == {"ours", "fixed"}
    for run in runs.values():
        assert run["completed"] + run["never_completed"] == STREAMS
        assert run["wrong_text"] == 0
        assert run["outage_requests"] >= STREAMS  # every stream's first attempt hit the outage
        assert sum(run["requests_per_second"]) == (
            run["outage_requests"] + run["requests_after_recovery"]
        )
    # A fixed 1 s retry sends a request per stream per second of outage, three rounds here.
    assert 2 * STREAMS < runs["fixed"]["outage_requests"] <= 3 * STREAMS
    assert runs["fixed"]["completed"] == STREAMS
    assert runs["ours"]["outage_requests"] < runs["fixed"]["outage_requests"]
    assert runs["ours"]["completed"] == STREAMS
    assert 0 < result["ours_to_fixed_outage_ratio"] < 1
    assert set(result["goals"]) == {"ratio_at_most_5_percent", "all_complete_within_10s"}
    assert "| ours |" in render_table(result)
