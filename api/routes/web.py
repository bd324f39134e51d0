"""Web pages: sign in with an API key, list jobs, watch one, submit a grid.

Server-rendered (Jinja2) with a little vanilla JS that polls the ``/web/...``
JSON below. The key is kept in an HttpOnly cookie; every route here also takes
the API's ``Authorization: Bearer`` header, so ``/web/jobs/{id}/files/...`` (the
job folder: gallery, manifest, contact sheets, images) works for scripts too.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from api.deps import DbSession, State, get_tenant_job
from api.errors import ApiError, validation_fields
from api.views import image_out, job_out
from models.db.jobs import NewJob, create_jobs, list_items, list_jobs
from models.db.keys import tenant_for_key
from models.db.tables import Job
from models.domain.buckets import BUCKETS
from models.domain.samplers import SAMPLERS
from models.domain.spec import FieldError, JobSpec, SpecError, check_limits
from models.domain.status import TERMINAL_JOB_STATUSES, JobStatus
from models.infra.storage import (
    GALLERY_NAME,
    MANIFEST_NAME,
    LocalStorage,
    job_folder,
    sheet_name,
    thumb_name,
)

router = APIRouter(tags=["web"], include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")
COOKIE = "farm_key"
# The gallery is user data rendered by its own inline script: it gets nothing else.
GALLERY_CSP = (
    "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)


def _key_of(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return key.strip()
    return request.cookies.get(COOKIE) or None


def viewer(request: Request, session: DbSession) -> uuid.UUID | None:
    key = _key_of(request)
    return None if key is None else tenant_for_key(session, key=key)


Viewer = Annotated[uuid.UUID | None, Depends(viewer)]


def signed_in(tenant: Viewer) -> uuid.UUID:
    if tenant is None:
        raise ApiError(401, "sign in at /login, or send 'Authorization: Bearer <key>'")
    return tenant


SignedIn = Annotated[uuid.UUID, Depends(signed_in)]


def web_job(job_id: str, session: DbSession, tenant: SignedIn) -> Job:
    return get_tenant_job(job_id, tenant, session)


WebJob = Annotated[Job, Depends(web_job)]


async def form_fields(request: Request) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body (the only kind these forms send)."""
    if request.method == "POST" and not _same_origin(request):
        raise ApiError(403, "cross-site form posts are refused")
    return parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)


Form = Annotated[dict[str, list[str]], Depends(form_fields)]


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


def _first(form: dict[str, list[str]], name: str, default: str = "") -> str:
    return form.get(name, [default])[0].strip()


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") else "/web/jobs"


def files_base(job: Job) -> str:
    return f"/web/jobs/{job.id}/files/"


# -- sign in ---------------------------------------------------------------------------


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/web/jobs", status_code=303)


@router.get("/login")
def login_page(request: Request, next: str = "/web/jobs") -> Response:
    return templates.TemplateResponse(request, "login.html", {"next": _safe_next(next)})


@router.post("/login")
def login(request: Request, form: Form, session: DbSession) -> Response:
    key = _first(form, "api_key")
    target = _safe_next(_first(form, "next", "/web/jobs"))
    if not key or tenant_for_key(session, key=key) is None:
        context = {"next": target, "error": "That key is not valid (or was revoked)."}
        return templates.TemplateResponse(request, "login.html", context, status_code=401)
    response = RedirectResponse(target, status_code=303)
    secure = request.url.scheme == "https"
    response.set_cookie(COOKIE, key, httponly=True, samesite="lax", secure=secure, path="/")
    return response


@router.post("/logout")
def logout(_: Form) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# -- jobs ------------------------------------------------------------------------------


@router.get("/web/jobs")
def jobs_page(request: Request, tenant: Viewer, session: DbSession) -> Response:
    if tenant is None:
        return _to_login(request)
    jobs, _ = list_jobs(session, tenant_id=tenant, status=None, cursor=None, limit=100)
    rows = [job_out(j).model_dump(mode="json") for j in jobs]
    return templates.TemplateResponse(request, "jobs.html", {"jobs": rows})


@router.get("/web/jobs.json")
def jobs_json(session: DbSession, tenant: SignedIn) -> Any:
    jobs, _ = list_jobs(session, tenant_id=tenant, status=None, cursor=None, limit=100)
    return {"items": [job_out(j).model_dump(mode="json") for j in jobs]}


@router.get("/web/jobs/new")
def submit_page(request: Request, tenant: Viewer, state: State) -> Response:
    if tenant is None:
        return _to_login(request)
    return _submit_form(request, state, {}, [])


@router.post("/web/jobs/new")
def submit(
    request: Request, form: Form, state: State, session: DbSession, tenant: Viewer
) -> Response:
    if tenant is None:
        return _to_login(request)
    spec = spec_from_form(form)
    try:
        parsed = JobSpec.model_validate(spec)
        check_limits(parsed, state.settings.limits)
    except ValidationError as exc:
        errors = validation_fields([dict(e) for e in exc.errors()])
        return _submit_form(request, state, form, errors, 422)
    except SpecError as exc:
        return _submit_form(request, state, form, exc.errors, 422)
    [created] = create_jobs(
        session,
        tenant_id=tenant,
        requests=[NewJob(parsed)],
        default_model=state.settings.model,
        batch_size=state.settings.batch_size,
    )
    session.commit()
    state.publisher.publish(model=created.job.model, shard_ids=created.shard_ids)
    return RedirectResponse(f"/web/jobs/{created.job.id}", status_code=303)


def spec_from_form(form: dict[str, list[str]]) -> dict[str, Any]:
    """Form fields to a grid spec; what cannot be parsed goes through as text for the
    spec's own validation to name."""
    spec: dict[str, Any] = {
        "prompts": [p.strip() for p in _first(form, "prompts").splitlines() if p.strip()],
        "buckets": form.get("buckets") or ["1024x1024"],
        "quality_tags": _first(form, "quality_tags") == "on",
        "sampler": _first(form, "sampler", "euler_a"),
    }
    for name in ("name", "negative_prompt", "model", "priority"):
        if _first(form, name):
            spec[name] = _first(form, name)
    seeds = _first(form, "seeds").replace(",", " ").split()
    if seeds:
        spec["seeds"] = [int(s) if s.lstrip("-").isdigit() else s for s in seeds]
    for name, kind in (("steps", int), ("guidance_scale", float)):
        value = _first(form, name)
        if value:
            try:
                spec[name] = kind(value)
            except ValueError:
                spec[name] = value
    return spec


def _submit_form(
    request: Request,
    state: State,
    form: dict[str, list[str]],
    errors: list[FieldError],
    status: int = 200,
) -> Response:
    context = {
        "form": {k: v[0] if k != "buckets" else v for k, v in form.items()},
        "errors": errors,
        "buckets": BUCKETS,
        "samplers": list(SAMPLERS.values()),
        "models": sorted(state.settings.models),
        "default_model": state.settings.model,
    }
    return templates.TemplateResponse(request, "submit.html", context, status_code=status)


@router.get("/web/jobs/{job_id}")
def job_page(request: Request, job_id: str, tenant: Viewer, session: DbSession) -> Response:
    if tenant is None:
        return _to_login(request)
    job = get_tenant_job(job_id, tenant, session)
    return templates.TemplateResponse(
        request, "job.html", {"job": job_out(job).model_dump(mode="json"), "files": files_base(job)}
    )


@router.get("/web/jobs/{job_id}/state")
def job_state(job: WebJob, state: State, session: DbSession) -> Any:
    """Everything the job page shows: the job, its cells, whether the gallery is written."""
    items, _ = list_items(session, job_id=job.id, cursor=None, limit=5000)
    folder = job_folder(prefix=state.settings.s3_prefix, tenant_id=job.tenant_id, job_id=job.id)
    cells = []
    for item in items:
        cell = image_out(item, state.storage, expires_s=state.settings.url_expiry_s)
        data = cell.model_dump(mode="json", exclude={"url"})
        file = item.key.removeprefix(folder + "/") if item.key else None
        data["file"] = file
        data["thumb"] = thumb_name(file) if file else None
        cells.append(data)
    terminal = JobStatus(job.status) in TERMINAL_JOB_STATUSES
    ready = terminal and state.storage.exists(f"{folder}/{GALLERY_NAME}")
    return {
        "job": job_out(job).model_dump(mode="json"),
        "cells": cells,
        "prompts": list(job.spec.get("prompts") or job.grid["prompts"]),
        "sheets": [sheet_name(i) for i in range(len(job.grid["prompts"]))],
        "gallery_ready": ready,
    }


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


@router.get("/web/jobs/{job_id}/files/{path:path}")
def job_file(job: WebJob, path: str, state: State) -> Response:
    """A file of the job's folder; relative links between them (the gallery's) just work."""
    if not path or any(part in ("", ".", "..") for part in path.split("/")):
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
    url = storage.url(key, expires_s=state.settings.url_expiry_s)
    return RedirectResponse(url, status_code=307, headers=headers)
