"""Which proxy carries the upstream's requests: ``RAG_UPSTREAM__PROXY``, else the environment.

aiohttp's own ``trust_env`` reads only ``HTTP_PROXY``/``HTTPS_PROXY`` (``ALL_PROXY`` is silently
ignored) and looks the environment up again for every request, in a worker thread. A client has
one upstream URL, so the choice is made once, when the client is built, with the standard
library's rules (``urllib.request.getproxies`` and ``proxy_bypass``, which also read
``NO_PROXY``) plus ``ALL_PROXY``; each request is then handed the chosen proxy.

A SOCKS proxy cannot be used (aiohttp speaks HTTP CONNECT only): that is a ``ConfigurationError``
when the client is built, never a silent direct connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.request import getproxies, proxy_bypass

from yarl import URL

from rag_service.errors import ConfigurationError
from rag_service.settings import UpstreamSettings

EXPLICIT_SOURCE = "RAG_UPSTREAM__PROXY"
SUPPORTED_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class UpstreamProxy:
    """A proxy to send the upstream's requests through."""

    # With its credentials, if any (aiohttp sends them as Proxy-Authorization); never shown.
    url: URL = field(repr=False)
    source: str  # where it was configured: RAG_UPSTREAM__PROXY, HTTPS_PROXY, ALL_PROXY...

    @property
    def shown(self) -> str:
        """The proxy for messages and logs: scheme, host and port, no credentials."""
        return f"{self.url.scheme}://{self.url.host}:{self.url.port}"

    @property
    def password(self) -> str:
        return self.url.password or ""

    def __repr__(self) -> str:
        return f"UpstreamProxy({self.shown} from {self.source})"


def choose_proxy(settings: UpstreamSettings, target: URL) -> UpstreamProxy | None:
    """The proxy for requests to ``target``, or None to connect directly.

    The explicit setting wins over the environment (and ``NO_PROXY`` does not apply to it);
    ``trust_env=false`` ignores the environment.
    """
    explicit = settings.proxy.get_secret_value().strip() if settings.proxy is not None else ""
    if explicit:
        return _parse(explicit, EXPLICIT_SOURCE)
    if not settings.trust_env or _bypassed(target):
        return None
    proxies = getproxies()  # lower-case keys: http, https, all, no...
    for scheme in (target.scheme, "all"):
        value = proxies.get(scheme, "").strip()
        if value:
            return _parse(value, f"{scheme.upper()}_PROXY")
    return None


def _bypassed(target: URL) -> bool:
    """NO_PROXY names the target's host (a suffix, an IP, ``*``; with or without the port)."""
    host = target.host or ""
    if not host:
        return False
    return bool(proxy_bypass(host if ":" in host else f"{host}:{target.port}"))


def _parse(value: str, source: str) -> UpstreamProxy:
    if "://" not in value:
        value = f"http://{value}"  # "host:port", as curl and requests read it
    try:
        url = URL(value)
    except ValueError:
        raise ConfigurationError(f"{source} is not a valid proxy URL") from None
    scheme = url.scheme.lower()
    shown = f"{scheme}://{url.host}:{url.port}"
    if scheme.startswith("socks"):
        raise ConfigurationError(
            f"{source} is a SOCKS proxy ({shown}), which the upstream client cannot use: set "
            f"{EXPLICIT_SOURCE} to an HTTP proxy, or RAG_UPSTREAM__TRUST_ENV=false to connect "
            "directly"
        )
    if scheme not in SUPPORTED_SCHEMES or not url.host:
        raise ConfigurationError(
            f"{source} must be an http:// or https:// proxy URL with a host, not {shown}"
        )
    return UpstreamProxy(url=url, source=source)
