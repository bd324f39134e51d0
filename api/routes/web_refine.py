"""The job page's refine form: the same steps as ``POST /v1/jobs/{id}/refine`` (the one
submit path, the same key check and rate limit) for a signed-in viewer; the child's page
on success, the job page with the errors otherwise."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from api.deps import DbSession, State
from api.errors import validation_fields
from api.routes.web import WebJob, files_base, templates
from api.views import job_out
from api.web.forms import Form, refine_from_form
from models.domain.refine import RefineIn
from models.domain.spec import FieldError, SpecError
from models.service.refine import refine
from models.service.submit import QuotaExceeded

router = APIRouter(tags=["web"])
_FORM = {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}


@router.post("/web/jobs/{job_id}/refine", openapi_extra={"requestBody": _FORM})
def refine_cells(
    request: Request, job: WebJob, form: Form, state: State, session: DbSession
) -> Response:
    try:
        body = RefineIn.model_validate(refine_from_form(form))
        created = refine(
            state.submitter, session, tenant_id=job.tenant_id, parent=job, request=body
        )
    except ValidationError as exc:
        return _page(request, job, validation_fields([dict(e) for e in exc.errors()]), 422)
    except SpecError as exc:  # NotRendered too: the page says which cells
        return _page(request, job, exc.errors, 422)
    except QuotaExceeded as exc:
        response = _page(request, job, [exc.field], 429)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    return RedirectResponse(f"/web/jobs/{created.job.id}", status_code=303)


def job_page_context(job: WebJob, errors: list[FieldError]) -> dict[str, object]:
    return {"job": job_out(job).model_dump(mode="json"), "files": files_base(job), "errors": errors}


def _page(request: Request, job: WebJob, errors: list[FieldError], status: int) -> Response:
    context = job_page_context(job, errors)
    return templates.TemplateResponse(request, "job.html", context, status_code=status)
