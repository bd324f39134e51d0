"""Lifecycle states of jobs, shards and cells, and the transitions allowed between them."""

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


class CellStatus(StrEnum):
    QUEUED = "queued"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


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

JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, *TERMINAL_JOB_STATUSES}),
    JobStatus.RUNNING: TERMINAL_JOB_STATUSES,
    # A retry of failed cells re-opens a finished job.
    JobStatus.PARTIAL: frozenset({JobStatus.RUNNING}),
    JobStatus.FAILED: frozenset({JobStatus.RUNNING}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}

SHARD_TRANSITIONS: dict[ShardStatus, frozenset[ShardStatus]] = {
    ShardStatus.QUEUED: frozenset({ShardStatus.RUNNING, ShardStatus.CANCELLED}),
    # RUNNING -> QUEUED: a lease expired or a worker released the shard on shutdown.
    ShardStatus.RUNNING: frozenset(
        {ShardStatus.DONE, ShardStatus.FAILED, ShardStatus.QUEUED, ShardStatus.CANCELLED}
    ),
    ShardStatus.FAILED: frozenset({ShardStatus.QUEUED}),
    ShardStatus.DONE: frozenset(),
    ShardStatus.CANCELLED: frozenset(),
}


def final_job_status(*, total: int, done: int, failed: int, cancelled: int) -> JobStatus | None:
    """The terminal status once every cell has an outcome, else None."""
    if done + failed + cancelled < total:
        return None
    if cancelled:
        return JobStatus.CANCELLED
    if failed == 0:
        return JobStatus.SUCCEEDED
    return JobStatus.FAILED if done == 0 else JobStatus.PARTIAL
