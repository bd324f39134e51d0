"""The job page's Pause and Resume buttons: the same steps as ``/v1/jobs/{id}/pause`` and
``/resume`` for a signed-in viewer (cookie or Bearer), answered with the page again."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from api.deps import DbSession, State
from api.routes.web import WebJob
from api.web.forms import Form
from models.db.job_control import JobFinished, pause_job, resume_job

router = APIRouter(tags=["web"])
_FORM = {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}


def _back(job: WebJob) -> RedirectResponse:
    return RedirectResponse(f"/web/jobs/{job.id}", status_code=303)


@router.post("/web/jobs/{job_id}/pause", openapi_extra={"requestBody": _FORM})
def pause(job: WebJob, session: DbSession, _: Form) -> RedirectResponse:
    try:
        pause_job(session, job=job)
        session.commit()
    except JobFinished:  # it finished meanwhile: the page shows that
        session.rollback()
    return _back(job)


@router.post("/web/jobs/{job_id}/resume", openapi_extra={"requestBody": _FORM})
def resume(job: WebJob, session: DbSession, state: State, _: Form) -> RedirectResponse:
    try:
        shard_ids = resume_job(session, job=job)
        session.commit()
    except JobFinished:
        session.rollback()
        return _back(job)
    if shard_ids:
        state.publisher.publish(model=job.model, shard_ids=shard_ids)
    return _back(job)
