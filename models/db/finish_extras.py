"""What recording a shard attempt writes beside its cells' outcomes (models/db/finish.py),
in the same transaction and before them (models/db/record_attempt.py says why):

1. the ledger: a ``gpu_usage`` row for the attempt, and the device on each new cell;
2. the image analyses (worker/analysis.py): one (label, score) per analyzer and cell;
   the scorer's also on the cell's row (items.score / score_label), once: a late
   duplicate of a scored cell changes nothing;
3. holds: cells whose image screening held (stored under a private key) are marked
   ``held``, counted on the job, and announced (``cell.held``).

A cell this attempt is about to record is still queued with no key: steps 2 and 3 mark
it, as they mark a cell already recorded under this attempt's key, and never one that
another attempt recorded (its key is another). The job's follow-up (pause, budget,
progress) comes after the finish: models/db/finish_follow_up.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models.db.business_tables import CellAnalysis
from models.db.claims import ClaimedShard
from models.db.finish import CellResult
from models.db.ledger import record_usage
from models.db.tables import Item, Job
from models.db.webhook_events import enqueue_event
from models.domain.scores import MAX_LABEL_CHARS
from models.domain.status import CellStatus
from models.domain.webhook_events import CELL_HELD

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
    now: datetime,
) -> None:
    """Steps 1-3 (module docstring)."""
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


def _ours(stored_key: Any) -> Any:
    """The cell as this attempt stored it: recorded under its key, or about to be (still
    queued, no key; the finish that follows in this transaction records it)."""
    return or_(
        stored_key == Item.key,
        and_(Item.key.is_(None), Item.status == CellStatus.QUEUED),
    )


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
            _ours(bindparam("stored")),
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
                _ours(result.key),
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
