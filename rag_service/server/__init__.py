"""The HTTP server the service runs under: stock uvicorn configured in one place
(``uvicorn_config``), the supervised worker processes of ``serve --workers N``
(``worker_pool``), and the layers of connection hygiene that uvicorn lacks (connection guard,
body deadline, open-file limit); docs/deployment.md says which layer does what."""

from rag_service.server.process_tuning import serving_gc
from rag_service.server.uvicorn_config import logging_config, run_workers, server_config
from rag_service.server.worker_pool import WorkerFailure

__all__ = ["WorkerFailure", "logging_config", "run_workers", "server_config", "serving_gc"]
