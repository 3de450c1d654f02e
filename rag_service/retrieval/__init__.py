"""Retrieval, the freshness cache of retrieved contexts, and prompt assembly."""

from rag_service.retrieval.catalog_channel import InProcessCatalogChannel
from rag_service.retrieval.catalog_snapshot import SnapshotStats
from rag_service.retrieval.freshness import ContextService, ContextStats
from rag_service.retrieval.hybrid import DenseSearch, HybridSearch, PassageFinder, passage_finder
from rag_service.retrieval.prompt import ChatRequestBuilder, build_chat_request, prompt_passages
from rag_service.retrieval.retriever import Retriever
from rag_service.retrieval.shared_contexts import InProcessContextStore, SharedEntries

__all__ = [
    "ChatRequestBuilder",
    "ContextService",
    "ContextStats",
    "DenseSearch",
    "HybridSearch",
    "InProcessCatalogChannel",
    "InProcessContextStore",
    "PassageFinder",
    "Retriever",
    "SharedEntries",
    "SnapshotStats",
    "build_chat_request",
    "passage_finder",
    "prompt_passages",
]
