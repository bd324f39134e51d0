"""Lifecycle states of jobs, shards and cells.

The transitions are enforced where they happen, as conditional UPDATEs (``... WHERE
status = 'queued'``) in the data layer: queued -> running -> a terminal status for a job
(a retry of failed cells re-opens it: partial/failed -> running); queued -> running ->
done/failed for a shard, which goes back to queued when its lease expires or some of
its cells are retried (queued <-> paused while its job is paused); queued ->
done/failed/cancelled for a cell, and done -> expired when its job's retention ends.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # finished with some failed cells
    FAILED = "failed"  # finished with no successful cell
    CANCELLED = "cancelled"


class ShardStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PAUSED = "paused"  # its job is paused: not claimable until resumed (back to queued)


class CellStatus(StrEnum):
    QUEUED = "queued"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # done, and its image removed when the job's retention ran out


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    BULK = "bulk"

    @property
    def rank(self) -> int:
        """Lower runs first; stored on shards so the claim query can order by it."""
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.BULK: 2}

TERMINAL_JOB_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED}
)


def final_job_status(*, total: int, done: int, failed: int, cancelled: int) -> JobStatus | None:
    """The terminal status once every cell has an outcome, else None."""
    if done + failed + cancelled < total:
        return None
    if cancelled:
        return JobStatus.CANCELLED
    if failed == 0:
        return JobStatus.SUCCEEDED
    return JobStatus.FAILED if done == 0 else JobStatus.PARTIAL
