"""Adapters: one module per external system, each implementing a port from rag_service.ports."""
