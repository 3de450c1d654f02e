"""Catalog ingestion: load, chunk, embed and publish a catalog into the vector store atomically."""
