"""Administration: re-ingest a catalog, follow the job, read the catalog, invalidate a context.

``POST /admin/ingest`` takes either a JSON body naming a path inside the configured catalog
directory (``{"path": "policies", "strict": false, "append": false, "dry_run": false,
"confirm_deletions": false}``) or an upload: the file itself as the body, with
``?filename=products.jsonl`` naming it and the options as query parameters (``true``/``false``).

Both are read as strictly as the stream route's body: exact types (``"yes"`` is not a bool), no
unknown fields or parameters, and no NUL or lone surrogate in a path or file name; each refusal
is a 400 naming the field. A path's sources are named relative to the catalog directory and a
sync deletes only below that path; an upload's source is its file name, so it replaces exactly
the documents of the live file of that name.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParameter
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from ingest import SUPPORTED_SUFFIXES
from rag_service.admin.jobs import JOB_ID_BYTES, IngestJob, IngestJobs, IngestOptions, IngestTarget
from rag_service.api import (
    ADMIN_AUTH,
    CONTEXT_ID_PATTERN,
    INGEST_STARTED_DOC,
    admin_ingest_openapi,
    choose_context_id,
    error_responses,
    invalid_input,
    json_object,
    read_limited_body,
    validate_body,
)
from rag_service.errors import IngestInProgress, InvalidInput, NotFound
from rag_service.ports import ContextResolver, PassageSearch
from rag_service.safe_text import SafeStr, text_problem
from rag_service.settings import Settings

MAX_BODY_BYTES = 64 * 1024
MAX_FILENAME_BYTES = 255  # what Linux file systems allow for one name
_JOB_ID = re.compile(f"[0-9a-f]{{{2 * JOB_ID_BYTES}}}")
_UPLOAD_FLAGS = ("strict", "append", "dry_run", "confirm_deletions")


class IngestByPath(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    path: SafeStr = Field(
        min_length=1, max_length=1024, description="Inside the catalog directory; '.' for all."
    )
    strict: bool = False
    append: bool = False
    dry_run: bool = False
    confirm_deletions: bool = Field(
        False, description="Allow a sync that deletes more than RAG_INGEST__MAX_DELETE_SHARE."
    )


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

    @router.post(
        "/ingest",
        status_code=202,
        responses={**INGEST_STARTED_DOC, **error_responses(400, 401, 403, 404, 409, 413)},
        openapi_extra=admin_ingest_openapi(IngestByPath.model_json_schema(), _UPLOAD_FLAGS),
    )
    async def start_ingest(request: Request) -> JSONResponse:
        """Re-ingest a catalog; 202 with the job id, 409 while another ingest runs."""
        deps = get_deps(request)
        if deps.jobs.running:  # refuse before reading a possibly large upload
            raise IngestInProgress("another ingest is running; wait for it to finish")
        if request.headers.get("content-type", "").startswith("application/json"):
            job = await _submit_path(request, deps)
        else:
            job = await _submit_upload(request, deps)
        return JSONResponse({"job_id": job.job_id, "status": job.status}, status_code=202)

    @router.get(
        "/ingest/{job_id}", responses=error_responses(401, 403, 404), openapi_extra=ADMIN_AUTH
    )
    async def ingest_status(request: Request, job_id: str) -> dict[str, Any]:
        """Status, progress and report of one ingest job."""
        if _JOB_ID.fullmatch(job_id) is None:  # not echoed: it may be anything at all
            raise NotFound(f"no such ingest job (a job id is {2 * JOB_ID_BYTES} hex digits)")
        return get_deps(request).jobs.get(job_id).to_json()

    @router.get("/catalog", responses=error_responses(401, 403, 503), openapi_extra=ADMIN_AUTH)
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

    @router.post(
        "/contexts/{context_id}/invalidate",
        responses=error_responses(400, 401, 403),
        openapi_extra=ADMIN_AUTH,
    )
    async def invalidate(
        request: Request,
        context_id: Annotated[str, PathParameter(pattern=CONTEXT_ID_PATTERN)],
    ) -> dict[str, Any]:
        """Drop one context from the freshness cache; the next question re-retrieves."""
        choose_context_id(context_id, None)  # validates
        dropped = get_deps(request).contexts.invalidate(context_id)
        return {"context_id": context_id, "invalidated": dropped}

    return router


async def _submit_path(request: Request, deps: AdminDeps) -> IngestJob:
    if request.query_params:
        raise _bad_field(
            "query",
            next(iter(request.query_params)),
            "not allowed here: the options of a JSON request go in its body",
        )
    raw = await read_limited_body(
        request.stream(), request.headers.get("content-length"), MAX_BODY_BYTES
    )
    body = _parse(raw)
    root, path = _inside_catalog_dir(deps.settings.ingest.catalog_dir, body.path)
    options = IngestOptions(
        strict=body.strict,
        append=body.append,
        dry_run=body.dry_run,
        confirm_deletions=body.confirm_deletions,
    )
    return await deps.jobs.submit(IngestTarget(paths=[path], root=root), options)


def _parse(raw: bytes) -> IngestByPath:
    data = json_object(raw)
    for key in data:  # an unknown field is refused by name, so the name must be printable
        problem = text_problem(key)
        if problem is not None:
            raise _bad_field("body", "body", f"a field name {problem}")
    return validate_body(IngestByPath, data)


def _inside_catalog_dir(catalog_dir: Path, requested: str) -> tuple[Path, Path]:
    """The catalog root and the requested path in it, both resolved."""
    try:
        root = catalog_dir.resolve()
        path = (root / requested).resolve()
        if not path.is_relative_to(root):
            raise _bad_field(
                "body", "path", f"must lie inside the catalog directory ({catalog_dir})"
            )
        exists = path.exists()
    except OSError as error:  # a name too long, a folder without access
        raise _bad_field("body", "path", f"cannot be read ({error.strerror})") from None
    except RuntimeError:  # pathlib's answer to a symlink loop
        raise _bad_field("body", "path", "cannot be resolved (a symlink loop)") from None
    if not exists:
        raise NotFound(
            "no such file or directory in the catalog directory: " + requested,
            details={"field": "path"},
        )
    return root, path


async def _submit_upload(request: Request, deps: AdminDeps) -> IngestJob:
    filename, options = _upload_query(request)
    data = await read_limited_body(
        request.stream(),
        request.headers.get("content-length"),
        deps.settings.ingest.max_upload_bytes,
    )
    folder = Path(tempfile.mkdtemp(prefix="rag-upload-"))
    try:
        (folder / filename).write_bytes(data)
        # The upload's own folder is its root: its source is the bare file name.
        target = IngestTarget(paths=[folder / filename], root=folder)
        return await deps.jobs.submit(target, options, cleanup=lambda: shutil.rmtree(folder, True))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _upload_query(request: Request) -> tuple[str, IngestOptions]:
    """The upload's file name and options from the query string, strictly."""
    params = request.query_params
    for name in params:
        if name not in ("filename", *_UPLOAD_FLAGS):
            raise _bad_field("query", name[:64], "unknown query parameter")
        if len(params.getlist(name)) > 1:
            raise _bad_field("query", name, "given more than once")
    flags = {}
    for name in _UPLOAD_FLAGS:
        value = params.get(name, "false")
        if value not in ("true", "false"):
            raise _bad_field("query", name, "must be true or false")
        flags[name] = value == "true"
    return _upload_filename(params.get("filename", "")), IngestOptions(**flags)


def _upload_filename(filename: str) -> str:
    suffixes = ", ".join(sorted(SUPPORTED_SUFFIXES))
    if not filename:
        raise _bad_field(
            "query", "filename", f"an upload needs ?filename=<name> with one of: {suffixes}"
        )
    problem = text_problem(filename)
    if problem is not None:
        raise _bad_field("query", "filename", problem)
    if "/" in filename or "\\" in filename:
        raise _bad_field("query", "filename", "must be a file name, without folders")
    if len(filename.encode()) > MAX_FILENAME_BYTES:
        raise _bad_field("query", "filename", f"is longer than {MAX_FILENAME_BYTES} bytes")
    if filename.startswith("."):
        raise _bad_field("query", "filename", "must not start with '.' (a hidden file)")
    if Path(filename).suffix.lower() not in SUPPORTED_SUFFIXES:
        raise _bad_field("query", "filename", f"must end in one of: {suffixes}")
    return filename


def _bad_field(source: str, field: str, problem: str) -> InvalidInput:
    """A 400 naming the field, in the shape of every other validation error."""
    what = "request body" if source == "body" else "request"
    loc = (source,) if field == source else (source, field)
    return invalid_input(what, [{"loc": loc, "msg": problem}])
