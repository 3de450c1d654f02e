"""rag_service: a streaming RAG service for customer-service bots."""

__version__ = "0.1.0"
