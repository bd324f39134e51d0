"""farm_claim_shard() (migration 0007) makes the same choices as the stepwise claim."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from models.shard_store import ClaimedShard, claim_next_shard, claim_next_shard_stepwise
from models.tables import Job, Shard, utcnow
from tests.unit.test_shard_store import make_job, new_model

Claim = Callable[..., ClaimedShard | None]


def _claim_order(
    sessions: sessionmaker[Session], model: str, claim: Claim
) -> list[tuple[int, int, str, int]]:
    """Claim until nothing is left, in one transaction that is then rolled back."""
    start = utcnow()
    order: list[tuple[int, int, str, int]] = []
    with sessions() as session:
        for i in range(200):
            now = start + timedelta(seconds=i)
            shard = claim(session, model=model, worker=f"w{i % 3}", lease_s=60, now=now)
            if shard is None:
                break
            job = session.get(Job, shard.job_id)
            assert job is not None
            session.refresh(job)
            order.append((shard.id, shard.attempts, job.status, job.version))
        session.rollback()
    return order


def test_the_function_and_the_stepwise_claim_agree(sessions: sessionmaker[Session]) -> None:
    model = new_model()
    # Three tenants, several jobs each, two priorities, shards already rendering.
    shards: dict[tuple[str, int], list[int]] = {}
    for tenant, jobs in (("a", 3), ("b", 1), ("c", 2)):
        for j in range(jobs):
            _, shards[(tenant, j)] = make_job(
                sessions,
                model,
                tenant=f"claim-{model}-{tenant}",
                cells=3 + j,
                priority="high" if (tenant, j) == ("c", 1) else "normal",
            )
    with sessions.begin() as session:
        for shard_id in shards[("a", 0)][:2]:
            shard = session.get(Shard, shard_id)
            assert shard is not None
            shard.status = "running"
    stepwise = _claim_order(sessions, model, claim_next_shard_stepwise)
    in_postgres = _claim_order(sessions, model, claim_next_shard)
    assert in_postgres == stepwise
    # Not a trivial order: the high-priority job first, then the tenant with nothing
    # rendering (b; a has two shards rendering, c the four it just took).
    claimed = [shard_id for shard_id, *_ in stepwise]
    assert sorted(claimed) == sorted(
        i for ids in shards.values() for i in ids if i not in shards[("a", 0)][:2]
    )
    assert claimed[:4] == shards[("c", 1)]
    tenant_of = {i: tenant for (tenant, _), ids in shards.items() for i in ids}
    assert tenant_of[claimed[4]] == "b"


def test_an_empty_queue_claims_nothing(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        assert claim_next_shard(session, model=new_model(), worker="w", lease_s=60) is None
