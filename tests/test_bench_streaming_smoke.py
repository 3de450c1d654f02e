"""The streaming benchmarks end to end with tiny numbers: real processes, real invariants.

Both run the real service (uvicorn, sentence-transformers, embedded Chroma) in a child process
against the fault upstream in another; the store is ingested once, from the policies only.
Timing figures are checked for presence and plausibility, never against the goals.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import concurrency, ttft
from bench.service_process import SAMPLE_CATALOG, ingest_sample_catalog

pytestmark = pytest.mark.slow

STREAMS = 20


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("bench-store") / "chroma"
    ingest_sample_catalog(store, SAMPLE_CATALOG / "policies")
    return store


def test_ttft_measures_every_path_with_checked_answers(small_store: Path) -> None:
    result = ttft.run(requests=5, warmup=1, store=small_store, log=lambda _: None)

    assert {mode: len(samples) for mode, samples in result.samples.items()} == {
        "direct": 5,
        "fresh": 5,
        "refresh": 5,
    }
    # No path can beat the upstream's fixed first-token delay.
    first_token_s = ttft.FIRST_TOKEN_MS / 1000
    assert all(s.ttft_s >= first_token_s for samples in result.samples.values() for s in samples)
    # The service reports its own TTFT on every `done` event, at least the upstream's delay too.
    for mode in ("fresh", "refresh"):
        reported = [s.server_ttft_ms for s in result.samples[mode]]
        assert all(ms is not None and ms >= ttft.FIRST_TOKEN_MS - 1 for ms in reported)
    paths = result.data["paths"]
    assert paths["direct"]["overhead_vs_direct"] is None
    for mode in ("fresh", "refresh"):
        assert set(paths[mode]["overhead_vs_direct"]) == {"median_ms", "p90_ms", "p99_ms"}
        assert paths[mode]["ttft"]["count"] == 5
    assert set(result.goals) == {
        "fresh_overhead_median_at_most_5ms",
        "fresh_overhead_p99_at_most_15ms",
    }
    for label in ttft.LABELS.values():
        assert label in result.markdown


def test_concurrency_level_completes_every_stream_with_the_whole_answer(small_store: Path) -> None:
    result = concurrency.run(
        levels=(STREAMS,),
        plateau_s=1.0,
        admission_s=0.0,
        rate=100.0,
        store=small_store,
        log=lambda _: None,
    )

    [level] = result.levels
    words = level["words"]
    assert level["completed"] == STREAMS
    assert level["wrong_text"] == 0
    assert level["outcomes"] == {"done": STREAMS}
    assert level["states"] == {"fresh": STREAMS}  # warm-up made every context fresh
    assert level["peak_open"] == STREAMS
    # Every gap between two consecutive deltas of every stream was measured.
    assert level["added_gap_all"]["count"] == STREAMS * (words - 1)
    assert level["plateau_s"] is not None and level["plateau_s"] > 0
    # A token cannot arrive before the upstream sent it: gaps stay near 200 ms or above.
    assert level["added_gap_all"]["median_ms"] > -concurrency.INTER_TOKEN_MS / 2
    assert level["upstream_stats"]["requests"] == STREAMS + concurrency.CONTEXTS
    assert level["rss_idle_mb"] > 0 and isinstance(level["kb_per_stream"], float)
    assert set(level["cores"]) == {"service", "upstream", "client"}
    assert level["stopped_early"] is None and not level["clearly_failed"]
    assert f"| {STREAMS} | {STREAMS} |" in result.markdown
