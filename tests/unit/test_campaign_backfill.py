"""Backfills through the store on real Postgres: seeds per policy, idempotence (frozen clock)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from models.db.campaign_tables import Campaign
from models.domain.seed_policy import date_seed
from models.infra.settings import Settings
from models.service.backfill import backfill, plan_backfill
from models.service.campaign_runs import RunResult
from tests.campaign_clock import Scheduler, at, frozen_scheduler, with_test_model


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return with_test_model(settings)


@pytest.fixture
def sched(sessions: sessionmaker[Session], settings: Settings) -> Iterator[Scheduler]:
    with frozen_scheduler(sessions, settings) as scheduler:
        yield scheduler


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
