"""``farm beat``: the campaign scheduler and the webhook sender, in one process.

Run as many as you like: each pass takes one campaign at a time with ``SELECT
... FOR UPDATE SKIP LOCKED``, so two processes never work on the same campaign
at once, and the unique (campaign, scheduled_for) run row stops a tick from
firing twice whatever happens. A pass (``tick``):

1. settle: runs whose job finished get its status (and pause their campaign on
   failure, if asked); an idle campaign's oldest buffered run starts;
2. fire: every campaign whose ``next_fire_at`` has come records its due ticks
   (jobs, buffered runs, skips) and moves its watermark on.

Shard ids are published after each commit. Webhook deliveries run beside the
scheduler on their own thread (``beat.webhook_sender.Deliverer``).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from types import FrameType

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from beat.webhook_sender import Deliverer
from models.db.campaigns import ACTIVE_JOB_STATUSES, RunStatus
from models.db.tables import Campaign, CampaignRun, Job, utcnow
from models.infra.queue import Publisher
from models.infra.settings import Settings
from models.service.campaign_runs import RunResult, fire_due, settle
from models.service.submit import Submitter

log = logging.getLogger("beat.scheduler")

MIN_SLEEP_S = 0.05
Work = Callable[[Session, Campaign], list[RunResult]]


def _settle_candidates(session: Session) -> list[uuid.UUID]:
    finished = (
        select(CampaignRun.campaign_id)
        .join(Job, Job.id == CampaignRun.job_id)
        .where(CampaignRun.status == RunStatus.STARTED, Job.status.not_in(ACTIVE_JOB_STATUSES))
    )
    buffered = select(CampaignRun.campaign_id).where(CampaignRun.status == RunStatus.BUFFERED)
    return sorted(set(session.scalars(finished)) | set(session.scalars(buffered)))


def _due(now: datetime, seen: set[uuid.UUID]) -> Select[Campaign]:
    query = select(Campaign).where(
        Campaign.next_fire_at <= now,
        Campaign.enabled.is_(True),
        Campaign.paused_by_failure.is_(False),
    )
    if seen:
        query = query.where(Campaign.id.not_in(seen))
    return query.order_by(Campaign.next_fire_at).limit(1).with_for_update(skip_locked=True)


def _locked(
    sessions: sessionmaker[Session],
    query: Select[Campaign],
    work: Work,
    publisher: Publisher,
    seen: set[uuid.UUID],
) -> list[RunResult] | None:
    """Lock one campaign (skipping locked ones), do ``work``, commit, publish; None: none left."""
    found: uuid.UUID | None = None
    try:
        with sessions.begin() as session:
            campaign = session.scalars(query).first()
            if campaign is None:
                return None
            found = campaign.id
            seen.add(found)
            results = work(session, campaign)
    except Exception as exc:
        if found is None:
            raise  # no campaign was taken: the database itself is the problem
        if isinstance(exc, IntegrityError | OperationalError):
            # Another scheduler (or an API call) got there first; nothing was written.
            log.warning("campaign %s pass rolled back: %s", found, exc.__class__.__name__)
        else:
            log.exception("campaign %s pass failed", found)
        return []
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
    return results


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
        candidates = _settle_candidates(session)
    for campaign_id in candidates:
        query = select(Campaign).where(Campaign.id == campaign_id).with_for_update(skip_locked=True)
        results = _locked(
            sessions,
            query,
            lambda s, c: settle(s, campaign=c, submitter=submit, now=now),
            publisher,
            set(),
        )
        recorded.extend(results or [])
    seen: set[uuid.UUID] = set()
    while True:
        results = _locked(
            sessions,
            _due(now, seen),
            lambda s, c: fire_due(s, campaign=c, submitter=submit, now=now),
            publisher,
            seen,
        )
        if results is None:
            return recorded
        recorded.extend(results)


def seconds_to_next_fire(session: Session, *, now: datetime, cap_s: float) -> float:
    next_fire = session.scalar(
        select(func.min(Campaign.next_fire_at)).where(
            Campaign.enabled.is_(True), Campaign.paused_by_failure.is_(False)
        )
    )
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
            sleep_s = interval_s
            try:
                tick(
                    self.sessions,
                    settings=self.settings,
                    publisher=self.publisher,
                    now=utcnow(),
                    submitter=self.submitter,
                )
                with self.sessions() as session:
                    sleep_s = seconds_to_next_fire(session, now=utcnow(), cap_s=interval_s)
            except Exception:  # the database is away: keep trying
                log.exception("scheduler pass failed")
            stop.wait(sleep_s)


class BeatThreads:
    """The scheduler and the webhook sender on daemon threads (embedded mode, ``farm beat``)."""

    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], publisher: Publisher
    ) -> None:
        self.settings = settings
        self.stop_event = threading.Event()
        self.deliverer = Deliverer(settings, sessions)
        beat = Beat(settings, sessions, publisher)
        self._threads = [
            threading.Thread(target=beat.run, args=(self.stop_event,), name="beat", daemon=True),
            threading.Thread(
                target=self.deliverer.run,
                args=(self.stop_event,),
                kwargs={"poll_s": min(1.0, settings.beat_interval_s)},
                name="webhooks",
                daemon=True,
            ),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self._threads:
            thread.join(self.settings.webhook_timeout_s * 3 + 5)
        self.deliverer.close()


def run_beat(settings: Settings) -> None:
    """``farm beat``: the scheduler and webhook deliveries on threads until SIGTERM/SIGINT."""
    from models.db.session import make_engine, make_session_factory
    from models.infra.queue import CeleryPublisher, make_celery

    # stderr: line-buffered even into a pipe, so supervisors (and tests) see lines at once.
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    sessions = make_session_factory(make_engine(settings.sqlalchemy_url))
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    threads = BeatThreads(settings, sessions, CeleryPublisher(make_celery(settings)))
    threads.start()
    log.info("beat ready (interval %.2f s)", settings.beat_interval_s)
    try:
        while not stop.wait(1.0):  # wake now and then: signal handlers run in this thread
            pass
    finally:
        threads.stop()
        log.info("beat stopped")
