"""Materialising campaign ticks through the store on real Postgres, with a frozen clock.

``beat.scheduler.tick(now=...)`` is the scheduler's whole pass; nothing here sleeps.
Backfills: test_campaign_backfill.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from beat.scheduler import MIN_SLEEP_S, sleep_s
from models.db.campaign_tables import Campaign
from models.db.campaigns import RunOrigin
from models.infra.settings import Settings
from models.service.campaign_runs import RunResult, record_tick, trigger
from tests.campaign_clock import MODEL, T0, Scheduler, at, frozen_scheduler, with_test_model


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return with_test_model(settings)


@pytest.fixture
def sched(sessions: sessionmaker[Session], settings: Settings) -> Iterator[Scheduler]:
    with frozen_scheduler(sessions, settings) as scheduler:
        yield scheduler


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


def test_the_loop_sleeps_until_the_next_fire_time_within_bounds() -> None:
    assert sleep_s(None, now=T0, cap_s=5.0) == 5.0  # no active campaign
    assert sleep_s(T0 + timedelta(seconds=2), now=T0, cap_s=5.0) == 2.0
    assert sleep_s(T0 + timedelta(hours=1), now=T0, cap_s=5.0) == 5.0
    assert sleep_s(T0 - timedelta(seconds=1), now=T0, cap_s=5.0) == MIN_SLEEP_S  # overdue
