"""The open-file limit a connection cap needs.

Every client connection is a file descriptor, and so is every upstream connection a stream
holds. A cap of connections above the process's soft ``RLIMIT_NOFILE`` would never refuse
anything: ``accept()`` would fail first (uvicorn logs "Too many open files" and the listener
stops accepting), which is the outage the cap exists to prevent. The soft limit may be raised up
to the hard one without privileges, so ``fit_open_file_limit`` does that, and warns when even
the hard limit is too low.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("rag_service.server")

# Descriptors besides the connections: the listening socket, the store, logs, an ingest's files.
OTHER_FILES = 256


def fit_open_file_limit(client_connections: int, upstream_connections: int) -> int:
    """Raise the soft open-file limit to fit both connection caps, as far as the hard limit
    allows; warn when it cannot. Returns the soft limit in force."""
    needed = client_connections + upstream_connections + OTHER_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < needed:
        log.warning(
            "the open-file limit (%d, hard limit %d) is below the %d that %d client + %d "
            "upstream connections need: the process may run out of descriptors before "
            "RAG_SERVER__MAX_CONNECTIONS refuses anyone; lower it (or "
            "RAG_UPSTREAM__MAX_CONNECTIONS), or raise the limit (ulimit -n, LimitNOFILE=)",
            soft,
            hard,
            needed,
            client_connections,
            upstream_connections,
        )
    return soft
