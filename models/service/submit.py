"""The one submit path: every door that makes jobs goes through ``Submitter``.

The doors are ``POST /v1/jobs`` (and its dry run), ``POST /v1/jobs/bulk``, the web
form, and campaign runs (scheduled ticks, ``trigger``, ``backfill``). Each runs the same
steps, in this order:

1. limits, after expansion (``models.domain.limits.check_limits``): a SpecError names
   every offending field, with the door's prefix (``jobs.3.``, ``spec.``);
2. idempotent replays are found first: a replay is answered, never refused for quota;
3. the tenant's cell quotas (``QuotaExceeded``: the API's 429 with Retry-After);
4. the job, its cells and shards, in the caller's transaction;
5. after the commit, one token per shard is published.

Campaign runs count against the quotas like any other submission: they are the
tenant's work, and would otherwise bypass them. A scheduled tick that a quota refuses
is recorded as a ``refused`` run with the quota's message (docs/CAMPAIGNS.md); a
``trigger`` or ``backfill`` over quota is a 429 to its caller and records nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.db.jobs import CreatedJob, NewJob, create_jobs, find_replay
from models.db.quotas import active_cells, cells_submitted_since
from models.db.tables import utcnow
from models.domain.grid import ResolvedGrid
from models.domain.limits import CheckedJob, check_job
from models.domain.prompt_chunks import TokenCounter
from models.domain.spec import FieldError, JobSpec, SpecError
from models.infra.queue import Publisher
from models.infra.settings import Settings
from models.infra.tokenizers import TokenCounters


class QuotaExceeded(Exception):
    """The submission would take the tenant past one of its cell quotas."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.field = FieldError("prompts", message)


@dataclass(frozen=True)
class JobRequest:
    """One job a door asks for; ``field_prefix`` is how errors name its fields."""

    spec: JobSpec
    idempotency_key: str | None = None
    field_prefix: str = ""


class Submitter:
    """Limits, quotas, idempotency, create, publish after commit (module docstring)."""

    def __init__(
        self, settings: Settings, publisher: Publisher, counters: TokenCounters | None = None
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.counters = counters or TokenCounters(settings.models, settings.models_dir)

    # -- 1. limits ---------------------------------------------------------------------

    def counter_for(self, spec: JobSpec) -> TokenCounter:
        """What counts the tokens of ``spec``'s prompts: its model's tokenizer, if here."""
        return self.counters(spec.model or self.settings.model)

    def check(self, spec: JobSpec, *, prefix: str = "") -> CheckedJob:
        """Step 1 for one spec: the grid to make the job from (its seeds drawn: they choose
        the wildcards) and each cell text's chunk count (the dry run's)."""
        limits = self.settings.limits
        return check_job(spec, limits, counter=self.counter_for(spec), prefix=prefix)

    def check_all(self, requests: Sequence[JobRequest]) -> list[ResolvedGrid]:
        """Step 1 for every request, and the limits of one call: every error at once."""
        errors: list[FieldError] = []
        grids: list[ResolvedGrid] = []
        for request in requests:
            try:
                grids.append(self.check(request.spec, prefix=request.field_prefix).grid)
            except SpecError as exc:
                errors.extend(exc.errors)
        library = self.settings.prompt_library
        total = sum(r.spec.cell_count(library) for r in requests)
        if len(requests) > 1 and total > self.settings.max_grid_cells * 10:
            errors.append(FieldError("jobs", f"{total} cells in one request is too many"))
        if errors:
            raise SpecError(errors)
        return grids

    # -- 2-4. replays, quota, create (in the caller's transaction) -------------------

    def create(
        self,
        session: Session,
        *,
        tenant_id: uuid.UUID,
        requests: Sequence[JobRequest],
        grids: Sequence[ResolvedGrid | None] = (),
    ) -> list[CreatedJob]:
        """Steps 2-4, limits already checked (on ``grids``, made from them).
        IdempotencyConflict for a reused key."""
        grids = list(grids) or [None] * len(requests)
        jobs = [NewJob(r.spec, r.idempotency_key, g) for r, g in zip(requests, grids, strict=True)]
        new = [j for j in jobs if find_replay(session, tenant_id=tenant_id, request=j) is None]
        library = self.settings.prompt_library
        if new:
            cells = sum(j.spec.cell_count(library) for j in new)
            self.check_quota(session, tenant_id=tenant_id, cells=cells)
        return create_jobs(
            session,
            tenant_id=tenant_id,
            requests=jobs,
            default_model=self.settings.model,
            batch_size=self.settings.batch_size,
            library=library,
        )

    def check_quota(self, session: Session, *, tenant_id: uuid.UUID, cells: int) -> None:
        """QuotaExceeded if ``cells`` more would pass the active or the daily quota."""
        limit = self.settings.max_active_cells
        if limit:
            active = active_cells(session, tenant_id=tenant_id)
            if active + cells > limit:
                raise QuotaExceeded(
                    f"this tenant has {active} cells waiting or rendering; with {cells} more "
                    f"it would pass its limit of {limit}",
                    retry_after_s=60,
                )
        daily = self.settings.max_cells_per_day
        if daily:
            since = utcnow() - timedelta(days=1)
            used, oldest = cells_submitted_since(session, tenant_id=tenant_id, since=since)
            if used + cells > daily:
                wait_s = 3600 if oldest is None else int((oldest - since).total_seconds()) + 1
                raise QuotaExceeded(
                    f"this tenant submitted {used} cells in the last 24 h; with {cells} more "
                    f"it would pass its daily limit of {daily}",
                    retry_after_s=max(1, wait_s),
                )

    # -- the whole path ------------------------------------------------------------------

    def submit(
        self, session: Session, *, tenant_id: uuid.UUID, requests: Sequence[JobRequest]
    ) -> list[CreatedJob]:
        """Steps 1-5: checked, created and committed, then published."""
        grids = self.check_all(requests)
        try:
            created = self.create(session, tenant_id=tenant_id, requests=requests, grids=grids)
            session.commit()
        except IntegrityError:
            # A concurrent request with the same Idempotency-Key won the race: replay it.
            session.rollback()
            created = self.create(session, tenant_id=tenant_id, requests=requests, grids=grids)
            if any(c.created for c in created):
                raise
        except Exception:
            session.rollback()
            raise
        self.publish(created)
        return created

    def publish(self, created: Sequence[CreatedJob]) -> None:
        """Step 5, after the commit: a lost token is re-published by the reconciler."""
        for c in created:
            self.publisher.publish(model=c.job.model, shard_ids=c.shard_ids)
