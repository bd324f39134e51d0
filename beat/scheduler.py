"""The campaign scheduler: turns due ticks into runs, exactly once, however many run.

A pass (``tick``) takes one campaign at a time with ``FOR UPDATE SKIP LOCKED``
(models/db/campaign_due.py), so two processes never work on the same campaign at
once, and the unique (campaign, scheduled_for) run row stops a tick from firing
twice whatever happens:

1. settle: runs whose job finished get its status (and pause their campaign on
   failure, if asked); an idle campaign's oldest buffered run starts;
2. fire: every campaign whose ``next_fire_at`` has come records its due ticks
   (jobs, buffered runs, skips) and moves its watermark on.

Shard ids are published after each commit.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from functools import partial

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from models.db.campaign_due import earliest_next_fire, lock_if_free, lock_next_due, to_settle
from models.db.campaign_tables import Campaign
from models.db.tables import utcnow
from models.infra.queue import Publisher
from models.infra.settings import Settings
from models.service.campaign_runs import RunResult, fire_due, settle
from models.service.submit import Submitter

log = logging.getLogger("beat.scheduler")

MIN_SLEEP_S = 0.05
Take = Callable[[Session], Campaign | None]
Work = Callable[[Session, Campaign], list[RunResult]]


def _locked(
    sessions: sessionmaker[Session], take: Take, work: Work, publisher: Publisher
) -> tuple[uuid.UUID, list[RunResult]] | None:
    """Take one campaign, do ``work``, commit, publish; None when ``take`` finds none."""
    found: uuid.UUID | None = None
    try:
        with sessions.begin() as session:
            campaign = take(session)
            if campaign is None:
                return None
            found = campaign.id
            results = work(session, campaign)
    except Exception as exc:
        if found is None:
            raise  # no campaign was taken: the database itself is the problem
        if isinstance(exc, IntegrityError | OperationalError):
            # Another scheduler (or an API call) got there first; nothing was written.
            log.warning("campaign %s pass rolled back: %s", found, exc.__class__.__name__)
        else:
            log.exception("campaign %s pass failed", found)
        return found, []
    for result in results:
        if result.publication is not None:
            try:
                publisher.publish(
                    model=result.publication.model, shard_ids=result.publication.shard_ids
                )
            except Exception:  # the reconciler re-publishes queued shards that idle
                log.exception("publishing run %s failed", result.run.id)
        log.info(
            "campaign %s tick %s: run %s %s job %s",
            result.run.campaign_id,
            result.run.scheduled_for.isoformat(),
            result.run.id,
            result.run.status,
            result.run.job_id,
        )
    return found, results


def tick(
    sessions: sessionmaker[Session],
    *,
    settings: Settings,
    publisher: Publisher,
    now: datetime,
    submitter: Submitter | None = None,
) -> list[RunResult]:
    """One scheduler pass at ``now`` (see the module doc); returns the runs it recorded."""
    submit = submitter or Submitter(settings, publisher)
    recorded: list[RunResult] = []
    with sessions() as session:
        candidates = to_settle(session)
    for campaign_id in candidates:
        done = _locked(
            sessions,
            partial(lock_if_free, campaign_id=campaign_id),
            lambda s, c: settle(s, campaign=c, submitter=submit, now=now),
            publisher,
        )
        recorded.extend(done[1] if done else [])
    seen: set[uuid.UUID] = set()
    while True:
        done = _locked(
            sessions,
            partial(lock_next_due, now=now, skip=seen),
            lambda s, c: fire_due(s, campaign=c, submitter=submit, now=now),
            publisher,
        )
        if done is None:
            return recorded
        seen.add(done[0])
        recorded.extend(done[1])


def sleep_s(next_fire: datetime | None, *, now: datetime, cap_s: float) -> float:
    """How long the loop may sleep: until the next fire time, within [MIN_SLEEP_S, cap_s]."""
    if next_fire is None:
        return cap_s
    return max(MIN_SLEEP_S, min(cap_s, (next_fire - now).total_seconds()))


class Beat:
    """The scheduler loop: a pass, then sleep until the next fire time (at most the interval)."""

    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], publisher: Publisher
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.publisher = publisher
        self.submitter = Submitter(settings, publisher)  # its tokenizers stay loaded

    def run(self, stop: threading.Event) -> None:
        interval_s = self.settings.beat_interval_s
        while not stop.is_set():
            wait_s = interval_s
            try:
                tick(
                    self.sessions,
                    settings=self.settings,
                    publisher=self.publisher,
                    now=utcnow(),
                    submitter=self.submitter,
                )
                with self.sessions() as session:
                    next_fire = earliest_next_fire(session)
                wait_s = sleep_s(next_fire, now=utcnow(), cap_s=interval_s)
            except Exception:  # the database is away: keep trying
                log.exception("scheduler pass failed")
            stop.wait(wait_s)
