"""Bearer-key authentication: client keys for answers, one admin key for /admin."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence

from fastapi import Request
from pydantic import SecretStr

from rag_service.errors import Forbidden, Unauthorized

# How a route takes the caller's identity: a FastAPI dependency of the Request (async, or sync,
# which FastAPI runs in a thread) returning it, None when auth is off.
PrincipalDependency = Callable[..., Awaitable[str | None]] | Callable[..., str | None]


def _bearer(request: Request) -> str | None:
    header = _authorization(request)
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _authorization(request: Request) -> str:
    """``request.headers.get("authorization", "")``, without building ``Headers`` (this runs
    for every stream set up)."""
    for name, value in request.scope["headers"]:
        if name == b"authorization":
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return ""


def _matches(token: str, keys: Sequence[bytes]) -> bool:
    # Compare against every key in constant time, so timing does not reveal which one is close.
    found = False
    presented = token.encode()
    for key in keys:
        found |= hmac.compare_digest(presented, key)
    return found


def _key_bytes(keys: Sequence[SecretStr]) -> list[bytes]:
    return [key.get_secret_value().encode() for key in keys]


def principal_of(token: str) -> str:
    """A stable, non-secret identity for a key (owner of streams, label in logs)."""
    return "key-" + hashlib.sha256(token.encode()).hexdigest()[:12]


def client_principal(keys: Sequence[SecretStr]) -> Callable[[Request], Awaitable[str | None]]:
    """A FastAPI dependency: the caller's identity, or None when no client keys are set.

    A coroutine function although it never waits: FastAPI runs a plain function in a worker
    thread, a hop that would cost more than the check itself, for every answer set up.
    """

    secrets = _key_bytes(keys)  # once, not per request
    identities = {token.decode(): principal_of(token.decode()) for token in secrets}

    async def dependency(request: Request) -> str | None:
        if not secrets:
            return None
        token = _bearer(request)
        if token is None:
            raise Unauthorized("missing bearer token (Authorization: Bearer <key>)")
        if not _matches(token, secrets):
            raise Unauthorized("invalid API key")
        return identities[token]

    return dependency


def admin_principal(admin_key: SecretStr | None) -> Callable[[Request], str]:
    """A FastAPI dependency guarding /admin: disabled (403) unless an admin key is set."""

    def dependency(request: Request) -> str:
        if admin_key is None or not admin_key.get_secret_value():
            raise Forbidden("admin endpoints are disabled (set RAG_ADMIN_API_KEY)")
        token = _bearer(request)
        if token is None:
            raise Unauthorized("missing bearer token (Authorization: Bearer <admin key>)")
        if not _matches(token, _key_bytes([admin_key])):
            raise Unauthorized("invalid admin key")
        return "admin"

    return dependency
