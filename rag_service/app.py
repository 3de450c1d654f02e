"""The composition root: ``create_app(settings)`` builds the whole object graph in the lifespan.

Nothing here is a module-level global: every adapter is created per app, and tests replace any
of them through ``Components``. Nothing here changes the process either: process-wide tuning
(the garbage collector's) is applied only when the caller passes it (``process_tuning``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import (
    AbstractContextManager,
    AsyncExitStack,
    asynccontextmanager,
    nullcontext,
)
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from ingest import IngestPipeline, IngestReport, ProgressCallback
from rag_service import __version__
from rag_service.adapters.chroma_client import store_lock_path
from rag_service.adapters.chroma_store import ChromaStore
from rag_service.adapters.lazy_chroma_store import LazyChromaStore
from rag_service.adapters.redis_breaker_board import RedisBreakerBoard
from rag_service.adapters.redis_catalog_channel import RedisCatalogChannel
from rag_service.adapters.redis_connection import redis_client
from rag_service.adapters.redis_context_store import RedisContextStore
from rag_service.adapters.redis_ingest_lock import RedisIngestLock
from rag_service.adapters.redis_key_limiter import RedisKeyLimiter
from rag_service.adapters.redis_stream_store import RedisStreamStore
from rag_service.adapters.sentence_transformer_embedder import SentenceTransformerEmbedder
from rag_service.adapters.store_lock import StoreLock
from rag_service.adapters.tantivy_lexical_index import TantivyLexicalIndex
from rag_service.admin import (
    AdminDeps,
    IngestJob,
    IngestJobs,
    IngestOptions,
    IngestTarget,
    RunIngest,
    admin_router,
)
from rag_service.api import (
    admin_principal,
    client_principal,
    install_error_handlers,
    install_openapi,
)
from rag_service.domain import CatalogInfo
from rag_service.errors import RagServiceError
from rag_service.health import (
    HealthDeps,
    ReadinessCheck,
    SharedStateCheck,
    SharedStateComponent,
    UpstreamCheck,
    embedder_check,
    health_router,
    store_check,
)
from rag_service.ingest_composition import ingest_lock
from rag_service.limits import FallbackKeyLimiter, InMemoryKeyLimiter
from rag_service.observability import (
    CatalogSnapshotCollector,
    KeyLimitCollector,
    PrometheusUpstreamMetrics,
    ReplicaCollector,
    ServiceCollector,
    SharedStateCollector,
    StreamTakeoverCollector,
    loop_lag_histogram,
    metrics_port_server,
)
from rag_service.openai import openai_router
from rag_service.ports import (
    CatalogWriter,
    ChatUpstream,
    Embedder,
    KeyLimiter,
    PassageSearch,
    ReadWriteCatalogStore,
    SharedStreams,
)
from rag_service.retrieval import (
    ChatRequestBuilder,
    ContextService,
    Retriever,
    SharedEntries,
    passage_finder,
)
from rag_service.settings import Settings
from rag_service.startup import ClientAuth, client_auth, startup_summary, unmatched_overrides
from rag_service.streaming import (
    InProcessStreams,
    LoopLagMonitor,
    StreamDeps,
    StreamRegistry,
    stream_router,
)
from rag_service.upstream import BreakerSharing, CircuitBreaker, OpenAICompatibleUpstream
from rag_service.web import install_web_page

log = logging.getLogger("rag_service")

# /readyz waits this long for Redis's PING, well within its own 2 s per check.
REDIS_PING_S = 1.0
DOCS_ASSETS_PATH = "/docs/assets"  # Swagger UI's and ReDoc's files, served by the app itself
DEFAULT_FALLBACK = (
    "Product details cannot be looked up right now. Apologise briefly, offer general help, "
    "and suggest contacting customer support for specifics."
)


@dataclass
class Components:
    """Replaceable parts of the graph; ``None`` builds the default adapter from settings."""

    embedder: Embedder | None = None
    store: ReadWriteCatalogStore | None = None  # read by retrieval, written by admin ingests
    upstream: ChatUpstream | None = None


def create_app(
    settings: Settings | None = None,
    components: Components | None = None,
    *,
    process_tuning: Callable[[], AbstractContextManager[None]] | None = None,
) -> FastAPI:
    """The service's app. ``process_tuning``: entered once the app has started (before the
    loop-lag monitor, so that what it costs is not taken for overload) and left at shutdown;
    serving entry points pass ``rag_service.server.process_tuning.serving_gc``."""
    settings = settings or Settings()
    parts = components or Components()
    auth = client_auth(settings)  # refuses, before anything starts, to serve the world unguarded
    replica_id = new_replica_id()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            loop_lag = await _build_graph(app, settings, parts, stack, replica_id)
            await _announce(settings, auth, app.state.admin_deps.catalog)
            with process_tuning() if process_tuning is not None else nullcontext():
                # Only now: the start-up above holds the loop, which is no overload to shed for.
                loop_lag.start()
                yield

    # A FastAPI app whose /docs (Swagger UI) and /redoc load their JS and CSS from this service
    # (DOCS_ASSETS_PATH, files of the installed fastapi-offline package), not from a CDN: the
    # self-hosting FastAPI documents, done by that package. docs/api.md, "Interactive docs".
    app = FastAPIOffline(
        title="rag_service",
        version=__version__,
        summary="Streaming RAG answers over SSE with fresh context and atomic catalogs.",
        lifespan=lifespan,
        static_url=DOCS_ASSETS_PATH,
    )
    app.state.replica_id = replica_id
    install_error_handlers(app)
    install_openapi(app, settings)
    clients = client_principal(settings.api_keys)
    stream_deps = _state_lookup("stream_deps")
    app.include_router(health_router(get_deps=_state_lookup("health_deps")))
    app.include_router(stream_router(get_deps=stream_deps, principal=clients))
    app.include_router(openai_router(get_deps=stream_deps, principal=clients))
    app.include_router(
        admin_router(
            get_deps=_state_lookup("admin_deps"), admin=admin_principal(settings.admin_api_key)
        )
    )
    install_web_page(app)  # GET / and /web/...: the chat page (docs/web.md)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "X-Context-Id"],
            expose_headers=["Retry-After", "X-Context-Id"],
        )
    return app


def new_replica_id() -> str:
    """This process's name among the replicas sharing Redis (leases, logs, /healthz):
    host and pid say where it runs, the random part tells apart a pid the host reused."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _state_lookup(name: str) -> Callable[[Request], Any]:
    """The routes' ``get_deps``: what ``_build_graph`` put in ``app.state`` under ``name``."""

    def lookup(request: Request) -> Any:
        return getattr(request.app.state, name)

    return lookup


async def _build_graph(
    app: FastAPI, settings: Settings, parts: Components, stack: AsyncExitStack, replica_id: str
) -> LoopLagMonitor:
    """Build the graph into ``app.state``; returns the loop-lag monitor, still to be started.
    ``replica_id`` names this process to the components that share state with other ones."""
    registry = CollectorRegistry()
    # Fleet mode (issue #14): the one Redis client of this app, shared by every Redis adapter
    # (it connects on first use); unset RAG_REDIS__URL keeps all state in this process.
    redis = redis_client(settings.redis) if settings.redis.url else None
    if redis is not None:
        stack.push_async_callback(redis.aclose)
    # Every component on Redis with a local fallback appends itself here (one line): /readyz's
    # "shared_state" and the rag_shared_state_* metrics report them.
    shared_state: list[SharedStateComponent] = []
    owns_store = parts.store is None and not settings.chroma.host
    if owns_store:  # embedded Chroma: this process is the store's only user while it runs
        owner = StoreLock(
            store_lock_path(settings.chroma, settings.ingest.lock_file), purpose="serve"
        )
        stack.enter_context(owner)
    store = parts.store or LazyChromaStore(lambda: ChromaStore.open(settings.chroma))
    embedder = parts.embedder or SentenceTransformerEmbedder(settings.embedding)
    await _warm_up(embedder)
    upstream = parts.upstream or await _upstream(
        settings, registry, redis, replica_id, stack, shared_state
    )
    stack.push_async_callback(upstream.aclose)
    finder = passage_finder(store, settings.retrieval, TantivyLexicalIndex)
    retriever = Retriever(embedder, finder, settings.retrieval)
    registry.register(CatalogSnapshotCollector(retriever.catalog_stats))
    contexts = ContextService(
        retriever,
        store,
        settings.freshness,
        _fallback_text(settings.fallback_context_file),
        version_check_interval_s=settings.freshness.catalog_check_interval_s,
        catalog_channel=_catalog_channel(settings, redis, shared_state),
        shared=_shared_contexts(settings, redis, shared_state),
    )
    stack.push_async_callback(contexts.aclose)
    await contexts.start()  # learns the catalog version, then re-checks it in the background
    loop_lag = LoopLagMonitor(observe=loop_lag_histogram(registry).observe)
    stack.callback(loop_lag.close)
    # Closed after the stream registry (the stack unwinds in reverse): ending the generations
    # releases their slots first.
    limiter = _key_limiter(settings, redis, stack, shared_state)
    shared_streams = _shared_streams(settings, redis, replica_id, stack, shared_state)
    streams = StreamRegistry(
        settings.stream, max_sessions=settings.stream.max_sessions, loop_lag=loop_lag.lag_s
    )
    stack.push_async_callback(streams.close)
    jobs = IngestJobs(
        _ingest_runner(settings, store, embedder, owns_store),
        on_finished=_tell_contexts(contexts),
        cluster_lock=_cluster_ingest_lock(settings, redis, replica_id),
    )
    stack.push_async_callback(jobs.wait)
    if redis is not None:  # an ingest running under this host's lock file alone
        shared_state.append(
            SharedStateComponent("ingest_lock", lambda: jobs.degraded, lambda: jobs.fallbacks)
        )
    # The version this process serves, as its background check last saw it: a scrape never
    # waits for the store.
    registry.register(
        ServiceCollector(streams.stats, contexts.stats, lambda: contexts.catalog_version)
    )
    registry.register(KeyLimitCollector(limiter.stats))
    registry.register(SharedStateCollector(shared_state))
    registry.register(ReplicaCollector(replica_id))
    registry.register(StreamTakeoverCollector(shared_streams))
    server = settings.server
    if server.metrics_port is not None:  # a scrape target per worker (docs/deployment.md)
        ports = server.workers
        stack.enter_context(metrics_port_server(registry, server.host, server.metrics_port, ports))
    app.state.stream_deps = StreamDeps(
        resolver=contexts,
        upstream=upstream,
        registry=streams,
        settings=settings,
        build_request=ChatRequestBuilder(),
        limiter=limiter,
        shared=shared_streams,
    )
    app.state.admin_deps = AdminDeps(settings=settings, jobs=jobs, catalog=store, contexts=contexts)
    app.state.health_deps = HealthDeps(
        checks={
            "vector_store": store_check(store),
            "embedder": embedder_check(embedder),
            "upstream": UpstreamCheck(upstream),
        },
        reports=_shared_state_reports(redis, shared_state),
        registry=registry,
    )
    return loop_lag


async def _upstream(
    settings: Settings,
    registry: CollectorRegistry,
    redis: Redis | None,
    replica_id: str,
    stack: AsyncExitStack,
    shared_state: list[SharedStateComponent],
) -> OpenAICompatibleUpstream:
    """The upstream client. With Redis, its circuit breaker is shared: one replica's open
    circuit parks the others' requests, and one replica probes for all (docs/upstream.md)."""
    metrics = PrometheusUpstreamMetrics(registry)
    if redis is None:
        return OpenAICompatibleUpstream(settings.upstream, metrics=metrics)
    breaker = CircuitBreaker(settings.upstream.breaker)
    sharing = BreakerSharing(
        breaker,
        RedisBreakerBoard(redis, key_prefix=settings.redis.key_prefix),
        base_url=settings.upstream.base_url,
        replica_id=replica_id,
        probe_lock_s=settings.upstream.breaker.probe_lock_s,
        sync_interval_s=settings.upstream.breaker.open_s,
        retry_interval_s=settings.redis.retry_interval_s,
    )
    upstream = OpenAICompatibleUpstream(
        settings.upstream, metrics=metrics, breaker=breaker, probe_gate=sharing
    )
    await sharing.start()
    stack.push_async_callback(sharing.aclose)
    shared_state.append(
        SharedStateComponent("breaker", lambda: sharing.degraded, lambda: sharing.fallbacks)
    )
    return upstream


def _cluster_ingest_lock(
    settings: Settings, redis: Redis | None, replica_id: str
) -> RedisIngestLock | None:
    """With Redis, admin ingests are one at a time across every host (the lock file only
    covers this one); a second one on any replica is refused naming this one (docs/deployment.md)."""
    if redis is None:
        return None
    return RedisIngestLock(
        redis,
        key_prefix=settings.redis.key_prefix,
        holder=f"replica {replica_id}",
        lease_s=settings.ingest.lock_lease_s,
    )


def _shared_contexts(
    settings: Settings, redis: Redis | None, shared_state: list[SharedStateComponent]
) -> SharedEntries | None:
    """With Redis, the freshness cache's entries live there (every replica serves what any
    retrieved) and one replica retrieves a stale context for all (docs/freshness.md)."""
    if redis is None:
        return None
    entries = SharedEntries(
        RedisContextStore(redis, key_prefix=settings.redis.key_prefix),
        ttl_s=settings.freshness.ttl_seconds,
        lock_s=settings.freshness.retrieval_lock_s,
        retry_interval_s=settings.redis.retry_interval_s,
    )
    shared_state.append(
        SharedStateComponent("freshness", lambda: entries.degraded, lambda: entries.fallbacks)
    )
    return entries


def _catalog_channel(
    settings: Settings, redis: Redis | None, shared_state: list[SharedStateComponent]
) -> RedisCatalogChannel | None:
    """With Redis, a catalog published anywhere is adopted by every replica at once (the
    background version checks stay as the safety net); without, this process's own publishes."""
    if redis is None:
        return None
    channel = RedisCatalogChannel(
        redis,
        key_prefix=settings.redis.key_prefix,
        retry_interval_s=settings.redis.retry_interval_s,
    )
    shared_state.append(
        SharedStateComponent("catalog_version", lambda: channel.degraded, lambda: channel.fallbacks)
    )
    return channel


def _key_limiter(
    settings: Settings,
    redis: Redis | None,
    stack: AsyncExitStack,
    shared_state: list[SharedStateComponent],
) -> KeyLimiter:
    """Per client key; callers without a key (no RAG_API_KEYS) are not limited by it. With
    Redis, one key's limits hold across every process and replica, and on this process's own
    state while Redis is down (docs/limits.md)."""
    local = InMemoryKeyLimiter(settings.limits)
    if redis is None:
        return local
    shared = RedisKeyLimiter(
        redis,
        settings.limits,
        key_prefix=settings.redis.key_prefix,
        lease_s=settings.redis.slot_lease_s,
        owns_client=False,  # the app's client, closed after every adapter that uses it
    )
    stack.push_async_callback(shared.aclose)  # stops renewing its leases
    limiter = FallbackKeyLimiter(shared, local, retry_interval_s=settings.redis.retry_interval_s)
    shared_state.append(
        SharedStateComponent(
            "key_limits", lambda: limiter.degraded, lambda: limiter.stats().fallbacks
        )
    )
    return limiter


def _shared_streams(
    settings: Settings,
    redis: Redis | None,
    replica_id: str,
    stack: AsyncExitStack,
    shared_state: list[SharedStateComponent],
) -> SharedStreams:
    """With Redis, streams are copied there and resumable on every replica (docs/streaming.md);
    closed after the registry, so the last events of the streams it ends are written too."""
    if redis is None:
        return InProcessStreams()
    store = RedisStreamStore(
        redis,
        redis_settings=settings.redis,
        stream_settings=settings.stream,
        replica_id=replica_id,
    )
    stack.push_async_callback(store.aclose)
    shared_state.append(SharedStateComponent("streams", lambda: store.degraded, store.fallbacks))
    return store


def _shared_state_reports(
    redis: Redis | None, shared_state: list[SharedStateComponent]
) -> dict[str, ReadinessCheck]:
    """/readyz's "shared_state" report, with Redis only: reported, never a reason to be
    unready (every replica shares the one Redis; see SharedStateCheck)."""
    if redis is None:
        return {}
    return {"shared_state": SharedStateCheck(shared_state, redis.ping, timeout_s=REDIS_PING_S)}


async def _announce(settings: Settings, auth: ClientAuth, catalog: PassageSearch) -> None:
    """The start-up summary, and the auth warning where there is one."""
    try:
        info: CatalogInfo | None = await asyncio.to_thread(catalog.catalog_info)
    except RagServiceError:
        info = None
    if auth.warning is not None:
        log.warning(auth.warning)
    for key_id in unmatched_overrides(settings):
        log.warning("RAG_LIMITS__OVERRIDES names %s, which is none of RAG_API_KEYS", key_id)
    log.info(startup_summary(settings, auth, info))


async def _warm_up(embedder: Embedder) -> None:
    """Load the model before the first request; a failure is reported by /readyz, not fatal."""
    try:
        await asyncio.to_thread(embedder.load)
    except Exception as error:  # the service still answers from the fallback context
        log.error("embedding model failed to load: %s", error)


def _ingest_runner(
    settings: Settings, store: CatalogWriter, embedder: Embedder, owns_store: bool
) -> RunIngest:
    def run(
        target: IngestTarget, options: IngestOptions, progress: ProgressCallback
    ) -> IngestReport:
        # With a shared (server) store, the lock file keeps CLI ingests on other hosts out.
        with nullcontext() if owns_store else ingest_lock(settings):
            pipeline = IngestPipeline(store, embedder, settings.ingest)
            # The target's root, not the paths' own folder: a subfolder keeps its
            # catalog-relative sources and its sync deletes only below it.
            return pipeline.run(
                target.paths,
                strict=options.strict,
                append=options.append,
                dry_run=options.dry_run,
                confirm_deletions=options.confirm_deletions,
                base_dir=target.root,
                progress=progress,
            )

    return run


def _tell_contexts(contexts: ContextService) -> Callable[[IngestJob], None]:
    """After an admin ingest: the version it published counts from the next request on."""

    def finished(job: IngestJob) -> None:
        report = job.report or {}
        if report.get("published"):
            contexts.catalog_published(int(report["version_after"]))
        elif job.status == "failed":  # it may have failed after publishing: look now
            contexts.check_catalog_soon()

    return finished


def _fallback_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        log.warning("fallback context %s unreadable (%s); using the built-in one", path, error)
        return DEFAULT_FALLBACK
    return text or DEFAULT_FALLBACK
