"""/v1/jobs/{id}: steer a job under way (pause, resume, priority) and delete a finished one.

Pause stops new shards from starting; shards in flight finish and are recorded. Resume
puts the paused shards back in the queue and publishes them. ``PATCH {"priority": …}``
re-ranks the shards still waiting. ``DELETE`` removes a finished job, its cells and,
by the next retention sweep, every object it stored.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict

from api.deps import DbSession, State
from api.errors import ApiError
from api.routes.jobs import JsonBody, TenantJob
from api.schemas import JobOut
from api.views import job_out
from models.db.job_control import JobFinished, pause_job, resume_job, set_priority
from models.db.tables import Job
from models.domain.spec import FieldError
from models.domain.status import TERMINAL_JOB_STATUSES, JobStatus, Priority
from models.service.retention import delete_job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class JobPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: Priority


def _finished(exc: JobFinished) -> ApiError:
    return ApiError(409, str(exc), fields=[FieldError("status", f"job is {exc.status}")])


@router.post("/{job_id}/pause")
def pause(job: TenantJob, session: DbSession) -> JobOut:
    """No new shard of the job starts; those rendering finish. Pausing twice is fine."""
    try:
        pause_job(session, job=job)
    except JobFinished as exc:
        session.rollback()
        raise _finished(exc) from None
    session.commit()
    return job_out(job)


@router.post("/{job_id}/resume")
def resume(job: TenantJob, session: DbSession, state: State) -> JobOut:
    """The paused shards go back in the queue. Resuming a job that is not paused is fine."""
    try:
        shard_ids = resume_job(session, job=job)
    except JobFinished as exc:
        session.rollback()
        raise _finished(exc) from None
    session.commit()
    if shard_ids:
        state.publisher.publish(model=job.model, shard_ids=shard_ids)
    return job_out(job)


@router.patch("/{job_id}", dependencies=[JsonBody])
def patch(body: JobPatch, job: TenantJob, session: DbSession, state: State) -> JobOut:
    """A new priority for the shards still waiting (``high`` boosts, ``bulk`` defers)."""
    try:
        shard_ids = set_priority(session, job=job, priority=body.priority)
    except JobFinished as exc:
        session.rollback()
        raise _finished(exc) from None
    session.commit()
    if shard_ids:  # a worker looks at the new order now, not at its next token
        state.publisher.publish(model=job.model, shard_ids=shard_ids[:1])
    return job_out(job)


def ensure_finished(job: Job) -> None:
    if JobStatus(job.status) not in TERMINAL_JOB_STATUSES:
        raise ApiError(
            409,
            f"job is {job.status}: cancel it first, then delete it",
            fields=[FieldError("status", f"job is {job.status}")],
        )


@router.delete("/{job_id}", status_code=204)
def delete(job: TenantJob, session: DbSession, state: State) -> Response:
    """The job and its cells now; its images, sheets, manifest and gallery by the next
    retention sweep (``farm beat``)."""
    ensure_finished(job)
    delete_job(session, settings=state.settings, job=job)
    session.commit()
    return Response(status_code=204)
