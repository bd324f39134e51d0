"""Generated backlogs (hypothesis) written as real rows, for the claim and finish tests.

Everything a claim orders by is drawn, ties included: priorities, tenants' and jobs'
``created_at`` and ``last_claim_at``, shards already rendering, retry backoffs. Ids are
drawn too (a permutation), never random: the tie-break is id order, so a run must not
depend on ``uuid4``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st
from sqlalchemy.orm import Session

from models.db.tables import Item, Job, Shard, Tenant
from models.domain.status import CellStatus, JobStatus, ShardStatus

MODEL = "equivalence-model"
OTHER_MODEL = "equivalence-other"  # its shards must never be chosen nor counted
BASE = datetime(2030, 1, 1, tzinfo=UTC)
PRIORITIES = ("high", "normal", "bulk")
ADAPTERS = ("", "style-a@0123456789ab", "style-b@ba9876543210")  # shards' LoRA sets


def at(seconds: int) -> datetime:
    return BASE + timedelta(seconds=seconds)


def maybe_at(seconds: int | None) -> datetime | None:
    return None if seconds is None else at(seconds)


@dataclass(frozen=True)
class ShardPlan:
    status: str
    available_s: int | None  # backoff: claimable from BASE + this
    other_model: bool
    cells: int
    adapters: str = ""  # the LoRA set of its cells (models.domain.loras.adapter_key)


@dataclass(frozen=True)
class JobPlan:
    tenant: int
    priority: str
    created_s: int
    last_claim_s: int | None
    webhook: bool
    shards: tuple[ShardPlan, ...]


@dataclass(frozen=True)
class Backlog:
    tenants: tuple[tuple[int, int | None], ...]  # (created_s, last_claim_s) each
    tenant_order: tuple[int, ...]  # tenant i's id is UUID(int=1 + tenant_order[i])
    jobs: tuple[JobPlan, ...]
    job_order: tuple[int, ...]


# Small ranges on purpose: equal timestamps make the tie-breaks matter.
_offset = st.integers(min_value=0, max_value=3)
_last_claim = st.none() | st.integers(min_value=-4, max_value=0)
# Mostly one priority: tenants and jobs must compete for the tie-breaks to matter.
_priority = st.sampled_from(["normal"] * 4 + ["high", "bulk"])
_claimable = ShardPlan(ShardStatus.QUEUED.value, None, other_model=False, cells=1)
_shard_kinds = st.sampled_from(
    [
        _claimable,
        _claimable,
        ShardPlan(ShardStatus.RUNNING.value, None, other_model=False, cells=1),
        ShardPlan(ShardStatus.RUNNING.value, None, other_model=True, cells=1),
        ShardPlan(ShardStatus.QUEUED.value, None, other_model=True, cells=1),
        ShardPlan(ShardStatus.DONE.value, None, other_model=False, cells=1),
    ]
)
_backoff = st.builds(
    ShardPlan,
    status=st.just(ShardStatus.QUEUED.value),
    available_s=st.integers(min_value=-3, max_value=30),
    other_model=st.just(False),
    cells=st.just(1),
)


@st.composite
def backlogs(draw: st.DrawFn, *, finishing: bool = False) -> Backlog:
    """A backlog for claims (every kind of shard, one cell each), or with ``finishing``
    one to finish: one tenant's queued shards of one to three cells."""
    if finishing:
        shard: st.SearchStrategy[ShardPlan] = st.integers(1, 3).map(
            lambda n: ShardPlan(ShardStatus.QUEUED.value, None, other_model=False, cells=n)
        )
        n_tenants, n_jobs = 1, draw(st.integers(1, 2))
    else:
        shard = (_shard_kinds | _backoff).flatmap(
            lambda plan: st.sampled_from(ADAPTERS).map(lambda a: replace(plan, adapters=a))
        )
        n_tenants, n_jobs = draw(st.integers(1, 4)), draw(st.integers(2, 8))
    tenants = draw(
        st.lists(st.tuples(_offset, _last_claim), min_size=n_tenants, max_size=n_tenants)
    )
    job = st.builds(
        JobPlan,
        tenant=st.integers(0, n_tenants - 1),
        priority=_priority,
        created_s=_offset,
        last_claim_s=_last_claim,
        webhook=st.booleans(),
        shards=st.lists(shard, min_size=1, max_size=4).map(tuple),
    )
    return Backlog(
        tenants=tuple(tenants),
        tenant_order=tuple(draw(st.permutations(range(n_tenants)))),
        jobs=tuple(draw(st.lists(job, min_size=n_jobs, max_size=n_jobs))),
        job_order=tuple(draw(st.permutations(range(n_jobs)))),
    )


def build(session: Session, backlog: Backlog) -> list[uuid.UUID]:
    """Write the backlog (flushed, not committed); returns the job ids in plan order."""
    tenant_ids = [uuid.UUID(int=1 + k) for k in backlog.tenant_order]
    for tenant_id, (created_s, last_claim_s) in zip(tenant_ids, backlog.tenants, strict=True):
        session.add(
            Tenant(
                id=tenant_id,
                name=f"equivalence-{tenant_id}",
                created_at=at(created_s),
                last_claim_at=maybe_at(last_claim_s),
            )
        )
    job_ids = [uuid.UUID(int=(1 << 64) + k) for k in backlog.job_order]
    session.flush()  # tenants first: jobs have a foreign key to them
    for job_id, plan in zip(job_ids, backlog.jobs, strict=True):
        _add_job(session, job_id, tenant_ids[plan.tenant], plan)
    session.flush()
    return job_ids


def _add_job(session: Session, job_id: uuid.UUID, tenant_id: uuid.UUID, plan: JobPlan) -> None:
    total = sum(s.cells for s in plan.shards)
    rendering = any(s.status == ShardStatus.RUNNING for s in plan.shards)
    spec = {"webhook_url": "https://hooks.example/farm"} if plan.webhook else {}
    session.add(
        Job(
            id=job_id,
            tenant_id=tenant_id,
            spec=spec,
            grid={},
            request_hash="0" * 64,
            model=MODEL,
            priority=plan.priority,
            status=JobStatus.RUNNING if rendering else JobStatus.QUEUED,
            total=total,
            created_at=at(plan.created_s),
            started_at=BASE if rendering else None,
            last_claim_at=maybe_at(plan.last_claim_s),
        )
    )
    cell = 0
    rank = PRIORITIES.index(plan.priority)
    for index, shard in enumerate(plan.shards):
        session.add(
            Shard(
                job_id=job_id,
                tenant_id=tenant_id,
                index=index,
                model=OTHER_MODEL if shard.other_model else MODEL,
                bucket="1024x1024",
                size=shard.cells,
                priority_rank=rank,
                status=shard.status,
                claimed_by="elsewhere" if shard.status == ShardStatus.RUNNING else None,
                available_at=maybe_at(shard.available_s),
                adapters=shard.adapters,
                created_at=BASE,
                updated_at=BASE,
            )
        )
        for _ in range(shard.cells):
            session.add(_cell(job_id, cell, index))
            cell += 1


def _cell(job_id: uuid.UUID, index: int, shard_index: int) -> Item:
    return Item(
        job_id=job_id,
        index=index,
        shard_index=shard_index,
        prompt_index=0,
        prompt="1girl",
        negative_prompt="",
        bucket="1024x1024",
        width=1024,
        height=1024,
        seed=index,
        steps=2,
        guidance_scale=7.0,
        sampler="euler_a",
        status=CellStatus.QUEUED,
    )
