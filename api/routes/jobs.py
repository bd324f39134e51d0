"""/v1/jobs: submit grids, poll them, page their images, cancel and retry them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, Field

from api.auth import TenantId
from api.deps import DbSession, Limit, State, owned_or_404
from api.errors import ApiError
from api.poll import load_polled_job
from api.schemas import BulkJobsOut, DryRunOut, ImagePage, JobOut, JobPage
from api.views import dry_run_examples, image_out, job_etag, job_out, url_expiry_s
from models.db.holds import analyses_of
from models.db.job_states import cancel_job, retry_failed
from models.db.jobs import get_job, list_items, list_jobs
from models.db.scored_items import items_by_score
from models.db.tables import Job
from models.domain.estimate import estimate_gpu_seconds
from models.domain.grid import expand
from models.domain.spec import FieldError, JobSpec, SpecError
from models.domain.status import JobStatus
from models.service.submit import JobRequest

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

# Bulk keys get "#<index>" appended, and the column holds 200: keep room for that.
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=190)]


def require_json(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(
            415,
            f"content-type must be application/json, not {content_type or 'missing'!r}",
            fields=[FieldError("content-type", "must be application/json")],
        )


JsonBody = Depends(require_json)


def tenant_job(job_id: str, tenant: TenantId, session: DbSession) -> Job:
    """A job of the caller's tenant, or 404."""
    return owned_or_404("job", job_id, lambda i: get_job(session, tenant_id=tenant, job_id=i))


TenantJob = Annotated[Job, Depends(tenant_job)]


class BulkJobsIn(BaseModel):
    jobs: Annotated[list[JobSpec], Field(min_length=1)]


@router.post(
    "",
    status_code=201,
    dependencies=[JsonBody],
    responses={200: {"model": JobOut | DryRunOut, "description": "A replay, or a dry run"}},
)
def create_job(
    spec: JobSpec,
    state: State,
    session: DbSession,
    tenant: TenantId,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    dry_run: bool = False,
) -> JobOut | DryRunOut:
    submitter = state.submitter
    if dry_run:  # checked, counted and priced; nothing is stored or published
        policy = submitter.policy(session, tenant)
        checked = submitter.check(spec, policy=policy)
        library = state.settings.prompt_library
        cells_count = spec.cell_count(library)
        submitter.check_quota(session, tenant_id=tenant, cells=cells_count, policy=policy)
        cells = expand(checked.grid, library)
        retention_s = submitter.retention_s(spec, policy)
        response.status_code = 200
        return DryRunOut(
            total=len(cells),
            estimated_gpu_seconds=estimate_gpu_seconds(cells, checked.chunks),
            axes=spec.axis_sizes(library),
            max_prompt_chunks=max(checked.chunks.values(), default=1),
            examples=dry_run_examples(cells),
            retention_s=retention_s,
            expires_at_if_finished_now=None
            if retention_s is None
            else datetime.now(UTC) + timedelta(seconds=retention_s),
        )
    [created] = submitter.submit(
        session, tenant_id=tenant, requests=[JobRequest(spec, idempotency_key)]
    )
    if not created.created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/jobs/{created.job.id}"
    return job_out(created.job)


@router.post("/bulk", status_code=201, dependencies=[JsonBody])
def create_jobs_bulk(
    body: BulkJobsIn,
    state: State,
    session: DbSession,
    tenant: TenantId,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> BulkJobsOut:
    """Many grids in one transaction: all are created, or none."""
    if len(body.jobs) > state.settings.max_bulk_jobs:
        reason = f"{len(body.jobs)} jobs; the limit is {state.settings.max_bulk_jobs}"
        raise SpecError([FieldError("jobs", reason)])
    requests = [
        JobRequest(spec, f"{idempotency_key}#{i}" if idempotency_key else None, f"jobs.{i}.")
        for i, spec in enumerate(body.jobs)
    ]
    created = state.submitter.submit(session, tenant_id=tenant, requests=requests)
    if not any(c.created for c in created):
        response.status_code = 200
    return BulkJobsOut(ids=[c.job.id for c in created], jobs=[job_out(c.job) for c in created])


@router.get("")
def get_jobs(
    session: DbSession,
    tenant: TenantId,
    status: JobStatus | None = None,
    cursor: str | None = None,
    limit: Limit = 50,
) -> JobPage:
    page = list_jobs(session, tenant_id=tenant, status=status, cursor=cursor, limit=limit)
    return JobPage(items=[job_out(j) for j in page.items], next_cursor=page.next_cursor)


@router.get("/{job_id}", response_model=JobOut, responses={304: {"description": "Not modified"}})
async def get_job_view(job_id: str, request: Request) -> Response:
    """Polled hard: one thread hop and one query (api/poll.py), 304 while the ETag holds.
    On Postgres the API's front door (api/fast_poll.py) answers before this route."""
    job = await load_polled_job(request, job_id)
    etag = job_etag(job)
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return Response(
        job_out(job).model_dump_json().encode(),
        media_type="application/json",
        headers={"ETag": etag, "Cache-Control": "no-cache"},
    )


@router.get("/{job_id}/images")
def get_images(
    job: TenantJob,
    state: State,
    session: DbSession,
    cursor: str | None = None,
    limit: Limit = 100,
    order: Literal["index", "score"] = "index",
) -> ImagePage:
    """A page of the job's images: by index, or (``order=score``) best score first, the
    unscored last. A cursor belongs to its order."""
    by = items_by_score if order == "score" else list_items
    page = by(session, job_id=job.id, cursor=cursor, limit=limit)
    expires_s = url_expiry_s(job, state.settings.url_expiry_s)  # never past their expiry
    found = analyses_of(session, job_id=job.id, indexes=[i.index for i in page.items])
    return ImagePage(
        items=[
            image_out(i, state.storage, expires_s=expires_s, analyses=found.get(i.index))
            for i in page.items
        ],
        next_cursor=page.next_cursor,
    )


@router.post("/{job_id}/retry")
def retry(job: TenantJob, state: State, session: DbSession) -> JobOut:
    """Re-run only the failed cells of a job; its done cells keep their images."""
    if job.expired_at is not None:
        raise ApiError(
            409,
            "the job's files expired: submit it again instead",
            fields=[FieldError("expired_at", f"expired at {job.expired_at.isoformat()}")],
        )
    shard_ids = retry_failed(session, job=job)
    if not shard_ids:
        session.rollback()
        raise ApiError(
            409,
            f"job has no failed cells to retry (status {job.status})",
            fields=[FieldError("failed", "no failed cells")],
        )
    session.commit()
    state.publisher.publish(model=job.model, shard_ids=shard_ids)
    return job_out(job)


@router.post("/{job_id}/cancel")
def cancel(job: TenantJob, session: DbSession) -> JobOut:
    if job.status == JobStatus.CANCELLED:
        return job_out(job)
    if not cancel_job(session, job=job):
        session.rollback()
        raise ApiError(
            409,
            f"job already finished with status {job.status!r}",
            fields=[FieldError("status", f"job is {job.status}")],
        )
    session.commit()
    return job_out(job)
