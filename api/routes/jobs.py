"""/v1/jobs: submit grids, poll them, page their images, cancel them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError

from api.deps import DbSession, State, TenantId, TenantJob
from api.errors import ApiError
from api.limits import check_quota
from api.poll import load_polled_job
from api.schemas import BulkJobsOut, DryRunOut, ImagePage, JobOut, JobPage
from api.views import image_out, job_etag, job_out
from models.db.jobs import (
    CreatedJob,
    IdempotencyConflict,
    NewJob,
    cancel_job,
    create_jobs,
    list_items,
    list_jobs,
    retry_failed,
)
from models.domain.axes import estimate_gpu_seconds
from models.domain.grid import expand, resolve
from models.domain.spec import FieldError, JobSpec, SpecError, check_limits
from models.domain.status import JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
Limit = Annotated[int, Query(ge=1, le=1000)]


def require_json(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(
            415,
            f"content-type must be application/json, not {content_type or 'missing'!r}",
            fields=[FieldError("content-type", "must be application/json")],
        )


JsonBody = Depends(require_json)


class BulkJobsIn(BaseModel):
    jobs: Annotated[list[JobSpec], Field(min_length=1)]


def _submit(
    state: State, session: DbSession, tenant: TenantId, requests: list[NewJob]
) -> list[CreatedJob]:
    try:
        created = create_jobs(
            session,
            tenant_id=tenant,
            requests=requests,
            default_model=state.settings.model,
            batch_size=state.settings.batch_size,
        )
        session.commit()
    except IdempotencyConflict as exc:
        session.rollback()
        raise ApiError(
            409,
            f"Idempotency-Key {exc.args[0]!r} was used with a different request body",
            fields=[FieldError("Idempotency-Key", "reused with a different body")],
        ) from None
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the race: replay it.
        session.rollback()
        created = create_jobs(
            session,
            tenant_id=tenant,
            requests=requests,
            default_model=state.settings.model,
            batch_size=state.settings.batch_size,
        )
        if any(c.created for c in created):
            raise
    for c in created:
        state.publisher.publish(model=c.job.model, shard_ids=c.shard_ids)
    return created


def dry_run_out(spec: JobSpec, default_model: str) -> DryRunOut:
    """What a submission would make, without making it (``?dry_run=true``)."""
    cells = expand(resolve(spec, default_model=default_model))
    return DryRunOut(
        total=len(cells),
        estimated_gpu_seconds=estimate_gpu_seconds(cells),
        axes=spec.axis_sizes(),
    )


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
    check_limits(spec, state.settings.limits)
    check_quota(session, state.settings, tenant=tenant, cells=spec.cell_count())
    if dry_run:  # validated and counted; nothing is stored or published
        response.status_code = 200
        return dry_run_out(spec, state.settings.model)
    [created] = _submit(state, session, tenant, [NewJob(spec, idempotency_key)])
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
        raise SpecError(
            [
                FieldError(
                    "jobs", f"{len(body.jobs)} jobs; the limit is {state.settings.max_bulk_jobs}"
                )
            ]
        )
    errors: list[FieldError] = []
    for i, spec in enumerate(body.jobs):
        try:
            check_limits(spec, state.settings.limits, prefix=f"jobs.{i}.")
        except SpecError as exc:
            errors.extend(exc.errors)
    total = sum(spec.cell_count() for spec in body.jobs)
    if total > state.settings.max_grid_cells * 10:
        errors.append(FieldError("jobs", f"{total} cells in one request is too many"))
    if errors:
        raise SpecError(errors)
    check_quota(session, state.settings, tenant=tenant, cells=total)
    requests = [
        NewJob(spec, f"{idempotency_key}#{i}" if idempotency_key else None)
        for i, spec in enumerate(body.jobs)
    ]
    created = _submit(state, session, tenant, requests)
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
    try:
        jobs, next_cursor = list_jobs(
            session, tenant_id=tenant, status=status, cursor=cursor, limit=limit
        )
    except ValueError as exc:
        raise ApiError(400, str(exc), fields=[FieldError("cursor", str(exc))]) from None
    return JobPage(items=[job_out(j) for j in jobs], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobOut, responses={304: {"description": "Not modified"}})
async def get_job(job_id: str, request: Request) -> Response:
    """Polled hard: one thread hop and one query (api/poll.py), 304 while the ETag holds."""
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
) -> ImagePage:
    try:
        items, next_cursor = list_items(session, job_id=job.id, cursor=cursor, limit=limit)
    except ValueError as exc:
        raise ApiError(400, str(exc), fields=[FieldError("cursor", str(exc))]) from None
    expires_s = state.settings.url_expiry_s
    return ImagePage(
        items=[image_out(i, state.storage, expires_s=expires_s) for i in items],
        next_cursor=next_cursor,
    )


@router.post("/{job_id}/retry")
def retry(job: TenantJob, state: State, session: DbSession) -> JobOut:
    """Re-run only the failed cells of a job; its done cells keep their images."""
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
