"""Admin ingest jobs: one ingest at a time, run in a worker thread, observable by job id.

The admin routes (``rag_service.admin.router``) submit a job and answer 202 at once; the job runs
the same pipeline as the CLI against the service's own store and embedder (embedded Chroma
allows only one process, so a running service ingests through itself).

One at a time: in this process by the running job; on this host by the lock file the job takes
(``StoreLock``); across hosts, in fleet mode, by a ``ClusterIngestLock`` (a port in
``rag_service.ports``; Redis implements it) taken at submission, so that a second ingest on any
replica is refused with 409 at once. While Redis does not answer, the job runs under the host's
lock alone: logged, counted (``fallbacks``) and reported as ``degraded`` while it runs.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ingest import IngestReport, ProgressCallback
from rag_service.errors import IngestInProgress, NotFound, RagServiceError, StateStoreUnavailable
from rag_service.ports import ClusterIngestLock, IngestLease

logger = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "succeeded", "failed"]
JOB_ID_BYTES = 8  # a job id is this many random bytes in hex


@dataclass(frozen=True)
class IngestOptions:
    strict: bool = False
    append: bool = False
    dry_run: bool = False
    confirm_deletions: bool = False


@dataclass(frozen=True)
class IngestTarget:
    """What a job ingests: ``paths``, with sources named relative to ``root`` and nothing read
    whose real path leaves it (the catalog directory, or an upload's own folder)."""

    paths: list[Path]
    root: Path


RunIngest = Callable[[IngestTarget, IngestOptions, ProgressCallback], IngestReport]


@dataclass
class IngestJob:
    job_id: str
    paths: list[str]
    options: IngestOptions
    status: JobStatus = "queued"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "status": self.status,
            "paths": self.paths,
            "options": asdict(self.options),
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "progress": self.progress,
            "report": self.report,
            "error": self.error,
        }


def report_json(report: IngestReport) -> dict[str, Any]:
    data = {k: v for k, v in asdict(report).items() if k != "failed"}
    data["failed"] = [{"file": p.file, "line": p.line, "reason": p.message} for p in report.failed]
    data["documents_per_second"] = round(report.documents_per_second, 1)
    return data


class IngestJobs:
    def __init__(
        self,
        run_ingest: RunIngest,
        *,
        keep_jobs: int = 50,
        on_finished: Callable[[IngestJob], None] | None = None,
        cluster_lock: ClusterIngestLock | None = None,
    ) -> None:
        self._run_ingest = run_ingest
        self._keep = keep_jobs
        self._on_finished = on_finished
        self._cluster_lock = cluster_lock
        self._jobs: OrderedDict[str, IngestJob] = OrderedDict()
        self._running: asyncio.Task[None] | None = None
        self._acquiring = False  # a submission waits for the cluster lock
        self._unshared = False  # the running job holds no cluster lock (its store was down)
        self._fallbacks = 0

    async def submit(
        self,
        target: IngestTarget,
        options: IngestOptions,
        *,
        cleanup: Callable[[], None] | None = None,
    ) -> IngestJob:
        """Start a job now; ``IngestInProgress`` (409) while another one runs, here or, with a
        cluster lock, on any host."""
        if self.running:
            raise IngestInProgress("another ingest is running; wait for it to finish")
        self._acquiring = True
        try:
            lease = await self._hold_cluster_lock()
        finally:
            self._acquiring = False
        self._unshared = self._cluster_lock is not None and lease is None
        paths = [str(p) for p in target.paths]
        job = IngestJob(job_id=secrets.token_hex(JOB_ID_BYTES), paths=paths, options=options)
        self._jobs[job.job_id] = job
        while len(self._jobs) > self._keep:
            self._jobs.popitem(last=False)
        self._running = asyncio.get_running_loop().create_task(
            self._run(job, target, cleanup, lease), name=f"ingest-{job.job_id}"
        )
        return job

    async def _hold_cluster_lock(self) -> IngestLease | None:
        if self._cluster_lock is None:
            return None
        try:
            return await self._cluster_lock.acquire()
        except StateStoreUnavailable as error:
            logger.warning(
                "ingest under this host's lock file only: the cluster-wide ingest lock is "
                "unavailable (%s), so an ingest started on another host meanwhile is not kept "
                "apart",
                error.message,
            )
            self._fallbacks += 1
            return None

    def get(self, job_id: str) -> IngestJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no ingest job {job_id!r}")
        return job

    @property
    def running(self) -> bool:
        return self._acquiring or self._job_running

    @property
    def _job_running(self) -> bool:
        return self._running is not None and not self._running.done()

    @property
    def degraded(self) -> bool:
        """An ingest runs without the cluster-wide lock (its store did not answer)."""
        return self._unshared and self._job_running

    @property
    def fallbacks(self) -> int:
        """Ingests started without the cluster-wide lock so far."""
        return self._fallbacks

    async def wait(self) -> None:
        """Wait for the running job (tests, shutdown)."""
        if self._running is not None:
            await asyncio.shield(self._running)

    async def _run(
        self,
        job: IngestJob,
        target: IngestTarget,
        cleanup: Callable[[], None] | None,
        lease: IngestLease | None,
    ) -> None:
        loop = asyncio.get_running_loop()

        def progress(phase: str, done: int, total: int) -> None:
            update = {"phase": phase, "done": done, "total": total}
            loop.call_soon_threadsafe(job.progress.update, update)

        job.status, job.started_at = "running", time.time()
        try:
            report = await asyncio.to_thread(self._run_ingest, target, job.options, progress)
        except RagServiceError as error:
            job.status, job.error = "failed", error.to_payload()
        except Exception as error:  # a bug must still end the job visibly
            job.status = "failed"
            job.error = {"code": "internal_error", "message": repr(error), "retryable": False}
        else:
            job.status, job.report = "succeeded", report_json(report)
        finally:
            job.finished_at = time.time()
            if lease is not None:
                await lease.release()
            if cleanup is not None:
                cleanup()
        if self._on_finished is not None:
            self._on_finished(job)
