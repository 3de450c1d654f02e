"""The measurements of the ingest benchmark, each meant to run alone in a fresh process.

``run_child(kind, ...)`` is what ``python -m bench.ingest_bench --child KIND`` runs: it loads
the shipped embedding model the way the service does, warms it up, and only then starts the
clock. ``InProcess`` runs the same measurements in the calling process (tests, fake embedders);
its peak memory is then not per run and is reported as ``None``.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.ingest_timing import (
    PhaseClock,
    TimedEmbedder,
    TimedStore,
    Timings,
    padded_positions,
)
from ingest.chunking import chunk_documents
from ingest.loaders import load_catalog
from ingest.pipeline import IngestPipeline
from rag_service.adapters.chroma_store import ChromaStore
from rag_service.adapters.sentence_transformer_embedder import (
    SentenceTransformerEmbedder,
    resolve_model_location,
)
from rag_service.ports import Embedder
from rag_service.settings import ChromaSettings, EmbeddingSettings, IngestSettings

CHILD_KINDS = ("ingest", "encode")
COLLECTION = "bench"
# Warm-up: torch allocates and picks kernels on its first calls; no clock runs during these.
WARM_UP_TEXTS = ["Warm-up text for the embedding model, about as long as a product. " * 8] * 16

Encode = Callable[[list[str]], object]


@dataclass
class IngestRun:
    seconds: float
    documents: int
    chunks_embedded: int
    chunks_reused: int
    published: bool
    cpu_seconds: float = 0.0  # user + system, all threads (the writer thread included)
    peak_rss_mb: float | None = None  # ru_maxrss of the child: model + ingest
    model_rss_mb: float | None = None  # ru_maxrss once the model was loaded and warmed up
    phases: dict[str, float] = field(default_factory=dict)
    port_seconds: dict[str, float] = field(default_factory=dict)
    port_calls: dict[str, int] = field(default_factory=dict)
    load_average: list[float] = field(default_factory=list)  # 1-minute load before, after


@dataclass
class EncodeRun:
    seconds: float
    texts: int
    batch_size: int
    cpu_seconds: float = 0.0
    # Token positions computed: real tokens, and with padding as each caller batches them
    padding: dict[str, int] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    model_rss_mb: float | None = None
    load_average: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class BenchSettings:
    """The shipped defaults (not the caller's RAG_* environment or .env), a private store."""

    chroma: ChromaSettings
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)


def bench_settings(store: Path | None = None) -> BenchSettings:
    return BenchSettings(ChromaSettings(path=store or Path("unused"), collection=COLLECTION))


def measure_ingest(catalog: Path, store: Path, embedder: Embedder) -> IngestRun:
    """One ``IngestPipeline.run`` of ``catalog`` into the embedded store at ``store``."""
    settings = bench_settings(store)
    timings = Timings()
    timed_store = TimedStore(ChromaStore.open(settings.chroma), timings)
    pipeline = IngestPipeline(
        timed_store,
        TimedEmbedder(embedder, timings),
        settings.ingest,
    )
    load_before, cpu_before = os.getloadavg()[0], _cpu_seconds()
    clock = PhaseClock()
    report = pipeline.run([catalog], progress=clock)
    finished = time.perf_counter()
    return IngestRun(
        seconds=finished - clock.started,
        cpu_seconds=round(_cpu_seconds() - cpu_before, 3),
        documents=report.documents,
        chunks_embedded=report.chunks_embedded,
        chunks_reused=report.chunks_reused,
        published=report.published,
        phases=_rounded(clock.phases(finished)),
        port_seconds=_rounded(timings.seconds),
        port_calls=dict(timings.calls),
        load_average=[load_before, os.getloadavg()[0]],
    )


def chunk_texts(catalog: Path) -> list[str]:
    """The texts the pipeline embeds on a first ingest of ``catalog``, in its order."""
    settings = bench_settings().ingest
    loaded = load_catalog([catalog], base_dir=catalog)
    chunks = chunk_documents(
        loaded.documents,
        max_chars=settings.chunk_chars,
        overlap_chars=settings.chunk_overlap_chars,
    )
    return [chunk.text for chunk in chunks]


def measure_encode(texts: list[str], encode: Encode, batch_size: int) -> EncodeRun:
    load_before, cpu_before = os.getloadavg()[0], _cpu_seconds()
    started = time.perf_counter()
    encode(texts)
    seconds = time.perf_counter() - started
    return EncodeRun(
        seconds=seconds,
        cpu_seconds=round(_cpu_seconds() - cpu_before, 3),
        texts=len(texts),
        batch_size=batch_size,
        load_average=[load_before, os.getloadavg()[0]],
    )


class InProcess:
    """The measurements in this process, with any Embedder and any bare ``encode``."""

    def __init__(self, embedder: Embedder, encode: Encode) -> None:
        self._embedder = embedder
        self._encode = encode

    def ingest(self, catalog: Path, store: Path) -> IngestRun:
        return measure_ingest(catalog, store, self._embedder)

    def encode(self, catalog: Path) -> EncodeRun:
        batch_size = bench_settings().embedding.batch_size
        return measure_encode(chunk_texts(catalog), self._encode, batch_size)


def run_child(kind: str, catalog: Path, store: Path | None) -> dict[str, Any]:
    """One measurement with the real model; the JSON-ready fields of its run."""
    if kind == "ingest":
        if store is None:
            raise ValueError("--child ingest needs --store")
        return vars(_ingest_child(catalog, store))
    return vars(_encode_child(catalog))


def _ingest_child(catalog: Path, store: Path) -> IngestRun:
    embedder = SentenceTransformerEmbedder(bench_settings(store).embedding)
    embedder.embed(WARM_UP_TEXTS)  # loads the model, then warms it up
    model_rss = _peak_rss_mb()
    run = measure_ingest(catalog, store, embedder)
    run.model_rss_mb, run.peak_rss_mb = model_rss, _peak_rss_mb()
    return run


def _encode_child(catalog: Path) -> EncodeRun:
    settings = bench_settings()
    texts = chunk_texts(catalog)
    model = _load_model(settings.embedding)
    encode = _bare_encode(model, settings.embedding.batch_size)
    encode(WARM_UP_TEXTS)
    model_rss = _peak_rss_mb()
    run = measure_encode(texts, encode, settings.embedding.batch_size)
    run.model_rss_mb, run.peak_rss_mb = model_rss, _peak_rss_mb()
    run.padding = _padding(model, texts, settings.embedding.batch_size)  # after the peak: lists
    return run


def _load_model(options: EmbeddingSettings) -> Any:
    """The model the embedder adapter loads, loaded the same way."""
    from sentence_transformers import SentenceTransformer

    location = resolve_model_location(options.model)
    return SentenceTransformer(location, device=options.device, local_files_only=True)


def _bare_encode(model: Any, batch_size: int) -> Encode:
    """``SentenceTransformer.encode`` with the adapter's arguments, minus the adapter."""

    def encode(texts: list[str]) -> object:
        return model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    return encode


def _padding(model: Any, texts: list[str], batch_size: int) -> dict[str, int]:
    """Real tokens, and token positions computed by the bare encode (one call over all texts),
    by the pipeline (length-sorted texts, one call per pipeline batch), and by calls of
    ``batch_size`` texts in catalog order (how the pipeline batched before it sorted)."""
    counts: list[int] = []
    for start in range(0, len(texts), 1000):
        ids = model.tokenizer(
            texts[start : start + 1000], truncation=True, max_length=model.max_seq_length
        )["input_ids"]
        counts += [len(one) for one in ids]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    by_length = ([texts[i] for i in order], [counts[i] for i in order])
    pipeline_batch = IngestPipeline.DEFAULT_BATCH_TEXTS
    return {
        "tokens": sum(counts),
        "one_call": padded_positions(
            texts, counts, call_size=max(len(texts), 1), batch_size=batch_size
        ),
        "pipeline": padded_positions(*by_length, call_size=pipeline_batch, batch_size=batch_size),
        "catalog_order": padded_positions(
            texts, counts, call_size=batch_size, batch_size=batch_size
        ),
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> float:
    """This process's RSS high-water mark (Linux reports kilobytes)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {name: round(seconds, 4) for name, seconds in sorted(values.items())}
