"""Administration: re-ingest a catalog, follow the job, read the catalog, invalidate a context.

``POST /admin/ingest`` takes either a JSON body naming a path inside the configured catalog
directory (``{"path": "catalog", "strict": false, "append": false, "dry_run": false}``) or an
upload: the file itself as the body, with ``?filename=products.jsonl`` naming its format and the
options as query parameters.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from ingest.loaders import SUPPORTED_SUFFIXES
from rag_service.api.schemas import (
    choose_context_id,
    json_object,
    read_limited_body,
    validate_body,
)
from rag_service.errors import IngestInProgress, InvalidInput, NotFound
from rag_service.ingest_jobs import IngestJobs, IngestOptions
from rag_service.ports import ContextResolver, PassageSearch
from rag_service.settings import Settings


class IngestByPath(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=1024, description="Inside the catalog directory.")
    strict: bool = False
    append: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class AdminDeps:
    settings: Settings
    jobs: IngestJobs
    catalog: PassageSearch
    contexts: ContextResolver


def admin_router(
    *, get_deps: Callable[[Request], AdminDeps], admin: Callable[[Request], str]
) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(admin)])

    @router.post("/ingest", status_code=202)
    async def start_ingest(request: Request) -> JSONResponse:
        """Re-ingest a catalog; 202 with the job id, 409 while another ingest runs."""
        deps = get_deps(request)
        if deps.jobs.running:  # refuse before reading a possibly large upload
            raise IngestInProgress("another ingest is running; wait for it to finish")
        if request.headers.get("content-type", "").startswith("application/json"):
            raw = await read_limited_body(
                request.stream(), request.headers.get("content-length"), 64 * 1024
            )
            body = _parse(raw)
            path = _inside_catalog_dir(deps.settings.ingest.catalog_dir, body.path)
            options = IngestOptions(strict=body.strict, append=body.append, dry_run=body.dry_run)
            job = deps.jobs.submit([path], options)
        else:
            job = await _submit_upload(request, deps)
        return JSONResponse({"job_id": job.job_id, "status": job.status}, status_code=202)

    @router.get("/ingest/{job_id}")
    async def ingest_status(request: Request, job_id: str) -> dict[str, Any]:
        """Status, progress and report of one ingest job."""
        return get_deps(request).jobs.get(job_id).to_json()

    @router.get("/catalog")
    async def catalog(request: Request) -> dict[str, Any]:
        """The live catalog's version, document count and sources."""
        info = get_deps(request).catalog.catalog_info()
        return {
            "version": info.version,
            "document_count": info.document_count,
            "chunk_count": info.chunk_count,
            "sources": dict(info.sources),
            "updated_at": info.updated_at,
            "embedding_model": info.embedding_model,
        }

    @router.post("/contexts/{context_id}/invalidate")
    async def invalidate(request: Request, context_id: str) -> dict[str, Any]:
        """Drop one context from the freshness cache; the next question re-retrieves."""
        choose_context_id(context_id, None)  # validates
        dropped = get_deps(request).contexts.invalidate(context_id)
        return {"context_id": context_id, "invalidated": dropped}

    return router


def _parse(raw: bytes) -> IngestByPath:
    return validate_body(IngestByPath, json_object(raw))


def _inside_catalog_dir(catalog_dir: Path, requested: str) -> Path:
    root = catalog_dir.resolve()
    path = (root / requested).resolve()
    if not path.is_relative_to(root):
        raise InvalidInput(f"path must lie inside the catalog directory ({catalog_dir})")
    if not path.exists():
        raise NotFound(f"no such file or directory in the catalog directory: {requested}")
    return path


async def _submit_upload(request: Request, deps: AdminDeps) -> Any:
    filename = Path(request.query_params.get("filename", "")).name
    if Path(filename).suffix.lower() not in SUPPORTED_SUFFIXES:
        raise InvalidInput(
            "an upload needs ?filename=<name> with one of: " + ", ".join(sorted(SUPPORTED_SUFFIXES))
        )
    data = await read_limited_body(
        request.stream(),
        request.headers.get("content-length"),
        deps.settings.ingest.max_upload_bytes,
    )
    folder = Path(tempfile.mkdtemp(prefix="rag-upload-"))
    (folder / filename).write_bytes(data)
    options = IngestOptions(
        strict=_flag(request, "strict"),
        append=_flag(request, "append"),
        dry_run=_flag(request, "dry_run"),
    )
    try:
        return deps.jobs.submit(
            [folder / filename], options, cleanup=lambda: shutil.rmtree(folder, True)
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in {"true", "false", "1", "0", "yes", "no"}:
        raise InvalidInput(f"query parameter {name} must be true or false")
    return value in {"true", "1", "yes"}
