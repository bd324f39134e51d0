"""The claim's walks stay on ix_shards_claim whatever the planner's statistics say
(farm_claim_shard v5's header): with a giant job half claimed and statistics from when
it was all queued, no statement inside one claim filters out the shards ahead of the
first queued one. v4 took pk_shards and uq_shards_job_index there, and each claim read
every claimed and finished shard of the job (bench/fleet.py's giant job)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session, sessionmaker

from models.db.claims import claim_next_shard
from models.db.session import statement_transactions
from tests.unit.test_finish_committed import _job
from tests.unit.test_shard_store import new_model

SHARDS = 600
CLAIMED = 300
_REMOVED = re.compile(r"Rows Removed by Filter: (\d+)")


@pytest.fixture
def explained(sessions: sessionmaker[Session]) -> Iterator[tuple[Connection, list[str]]]:
    """A connection whose statements, nested ones included, report their plans."""
    engine = sessions.kw["bind"]
    with engine.connect() as connection:
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_analyze = on",
            "SET auto_explain.log_nested_statements = on",
            "SET auto_explain.log_level = notice",
            "SET client_min_messages = notice",
        ):
            connection.execute(text(setting))
        connection.commit()
        plans: list[str] = []
        driver = connection.connection.dbapi_connection
        assert driver is not None
        driver.add_notice_handler(lambda notice: plans.append(str(notice.message_primary)))
        yield connection, plans


def test_a_claim_walks_the_claim_index_not_the_claimed_shards(
    sessions: sessionmaker[Session], explained: tuple[Connection, list[str]]
) -> None:
    model = new_model()
    _job(sessions, model, cells=SHARDS)  # batch_size 1: a shard per cell
    with sessions.begin() as session:  # the statistics of a queue that is all queued
        session.execute(text("ANALYZE shards"))
    with statement_transactions(sessions) as session:
        for _ in range(CLAIMED):
            assert claim_next_shard(session, model=model, worker="w", lease_s=60)
    connection, plans = explained
    row = connection.execute(
        text("SELECT id FROM farm_claim_shard(:m, 'w', 60, now(), NULL, 0)"), {"m": model}
    ).one_or_none()
    connection.commit()
    assert row is not None
    shard_scans = [p for p in plans if " on shards " in p and "farm_claim_shard" not in p]
    assert shard_scans, plans  # the nested statements were explained
    for plan in shard_scans:
        removed = [int(n) for n in _REMOVED.findall(plan)]
        assert max(removed, default=0) < CLAIMED // 10, plan
        assert "uq_shards_job_index" not in plan, plan
