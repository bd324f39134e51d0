"""`farm refine` and ``FarmClient.refine`` against a real API on a real port, with the
embedded worker and the simulated model (tests/unit/test_cli.py's farm)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy.orm import Session, sessionmaker

from farm.client import FarmApiError, FarmClient
from models.infra.settings import Settings
from tests.unit.test_cli import running_farm

GRID = {"prompts": ["1girl, solo"], "buckets": ["1:1", "13:19"], "seeds": [1, 2]}


def test_farm_refine_and_the_client(settings: Settings, sessions: sessionmaker[Session]) -> None:
    with running_farm(settings, sessions) as farm, FarmClient(farm.url, farm.key) as client:
        parent = client.wait(client.submit(GRID)["id"], poll_s=0.1)
        assert parent["status"] == "succeeded"
        job = parent["id"]

        result = farm.run("refine", job, "--cells", "0,3", "--hires", "--wait")
        assert result.exit_code == 0, result.output
        [child] = re.findall(
            rf"^job ([0-9a-f-]{{36}}): 2 cells, queued \(refines {job}\)", result.output, re.M
        )
        assert f"job {child}: succeeded (2/2 images)" in result.output
        images = list(client.images(child))
        assert [(i["parent_job_id"], i["parent_index"]) for i in images] == [(job, 0), (job, 3)]
        assert client.job(job)["children"] == [child]

        more = client.refine(job, cells=[1], more_like=2, overrides={"steps": 3})
        assert more["total"] == 2 and more["parent_job_id"] == job

        result = farm.run("refine", job, "--where", "bucket=832x1216", "--set", "steps=3")
        assert result.exit_code == 0, result.output
        assert re.search(r"job [0-9a-f-]{36}: 2 cells", result.output)

        bad = farm.run("refine", job, "--cells", "9", "--hires")
        assert bad.exit_code == 2 and "cells: no cell 9" in bad.output
        bad = farm.run("refine", job, "--top", "2", "--set", "steps=40", "--more-like", "1")
        assert bad.exit_code == 2 and "top: no selected cell has a score" in bad.output
        with pytest.raises(FarmApiError) as refused:
            client.refine(job, cells=[0])
        assert refused.value.status == 422 and refused.value.detail[0]["field"] == "hires"
