"""Freshness-cache entries and retrieval locks in Redis (fleet mode, issue #14):
``ContextStore``.

- ``{prefix}context:{context id}``: the entry as JSON (passages with their vectors, catalog
  version, parameters, question, wall-clock retrieval time), expiring with the freshness TTL
  (``PX``). Vectors are little-endian float32, base64 (the embedder's own precision): as JSON
  floats they made an entry 3x larger and its decoding, on every request, 0.8 ms
  (docs/freshness.md has the figures).
- ``{prefix}context-lock:{sha256 of the lock name}``: a retrieval's lock, ``SET NX PX`` with the
  holder's token; released by a script that deletes it only for that token, so a holder whose
  lease ran out cannot release the next holder's lock.
- ``{prefix}context-empty:{sha256 of the lock name}``: the wall time at which that retrieval
  found nothing, for the lock's lease: what the replicas waiting for it end with.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

import numpy as np
from redis.asyncio import Redis

from rag_service.adapters.redis_connection import RedisError, as_text, unavailable
from rag_service.domain import Passage, SharedContext

# Delete the lock only if the caller still holds it.
UNLOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisContextStore:
    """``ContextStore`` on Redis."""

    def __init__(self, redis: Redis, *, key_prefix: str) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self._unlock = redis.register_script(UNLOCK_SCRIPT)

    async def get(self, context_id: str) -> SharedContext | None:
        try:
            raw = await self._redis.get(self._key(context_id))
        except RedisError as error:
            raise unavailable(error) from error
        return None if raw is None else decode_context(as_text(raw))

    async def put(self, context_id: str, context: SharedContext, ttl_s: float) -> None:
        try:
            await self._redis.set(
                self._key(context_id), encode_context(context), px=max(1, round(ttl_s * 1000))
            )
        except RedisError as error:
            raise unavailable(error) from error

    async def delete(self, context_id: str) -> bool:
        try:
            return bool(await self._redis.delete(self._key(context_id)))
        except RedisError as error:
            raise unavailable(error) from error

    async def try_lock(self, name: str, token: str, lease_s: float) -> bool:
        try:
            taken = await self._redis.set(
                self._lock_key(name), token, nx=True, px=max(1, round(lease_s * 1000))
            )
        except RedisError as error:
            raise unavailable(error) from error
        return bool(taken)

    async def unlock(self, name: str, token: str) -> None:
        try:
            await self._unlock(keys=[self._lock_key(name)], args=[token])
        except RedisError as error:
            raise unavailable(error) from error

    async def put_nothing_found(self, name: str, at: float, ttl_s: float) -> None:
        try:
            await self._redis.set(
                self._name_key("context-empty", name), repr(at), px=max(1, round(ttl_s * 1000))
            )
        except RedisError as error:
            raise unavailable(error) from error

    async def nothing_found_at(self, name: str) -> float | None:
        try:
            raw = await self._redis.get(self._name_key("context-empty", name))
        except RedisError as error:
            raise unavailable(error) from error
        if raw is None:
            return None
        try:
            return float(as_text(raw))
        except ValueError:  # not this version's note: as if none
            return None

    def _key(self, context_id: str) -> str:
        return f"{self._prefix}context:{context_id}"

    def _lock_key(self, name: str) -> str:
        return self._name_key("context-lock", name)

    def _name_key(self, kind: str, name: str) -> str:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"{self._prefix}{kind}:{digest}"


def encode_context(context: SharedContext) -> str:
    return json.dumps(
        {
            "passages": [_passage_fields(p) for p in context.passages],
            "retrieved_at": context.retrieved_at,
            "catalog_version": context.catalog_version,
            "top_k": context.top_k,
            "filters": [list(pair) for pair in context.filters],
            "query": context.query,
        },
        separators=(",", ":"),
    )


def decode_context(raw: str) -> SharedContext | None:
    """The entry, or None for one this version cannot read (it is then retrieved again)."""
    try:
        fields = json.loads(raw)
        return SharedContext(
            passages=tuple(_passage(p) for p in fields["passages"]),
            retrieved_at=float(fields["retrieved_at"]),
            catalog_version=fields["catalog_version"],
            top_k=int(fields["top_k"]),
            filters=tuple((str(k), v) for k, v in fields["filters"]),
            query=str(fields["query"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


def _passage_fields(passage: Passage) -> dict[str, Any]:
    return {
        "id": passage.id,
        "doc_id": passage.doc_id,
        "title": passage.title,
        "text": passage.text,
        "score": passage.score,
        "metadata": dict(passage.metadata),
        "vector": None if passage.vector is None else _packed(passage.vector),
    }


def _passage(fields: dict[str, Any]) -> Passage:
    vector = fields.get("vector")
    return Passage(
        id=str(fields["id"]),
        doc_id=str(fields["doc_id"]),
        title=str(fields["title"]),
        text=str(fields["text"]),
        score=float(fields["score"]),
        metadata=dict(fields.get("metadata") or {}),
        vector=None if vector is None else _unpacked(str(vector)),
    )


def _packed(vector: tuple[float, ...]) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def _unpacked(packed: str) -> tuple[float, ...]:
    values: list[float] = np.frombuffer(base64.b64decode(packed), dtype="<f4").tolist()
    return tuple(values)
