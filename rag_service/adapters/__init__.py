"""Adapters: one module per external system, each implementing a port from rag_service.ports.

The package exports nothing: the composition root (``rag_service.app``) and the CLI's ingest
(``rag_service.ingest_composition``) import each adapter from its module, and nothing else
imports adapters at all (``.importlinter``). Re-exporting them here would make importing any one
adapter load them all: chromadb, sentence-transformers and torch, tantivy, redis.
"""

__all__: list[str] = []
