"""Web pages: sign in with an API key, list jobs, watch one, submit a grid.

Server-rendered (Jinja2) with a little vanilla JS that polls the ``/web/...`` JSON
below. The key is kept in an HttpOnly cookie; every route here also takes the API's
``Authorization: Bearer`` header, goes through the same key check and rate limit as
``/v1`` (api/auth.py), and submits through the same path (models/service/submit.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import TypeAdapter, ValidationError

from api.auth import COOKIE, SignedIn, Viewer, authenticate
from api.deps import DbSession, State, owned_or_404
from api.errors import ApiError, validation_fields
from api.schemas import ImageOut
from api.views import image_out, job_out
from api.web.forms import Fields, Form, first, spec_from_form
from models.db.jobs import get_job, list_items, list_jobs
from models.db.tables import Job
from models.domain.buckets import BUCKETS
from models.domain.cells import viewer_fields
from models.domain.samplers import SAMPLERS
from models.domain.spec import FieldError, JobSpec, SpecError
from models.domain.status import TERMINAL_JOB_STATUSES, JobStatus
from models.infra.storage import GALLERY_NAME, job_folder, sheet_name, thumb_name
from models.service.submit import JobRequest, QuotaExceeded

router = APIRouter(tags=["web"])
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")
CELL_FIELD_LABELS = viewer_fields()  # what a cell's viewer lists
_IMAGE = TypeAdapter(ImageOut)
_FORM = {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}


def web_job(job_id: str, session: DbSession, tenant: SignedIn) -> Job:
    return owned_or_404("job", job_id, lambda i: get_job(session, tenant_id=tenant, job_id=i))


WebJob = Annotated[Job, Depends(web_job)]


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") else "/web/jobs"


def files_base(job: Job) -> str:
    return f"/web/jobs/{job.id}/files/"


# -- sign in ---------------------------------------------------------------------------


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/web/jobs", status_code=303)


@router.get("/login")
def login_page(request: Request, next: str = "/web/jobs") -> Response:
    return templates.TemplateResponse(request, "login.html", {"next": _safe_next(next)})


@router.post("/login", openapi_extra={"requestBody": _FORM})
def login(request: Request, form: Form, state: State, session: DbSession) -> Response:
    key = first(form, "api_key")
    target = _safe_next(first(form, "next", "/web/jobs"))
    try:
        if not key:
            raise ApiError(401, "no key")
        authenticate(state, session, key)
    except ApiError as exc:
        if exc.status != 401:
            raise
        context = {"next": target, "error": "That key is not valid (or was revoked)."}
        return templates.TemplateResponse(request, "login.html", context, status_code=401)
    response = RedirectResponse(target, status_code=303)
    secure = request.url.scheme == "https"
    response.set_cookie(COOKIE, key, httponly=True, samesite="lax", secure=secure, path="/")
    return response


@router.post("/logout", openapi_extra={"requestBody": _FORM})
def logout(_: Form) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# -- jobs ------------------------------------------------------------------------------


@router.get("/web/jobs")
def jobs_page(request: Request, tenant: Viewer, session: DbSession) -> Response:
    if tenant is None:
        return _to_login(request)
    page = list_jobs(session, tenant_id=tenant, status=None, cursor=None, limit=100)
    rows = [job_out(j).model_dump(mode="json") for j in page.items]
    return templates.TemplateResponse(request, "jobs.html", {"jobs": rows})


@router.get("/web/jobs.json")
def jobs_json(session: DbSession, tenant: SignedIn) -> Any:
    page = list_jobs(session, tenant_id=tenant, status=None, cursor=None, limit=100)
    return {"items": [job_out(j).model_dump(mode="json") for j in page.items]}


@router.get("/web/jobs/new")
def submit_page(request: Request, tenant: Viewer, state: State) -> Response:
    if tenant is None:
        return _to_login(request)
    return _submit_form(request, state, {}, [])


@router.post("/web/jobs/new", openapi_extra={"requestBody": _FORM})
def submit(
    request: Request, form: Form, state: State, session: DbSession, tenant: Viewer
) -> Response:
    if tenant is None:
        return _to_login(request)
    try:
        spec = JobSpec.model_validate(spec_from_form(form))
        [created] = state.submitter.submit(session, tenant_id=tenant, requests=[JobRequest(spec)])
    except ValidationError as exc:
        errors = validation_fields([dict(e) for e in exc.errors()])
        return _submit_form(request, state, form, errors, 422)
    except SpecError as exc:
        return _submit_form(request, state, form, exc.errors, 422)
    except QuotaExceeded as exc:
        response = _submit_form(request, state, form, [exc.field], 429)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    return RedirectResponse(f"/web/jobs/{created.job.id}", status_code=303)


def _submit_form(
    request: Request, state: State, form: Fields, errors: list[FieldError], status: int = 200
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
    job = web_job(job_id, session, tenant)
    context = {"job": job_out(job).model_dump(mode="json"), "files": files_base(job)}
    context["extra_scripts"] = ["/static/scores.js"]  # scores under the images (job.js draws)
    return templates.TemplateResponse(request, "job.html", context)


@router.get("/web/jobs/{job_id}/state")
def job_state(job: WebJob, state: State, session: DbSession, cursor: str | None = None) -> Any:
    """What the job page shows: the job, a page of its cells (``next_cursor``: the next
    page, for grids larger than one), whether the gallery is written."""
    page = list_items(session, job_id=job.id, cursor=cursor, limit=2000)
    folder = job_folder(prefix=state.settings.s3_prefix, tenant_id=job.tenant_id, job_id=job.id)
    cells = []
    for item in page.items:
        cell = image_out(item, state.storage, expires_s=state.settings.url_expiry_s)
        data = _IMAGE.dump_python(cell, mode="json", exclude={"url"})
        file = item.key.removeprefix(folder + "/") if item.key else None
        data["file"] = file
        data["thumb"] = thumb_name(file) if file else None
        cells.append(data)
    terminal = JobStatus(job.status) in TERMINAL_JOB_STATUSES
    ready = terminal and state.storage.exists(f"{folder}/{GALLERY_NAME}")
    return {
        "job": job_out(job).model_dump(mode="json"),
        "cells": cells,
        "next_cursor": page.next_cursor,
        "fields": CELL_FIELD_LABELS,
        "prompts": list(job.spec.get("prompts") or job.grid["prompts"]),
        "sheets": [sheet_name(i) for i in range(len(job.grid["prompts"]))],
        "gallery_ready": ready,
    }
