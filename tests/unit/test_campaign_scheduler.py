"""Materialising campaign ticks through the store on real Postgres, with a frozen clock.

``beat.scheduler.tick(now=...)`` is the scheduler's whole pass; nothing here sleeps.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from beat.scheduler import tick
from models.db.campaigns import (
    RunOrigin,
    campaign_input,
    create_campaign,
    lock_campaign,
    run_status,
    update_campaign,
)
from models.db.keys import ensure_tenant
from models.db.tables import Campaign, CampaignRun, Job
from models.domain.campaign_spec import CampaignIn, CampaignPatch
from models.domain.seed_policy import date_seed
from models.infra.queue import LocalPublisher
from models.infra.settings import Settings
from models.service.backfill import backfill, plan_backfill
from models.service.campaign_runs import RunResult, record_tick, trigger
from models.service.submit import Submitter

MODEL = "campaign-test"  # no worker serves it: nothing here is ever rendered
T0 = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)
SPEC: dict[str, Any] = {"prompts": ["1girl, solo"], "seeds": [1, 2], "model": MODEL}


def at(minutes: int, seconds: float = 1) -> datetime:
    """One second after the minute boundary ``minutes`` after 12:00 on T0's day."""
    return T0.replace(second=0) + timedelta(minutes=minutes, seconds=seconds)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"models": {**settings.models, MODEL: "simulated:0"}})


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


@pytest.fixture
def sched(sessions: sessionmaker[Session], settings: Settings) -> Iterator[Scheduler]:
    with sessions.begin() as session:
        tenant = ensure_tenant(session, name=f"sched-{uuid.uuid4().hex[:8]}")
    scheduler = Scheduler(sessions, settings, tenant.id)
    yield scheduler
    with sessions.begin() as session:  # later passes in this database must not see them
        session.execute(delete(Campaign).where(Campaign.id.in_(scheduler.made)))


def test_a_tick_fires_once_and_publishes_its_shards(sched: Scheduler) -> None:
    cid = sched.campaign()
    assert sched.row(cid).next_fire_at == at(1, 0)
    assert sched.tick(T0 + timedelta(seconds=20)) == []  # not due yet
    [result] = sched.tick(at(1))
    assert result.job is not None and result.job.total == 2
    assert result.publication is not None and result.publication.model == MODEL
    published = [sched.publisher.queue.get_nowait() for _ in range(sched.publisher.queue.qsize())]
    assert published == [(MODEL, i) for i in result.publication.shard_ids]
    assert sched.tick(at(1, 30)) == []  # the same tick never fires again
    assert sched.statuses(cid) == [(1, "queued")]
    row = sched.row(cid)
    assert row.last_scheduled_for == at(1, 0) and row.next_fire_at == at(2, 0)
    assert result.job.spec["labels"]["campaign_id"] == str(cid)
    assert result.job.spec["seeds"] == [1, 2]


def test_overlap_skip(sched: Scheduler) -> None:
    cid = sched.campaign()
    sched.tick(at(1))
    sched.tick(at(2))  # minute 1 still rendering
    sched.finish(sched.job_of(cid, 1))
    sched.tick(at(3))
    assert sched.statuses(cid) == [(1, "succeeded"), (2, "skip_overlap"), (3, "queued")]


def test_overlap_buffer_one(sched: Scheduler) -> None:
    cid = sched.campaign(overlap="buffer_one")
    for minute in (1, 2, 3):
        sched.tick(at(minute))
    assert sched.statuses(cid) == [(1, "queued"), (2, "buffered"), (3, "skip_overlap")]
    sched.finish(sched.job_of(cid, 1))
    [started] = sched.tick(at(3, 10))  # settle: the buffered run starts once idle
    assert started.run.scheduled_for == at(2, 0) and started.job is not None
    assert sched.statuses(cid) == [(1, "succeeded"), (2, "queued"), (3, "skip_overlap")]


def test_overlap_buffer_all(sched: Scheduler) -> None:
    cid = sched.campaign(overlap="buffer_all")
    for minute in (1, 2, 3):
        sched.tick(at(minute))
    assert sched.statuses(cid) == [(1, "queued"), (2, "buffered"), (3, "buffered")]
    sched.finish(sched.job_of(cid, 1))
    sched.tick(at(3, 10))
    assert sched.statuses(cid) == [(1, "succeeded"), (2, "queued"), (3, "buffered")]
    sched.finish(sched.job_of(cid, 2), "partial")
    sched.tick(at(3, 20))
    assert sched.statuses(cid) == [(1, "succeeded"), (2, "partial"), (3, "queued")]


def test_overlap_cancel_other(sched: Scheduler) -> None:
    cid = sched.campaign(overlap="cancel_other")
    sched.tick(at(1))
    sched.tick(at(2))
    assert sched.statuses(cid) == [(1, "cancelled"), (2, "queued")]
    sched.tick(at(2, 10))  # settled from the job's status
    run, job = sched.runs(cid)[0]
    assert run.status == "cancelled" and job is not None and job.cancelled == 2


def test_overlap_allow_all(sched: Scheduler) -> None:
    cid = sched.campaign(overlap="allow_all")
    for minute in (1, 2, 3):
        sched.tick(at(minute))
    assert sched.statuses(cid) == [(1, "queued"), (2, "queued"), (3, "queued")]


def test_catchup_window_and_coalesce_record_every_missed_tick(sched: Scheduler) -> None:
    cid = sched.campaign(catchup_window_s=120)
    results = sched.tick(at(10, 30))  # the scheduler was down for ten minutes
    assert len(results) == 10
    assert sched.statuses(cid) == [
        *[(m, "skip_missed") for m in range(1, 9)],  # fired before 12:08:30
        (9, "skip_coalesced"),
        (10, "queued"),
    ]
    run = sched.runs(cid)[0][0]
    assert run.reason is not None and "catch-up" in run.reason


def test_without_coalesce_each_missed_tick_in_the_window_acts(sched: Scheduler) -> None:
    cid = sched.campaign(catchup_window_s=300, coalesce=False, overlap="allow_all")
    sched.tick(at(10, 30))
    statuses = sched.statuses(cid)
    assert statuses[:5] == [(m, "skip_missed") for m in range(1, 6)]
    assert statuses[5:] == [(m, "queued") for m in range(6, 11)]


def test_pause_and_resume_do_not_catch_up(sched: Scheduler) -> None:
    cid = sched.campaign()
    sched.tick(at(1))
    sched.finish(sched.job_of(cid, 1))
    sched.patch(cid, at(1, 30), enabled=False)
    assert sched.row(cid).next_fire_at is None
    assert sched.tick(at(5)) == []
    sched.patch(cid, at(5, 30), enabled=True)
    assert sched.row(cid).next_fire_at == at(6, 0)
    sched.tick(at(6))
    assert sched.statuses(cid) == [(1, "succeeded"), (6, "queued")]


def test_pause_on_failure_stops_the_campaign_until_resumed(sched: Scheduler) -> None:
    cid = sched.campaign(pause_on_failure=True)
    sched.tick(at(1))
    sched.finish(sched.job_of(cid, 1), "failed")
    assert sched.tick(at(1, 30)) == []
    row = sched.row(cid)
    assert row.paused_by_failure and row.next_fire_at is None
    assert sched.tick(at(3)) == []
    sched.patch(cid, at(3, 30), name="renamed")  # an edit is not a resume
    assert sched.row(cid).paused_by_failure
    sched.patch(cid, at(3, 40), enabled=True)
    sched.tick(at(4))
    assert sched.statuses(cid) == [(1, "failed"), (4, "queued")]


def test_partial_does_not_pause(sched: Scheduler) -> None:
    cid = sched.campaign(pause_on_failure=True)
    sched.tick(at(1))
    sched.finish(sched.job_of(cid, 1), "partial")
    sched.tick(at(2))
    assert sched.statuses(cid) == [(1, "partial"), (2, "queued")]


def test_end_at_exhausts_the_campaign(sched: Scheduler) -> None:
    cid = sched.campaign(overlap="allow_all", end_at=at(2, 0).isoformat())
    sched.tick(at(1))
    sched.tick(at(2))
    assert sched.row(cid).next_fire_at is None
    assert sched.tick(at(5)) == []
    assert [m for m, _ in sched.statuses(cid)] == [1, 2]


def test_a_run_over_the_limits_is_refused_not_trimmed(sched: Scheduler) -> None:
    sched.campaign(max_images_per_run=2)
    sched.settings = sched.settings.model_copy(update={"max_grid_cells": 1})  # operator tightened
    [result] = sched.tick(at(1))
    assert result.job is None and result.run.status == "refused"
    assert result.run.reason is not None and "limit is 1" in result.run.reason


def test_trigger_runs_now_even_when_paused(sched: Scheduler) -> None:
    cid = sched.campaign(enabled=False)
    now = at(0, 45)
    with sched.sessions.begin() as session:
        campaign = session.get(Campaign, cid)
        assert campaign is not None
        result = trigger(
            session, campaign=campaign, overlap=None, submitter=sched.submitter, now=now
        )
    assert result.run.origin == "manual" and result.run.scheduled_for == now
    assert result.job is not None
    assert sched.tick(at(3)) == []  # still paused


def _backfill(sched: Scheduler, cid: uuid.UUID, start: datetime, end: datetime) -> list[RunResult]:
    with sched.sessions.begin() as session:
        campaign = session.get(Campaign, cid)
        assert campaign is not None
        planned = plan_backfill(campaign, start=start, end=end, submitter=sched.submitter, now=end)
        return backfill(
            session,
            campaign=campaign,
            ticks=[p.scheduled_for for p in planned],
            submitter=sched.submitter,
            now=end,
        )


def _seeds(result: RunResult) -> list[int]:
    assert result.job is not None
    return list(result.job.grid["seeds"])


TOKYO_DAYS = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC))


def test_backfill_seeds_fixed(sched: Scheduler) -> None:
    cid = sched.campaign(schedule="0 3 * * *", timezone="Asia/Tokyo", now=TOKYO_DAYS[1])
    results = _backfill(sched, cid, *TOKYO_DAYS)
    assert [r.run.scheduled_for.hour for r in results] == [18, 18, 18]  # 03:00 JST
    assert [_seeds(r) for r in results] == [[1, 2]] * 3
    assert all(r.run.origin == "backfill" for r in results)


def test_backfill_seeds_date_follow_the_local_date(sched: Scheduler) -> None:
    cid = sched.campaign(
        schedule="0 3 * * *", timezone="Asia/Tokyo", seed_policy="date", now=TOKYO_DAYS[1]
    )
    results = _backfill(sched, cid, *TOKYO_DAYS)
    # 2026-03-01 18:00 UTC is 03:00 on 2026-03-02 in Tokyo.
    expected = [[date_seed(f"2026-03-0{d}", i) for i in range(2)] for d in (2, 3, 4)]
    assert [_seeds(r) for r in results] == expected


def test_backfill_seeds_new_are_fresh_per_run(sched: Scheduler) -> None:
    cid = sched.campaign(
        schedule="0 3 * * *", timezone="Asia/Tokyo", seed_policy="new", now=TOKYO_DAYS[1]
    )
    seeds = [_seeds(r) for r in _backfill(sched, cid, *TOKYO_DAYS)]
    assert all(len(s) == 2 and len(set(s)) == 2 for s in seeds)
    assert len({tuple(s) for s in seeds}) == 3


def test_backfill_is_idempotent_and_renders_recorded_skips(sched: Scheduler) -> None:
    cid = sched.campaign(catchup_window_s=60)
    sched.tick(at(5, 30))  # minutes 1-3 missed, 4 coalesced, 5 queued
    first = _backfill(sched, cid, at(1, 0), at(6, 0))
    assert [(r.run.scheduled_for.minute, r.existing) for r in first] == [
        (1, False),
        (2, False),
        (3, False),
        (4, False),
        (5, True),
    ]
    again = _backfill(sched, cid, at(1, 0), at(6, 0))
    assert all(r.existing and r.publication is None for r in again)
    runs = sched.runs(cid)
    assert len(runs) == 5 and all(job is not None for _, job in runs)
    assert len({job.id for _, job in runs if job is not None}) == 5


def test_a_second_run_for_a_tick_is_refused_by_the_database(sched: Scheduler) -> None:
    """The backstop under the row lock: unique (campaign_id, scheduled_for)."""
    cid = sched.campaign()
    sched.tick(at(1))
    with sched.sessions() as session:
        campaign = session.get(Campaign, cid)
        assert campaign is not None
        with pytest.raises(IntegrityError):
            record_tick(
                session,
                campaign=campaign,
                scheduled_for=at(1, 0),
                origin=RunOrigin.SCHEDULE,
                action="skip_overlap",
                submitter=sched.submitter,
                now=at(1, 2),
            )


def _race(sched: Scheduler, now: datetime, threads: int = 3) -> list[RunResult]:
    """``threads`` scheduler passes at the same instant, released together."""
    barrier = threading.Barrier(threads)
    found: list[list[RunResult]] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            found.append(sched.tick(now))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    assert not errors
    return [r for results in found for r in results]


def test_concurrent_ticks_fire_each_tick_exactly_once(sched: Scheduler) -> None:
    ids = [sched.campaign(overlap="allow_all") for _ in range(12)]
    for minute in (1, 2, 3):
        fired = [r.run.campaign_id for r in _race(sched, at(minute))]
        assert sorted(fired) == sorted(ids)  # each campaign once, whichever pass took it
    for cid in ids:
        runs = sched.runs(cid)
        assert [run.scheduled_for for run, _ in runs] == [at(m, 0) for m in (1, 2, 3)]
        assert len({job.id for _, job in runs if job is not None}) == 3
