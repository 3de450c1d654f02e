"""Opening Chroma: embedded (PersistentClient) by default, HttpClient against `chroma run`.

Also the one place that translates chromadb's (and its HTTP transport's) exceptions into
``VectorStoreUnavailable``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rag_service.errors import RagServiceError, VectorStoreUnavailable
from rag_service.settings import ChromaSettings


def describe(settings: ChromaSettings) -> str:
    if settings.host:
        return f"chroma server http://{settings.host}:{settings.port}"
    return f"embedded chroma at {settings.path}"


def store_lock_path(settings: ChromaSettings, configured: Path | None) -> Path:
    """Where the ingest/owner lock lives: beside the embedded store, or as configured."""
    if configured is not None:
        return configured
    if settings.host:
        return Path("var") / f"ingest-{settings.host}-{settings.port}-{settings.collection}.lock"
    return settings.path.with_name(settings.path.name + ".lock")


@contextmanager
def chroma_errors(operation: str) -> Iterator[None]:
    """Translate any chromadb / transport failure during ``operation``."""
    try:
        yield
    except RagServiceError:
        raise
    except Exception as exc:  # chromadb raises a wide, undocumented set of types
        raise VectorStoreUnavailable(f"vector store failed to {operation}: {exc}") from exc


def open_chroma_client(settings: ChromaSettings) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaClientSettings

    client_settings = ChromaClientSettings(anonymized_telemetry=False, allow_reset=False)
    with chroma_errors(f"connect to {describe(settings)}"):
        if settings.host:
            client = chromadb.HttpClient(
                host=settings.host, port=settings.port, settings=client_settings
            )
            client.heartbeat()
            return client
        settings.path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.path), settings=client_settings)
