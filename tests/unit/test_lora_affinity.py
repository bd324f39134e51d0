"""LoRA affinity in the claim: a mixed queue over 3 LoRA sets and 2 tenants, claimed by
workers that each keep their last set active. Affinity cuts the adapter switches, and
the order in which tenants are served is exactly fair share's."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from models.db.claims import claim_next_shard
from models.db.keys import ensure_tenant
from models.db.tables import Job, Shard
from models.domain.status import ShardStatus
from tests.backlogs import BASE

SETS = ("", "style@aaaaaaaaaaaa", "other@bbbbbbbbbbbb")
WORKERS = 3
LOOKAHEAD = 8


@dataclass
class Played:
    switches: int
    tenants: list[uuid.UUID]  # whose shard each claim took, in order


def _queue(session: Session, model: str) -> list[uuid.UUID]:
    """Per tenant, one job per LoRA set, 6 shards each, submitted interleaved."""
    tenants = [ensure_tenant(session, name=f"aff-{uuid.uuid4().hex[:8]}").id for _ in range(2)]
    for round_ in range(2):
        for tenant in tenants:
            for key in SETS:
                job = Job(
                    tenant_id=tenant,
                    spec={},
                    grid={},
                    request_hash="0" * 64,
                    model=model,
                    priority="normal",
                    total=3,
                    created_at=BASE,
                )
                session.add(job)
                session.flush()
                for index in range(3):
                    session.add(
                        Shard(
                            job_id=job.id,
                            tenant_id=tenant,
                            index=index + 3 * round_,
                            model=model,
                            bucket="1024x1024",
                            size=1,
                            priority_rank=1,
                            adapters=key,
                        )
                    )
    session.flush()
    return tenants


def _play(sessions: sessionmaker[Session], *, lookahead: int) -> Played:
    model = f"affinity-{uuid.uuid4().hex[:6]}"
    with sessions.begin() as session:
        _queue(session, model)
    active: list[str | None] = [None] * WORKERS
    passed = [0] * WORKERS
    switches = 0
    tenants: list[uuid.UUID] = []
    step = 0
    while True:
        worker = step % WORKERS
        prefer = active[worker] if passed[worker] < lookahead else None
        with sessions.begin() as session:
            shard = claim_next_shard(
                session,
                model=model,
                worker=f"w{worker}",
                lease_s=60,
                adapters=prefer,
                lookahead=lookahead,
            )
            if shard is None:
                break
            key = session.get_one(Shard, shard.id).adapters
            # Rendered at once: the worker's previous shard is done when it claims again.
            session.execute(
                update(Shard).where(Shard.id == shard.id).values(status=ShardStatus.DONE)
            )
        passed[worker] = passed[worker] + 1 if shard.passed_over else 0
        if active[worker] is not None and active[worker] != key:
            switches += 1
        active[worker] = key
        tenants.append(shard.tenant_id)
        step += 1
    return Played(switches, tenants)


def test_affinity_cuts_switches_and_keeps_fair_share_between_tenants(
    sessions: sessionmaker[Session],
) -> None:
    off = _play(sessions, lookahead=0)
    on = _play(sessions, lookahead=LOOKAHEAD)
    assert len(on.tenants) == len(off.tenants) == 2 * 2 * len(SETS) * 3
    # Tenants alternate claim by claim, with affinity on as with it off.
    first_off, first_on = off.tenants[0], on.tenants[0]
    assert [t == first_off for t in off.tenants] == [t == first_on for t in on.tenants]
    assert all(a != b for a, b in zip(on.tenants, on.tenants[1:], strict=False))
    assert off.switches >= 2 * on.switches, (off.switches, on.switches)


def test_the_switch_counts(sessions: sessionmaker[Session]) -> None:
    """What docs/PERFORMANCE.md quotes: 36 shards, 3 workers, 3 sets, 2 tenants."""
    off, on = _play(sessions, lookahead=0), _play(sessions, lookahead=LOOKAHEAD)
    print(f"adapter switches: affinity off {off.switches}, on {on.switches}")
    assert on.switches < off.switches
