"""The ingest composed from settings: which adapters serve the ingest's ports.

``ingest/`` knows only the ports (``CatalogWriter``, ``Embedder``); this module picks the
adapters for them (Chroma, the sentence-transformers model), the lock file that keeps ingests
one at a time, and the Redis channel that tells running replicas of a new catalog version. The
CLI's ``ingest`` and ``catalog`` commands use it, ``rag_service.app`` (the composition root of
the service) takes its lock for admin ingests, and tests call it as a library.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ingest import IngestPipeline, IngestReport, ProgressCallback, choose_catalog_root
from rag_service.adapters.chroma_client import store_lock_path
from rag_service.adapters.chroma_store import ChromaStore
from rag_service.adapters.redis_catalog_channel import announce_catalog_version
from rag_service.adapters.sentence_transformer_embedder import SentenceTransformerEmbedder
from rag_service.adapters.store_lock import StoreLock
from rag_service.domain import CatalogInfo
from rag_service.ports import Embedder
from rag_service.settings import Settings


def ingest_lock(settings: Settings) -> StoreLock:
    """The lock that makes ingests exclusive (and, embedded, owns the store while it runs)."""
    return StoreLock(store_lock_path(settings.chroma, settings.ingest.lock_file), purpose="ingest")


def ingest_catalog(
    settings: Settings,
    paths: Sequence[Path],
    *,
    strict: bool = False,
    dry_run: bool = False,
    append: bool = False,
    confirm_deletions: bool = False,
    progress: ProgressCallback | None = None,
    embedder: Embedder | None = None,
) -> IngestReport:
    """Ingest ``paths`` into the configured store; raises IngestInProgress / StoreInUse when
    another process holds the lock, CatalogFormatError (strict) or InvalidInput on bad input,
    DeletionNotConfirmed when a sync would delete too much without ``confirm_deletions``.

    The catalog root is ``RAG_INGEST__CATALOG_DIR`` when the paths lie in it, else the deepest
    folder holding them (``choose_catalog_root``). With ``RAG_REDIS__URL``, a published version
    is announced to the running replicas (a Redis that is down is logged, not fatal). Call it
    where no event loop runs."""
    with ingest_lock(settings):
        store = ChromaStore.open(settings.chroma)
        pipeline = IngestPipeline(
            store,
            embedder or SentenceTransformerEmbedder(settings.embedding),
            settings.ingest,
        )
        report = pipeline.run(
            paths,
            strict=strict,
            dry_run=dry_run,
            append=append,
            confirm_deletions=confirm_deletions,
            base_dir=choose_catalog_root(paths, settings.ingest.catalog_dir),
            progress=progress,
        )
    if report.published and settings.redis.url is not None:
        # Running replicas adopt the new version on this message, not at their next check.
        announce_catalog_version(settings.redis, report.version_after)
    return report


def read_catalog(settings: Settings) -> CatalogInfo:
    """The live catalog's version and counts (takes the lock briefly for embedded stores)."""
    if settings.chroma.host:
        return ChromaStore.open(settings.chroma).catalog_info()
    with StoreLock(store_lock_path(settings.chroma, settings.ingest.lock_file), purpose="catalog"):
        return ChromaStore.open(settings.chroma).catalog_info()
