"""Administration: the admin routes (``router``: ingest a catalog, follow the job, read the
catalog, invalidate a context) and the ingest jobs they run (``jobs``: one at a time, in a worker
thread, observable by job id)."""

from rag_service.admin.jobs import (
    IngestJob,
    IngestJobs,
    IngestOptions,
    IngestTarget,
    RunIngest,
    report_json,
)
from rag_service.admin.router import AdminDeps, admin_router

__all__ = [
    "AdminDeps",
    "IngestJob",
    "IngestJobs",
    "IngestOptions",
    "IngestTarget",
    "RunIngest",
    "admin_router",
    "report_json",
]
