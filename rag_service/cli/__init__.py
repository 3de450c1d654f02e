"""The ``rag-service`` command line (``commands``: serve, ingest, catalog, local-llm, ask,
key-id) and the implementations of its commands that are more than composition: ``ask`` (an
answer on the terminal through ``rag_service.client``), ``local_llm`` (the bundled model server)
and ``settings_doc`` (``.env.example``, rendered from the settings:
``python -m rag_service.cli.settings_doc > .env.example``). The CLI sits on top of the layers:
it composes the app and the ingest, and nothing of the service imports it."""

from rag_service.cli.commands import app, main

__all__ = ["app", "main"]
