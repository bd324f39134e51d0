"""`farm submit / status / jobs` against a real API on a real port (in-process worker).

The farm runs embedded on the test Postgres and moto's S3, with the simulated
model (real-size images after 10 ms each), so a grid finishes in seconds.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from farm.cli import app
from farm.client import FarmApiError, FarmClient
from farm.stack import build_app, serve_in_thread
from models.db.keys import create_api_key
from models.infra.settings import Settings, get_settings
from tests.services import free_port

GRID = "name: cli grid\nprompts: ['1girl, solo']\nbuckets: ['1:1', '13:19']\nseeds: [1, 2]\n"


@dataclass
class Farm:
    url: str
    key: str
    model: str

    def run(self, *args: str, key: str | None = None) -> Result:
        env = {"FARM_API_URL": self.url, "FARM_API_KEY": self.key if key is None else key}
        get_settings.cache_clear()  # the CLI reads FARM_API_URL / FARM_API_KEY once
        try:
            return CliRunner().invoke(app, list(args), env=env)
        finally:
            get_settings.cache_clear()


@contextmanager
def running_farm(
    settings: Settings, sessions: sessionmaker[Session], *, seconds_per_image: float = 0.01
) -> Iterator[Farm]:
    port = free_port()
    model = f"cli-sim-{uuid.uuid4().hex[:8]}"  # the shared test database has others' work
    settings = settings.model_copy(
        update={
            "model": model,
            "models": {model: f"simulated:{seconds_per_image}"},
            "public_base_url": f"http://127.0.0.1:{port}",
            "sheet_interval_s": 0.2,
            "retry_backoff_s": 0.05,
        }
    )
    with sessions.begin() as session:
        key = create_api_key(session, tenant_name=f"cli-{uuid.uuid4().hex[:8]}")
    fastapi_app, worker = build_app(settings)
    assert worker is not None
    worker.start()
    try:
        with serve_in_thread(fastapi_app, host="127.0.0.1", port=port) as url:
            yield Farm(url, key, model)
    finally:
        worker.stop()


@pytest.fixture
def farm(settings: Settings, sessions: sessionmaker[Session]) -> Iterator[Farm]:
    with running_farm(settings, sessions) as farm:
        yield farm


def _job_ids(output: str) -> list[str]:
    return re.findall(r"^job ([0-9a-f-]{36}): \d+ cells", output, re.M)


def test_submit_yaml_wait_shows_progress_and_ends_with_the_gallery_url(
    farm: Farm, tmp_path: Path
) -> None:
    spec = tmp_path / "grid.yaml"
    spec.write_text(GRID)
    result = farm.run("submit", str(spec), "--wait")
    assert result.exit_code == 0, result.output
    [job_id] = _job_ids(result.output)
    assert re.search(r"cli grid .* 4/4 .*img/s.*succeeded", result.output), result.output
    assert f"job {job_id}: succeeded (4/4 images)" in result.output
    last = result.output.strip().splitlines()[-1]
    assert last == f"gallery: {farm.url}/web/jobs/{job_id}/files/index.html"
    # The URL answers with the gallery (for the key's tenant), and so does the manifest.
    auth = {"Authorization": f"Bearer {farm.key}"}
    page = httpx.get(last.removeprefix("gallery: "), headers=auth)
    assert page.status_code == 200 and "cli grid" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    with FarmClient(farm.url, farm.key) as client:
        manifest = client.manifest(job_id)
        sheets = client.contact_sheets(job_id)
        sheet = client.file(sheets[0]["url"])  # redirected to S3's presigned URL
    assert [c["status"] for c in manifest["cells"]] == ["done"] * 4
    assert manifest["model"] == {"name": farm.model, "revision": "simulated:0.01"}
    assert len(sheets) == 1 and sheet[:3] == b"\xff\xd8\xff"  # a JPEG
    other = httpx.get(last.removeprefix("gallery: "))  # no key, no cookie
    assert other.status_code == 401


def test_submit_jsonl_is_one_bulk_request_and_status_and_jobs_print_tables(
    farm: Farm, tmp_path: Path
) -> None:
    spec = tmp_path / "grids.jsonl"
    lines = [
        {"name": f"bulk {i}", "prompts": ["1boy"], "buckets": ["1:1"], "seeds": [i]} for i in (1, 2)
    ]
    spec.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = farm.run("submit", str(spec), "--wait")
    assert result.exit_code == 0, result.output
    ids = _job_ids(result.output)
    assert len(ids) == 2
    assert result.output.count("gallery: ") == 2

    status = farm.run("status", ids[0])
    assert status.exit_code == 0, status.output
    for field, value in (("status", "succeeded"), ("done", "1"), ("name", "bulk 1")):
        assert re.search(rf"│ {field}\s+│ {value}\s", status.output), status.output
    assert f"/web/jobs/{ids[0]}/files/index.html" in status.output
    as_json = farm.run("status", ids[0], "--json")
    assert json.loads(as_json.output)["links"]["page"] == f"/web/jobs/{ids[0]}"

    listing = farm.run("jobs", "--limit", "5")
    assert listing.exit_code == 0
    for job_id in ids:
        assert job_id in listing.output
    assert "bulk 2" in listing.output and "1/1" in listing.output


def test_api_errors_are_the_apis_own_message_and_exit_2(farm: Farm, tmp_path: Path) -> None:
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"prompts": ["1girl"], "buckets": ["1000x1000"]}))
    result = farm.run("submit", str(spec))
    assert result.exit_code == 2
    assert "error 422" in result.output
    assert "buckets: unknown bucket '1000x1000'" in result.output

    assert farm.run("status", str(uuid.uuid4())).exit_code == 2
    unauthorised = farm.run("jobs", key="farm_wrong")
    assert unauthorised.exit_code == 2 and "invalid or revoked API key" in unauthorised.output
    no_key = farm.run("jobs", key="")
    assert no_key.exit_code == 2 and "set FARM_API_KEY" in no_key.output
    unreadable = farm.run("submit", str(tmp_path / "missing.yaml"))
    assert unreadable.exit_code == 2 and "cannot read" in unreadable.output


def test_a_cancelled_job_exits_1(
    settings: Settings, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    # 30 s per image: the job cannot finish before it is cancelled, however busy the
    # machine (a cancel interrupts the render between its checks, every 50 ms).
    with running_farm(settings, sessions, seconds_per_image=30) as farm:
        _submit_and_cancel(farm, tmp_path)


def _submit_and_cancel(farm: Farm, tmp_path: Path) -> None:
    spec = tmp_path / "slow.yaml"
    seeds = list(range(4))
    spec.write_text(GRID.replace("seeds: [1, 2]", f"seeds: {seeds}"))

    cancelled: list[str] = []

    def cancel_first_running() -> None:
        with FarmClient(farm.url, farm.key) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not cancelled:
                running = client.jobs(status="running")
                try:
                    if running:
                        cancelled.append(client.cancel(running[0]["id"])["status"])
                except FarmApiError as exc:  # a 5xx is worth a retry, as any client would
                    if exc.status < 500:
                        raise
                time.sleep(0.02)

    canceller = threading.Thread(target=cancel_first_running)
    canceller.start()
    result = farm.run("submit", str(spec), "--wait")
    canceller.join()
    assert cancelled == ["cancelled"]
    assert result.exit_code == 1, result.output
    [job_id] = _job_ids(result.output)
    assert f"job {job_id}: cancelled" in result.output
    assert farm.run("status", job_id).exit_code == 1


def test_a_failed_job_exits_1(
    settings: Settings, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    # Storage that refuses every upload (no such bucket): each cell fails for real.
    broken = settings.model_copy(update={"s3_bucket": "no-such-bucket", "max_attempts": 1})
    spec = tmp_path / "grid.yaml"
    spec.write_text(GRID)
    with running_farm(broken, sessions) as farm:
        result = farm.run("submit", str(spec), "--wait")
    assert result.exit_code == 1, result.output
    [job_id] = _job_ids(result.output)
    assert f"job {job_id}: failed (0/4 images)" in result.output
    assert "gallery:" not in result.output  # nothing to show
