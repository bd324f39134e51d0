"""POST /v1/jobs/{id}/refine: a child job from cells of a job (docs/REFINE.md)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.auth import TenantId
from api.deps import DbSession, State
from api.errors import ApiError
from api.routes.jobs import IdempotencyKey, JsonBody, TenantJob
from api.schemas import JobOut
from api.views import job_out
from models.domain.refine import NotRendered, RefineIn
from models.service.refine import refine

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post("/{job_id}/refine", status_code=201, dependencies=[JsonBody])
def refine_job(
    body: RefineIn,
    job: TenantJob,
    state: State,
    session: DbSession,
    tenant: TenantId,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> JobOut:
    """Select cells (``cells``, ``where``, ``top``) and change them (``hires``,
    ``more_like``, ``set``): a new job whose cells name their parent cell. Another
    tenant's job is a 404, over quota a 429, a hi-res pass of cells not rendered yet a
    409, any other bad selection a 422 naming the field."""
    try:
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
