"""StoreLock: an advisory, crash-safe lock file (``flock``) with a note of who holds it.

It serves two purposes: one ingest at a time, and one process at a time on an embedded Chroma
directory (embedded Chroma is not safe across processes: a second process reading while another
writes fails). The kernel drops an ``flock`` when its holder dies, SIGKILL included, so a crashed
ingest never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from rag_service.errors import ConfigurationError, IngestInProgress, StoreInUse


class StoreLock:
    """Exclusive, non-blocking lock on ``path``; ``holder`` describes the owner for error text."""

    def __init__(self, path: Path, *, purpose: str, url: str | None = None) -> None:
        self.path = path
        self._purpose = purpose
        self._url = url
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigurationError(f"cannot create lock file {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise _held_error(self.path, holder) from None
        note = {
            "pid": os.getpid(),
            "purpose": self._purpose,
            "since": time.time(),
            "url": self._url,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(note).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 4096, 0)
        holder = json.loads(raw.decode() or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _held_error(path: Path, holder: dict[str, Any]) -> IngestInProgress | StoreInUse:
    who = f"pid {holder.get('pid', '?')}"
    if holder.get("purpose") == "ingest":
        return IngestInProgress(
            f"another ingest is running ({who}); wait for it to finish (lock: {path})"
        )
    where = f" at {holder['url']}" if holder.get("url") else ""
    return StoreInUse(
        f"the catalog store is in use by rag-service {holder.get('purpose', '?')} ({who}{where}); "
        "embedded Chroma allows one process at a time: ingest through the running service "
        "(POST /admin/ingest with the admin key), or stop it first "
        f"(lock: {path})"
    )
