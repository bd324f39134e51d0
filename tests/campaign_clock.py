"""A campaign scheduler on real Postgres driven by a frozen clock: ``tick(now=...)`` is a pass."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from beat.scheduler import tick
from models.db.campaign_tables import Campaign, CampaignRun
from models.db.campaigns import (
    campaign_input,
    create_campaign,
    lock_campaign,
    run_status,
    update_campaign,
)
from models.db.keys import ensure_tenant
from models.db.tables import Job
from models.domain.campaign_spec import CampaignIn, CampaignPatch
from models.infra.queue import LocalPublisher
from models.infra.settings import Settings
from models.service.campaign_runs import RunResult
from models.service.submit import Submitter

MODEL = "campaign-test"  # no worker serves it: nothing here is ever rendered
T0 = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)
SPEC: dict[str, Any] = {"prompts": ["1girl, solo"], "seeds": [1, 2], "model": MODEL}


def with_test_model(settings: Settings) -> Settings:
    return settings.model_copy(update={"models": {**settings.models, MODEL: "simulated:0"}})


def at(minutes: int, seconds: float = 1) -> datetime:
    """One second after the minute boundary ``minutes`` after 12:00 on T0's day."""
    return T0.replace(second=0) + timedelta(minutes=minutes, seconds=seconds)


@dataclass
class Scheduler:
    sessions: sessionmaker[Session]
    settings: Settings
    tenant_id: uuid.UUID
    made: list[uuid.UUID] = field(default_factory=list)
    publisher: LocalPublisher = field(default_factory=LocalPublisher)

    def campaign(self, now: datetime = T0, **fields: Any) -> uuid.UUID:
        body = {"name": "nightly", "schedule": "* * * * *", "spec": SPEC, **fields}
        with self.sessions.begin() as session:
            row = create_campaign(
                session, tenant_id=self.tenant_id, data=CampaignIn.model_validate(body), now=now
            )
            self.made.append(row.id)
            return row.id

    @property
    def submitter(self) -> Submitter:
        return Submitter(self.settings, self.publisher)

    def tick(self, now: datetime) -> list[RunResult]:
        results = tick(self.sessions, settings=self.settings, publisher=self.publisher, now=now)
        return [r for r in results if r.run.campaign_id in self.made]

    def runs(self, campaign_id: uuid.UUID) -> list[tuple[CampaignRun, Job | None]]:
        with self.sessions() as session:
            rows = session.execute(
                select(CampaignRun, Job)
                .outerjoin(Job, Job.id == CampaignRun.job_id)
                .where(CampaignRun.campaign_id == campaign_id)
                .order_by(CampaignRun.scheduled_for)
            )
            return [(run, job) for run, job in rows]

    def statuses(self, campaign_id: uuid.UUID) -> list[tuple[int, str]]:
        """(minute after 12:00, status) of every run."""
        return [
            (int((run.scheduled_for - at(0, 0)).total_seconds() // 60), run_status(run, job))
            for run, job in self.runs(campaign_id)
        ]

    def row(self, campaign_id: uuid.UUID) -> Campaign:
        with self.sessions() as session:
            campaign = session.get(Campaign, campaign_id)
            assert campaign is not None
            return campaign

    def finish(self, job_id: uuid.UUID | None, status: str = "succeeded") -> None:
        """What a worker does in the end: the job reaches a terminal status."""
        assert job_id is not None
        with self.sessions.begin() as session:
            session.execute(update(Job).where(Job.id == job_id).values(status=status))

    def job_of(self, campaign_id: uuid.UUID, minute: int) -> uuid.UUID | None:
        for run, _job in self.runs(campaign_id):
            if run.scheduled_for == at(minute, 0):
                return run.job_id
        raise AssertionError(f"no run at minute {minute}")

    def patch(self, campaign_id: uuid.UUID, now: datetime, **changes: Any) -> None:
        with self.sessions.begin() as session:
            campaign = session.get(Campaign, campaign_id)
            assert campaign is not None
            lock_campaign(session, campaign)
            patch = CampaignPatch.model_validate(changes)
            data = patch.apply_to(campaign_input(campaign))
            update_campaign(campaign, data=data, given=set(patch.model_fields_set), now=now)


@contextmanager
def frozen_scheduler(sessions: sessionmaker[Session], settings: Settings) -> Iterator[Scheduler]:
    """A scheduler for a fresh tenant; its campaigns are deleted afterwards."""
    with sessions.begin() as session:
        tenant = ensure_tenant(session, name=f"sched-{uuid.uuid4().hex[:8]}")
    scheduler = Scheduler(sessions, settings, tenant.id)
    try:
        yield scheduler
    finally:
        with sessions.begin() as session:  # later passes in this database must not see them
            session.execute(delete(Campaign).where(Campaign.id.in_(scheduler.made)))
