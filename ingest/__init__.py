"""Catalog ingestion: load, chunk, embed and publish a catalog into the vector store atomically.

Its surface is what the service's composition and admin routes use: the pipeline, its report
and progress callback, the choice of the catalog root, and the file types the loaders read.
"""

from ingest.loaders import SUPPORTED_SUFFIXES
from ingest.pipeline import IngestPipeline, IngestReport, ProgressCallback, choose_catalog_root

__all__ = [
    "SUPPORTED_SUFFIXES",
    "IngestPipeline",
    "IngestReport",
    "ProgressCallback",
    "choose_catalog_root",
]
