"""What recording a shard attempt writes beside its cells' outcomes (models/db/finish.py),
in the same transaction:

1. the ledger: a ``gpu_usage`` row for the attempt, and the device on each new cell;
2. the image analyses (worker/analysis.py): one (label, score) per analyzer and cell;
   the scorer's also on the cell's row (items.score / score_label), once: a late
   duplicate of a scored cell changes nothing;
3. holds: cells whose image screening held (stored under a private key) are marked
   ``held``, counted on the job, and announced (``cell.held``);
4. the job: a paused job's requeued shards are parked, a job past its GPU budget
   stops, and a ``job.progress`` event is queued when one is due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models.db.business_tables import CellAnalysis
from models.db.claims import ClaimedShard
from models.db.finish import CellResult
from models.db.job_control import park_shards, stop_at_budget
from models.db.ledger import record_usage
from models.db.tables import Item, Job
from models.db.webhook_events import enqueue_event
from models.domain.scores import MAX_LABEL_CHARS
from models.domain.status import JobStatus
from models.domain.webhook_events import CELL_HELD, JOB_PROGRESS, WebhookProgress, progress_due

SCORE_ANALYZER = "score"  # worker/analysis.py SCORE: the analyzer whose results rank cells


@dataclass(frozen=True)
class AnalysisRecord:
    index: int
    analyzer: str
    label: str
    score: float
    analysis_ms: int


def record_extras(
    session: Session,
    *,
    shard: ClaimedShard,
    results: list[CellResult],
    analyses: list[AnalysisRecord],
    device: str,
    progress_min_interval_s: float,
    now: datetime,
) -> JobStatus | None:
    """Steps 1-4 (module docstring); returns the job's terminal status if its GPU budget
    ended it here."""
    if results:
        record_usage(
            session,
            tenant_id=shard.tenant_id,
            job_id=shard.job_id,
            shard_index=shard.index,
            model=shard.model,
            device=device,
            cells=len(results),
            gpu_ms=sum(r.render_ms for r in results),
            now=now,
        )
        session.execute(
            update(Item)
            .where(
                Item.job_id == shard.job_id,
                Item.index.in_([r.index for r in results]),
                Item.device.is_(None),
            )
            .values(device=device)
        )
    if analyses:
        _insert_analyses(session, shard, analyses)
        _record_scores(session, shard, results, analyses)
    held = [r for r in results if r.held]
    if held:
        _hold(session, shard, held, analyses)
    return _follow_up(session, shard, progress_min_interval_s, now)


def _insert_analyses(session: Session, shard: ClaimedShard, analyses: list[AnalysisRecord]) -> None:
    rows = [
        {
            "job_id": shard.job_id,
            "cell_index": a.index,
            "analyzer": a.analyzer,
            "label": a.label[:100],
            "score": a.score,
            "analysis_ms": a.analysis_ms,
        }
        for a in analyses
    ]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(postgresql.insert(CellAnalysis).on_conflict_do_nothing(), rows)
    elif dialect == "sqlite":
        session.execute(sqlite.insert(CellAnalysis).on_conflict_do_nothing(), rows)
    else:  # pragma: no cover - the farm runs on Postgres or SQLite
        session.execute(insert(CellAnalysis), rows)


def _record_scores(
    session: Session, shard: ClaimedShard, results: list[CellResult], analyses: list[AnalysisRecord]
) -> None:
    """The scorer's results on the rows of the images this attempt stored (one
    executemany); a cell scored before keeps its score."""
    keys = {r.index: r.key for r in results}
    rows = [
        {"job": shard.job_id, "cell": a.index, "stored": keys[a.index], "s": a.score}
        | {"l": a.label[:MAX_LABEL_CHARS] or None}
        for a in analyses
        if a.analyzer == SCORE_ANALYZER and a.index in keys
    ]
    if not rows:
        return
    items = cast(Table, Item.__table__)  # core: one executemany, rows matched by bindparams
    session.execute(
        update(items)
        .where(
            items.c.job_id == bindparam("job"),
            items.c.index == bindparam("cell"),
            items.c.key == bindparam("stored"),
            items.c.score.is_(None),
        )
        .values(score=bindparam("s"), score_label=bindparam("l")),
        rows,
    )


def _hold(
    session: Session, shard: ClaimedShard, held: list[CellResult], analyses: list[AnalysisRecord]
) -> None:
    """Mark the cells this attempt stored privately (a re-render of a cell recorded
    before changes nothing: its key is another)."""
    url = session.scalar(select(Job.spec["webhook_url"].as_string()).where(Job.id == shard.job_id))
    count = 0
    for result in held:
        marked = session.execute(
            update(Item)
            .where(
                Item.job_id == shard.job_id,
                Item.index == result.index,
                Item.key == result.key,
                Item.hold.is_(None),
            )
            .values(hold="held")
        ).rowcount  # type: ignore[attr-defined]
        count += marked
        if marked and url:
            found = {
                a.analyzer: {"label": a.label, "score": a.score}
                for a in analyses
                if a.index == result.index
            }
            cell: dict[str, Any] = {"index": result.index, "analysis": found}
            enqueue_event(session, job_id=shard.job_id, event=CELL_HELD, extra={"cell": cell})
    if count:
        session.execute(
            update(Job)
            .where(Job.id == shard.job_id)
            .values(held=Job.held + count, version=Job.version + 1)
        )


def _follow_up(
    session: Session, shard: ClaimedShard, progress_min_interval_s: float, now: datetime
) -> JobStatus | None:
    job = session.execute(
        select(
            Job.status,
            Job.paused_at,
            Job.max_gpu_ms,
            Job.render_ms_total,
            Job.total,
            Job.done,
            Job.failed,
            Job.cancelled,
            Job.started_at,
            Job.progress_at,
            Job.progress_fraction,
            Job.spec["webhook_url"].as_string().label("url"),
            Job.spec["webhook_progress"].label("progress"),
        ).where(Job.id == shard.job_id)
    ).one_or_none()
    if job is None or JobStatus(job.status) not in (JobStatus.QUEUED, JobStatus.RUNNING):
        return None
    if job.paused_at is not None:
        park_shards(session, job_id=shard.job_id)
    if job.max_gpu_ms is not None and job.render_ms_total >= job.max_gpu_ms:
        final = stop_at_budget(
            session,
            job_id=shard.job_id,
            spent_ms=job.render_ms_total,
            budget_ms=job.max_gpu_ms,
            now=now,
        )
        if final is not None:
            return final
    if job.url and isinstance(job.progress, dict):
        fraction = (job.done + job.failed + job.cancelled) / max(1, job.total)
        if progress_due(
            WebhookProgress.model_validate(job.progress),
            fraction=fraction,
            last_fraction=job.progress_fraction or 0.0,
            last_at=job.progress_at,
            started_at=job.started_at,
            now=now,
            min_interval_s=progress_min_interval_s,
        ):
            session.execute(
                update(Job)
                .where(Job.id == shard.job_id)
                .values(progress_at=now, progress_fraction=fraction)
            )
            enqueue_event(
                session,
                job_id=shard.job_id,
                event=JOB_PROGRESS,
                extra={"progress": round(fraction, 4)},
                url=job.url,
            )
    return None
