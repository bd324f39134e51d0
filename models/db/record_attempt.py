"""A GPU worker's record of one shard attempt: its cells' outcomes with its ledger row,
then the job's follow-up when the finish says it may have work.

Why (bench/fleet.py ``--finish worker`` runs this very function; one 100,000-cell job,
1,000 simulated workers, this 2-core machine): the finish's last step updates the job
row's counters and holds that row until COMMIT, and every other finisher of the job
queues on it. The worker used to record a shard in one transaction of several round
trips (the finish, then its ledger row, the device, analyses, holds and the job's
follow-up): 77-103 claims/s of 370, with deadlocks. Now:

A shard with no analyses and no held cells (most) is recorded in one statement that
commits by itself: ``finish_committed`` with the device, which hands the ledger row and
the device to the finish (farm_finish_shard v3); 370 of 370 claims/s, claim p99 2-24 ms
(docs/PERFORMANCE.md, "fifth pass"); on SQLite, one transaction. The rest in one
transaction with the job's counters last in it:

1. the job's shared lock first (the finishers share it; every writer that locks the job
   excludes it), so the order stays job, then shards, then cells;
2. the extras (models/db/finish_extras.py): the ledger, the device, analyses, scores
   and holds, on cells still queued or stored under this attempt's key;
3. the finish (models/db/finish.py): cells, shard, the job's counters; the settle when
   the job is complete; COMMIT;
4. the follow-up (models/db/finish_follow_up.py): pause, budget, progress, in its own
   transaction, only when the finish says it may have work.

The images' ledger row and holds land with their cells or not at all.
"""

from __future__ import annotations

import logging
from typing import Unpack

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from models.db.claims import share_job
from models.db.finish import ShardCompletion, finish_attempt
from models.db.finish_committed import finish_committed
from models.db.finish_extras import AnalysisRecord, record_extras
from models.db.finish_follow_up import follow_up
from models.db.finish_sql import FinishArgs
from models.db.session import retry_on_disconnect
from models.db.tables import utcnow
from models.domain.status import JobStatus

log = logging.getLogger(__name__)


def record_attempt(
    sessions: sessionmaker[Session],
    *,
    analyses: list[AnalysisRecord],
    device: str,
    progress_min_interval_s: float,
    **finish: Unpack[FinishArgs],
) -> tuple[ShardCompletion, JobStatus | None]:
    """Steps 1-4 (module docstring): the finish's outcome and the job's terminal status
    if this attempt ended it (complete, or its GPU budget spent). Each transaction is
    repeated once if its connection died (conditional updates: no cell twice; a ledger
    row can be, if the lost answer was a COMMIT that happened)."""
    shard, results = finish["shard"], finish["results"]
    recorded = {r.index for r in results}
    mine = [a for a in analyses if a.index in recorded]

    def plain() -> ShardCompletion:  # one statement: the finish with its ledger row
        return finish_committed(sessions, device=device, **finish)

    def record() -> ShardCompletion:
        with sessions.begin() as session:
            share_job(session, shard.job_id)
            record_extras(
                session,
                shard=shard,
                results=results,
                analyses=mine,
                device=device,
                now=utcnow(),
            )
            return finish_attempt(session, **finish)

    common = not mine and not any(r.held for r in results)
    completion = retry_on_disconnect(plain if common else record)

    def followed() -> JobStatus | None:
        with sessions.begin() as session:
            return follow_up(
                session, shard=shard, progress_min_interval_s=progress_min_interval_s, now=utcnow()
            )

    if completion.job_status is not None:
        return completion, completion.job_status  # settled: nothing to follow up
    if not completion.follow_up:
        return completion, None  # the finish saw nothing a follow-up would act on
    try:
        return completion, retry_on_disconnect(followed)
    except SQLAlchemyError:
        # The shard is recorded; what is lost here the next finish's follow-up does.
        log.exception("follow-up of shard %s of job %s failed", shard.id, shard.job_id)
        return completion, None
