"""Where an ingest's time goes, measured at the pipeline's ports (no change to the pipeline).

``TimedEmbedder`` and ``TimedStore`` wrap the real embedder and store and add up the seconds
spent in every port call; ``PhaseClock`` turns the pipeline's progress callbacks into phase
boundaries. The wrappers cost a ``perf_counter`` pair per call (a few hundred calls per run).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Generic, TypeVar

from rag_service.domain import LiveRecord, LiveState, NewRecord, Vector
from rag_service.ports import CatalogWriter, Embedder, RecordWriter

Port = TypeVar("Port")


class Timings:
    """Seconds and calls per operation name; safe to use from the pipeline's writer thread."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
                self.calls[name] = self.calls.get(name, 0) + 1


class _TimedPort(Generic[Port]):
    """What each wrapper holds: the port it wraps and the timings it adds its calls to."""

    def __init__(self, inner: Port, timings: Timings) -> None:
        self._inner = inner
        self._timings = timings


class TimedEmbedder(_TimedPort[Embedder]):
    """The Embedder port, timing every ``embed`` call of the wrapped embedder."""

    @property
    def dimension(self) -> int:
        return self._inner.dimension

    @property
    def model_name(self) -> str:
        return self._inner.model_name

    def load(self) -> None:
        self._inner.load()

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        with self._timings.measure("embed"):
            return self._inner.embed(texts)


class TimedRecords(_TimedPort[RecordWriter]):
    """A RecordWriter timing every call; ``stage`` runs in the pipeline's writer thread."""

    @property
    def name(self) -> str:
        return self._inner.name

    def live_records(self, version: int) -> dict[str, LiveRecord]:
        with self._timings.measure("live_records"):
            return self._inner.live_records(version)

    def embeddings_of(self, record_ids: Sequence[str]) -> dict[str, Vector]:
        with self._timings.measure("embeddings_of"):
            return self._inner.embeddings_of(record_ids)

    def recover(self, live_version: int) -> int:
        with self._timings.measure("recover"):
            return self._inner.recover(live_version)

    def stage(self, version: int, records: Sequence[NewRecord]) -> None:
        with self._timings.measure("stage"):
            self._inner.stage(version, records)

    def retire(self, version: int, record_ids: Sequence[str]) -> None:
        with self._timings.measure("retire"):
            self._inner.retire(version, record_ids)

    def collect_garbage(self, live_version: int) -> int:
        with self._timings.measure("collect_garbage"):
            return self._inner.collect_garbage(live_version)


class TimedStore(_TimedPort[CatalogWriter]):
    """A CatalogWriter timing every call and handing out timed record collections."""

    def __init__(self, inner: CatalogWriter, timings: Timings) -> None:
        super().__init__(inner, timings)
        self._records: dict[str, TimedRecords] = {}

    def live_state(self) -> LiveState:
        with self._timings.measure("live_state"):
            return self._inner.live_state()

    def records(self, name: str) -> TimedRecords:
        if name not in self._records:
            with self._timings.measure("open_collection"):
                self._records[name] = TimedRecords(self._inner.records(name), self._timings)
        return self._records[name]

    def new_collection_name(self, version: int) -> str:
        return self._inner.new_collection_name(version)

    def publish(self, state: LiveState) -> None:
        with self._timings.measure("publish"):
            self._inner.publish(state)

    def drop_unused_collections(self, keep: set[str]) -> list[str]:
        with self._timings.measure("drop_unused_collections"):
            return self._inner.drop_unused_collections(keep)


class PhaseClock:
    """The pipeline's progress callback: remembers when each phase was last reported."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.last_seen: dict[str, float] = {}
        self.first_seen: dict[str, float] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.perf_counter()
        self.first_seen.setdefault(phase, now)
        self.last_seen[phase] = now

    def phases(self, finished: float) -> dict[str, float]:
        """Seconds per phase: load+chunk, plan, embed loop, and the tail (retire/publish/GC).

        Phases a run skipped (nothing to embed) are left out; the tail then starts at the plan.
        """
        marks = [("load_and_chunk", "load"), ("plan", "plan"), ("embed_loop", "embed")]
        result: dict[str, float] = {}
        previous = self.started
        for label, phase in marks:
            if phase in self.last_seen:
                result[label] = self.last_seen[phase] - previous
                previous = self.last_seen[phase]
        result["after_last_batch"] = finished - previous
        return result


def padded_positions(
    texts: Sequence[str], token_counts: Sequence[int], *, call_size: int, batch_size: int
) -> int:
    """Token positions the model computes when ``texts`` are encoded ``call_size`` at a time.

    Within one ``encode`` call sentence-transformers sorts texts by character length (longest
    first) and pads each batch of ``batch_size`` to its longest text; on CPU every padded
    position costs as much as a real token. The pipeline calls ``embed`` once per batch, so its
    batches keep catalog order; one call over all texts gets length-sorted batches.
    """
    computed = 0
    for start in range(0, len(texts), call_size):
        group = range(start, min(start + call_size, len(texts)))
        ordered = sorted(group, key=lambda i: -len(texts[i]))
        for first in range(0, len(ordered), batch_size):
            batch = ordered[first : first + batch_size]
            computed += len(batch) * max(token_counts[i] for i in batch)
    return computed
