"""The call of ``farm_finish_shard()`` (models/db/sql/), shared by ``finish_attempt``
(models/db/finish.py) and ``finish_committed`` (models/db/finish_committed.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict, Unpack

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
    " :max_attempts, :backoff_s, :now,"
    " CAST(:tenant AS uuid), CAST(:model AS text), CAST(:device AS text))"
)
_COLUMNS = (
    "recorded, failed, requeued, job_status, job_total, job_done, job_failed, job_cancelled,"
    " follow_up"
)
JOB_COLUMNS = slice(3, 8)  # the job's status and counters in a result row
_FINISH_SQL = text(f"SELECT {_COLUMNS}{_CALL}")
# Committed without waiting for the WAL flush (set_config(..., true) lasts until this
# statement's transaction ends): see finish_committed for why and what it risks.
FINISH_ASYNC_SQL = text(
    f"SELECT {_COLUMNS}, set_config('synchronous_commit', 'off', true) AS async{_CALL}"
)


class FinishArgs(TypedDict):
    """What a finish records: the shard as claimed, the worker, its images and failed
    cells, and the retry policy for those (``finish_attempt``'s arguments, by name)."""

    shard: ClaimedShard
    worker: str
    results: list[CellResult]
    failures: list[CellFailure]
    max_attempts: int
    backoff_s: float


def finish_row(
    session: Session,
    *,
    asynchronous: bool = False,
    device: str | None = None,
    **finish: Unpack[FinishArgs],
) -> Row[Any]:
    """One statement: the shard's cells, the shard, the job's counters after them.
    ``asynchronous``: the transaction it runs in commits without waiting for the WAL
    flush (models/db/finish_committed.py says why and what that risks). ``device``: the
    attempt's ledger row and its cells' device too (farm_finish_shard v3)."""
    statement = FINISH_ASYNC_SQL if asynchronous else _FINISH_SQL
    return session.execute(statement, finish_params(finish, device=device)).one()


def finish_params(finish: FinishArgs, *, device: str | None = None) -> dict[str, Any]:
    """The arguments of ``farm_finish_shard()``, by name (``FINISH_ASYNC_SQL``'s)."""
    shard, results, failures = finish["shard"], finish["results"], finish["failures"]
    return {
        "tenant": shard.tenant_id if device else None,
        "model": shard.model if device else None,
        "device": device,
        "shard": shard.id,
        "job": shard.job_id,
        "shard_index": shard.index,
        "attempts": shard.attempts,
        "worker": finish["worker"],
        "indexes": [r.index for r in results],
        "keys": [r.key for r in results],
        "digests": [r.sha256 for r in results],
        "ratings": [r.rating for r in results],
        "render_ms": [r.render_ms for r in results],
        "failed_indexes": [f.index for f in failures],
        "failed_errors": [f.error for f in failures],
        "max_attempts": finish["max_attempts"],
        "backoff_s": finish["backoff_s"],
        "now": utcnow(),
    }
