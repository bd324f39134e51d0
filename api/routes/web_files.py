"""A job's folder through the API: contact sheets, gallery, manifest, images.

``/web/jobs/{id}/files/...`` serves the job folder's files (cookie or Bearer key), so
the gallery's relative links work from the API as they do from the bucket; on S3 an
image redirects to a presigned URL. The job view's ``links`` name these routes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response

from api.deps import State
from api.errors import ApiError
from api.routes.web import WebJob, files_base
from api.views import url_expiry_s
from models.infra.storage import GALLERY_NAME, MANIFEST_NAME, LocalStorage, job_folder, sheet_name

router = APIRouter(tags=["web"])
# The gallery is user data rendered by its own inline script: it gets nothing else.
GALLERY_CSP = (
    "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)


@router.get("/web/jobs/{job_id}/sheets")
def job_sheets(job: WebJob) -> Any:
    """The job's contact sheets, one per prompt (``links.contact_sheets``)."""
    base = files_base(job)
    return {
        "items": [
            {"prompt_index": i, "prompt": p, "url": base + sheet_name(i)}
            for i, p in enumerate(job.grid["prompts"])
        ]
    }


def _safe_path(path: str) -> bool:
    """A relative path inside the folder: no empty, dot or dot-dot segment, no NUL or
    other control character (a file system refuses NUL; S3 keys must not carry it)."""
    parts = path.split("/")
    return bool(path) and all(p not in ("", ".", "..") for p in parts) and path.isprintable()


@router.get("/web/jobs/{job_id}/files/{path:path}")
def job_file(job: WebJob, path: str, state: State) -> Response:
    """A file of the job's folder; relative links between them (the gallery's) just work."""
    if not _safe_path(path):
        raise ApiError(404, f"no file {path!r} in job {job.id}")
    folder = job_folder(prefix=state.settings.s3_prefix, tenant_id=job.tenant_id, job_id=job.id)
    key = f"{folder}/{path}"
    changing = path in (GALLERY_NAME, MANIFEST_NAME) or path.startswith("sheets/")
    headers = {"Cache-Control": "no-cache" if changing else "private, max-age=3600"}
    if path == GALLERY_NAME:
        headers["Content-Security-Policy"] = GALLERY_CSP
    storage = state.storage
    if not storage.exists(key):
        raise ApiError(404, f"no file {path!r} in job {job.id} (yet)")
    if isinstance(storage, LocalStorage):
        return FileResponse(storage.path(key), headers=headers)
    if path in (GALLERY_NAME, MANIFEST_NAME):  # served here, so relative links come back here
        media = "text/html; charset=utf-8" if path == GALLERY_NAME else "application/json"
        return Response(storage.get(key), media_type=media, headers=headers)
    expires_s = url_expiry_s(job, state.settings.url_expiry_s)  # never past its expiry
    if expires_s is None:
        raise ApiError(404, f"the files of job {job.id} have expired")
    url = storage.url(key, expires_s=expires_s)
    return RedirectResponse(url, status_code=307, headers=headers)
