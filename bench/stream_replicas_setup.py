"""What the parts of ``bench.stream_replicas`` share: a ``redis-server`` of the benchmark's own,
the store, and an answer shaped like the service's (its ``meta``, its upstream request).

The request is what the service would send for a question about the sample catalog's sizing
policy: the instructions and a context block at the default ``context_char_budget`` (~1,500
characters), then the question. Its size counts: a shared stream's record keeps it for a
take-over (docs/streaming.md, "Take-over").
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, cast

import redis
from pydantic import SecretStr

from rag_service.adapters.redis_stream_store import RedisStreamStore
from rag_service.domain import ChatRequest, ContextState, Passage, ResolvedContext
from rag_service.ports import SharedStreams
from rag_service.retrieval.prompt import build_chat_request
from rag_service.settings import RedisSettings, RetrievalSettings, StreamSettings
from rag_service.streaming import StreamRegistry
from rag_service.streaming.answer import SourceLists, meta_json
from rag_service.streaming.session import StreamSession

POLICIES = Path(__file__).resolve().parents[1] / "data" / "catalog" / "policies"
# The most relevant first: the retriever's order, which the prompt keeps.
POLICY_FILES = ("sizing.md", "returns.md", "shipping.md", "payment.md", "warranty.md")
QUESTION = "I am between two sizes for the trail boots: which one should I order?"
WORDS = ["the ", "boots ", "are ", "water", "proof ", "and ", "cost ", "89.90 ", "EUR", ". "]


# -- a redis-server of the benchmark's own ---------------------------------------------------------


@contextmanager
def redis_server() -> Iterator[tuple[str, redis.Redis]]:
    """A ``redis-server`` on a free loopback port, without persistence: its URL and a client."""
    executable = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not installed (scripts/install-redis)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as data:
        process = subprocess.Popen(
            [executable, "--bind", "127.0.0.1", "--port", str(port), "--dir", data,
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client = redis.Redis(port=port, decode_responses=True)
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.ping()
                    break
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0", client
        finally:
            process.terminate()
            process.wait(timeout=10)


def redis_cpu_s(client: redis.Redis) -> float:
    info = cast(dict[str, Any], client.info("cpu"))
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_calls(client: redis.Redis) -> int:
    """Commands redis-server has run, those inside scripts included."""
    stats = cast(dict[str, Any], client.info("commandstats"))
    return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_"))


def script_calls(client: redis.Redis) -> tuple[int, int]:
    """``EVALSHA`` calls (the store's flushes) and the microseconds Redis spent in them."""
    stats = cast(dict[str, Any], client.info("commandstats")).get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def new_store(
    client: Any, url: str, stream: StreamSettings, prefix: str, name: str
) -> RedisStreamStore:
    return RedisStreamStore(
        client,
        redis_settings=RedisSettings(url=SecretStr(url), key_prefix=prefix),
        stream_settings=stream,
        replica_id=name,
    )


# -- an answer shaped like the service's ------------------------------------------------------------


@cache
def catalog_context() -> ResolvedContext:
    """A fresh context of five passages: the first section of each policy of the sample
    catalog (their sources are the ``meta`` event's five entries)."""
    passages = []
    for rank, name in enumerate(POLICY_FILES):
        section = POLICIES.joinpath(name).read_text(encoding="utf-8").split("\n## ")[1]
        title, _, text = section.partition("\n")
        passages.append(
            Passage(
                id=f"policies/{name}#1",
                doc_id=f"policies/{name}",
                title=title.strip(),
                text=text.strip(),
                score=round(0.74 - 0.05 * rank, 2),
            )
        )
    return ResolvedContext(
        context_id="shop:user-1",
        state=ContextState.fresh,
        passages=tuple(passages),
        age_s=1.5,
        catalog_version=3,
    )


@cache
def chat_request() -> ChatRequest:
    """The upstream request the service builds for ``QUESTION`` on ``catalog_context``."""
    budget = RetrievalSettings().context_char_budget
    return build_chat_request(catalog_context(), QUESTION, (), char_budget=budget)


def open_session(
    registry: StreamRegistry,
    shared: SharedStreams | None,
    sources: SourceLists,
    appended: list[float] | None = None,
) -> StreamSession:
    """A session opened as ``start_answer`` does: shared (when ``shared``), then its ``meta``.

    ``appended[1]`` gets the time of the ``meta`` event's append."""
    session = registry.open(context_id="shop:user-1", principal="key-bench", started_at=0.0)
    if shared is not None:
        shared.share(session, registry, chat_request())
    context = catalog_context()
    if appended is not None:
        appended[session.last_seq + 1] = time.perf_counter()
    session.publish_meta(meta_json(session.stream_id, context, sources(context)))
    return session
