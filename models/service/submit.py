"""The one submit path: every door that makes jobs goes through ``Submitter``.

The doors are ``POST /v1/jobs`` (and its dry run), ``POST /v1/jobs/bulk``, the web
form, and campaign runs (scheduled ticks, ``trigger``, ``backfill``). Each runs the same
steps, in this order:

0. the tenant's content policy (models/domain/policy.py): the forced rating tag and
   negative terms are added, so what follows checks the text that is rendered;
1. limits, after expansion (``models.domain.limits.check_limits``), then the policy's
   allowed ratings on every encoded text and its retention: a SpecError names every
   offending field, with the door's prefix (``jobs.3.``, ``spec.``);
2. idempotent replays are found first: a replay is answered, never refused for quota;
3. the tenant's quotas: cells (active, daily) and its monthly GPU seconds
   (``QuotaExceeded``: the API's 429 with Retry-After);
4. the job, its cells and shards, in the caller's transaction (the client's spec is
   stored; the policy's is rendered), with its retention and GPU budget;
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

from models.db.jobs import CreatedJob, MadeCells, NewJob, create_jobs, find_replay
from models.db.ledger import gpu_ms_since
from models.db.policies import load_policy
from models.db.quotas import active_cells, cells_submitted_since
from models.db.tables import utcnow
from models.domain.grid import ResolvedGrid
from models.domain.limits import CheckedJob, check_job
from models.domain.policy import (
    OPEN_POLICY,
    ContentPolicy,
    check_ratings,
    job_retention,
    with_forced_terms,
)
from models.domain.prompt_chunks import TokenCounter
from models.domain.spec import FieldError, JobSpec, SpecError
from models.domain.usage import month_start, next_month_start
from models.infra.queue import Publisher
from models.infra.settings import Settings
from models.infra.tokenizers import TokenCounters


class QuotaExceeded(Exception):
    """The submission would take the tenant past one of its cell quotas."""

    def __init__(self, message: str, *, retry_after_s: int, field: str = "prompts") -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.field = FieldError(field, message)


@dataclass(frozen=True)
class JobRequest:
    """One job a door asks for; ``field_prefix`` is how errors name its fields."""

    spec: JobSpec
    idempotency_key: str | None = None
    field_prefix: str = ""
    made: MadeCells | None = None  # a refinement's cells, checked (models/service/refine.py)


class Submitter:
    """Limits, quotas, idempotency, create, publish after commit (module docstring)."""

    def __init__(
        self, settings: Settings, publisher: Publisher, counters: TokenCounters | None = None
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.counters = counters or TokenCounters(settings.models, settings.models_dir)

    # -- 0-1. policy and limits ----------------------------------------------------------

    def policy(self, session: Session, tenant_id: uuid.UUID) -> ContentPolicy:
        return load_policy(session, tenant_id=tenant_id)

    def counter_for(self, spec: JobSpec) -> TokenCounter:
        """What counts the tokens of ``spec``'s prompts: its model's tokenizer, if here."""
        return self.counters(spec.model or self.settings.model)

    def check(
        self, spec: JobSpec, *, prefix: str = "", policy: ContentPolicy = OPEN_POLICY
    ) -> CheckedJob:
        """Steps 0-1 for one spec: the grid to make the job from (the policy's text, its
        seeds drawn: they choose the wildcards) and each cell text's chunk count (the dry
        run's)."""
        rendered = with_forced_terms(spec, policy)
        counter = self.counter_for(spec)
        checked = check_job(rendered, self.settings.limits, counter=counter, prefix=prefix)
        check_ratings(rendered, policy, prefix=prefix)
        self.retention_s(spec, policy, prefix=prefix)
        return checked

    def retention_s(self, spec: JobSpec, policy: ContentPolicy, *, prefix: str = "") -> int | None:
        """Seconds the job's files are kept once it finishes (None: forever)."""
        default_s = self.settings.retention_s
        return job_retention(spec.retention_s, policy, default_s=default_s, prefix=prefix)

    def check_all(
        self, requests: Sequence[JobRequest], *, policy: ContentPolicy = OPEN_POLICY
    ) -> list[ResolvedGrid]:
        """Steps 0-1 for every request, and the limits of one call: every error at once."""
        errors: list[FieldError] = []
        grids: list[ResolvedGrid] = []
        for request in requests:
            try:
                checked = self.check(request.spec, prefix=request.field_prefix, policy=policy)
                grids.append(checked.grid)
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
        policy: ContentPolicy | None = None,
        grids: Sequence[ResolvedGrid | None] = (),
    ) -> list[CreatedJob]:
        """Steps 2-4, limits already checked (on ``grids``, made from them; none given:
        resolved here). IdempotencyConflict for a reused key."""
        policy = self.policy(session, tenant_id) if policy is None else policy
        made_from = list(grids) or [None] * len(requests)
        jobs = [
            NewJob(
                r.spec,
                r.idempotency_key,
                render_spec=with_forced_terms(r.spec, policy),
                grid=grid,
                made=r.made,
            )
            for r, grid in zip(requests, made_from, strict=True)
        ]
        new = [j for j in jobs if find_replay(session, tenant_id=tenant_id, request=j) is None]
        library = self.settings.prompt_library
        if new:
            cells = sum(j.cell_count(library) for j in new)
            self.check_quota(session, tenant_id=tenant_id, cells=cells, policy=policy)
        created = create_jobs(
            session,
            tenant_id=tenant_id,
            requests=jobs,
            default_model=self.settings.model,
            batch_size=self.settings.batch_size,
            library=library,
        )
        for made, request in zip(created, requests, strict=True):
            if made.created:
                spec = request.spec
                made.job.retention_s = self.retention_s(spec, policy, prefix=request.field_prefix)
                budget = spec.max_gpu_seconds
                made.job.max_gpu_ms = None if budget is None else max(1, round(budget * 1000))
        session.flush()
        return created

    def check_quota(
        self,
        session: Session,
        *,
        tenant_id: uuid.UUID,
        cells: int,
        policy: ContentPolicy = OPEN_POLICY,
    ) -> None:
        """QuotaExceeded if ``cells`` more would pass the active or the daily quota, or the
        tenant has spent its GPU seconds for this month."""
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
        self._check_gpu_budget(session, tenant_id=tenant_id, policy=policy)

    def _check_gpu_budget(
        self, session: Session, *, tenant_id: uuid.UUID, policy: ContentPolicy
    ) -> None:
        budget = policy.monthly_gpu_seconds
        if budget is None:
            return
        now = utcnow()
        used_s = gpu_ms_since(session, tenant_id=tenant_id, since=month_start(now)) / 1000
        if used_s >= budget:
            raise QuotaExceeded(
                f"this tenant used {used_s:.1f} GPU seconds this month (UTC); its monthly "
                f"budget is {budget:g}",
                retry_after_s=max(1, int((next_month_start(now) - now).total_seconds())),
                field="monthly_gpu_seconds",
            )

    # -- the whole path ------------------------------------------------------------------

    def submit(
        self, session: Session, *, tenant_id: uuid.UUID, requests: Sequence[JobRequest]
    ) -> list[CreatedJob]:
        """Steps 0-5: checked, created and committed, then published."""
        policy = self.policy(session, tenant_id)
        grids = self.check_all(requests, policy=policy)

        def create() -> list[CreatedJob]:
            return self.create(
                session, tenant_id=tenant_id, requests=requests, policy=policy, grids=grids
            )

        try:
            created = create()
            session.commit()
        except IntegrityError:
            # A concurrent request with the same Idempotency-Key won the race: replay it.
            session.rollback()
            created = create()
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
