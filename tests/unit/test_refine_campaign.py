"""A campaign that ends with a refinement: each finished run's job is refined into a child
job linked to the run (frozen-clock scheduler on real Postgres: tests/campaign_clock.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from models.db.tables import Item, Job
from models.infra.settings import Settings
from tests.campaign_clock import SPEC, Scheduler, at, frozen_scheduler, with_test_model
from tests.conftest import ApiClient


@pytest.fixture
def sched(sessions: sessionmaker[Session], settings: Settings) -> Iterator[Scheduler]:
    with frozen_scheduler(sessions, with_test_model(settings)) as scheduler:
        yield scheduler


def rendered(sched: Scheduler, job_id: uuid.UUID, *, scored: bool) -> None:
    """What a worker (and the scorer) record: every cell done, its PNG's hash, a score."""
    with sched.sessions.begin() as session:
        session.execute(
            update(Item)
            .where(Item.job_id == job_id)
            .values(status="done", key="k", sha256="a" * 64, score=Item.index if scored else None)
        )
    sched.finish(job_id)


def test_each_finished_run_is_refined_into_a_linked_child(sched: Scheduler) -> None:
    cid = sched.campaign(refine={"top": 1, "hires": True})
    [first] = sched.tick(at(1))
    assert first.job is not None
    rendered(sched, first.job.id, scored=True)
    [refined] = sched.tick(at(1, 30))  # settle: the run is closed and refined
    assert refined.job is not None and refined.publication is not None
    assert refined.job.parent_job_id == first.job.id
    [(run, _job)] = sched.runs(cid)
    assert run.status == "succeeded" and run.refine_job_id == refined.job.id
    with sched.sessions() as session:
        [cell] = session.scalars(select(Item).where(Item.job_id == refined.job.id))
        parent = session.get(Job, first.job.id)
    assert (cell.parent_index, cell.base_sha256, cell.hires_scale) == (1, "a" * 64, 1.5)
    assert parent is not None and parent.children == [str(refined.job.id)]
    assert sched.tick(at(1, 40)) == []  # refined once


def test_a_refinement_that_cannot_be_made_is_the_runs_reason(sched: Scheduler) -> None:
    cid = sched.campaign(refine={"top": 4, "per_prompt": True, "more_like": 2})
    [first] = sched.tick(at(1))
    assert first.job is not None
    rendered(sched, first.job.id, scored=False)  # no scorer: nothing to rank
    assert sched.tick(at(1, 30)) == []
    [(run, _job)] = sched.runs(cid)
    assert run.status == "succeeded" and run.refine_job_id is None
    assert run.reason == "refine: top: no selected cell has a score"


def test_a_campaigns_refinement_is_checked_when_it_is_made(api: ApiClient) -> None:
    spec = {k: v for k, v in SPEC.items() if k != "model"}
    body = {"name": "n", "schedule": "@daily", "spec": spec, "refine": {"hires": True}}
    r = api.client.post("/v1/campaigns", json=body, headers=api.auth)
    assert r.status_code == 422, r.text
    assert [d["field"] for d in r.json()["detail"]] == ["refine.cells"]
    body["refine"] = {"top": 2, "hires": True}
    r = api.client.post("/v1/campaigns", json=body, headers=api.auth)
    assert r.status_code == 201, r.text
    assert r.json()["refine"] == {
        "top": 2,
        "hires": True,
        "per_prompt": False,
        "set": {},
        "labels": {},
    }
    api.client.delete(f"/v1/campaigns/{r.json()['id']}", headers=api.auth)  # others tick
