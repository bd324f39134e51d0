"""The call of ``farm_finish_shard()`` (models/db/sql/), shared by ``finish_attempt``
(models/db/finish.py) and ``finish_committed`` (models/db/finish_committed.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, text
from sqlalchemy.orm import Session

from models.db.claims import ClaimedShard
from models.db.tables import utcnow

if TYPE_CHECKING:
    from models.db.finish import CellFailure, CellResult

_CALL = (
    " FROM farm_finish_shard(:shard, :job, :shard_index, :attempts, :worker,"
    " CAST(:indexes AS integer[]), CAST(:keys AS text[]), CAST(:digests AS text[]),"
    " CAST(:ratings AS text[]), CAST(:render_ms AS integer[]),"
    " CAST(:failed_indexes AS integer[]), CAST(:failed_errors AS text[]),"
    " :max_attempts, :backoff_s, :now)"
)
_COLUMNS = "recorded, failed, requeued, job_status, job_total, job_done, job_failed, job_cancelled"
JOB_COLUMNS = slice(3, 8)  # the job's status and counters in a result row
_FINISH_SQL = text(f"SELECT {_COLUMNS}{_CALL}")
# Committed without waiting for the WAL flush (set_config(..., true) lasts until this
# statement's transaction ends): see finish_committed for why and what it risks.
FINISH_ASYNC_SQL = text(
    f"SELECT {_COLUMNS}, set_config('synchronous_commit', 'off', true) AS async{_CALL}"
)


def finish_row(
    session: Session,
    *,
    shard: ClaimedShard,
    worker: str,
    results: list[CellResult],
    failures: list[CellFailure],
    max_attempts: int,
    backoff_s: float,
    asynchronous: bool = False,
) -> Row[Any]:
    """One statement: the shard's cells, the shard, the job's counters after them.
    ``asynchronous``: the transaction it runs in commits without waiting for the WAL
    flush (models/db/finish_committed.py says why and what that risks)."""
    params = finish_params(
        shard=shard,
        worker=worker,
        results=results,
        failures=failures,
        max_attempts=max_attempts,
        backoff_s=backoff_s,
    )
    return session.execute(FINISH_ASYNC_SQL if asynchronous else _FINISH_SQL, params).one()


def finish_params(
    *,
    shard: ClaimedShard,
    worker: str,
    results: list[CellResult],
    failures: list[CellFailure],
    max_attempts: int,
    backoff_s: float,
) -> dict[str, Any]:
    """The arguments of ``farm_finish_shard()``, by name (``FINISH_ASYNC_SQL``'s)."""
    return {
        "shard": shard.id,
        "job": shard.job_id,
        "shard_index": shard.index,
        "attempts": shard.attempts,
        "worker": worker,
        "indexes": [r.index for r in results],
        "keys": [r.key for r in results],
        "digests": [r.sha256 for r in results],
        "ratings": [r.rating for r in results],
        "render_ms": [r.render_ms for r in results],
        "failed_indexes": [f.index for f in failures],
        "failed_errors": [f.error for f in failures],
        "max_attempts": max_attempts,
        "backoff_s": backoff_s,
        "now": utcnow(),
    }
