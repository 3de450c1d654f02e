"""The TLS context of upstream connections: the system's trust store plus ``CA_BUNDLE``.

``RAG_UPSTREAM__CA_BUNDLE`` is added to the default trust store rather than replacing it: a
private CA (an internal gateway, a TLS-inspecting proxy) is then trusted without losing the public
ones, and adding a CA can never break an upstream that worked before. The same context verifies an
``https://`` proxy. ``RAG_UPSTREAM__VERIFY_TLS=false`` turns verification off, only explicitly and
with a warning in the log.
"""

from __future__ import annotations

import logging
import ssl

from rag_service.errors import ConfigurationError
from rag_service.settings import UpstreamSettings

log = logging.getLogger("rag_service.upstream")


def upstream_ssl_context(settings: UpstreamSettings) -> ssl.SSLContext:
    """The context for TLS towards the upstream (and an https proxy)."""
    context = ssl.create_default_context()
    if not settings.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if settings.ca_bundle is not None:
        try:
            context.load_verify_locations(cafile=str(settings.ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"RAG_UPSTREAM__CA_BUNDLE={settings.ca_bundle}: no CA certificate can be loaded "
                f"from it ({exc})"
            ) from exc
    return context


def warn_if_unverified(settings: UpstreamSettings) -> None:
    """Say so in the log when the upstream's certificate is not checked."""
    if not settings.verify_tls:
        log.warning(
            "TLS verification towards the upstream is OFF (RAG_UPSTREAM__VERIFY_TLS=false): any "
            "certificate is accepted for %s, so anyone on the path can read and change answers",
            settings.base_url,
        )
