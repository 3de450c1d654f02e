"""What the service decides and says as it starts: who may call it, and one summary.

Auth you cannot forget: with no client keys, anyone who can reach the port can ask questions and
spend upstream tokens. On loopback that is a developer's laptop, so the service starts and says
so; on any other address it refuses to start unless the operator has said, with
``RAG_AUTH__DISABLED=true``, that something in front (a gateway, a private network) decides who
gets in. That is the rule LiteLLM's proxy follows too: no master key, no start.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from rag_service import __version__
from rag_service.adapters.chroma_client import describe
from rag_service.api import principal_of
from rag_service.domain import CatalogInfo
from rag_service.errors import ConfigurationError
from rag_service.settings import Settings

log = logging.getLogger("rag_service")


@dataclass(frozen=True)
class ClientAuth:
    """How client requests are authenticated, in words, and a warning to show at start-up."""

    mode: str
    warning: str | None = None


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1); a wildcard is not."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # another host name: it may resolve to anything
        return False


def client_auth(settings: Settings) -> ClientAuth:
    """The client auth mode; raises ``ConfigurationError`` for settings that would leave the
    service open beyond loopback, or that contradict each other."""
    keys = len(settings.api_keys)
    where = f"{settings.server.host}:{settings.server.port}"
    if keys and settings.auth.disabled:
        raise ConfigurationError(
            "RAG_AUTH__DISABLED=true and RAG_API_KEYS are both set; keep the keys and remove "
            "RAG_AUTH__DISABLED, or remove the keys"
        )
    if keys:
        return ClientAuth(f"client keys ({keys})")
    if settings.auth.disabled:
        return ClientAuth(
            "disabled (RAG_AUTH__DISABLED=true)",
            f"client auth is disabled: anyone who can reach {where} can ask questions and spend "
            "upstream tokens; only do this behind something that authenticates",
        )
    if is_loopback(settings.server.host):
        return ClientAuth(
            "none (loopback only)",
            f"no client keys (RAG_API_KEYS): anyone on this machine can use {where}; set "
            "RAG_API_KEYS before listening on another address",
        )
    raise ConfigurationError(
        f"refusing to listen on {settings.server.host} without client keys: anyone who can reach "
        "it could ask questions and spend upstream tokens. Set RAG_API_KEYS=<key>[,<key>...] "
        "(clients send 'Authorization: Bearer <key>'), or set RAG_AUTH__DISABLED=true if "
        "something in front of the service authenticates"
    )


def unmatched_overrides(settings: Settings) -> list[str]:
    """Per-key limit overrides that name no configured key (a typo, or a key since removed):
    they would silently never apply."""
    configured = {principal_of(key.get_secret_value()) for key in settings.api_keys}
    return sorted(set(settings.limits.overrides) - configured)


def base_url(settings: Settings) -> str:
    """The URL clients use; a wildcard address is shown as this machine's name."""
    host = settings.server.host
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = socket.gethostname()
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.server.port}"


def without_credentials(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc))


def startup_summary(settings: Settings, auth: ClientAuth, catalog: CatalogInfo | None) -> str:
    """One block of text: where the service listens and what it runs on."""
    url = base_url(settings)
    if catalog is None:
        live = "catalog unreadable (see /readyz)"
    elif catalog.version == 0:
        live = "no catalog yet (rag-service ingest data/)"
    else:
        live = f"catalog version {catalog.version} ({catalog.document_count} documents)"
    admin = "enabled" if settings.admin_api_key else "disabled (no RAG_ADMIN_API_KEY)"
    limits = settings.limits
    per_key = (
        f"per key {limits.streams} streams, {limits.requests_per_s:g}/s (burst {limits.burst})"
        + (f", {len(limits.overrides)} override(s)" if limits.overrides else "")
        if settings.api_keys
        else "none per key (no client keys)"
    )
    return "\n".join(
        [
            f"rag_service {__version__} on {url} (API docs: {url}/docs)",
            f"  upstream: {without_credentials(settings.upstream.base_url)}, "
            f"model {settings.upstream.model}",
            f"  store:    {describe(settings.chroma)}, collection "
            f"{settings.chroma.collection}; {live}",
            f"  auth:     clients: {auth.mode}; admin: {admin}",
            f"  limits:   {per_key}",
        ]
    )
