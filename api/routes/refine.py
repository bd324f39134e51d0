"""POST /v1/jobs/{id}/refine: a child job from cells of a job (docs/REFINE.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from api.auth import TenantId
from api.deps import DbSession, State
from api.errors import ApiError
from api.routes.jobs import IdempotencyKey, JsonBody, TenantJob
from api.schemas import DryRunOut, JobOut
from api.views import dry_run_examples, job_out
from models.db.tables import Job
from models.domain.estimate import estimate_gpu_seconds
from models.domain.refine import NotRendered, RefineIn
from models.service.refine import plan, refine
from models.service.submit import Submitter

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post(
    "/{job_id}/refine",
    status_code=201,
    dependencies=[JsonBody],
    responses={200: {"model": JobOut | DryRunOut, "description": "A replay, or a dry run"}},
)
def refine_job(
    body: RefineIn,
    job: TenantJob,
    state: State,
    session: DbSession,
    tenant: TenantId,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    dry_run: bool = False,
) -> JobOut | DryRunOut:
    """Select cells (``cells``, ``where``, ``top``) and change them (``hires``,
    ``more_like``, ``set``): a new job whose cells name their parent cell. Another
    tenant's job is a 404, over quota a 429, a hi-res pass of cells not rendered yet a
    409, any other bad selection a 422 naming the field. ``dry_run``: checked, counted
    and priced, nothing made."""
    try:
        if dry_run:
            response.status_code = 200
            return _dry_run(state.submitter, session, tenant=tenant, parent=job, body=body)
        created = refine(
            state.submitter,
            session,
            tenant_id=tenant,
            parent=job,
            request=body,
            idempotency_key=idempotency_key,
        )
    except NotRendered as exc:
        raise ApiError(409, str(exc), fields=exc.errors) from None
    if not created.created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/jobs/{created.job.id}"
    return job_out(created.job)


def _dry_run(
    submitter: Submitter, session: Session, *, tenant: uuid.UUID, parent: Job, body: RefineIn
) -> DryRunOut:
    policy = submitter.policy(session, tenant)
    planned = plan(submitter, session, parent=parent, request=body, policy=policy)
    cells = planned.made.cells
    submitter.check_quota(session, tenant_id=tenant, cells=len(cells), policy=policy)
    retention_s = submitter.retention_s(planned.spec, policy)
    groups = len(planned.made.grid["prompts"])
    return DryRunOut(
        total=len(cells),
        estimated_gpu_seconds=estimate_gpu_seconds(cells, planned.chunks),
        axes={"cells": groups, "per_cell": len(cells) // max(1, groups)},
        max_prompt_chunks=max(planned.chunks.values(), default=1),
        examples=dry_run_examples(cells),
        retention_s=retention_s,
        expires_at_if_finished_now=None
        if retention_s is None
        else datetime.now(UTC) + timedelta(seconds=retention_s),
    )
