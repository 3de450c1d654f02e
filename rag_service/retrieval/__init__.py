"""Retrieval, the freshness cache of retrieved contexts, and prompt assembly."""

from rag_service.retrieval.freshness import ContextService, ContextStats
from rag_service.retrieval.hybrid import DenseSearch, HybridSearch, PassageFinder, passage_finder
from rag_service.retrieval.prompt import ChatRequestBuilder, build_chat_request, prompt_passages
from rag_service.retrieval.retriever import Retriever

__all__ = [
    "ChatRequestBuilder",
    "ContextService",
    "ContextStats",
    "DenseSearch",
    "HybridSearch",
    "PassageFinder",
    "Retriever",
    "build_chat_request",
    "passage_finder",
    "prompt_passages",
]
