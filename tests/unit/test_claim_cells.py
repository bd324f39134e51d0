"""claim_with_cells (models/db/claim_cells.py): the claim and the claimed shard's queued
cells in one round trip on Postgres (farm_claim_cells), the stepwise claim and
``queued_cells`` on SQLite; both give what a claim followed by ``queued_cells`` gives."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from migrations.apply import upgrade
from models.db.cell_rows import queued_cells
from models.db.claim_cells import claim_with_cells
from models.db.claims import ClaimedShard
from models.db.jobs import NewJob, create_jobs
from models.db.keys import ensure_tenant
from models.db.session import make_engine, make_session_factory, statement_transactions
from models.db.tables import Item, Shard
from models.domain.cells import Cell
from models.domain.spec import JobSpec
from models.domain.status import CellStatus
from tests.unit.test_shard_store import new_model

SPEC = {
    "prompts": ["1girl, solo", "1boy, red hair"],
    "seeds": [1, 2, 3, 4, 5],
    "buckets": ["1024x1024", "832x1216"],
    "hires": {"scale": 1.5, "strength": 0.5, "steps": 4},
}


@pytest.fixture(params=["postgres", "sqlite"])
def both(
    request: pytest.FixtureRequest, sessions: sessionmaker[Session], tmp_path: Path
) -> Iterator[sessionmaker[Session]]:
    if request.param == "postgres":
        yield sessions
        return
    url = f"sqlite:///{tmp_path / 'farm.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def _job(sessions: sessionmaker[Session], model: str) -> uuid.UUID:
    with sessions.begin() as session:
        owner = ensure_tenant(session, name=f"cells-{uuid.uuid4().hex[:8]}")
        [created] = create_jobs(
            session,
            tenant_id=owner.id,
            requests=[NewJob(JobSpec.model_validate(SPEC))],
            default_model=model,
            batch_size=4,
        )
        return created.job.id


def _claim(sessions: sessionmaker[Session], model: str) -> tuple[ClaimedShard, list[Cell]] | None:
    with statement_transactions(sessions) as session:
        return claim_with_cells(session, model=model, worker="w", lease_s=60)


def _queued(sessions: sessionmaker[Session], shard: ClaimedShard) -> list[Cell]:
    with sessions() as session:
        return queued_cells(session, job_id=shard.job_id, shard_index=shard.index)


def test_every_shard_comes_with_its_queued_cells(both: sessionmaker[Session]) -> None:
    model = new_model()
    job_id = _job(both, model)
    claimed = []
    while (found := _claim(both, model)) is not None:
        shard, cells = found
        assert shard.job_id == job_id and shard.model == model and shard.attempts == 1
        assert cells == _queued(both, shard)  # every field, in index order
        assert cells and [c.index for c in cells] == sorted(c.index for c in cells)
        claimed.append(shard)
    # 2 prompts x 2 buckets x 5 seeds, up to 4 to a shard: every shard once, every cell
    # once, with the shard it belongs to.
    assert sorted(s.index for s in claimed) == list(range(len(claimed)))
    every = [c for shard in claimed for c in _queued(both, shard)]
    assert sorted(c.index for c in every) == list(range(20))
    assert {c.hires_scale for c in every} == {1.5}


def test_only_the_cells_still_queued_and_a_shard_with_none(both: sessionmaker[Session]) -> None:
    model = new_model()
    job_id = _job(both, model)
    with both.begin() as session:  # shard 0: one cell done; shard 1: every cell done
        session.execute(
            update(Item)
            .where(Item.job_id == job_id, Item.shard_index == 0, Item.index == 0)
            .values(status=CellStatus.DONE.value)
        )
        session.execute(
            update(Item)
            .where(Item.job_id == job_id, Item.shard_index == 1)
            .values(status=CellStatus.DONE.value)
        )
    first = _claim(both, model)
    second = _claim(both, model)
    assert first is not None and second is not None
    assert (first[0].index, second[0].index) == (0, 1)
    assert [c.index for c in first[1]] == [1, 2, 3]
    assert second[1] == []  # claimed all the same: the writer finishes it with nothing


def test_nothing_queued_is_none(both: sessionmaker[Session]) -> None:
    model = new_model()
    job_id = _job(both, model)
    with both.begin() as session:
        session.execute(update(Shard).where(Shard.job_id == job_id).values(status="done"))
    assert _claim(both, model) is None
