"""What ``StreamRegistry.stats`` reports (the ``rag_streams_*`` metrics, ``observability``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StreamStats:
    sessions: int  # held sessions: generating or resumable
    generating: int  # sessions whose generation task still runs
    readers: int  # attached HTTP responses
    refused_full: int = 0  # new streams refused: max_sessions held
    refused_overloaded: int = 0  # new streams refused: the event loop was behind
    retained: int = 0  # ended sessions without a reader, kept for resumes
    retained_bytes: int = 0  # their replay buffers' bytes (``ReplayBuffer.nbytes``)
    cancelled: int = 0  # generations cancelled by their client (``cancel``)
    evicted_full: int = 0  # retained sessions forgotten early: max_sessions held
    evicted_bytes: int = 0  # retained sessions forgotten early: retention_max_bytes reached
