"""A GPU worker's record of one shard attempt: its extras and its cells' outcomes in one
transaction, the job's counters last in it, then the job's follow-up in another.

Why this order (bench/fleet.py ``--finish worker`` calls this very function): the
finish's last step updates the job row's counters and holds that row until COMMIT,
and every other finisher of the job queues on it. Recorded the old way, finish first and
then the ledger, analyses, holds and follow-up in the same transaction, each of those
statements was a round trip more of that hold. One 100,000-cell job, 1,000 simulated
workers, this 2-core machine, alternating runs: 77-103 claims/s before, 108-113 after,
with half the lock waits (2.5k samples instead of 4.4-4.8k). Still far from the 370 the
statement-transaction finish sustains (models/db/finish_committed.py): the extras keep
the transaction open over several round trips, and docs/PERFORMANCE.md says what would
close the gap.

1. the job's shared lock first (the finishers share it; every writer that locks the job
   excludes it), so the order stays job, then shards, then cells;
2. the extras (models/db/finish_extras.py): the ledger, the device, analyses, scores
   and holds, on cells still queued or stored under this attempt's key;
3. the finish (models/db/finish.py): cells, shard, the job's counters; the settle when
   the job is complete; COMMIT;
4. the follow-up (models/db/finish_follow_up.py): pause, budget, progress.

All in one transaction but the last: the images' ledger row and holds land with their
cells or not at all.
"""

from __future__ import annotations

from typing import Unpack

from sqlalchemy.orm import Session, sessionmaker

from models.db.claims import share_job
from models.db.finish import ShardCompletion, finish_attempt
from models.db.finish_extras import AnalysisRecord, record_extras
from models.db.finish_follow_up import follow_up
from models.db.finish_sql import FinishArgs
from models.db.session import retry_on_disconnect
from models.db.tables import utcnow
from models.domain.status import JobStatus


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
    repeated once if its connection died (conditional updates: nothing twice)."""
    shard, results = finish["shard"], finish["results"]
    recorded = {r.index for r in results}

    def record() -> ShardCompletion:
        with sessions.begin() as session:
            share_job(session, shard.job_id)
            record_extras(
                session,
                shard=shard,
                results=results,
                analyses=[a for a in analyses if a.index in recorded],
                device=device,
                now=utcnow(),
            )
            return finish_attempt(session, **finish)

    completion = retry_on_disconnect(record)

    def followed() -> JobStatus | None:
        with sessions.begin() as session:
            return follow_up(
                session, shard=shard, progress_min_interval_s=progress_min_interval_s, now=utcnow()
            )

    return completion, completion.job_status or retry_on_disconnect(followed)
