"""Process-wide tuning of a serving process, which ``create_app`` applies only when its caller
asks (``create_app(..., process_tuning=serving_gc)``): ``rag-service serve``, its workers and
the benchmarks' service do; tests that build many apps in one process do not.

Why the garbage collector:

- torch, transformers and chromadb leave ~500k long-lived objects; without freezing them every
  full collection walks them all and stalls the event loop ~250 ms;
- each streamed token allocates a dozen short-lived containers (parsed JSON, the event, the
  ASGI message). With Python's default of 700, a young collection ran every ~50 tokens and
  walked the objects of every open stream that had not aged yet: 10 % of the service's CPU at
  3,000 streams (docs/benchmarks.md). Most of those containers are freed by reference counting
  long before.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["YOUNG_GC_THRESHOLD", "serving_gc"]

YOUNG_GC_THRESHOLD = 50_000


@contextmanager
def serving_gc() -> Iterator[None]:
    """Freeze what the start-up left (collected first) and collect the youngest generation
    every ``YOUNG_GC_THRESHOLD`` allocations while the block runs; the threshold is restored
    after it (the frozen objects stay frozen: they live as long as the process)."""
    gc.collect()
    gc.freeze()
    previous = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
